package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/upgradeapprovals/bot/botframework/fakechannel"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

// loadGen sends signed activities as Azure Bot Service does: each worker
// holds one token (the service reuses its tokens for their lifetime) and
// one kept-alive connection, and posts activities one after another; -c
// workers run at once.
//
// It shares the machine's CPUs with the bots, so it spends as little as it
// can per activity: each worker writes its requests straight onto its own
// connection and reads the answer with net/http's response parser, without
// http.Client's per-request machinery (a transport goroutine pair per
// connection, a handoff per request), and a unit's activities may be
// encoded ahead of time (see template).
type loadGen struct {
	channel   *fakechannel.Channel
	connector *fakechannel.Connector
	tb        *runTB
	o         options
	// concurrency is how many requests are in flight at once.
	concurrency int
}

// run posts activities acts(0), acts(1), … (each an encoded JSON body)
// until n are done or the duration is over, and returns each one's
// latency, the failures and the elapsed time. ok, when set, must accept
// each response body.
func (g *loadGen) run(base string, acts func(int) []byte, n int, ok func([]byte) bool) ([]time.Duration, int, time.Duration) {
	var (
		next    atomic.Int64
		errs    atomic.Int64
		mu      sync.Mutex
		lat     = make([]time.Duration, 0, n)
		wg      sync.WaitGroup
		start   = time.Now()
		stopAt  = start.Add(g.o.duration)
		workers = min(g.concurrency, n)
	)
	for range workers {
		wg.Go(func() {
			c := &client{base: base, token: g.channel.Token(g.tb)}
			defer c.close()
			own := make([]time.Duration, 0, n/workers+1)
			defer func() {
				mu.Lock()
				lat = append(lat, own...)
				mu.Unlock()
			}()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || time.Now().After(stopAt) {
					return
				}
				t := time.Now()
				body, err := c.post(acts(i))
				d := time.Since(t)
				if err != nil || (ok != nil && !ok(body)) {
					if errs.Add(1) == 1 {
						fmt.Printf("bench: first failure: %v %s\n", err, tail(string(body), 300))
					}
					continue
				}
				own = append(own, d)
			}
		})
	}
	wg.Wait()
	return lat, int(errs.Load()), time.Since(start)
}

// client is one worker's HTTP/1.1 connection to a bot.
type client struct {
	base, token string
	conn        net.Conn
	r           *bufio.Reader
	w           *bufio.Writer
	head        []byte // the request line and headers up to Content-Length's value
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *client) dial() error {
	u, err := url.Parse(c.base)
	if err != nil {
		return err
	}
	if u.Scheme != "http" {
		return fmt.Errorf("bench: %s: only http on loopback", c.base)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		return err
	}
	c.conn, c.r, c.w = conn, bufio.NewReaderSize(conn, 16<<10), bufio.NewWriterSize(conn, 16<<10)
	c.head = fmt.Appendf(nil, "POST /api/messages HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: ", u.Host, c.token)
	return nil
}

// post sends one activity and returns the answer's body; a status other
// than 2xx is an error. A connection the bot closed is dialled again once.
func (c *client) post(body []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		if c.conn == nil {
			if err := c.dial(); err != nil {
				return nil, err
			}
		}
		resp, err := c.roundTrip(body)
		if err != nil {
			c.close()
			if attempt == 0 && errors.Is(err, io.EOF) {
				continue // the bot closed a kept-alive connection; nothing was read
			}
			return nil, err
		}
		return resp, nil
	}
}

func (c *client) roundTrip(body []byte) ([]byte, error) {
	c.w.Write(c.head)
	c.w.WriteString(strconv.Itoa(len(body)))
	c.w.WriteString("\r\n\r\n")
	c.w.Write(body)
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if resp.Close {
		c.close()
	}
	if resp.StatusCode/100 != 2 {
		return out, fmt.Errorf("status %d", resp.StatusCode)
	}
	return out, nil
}

// encode is an activity's JSON body.
func encode(activity map[string]any) []byte {
	raw, err := json.Marshal(activity)
	if err != nil {
		panic(err) // maps of strings and slices always encode
	}
	return raw
}

// template encodes activity once, with its "id" replaced by each
// activity's: the help unit's activities differ only in their id, and
// encoding a nested map for each of them would cost the shared CPUs a good
// part of what the bot under test spends.
func template(activity map[string]any) func(id string) []byte {
	const mark = "\x00id\x00"
	a := maps.Clone(activity)
	a["id"] = mark
	raw := encode(a)
	i := bytes.Index(raw, []byte(`"\u0000id\u0000"`))
	if i < 0 {
		panic("bench: template lost its id mark")
	}
	head, rest := raw[:i], raw[i+len(`"\u0000id\u0000"`):]
	return func(id string) []byte {
		quoted, _ := json.Marshal(id)
		out := make([]byte, 0, len(head)+len(quoted)+len(rest))
		return append(append(append(out, head...), quoted...), rest...)
	}
}

