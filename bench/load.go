package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/upgradeapprovals/bot/bot/bottest"
	"github.com/upgradeapprovals/bot/graph/graphtest"
)

// loadGen sends signed activities as Azure Bot Service does: each worker
// holds one token (the service reuses its tokens for their lifetime) and
// posts activities one after another; -c workers run at once.
type loadGen struct {
	channel   *bottest.Channel
	connector *bottest.Connector
	tb        *runTB
	o         options
	// concurrency is how many requests are in flight at once.
	concurrency int
	client      *http.Client
	once        sync.Once
}

func (g *loadGen) http() *http.Client {
	g.once.Do(func() {
		g.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
		}}
	})
	return g.client
}

// run posts activities acts(0), acts(1), … until n are done or the
// duration is over, and returns each one's latency, the failures and the
// elapsed time. ok, when set, must accept each response body.
func (g *loadGen) run(base string, acts func(int) map[string]any, n int, ok func([]byte) bool) ([]time.Duration, int, time.Duration) {
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
			token := g.channel.Token(g.tb)
			for {
				i := int(next.Add(1)) - 1
				if i >= n || time.Now().After(stopAt) {
					return
				}
				t := time.Now()
				body, err := g.post(base, token, acts(i))
				d := time.Since(t)
				if err != nil || (ok != nil && !ok(body)) {
					if errs.Add(1) == 1 {
						fmt.Printf("bench: first failure: %v %s\n", err, tail(string(body), 300))
					}
					continue
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return lat, int(errs.Load()), time.Since(start)
}

func (g *loadGen) post(base, token string, activity map[string]any) ([]byte, error) {
	raw, err := json.Marshal(activity)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, base+"/api/messages", bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := g.http().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return body, fmt.Errorf("status %d", resp.StatusCode)
	}
	return body, nil
}

// warm sends a few activities from every worker, as the measured load
// will, so that connections (the load generator's to the bot, the bot's to
// the connector and Redis), token caches and lazy initialisation are in
// place before measuring.
func (g *loadGen) warm(base string, acts func(int) map[string]any) {
	n := 10 * max(g.concurrency, 2)
	_, errs, _ := g.run(base, func(i int) map[string]any {
		a := acts(i)
		a["id"] = fmt.Sprintf("warm-%d-%v", i, a["id"])
		return a
	}, n, nil)
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
func (g *loadGen) prepareApprovals(base string, t *graphtest.Tenant, n int) ([]approval, error) {
	g.connector.RecordBodies(true)
	defer g.connector.RecordBodies(false)
	before := len(g.connector.Calls())
	chats := make([]string, n)
	for i := range chats {
		chats[i] = fmt.Sprintf("19:bench-approve-%d@thread.v2", i)
		seedChat(t, chats[i], 1, i+1)
	}
	lat, errs, _ := g.run(base, func(i int) map[string]any {
		return g.message(fmt.Sprintf("prepare-%d", i), chats[i], "check")
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