// warm sends a few activities from every worker, as the measured load
// will, so that connections (the load generator's to the bot, the bot's to
// the connector and Redis), token caches and lazy initialisation are in
// place before measuring.
func (g *loadGen) warm(base string, activity func(id string) []byte) {
	n := 10 * max(g.concurrency, 2)
	_, errs, _ := g.run(base, func(i int) []byte { return activity(fmt.Sprintf("warm-%d", i)) }, n, nil)
	if errs > 0 {
		g.tb.Fatalf("warm-up on %s: %d of %d activities failed", base, errs, n)
	}
}

// message is a group-chat message @mentioning the bot, as Teams sends it.
func (g *loadGen) message(id, chat, text string) map[string]any {
	return map[string]any{
		"type": "message", "id": id, "channelId": "msteams", "serviceUrl": g.connector.URL(), "locale": "en-US",
		"timestamp":    time.Now().UTC().Format(time.RFC3339Nano),
		"text":         "<at>Upgrade Approvals</at> " + text,
		"from":         map[string]any{"id": "29:1megan", "aadObjectId": owner, "name": "Megan Bowen"},
		"recipient":    map[string]any{"id": "28:" + appID, "name": "Upgrade Approvals"},
		"conversation": map[string]any{"id": chat, "conversationType": "groupChat", "tenantId": tenant},
		"entities": []any{map[string]any{"type": "mention", "text": "<at>Upgrade Approvals</at>",
			"mentioned": map[string]any{"id": "28:" + appID, "name": "Upgrade Approvals"}}},
		"channelData": map[string]any{"tenant": map[string]any{"id": tenant}},
	}
}

// approval is an approval id and the chat its card was posted in.
type approval struct{ id, chat, card string }

// approve is the Approve click on an approval's card.
func (g *loadGen) approve(id string, a approval) map[string]any {
	m := g.message(id, a.chat, "")
	delete(m, "text")
	delete(m, "entities")
	m["type"], m["name"], m["replyToId"] = "invoke", "adaptiveCard/action", a.card
	m["value"] = map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
		"data": map[string]any{"approvalId": a.id}}}
	return m
}

// prepareApprovals seeds n chats with one app behind each, sends check in
// each, and reads the approval ids from the cards posted to the connector.
func (g *loadGen) prepareApprovals(base string, t *fakegraph.Tenant, n int) ([]approval, error) {
	g.connector.RecordBodies(true)
	defer g.connector.RecordBodies(false)
	before := len(g.connector.Calls())
	chats := make([]string, n)
	for i := range chats {
		chats[i] = fmt.Sprintf("19:bench-approve-%d@thread.v2", i)
		seedChat(t, chats[i], 1, i+1)
	}
	lat, errs, _ := g.run(base, func(i int) []byte {
		return encode(g.message(fmt.Sprintf("prepare-%d", i), chats[i], "check"))
	}, n, nil)
	if errs > 0 || len(lat) != n {
		return nil, fmt.Errorf("bench: preparing approvals: %d failed, %d done", errs, len(lat))
	}
	byChat := map[string]approval{}
	for k, c := range g.connector.Calls()[before:] {
		raw, _ := json.Marshal(c.Activity["attachments"])
		var att []struct {
			Content struct {
				Actions []struct {
					Verb string `json:"verb"`
					Data struct {
						ApprovalID string `json:"approvalId"`
					} `json:"data"`
				} `json:"actions"`
			} `json:"content"`
		}
		if json.Unmarshal(raw, &att) != nil || len(att) != 1 {
			continue
		}
		// POST /v3/conversations/{chat}/activities/{replyToId}; the
		// connector fake answers the k-th call with id activity-k.
		parts := strings.Split(c.Path, "/")
		if c.Method != http.MethodPost || len(parts) < 4 {
			continue
		}
		chat, _ := url.PathUnescape(parts[3])
		for _, a := range att[0].Content.Actions {
			if a.Verb == "approve" && strings.HasPrefix(chat, "19:bench-approve-") {
				byChat[chat] = approval{id: a.Data.ApprovalID, chat: chat, card: fmt.Sprintf("activity-%d", before+k+1)}
			}
		}
	}
	out := make([]approval, 0, n)
	for _, c := range chats {
		if a, ok := byChat[c]; ok {
			out = append(out, a)
		}
	}
	if len(out) != n {
		return nil, fmt.Errorf("bench: %d approval cards for %d chats", len(out), n)
	}
	return out, nil
}
