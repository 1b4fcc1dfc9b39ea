package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/botframework/fakechannel"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

// Ids as the M365 Agents Playground sends them without a configuration:
// nothing the sandbox was seeded with.
const (
	pgTenant = "00000000-0000-0000-0000-0000000000001"
	pgUser   = "00000000-0000-0000-0000-0000000000020"
	pgOther  = "00000000-0000-0000-0000-0000000000021"
	pgBot    = "00000000-0000-0000-0000-00000000000011"
	pgChat   = "33eec705-51c2-4dd0-91d2-14e9d6784066"
)

// sandboxHarness runs the bot as the sandbox command does (no app id, its
// fake tenant behind the sandbox seam) on real Redis, with a recording
// connector standing in for the Playground.
type sandboxHarness struct {
	sb        *sandbox
	connector *fakechannel.Connector
	url       string
}

func newSandboxHarness(t *testing.T) *sandboxHarness {
	t.Helper()
	h := &sandboxHarness{sb: newSandbox(slog.New(slog.NewTextHandler(io.Discard, nil))), connector: fakechannel.NewConnector(t)}
	stopGraph, err := h.sb.listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopGraph)
	env := map[string]string{"REDIS_URL": redisURL(), "REDIS_PREFIX": fmt.Sprintf("test:sandbox:%d:", time.Now().UnixNano())}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.GraphBaseURL = h.sb.tenant.BaseURL + "/v1.0"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.url = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), deps{listener: ln, sandbox: h.sb})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return h
}

// activity is shaped as the Playground's: ids from its defaults, no token.
func (h *sandboxHarness) activity(typ, conversationType, conversationID string, from map[string]any, text string) map[string]any {
	a := map[string]any{
		"type": typ, "id": fmt.Sprint(time.Now().UnixNano()), "channelId": "msteams", "serviceUrl": h.connector.URL(), "locale": "en-US",
		"from":         from,
		"recipient":    map[string]any{"id": pgBot, "name": "Test Bot"},
		"conversation": map[string]any{"id": conversationID, "conversationType": conversationType, "tenantId": pgTenant},
		"channelData":  map[string]any{"tenant": map[string]any{"id": pgTenant}},
	}
	if text != "" {
		a["text"] = text
	}
	if conversationType != "personal" && typ == "message" {
		a["text"] = "<at>Test Bot</at> " + text
		a["entities"] = []any{map[string]any{"type": "mention", "text": "<at>Test Bot</at>", "mentioned": map[string]any{"id": pgBot, "name": "Test Bot"}}}
	}
	return a
}

func (h *sandboxHarness) post(t *testing.T, a map[string]any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(a)
	resp, err := http.Post(h.url+"/api/messages", "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// reply waits for the bot's first message to a conversation.
func (h *sandboxHarness) reply(t *testing.T, conversation string) string {
	t.Helper()
	var reply string
	eventually(t, 10*time.Second, "a reply in "+conversation, func() bool {
		for _, c := range h.connector.Calls() {
			if c.Method == http.MethodPost && strings.Contains(c.Path, "/v3/conversations/"+conversation+"/") {
				b, _ := json.Marshal(c.Activity)
				reply = string(b)
				return true
			}
		}
		return false
	})
	return reply
}

// replyTo waits for the bot's reply to activity a (its answer posted with
// replyToId a's id), and returns it with its activity id, as the
// connector answered it. Background scans may post cards of their own in
// between, so the calls' order says nothing.
func (h *sandboxHarness) replyTo(t *testing.T, a map[string]any) (fakechannel.ConnectorCall, string) {
	t.Helper()
	var reply fakechannel.ConnectorCall
	var id string
	eventually(t, 10*time.Second, fmt.Sprint("a reply to ", a["id"]), func() bool {
		for k, c := range h.connector.Calls() {
			if c.Method == http.MethodPost && c.Activity["replyToId"] == a["id"] {
				reply, id = c, fmt.Sprintf("activity-%d", k+1) // the connector fake's ids
				return true
			}
		}
		return false
	})
	return reply, id
}

// approvalIDs lists the ids of the single approvals a card carries.
func approvalIDs(t *testing.T, call fakechannel.ConnectorCall) []string {
	t.Helper()
	b, _ := json.Marshal(call.Activity["attachments"])
	var ids []string
	for _, m := range strings.Split(string(b), `"approvalId":"`)[1:] {
		id := m[:strings.IndexByte(m, '"')]
		if strings.HasPrefix(id, "apr_") && (len(ids) == 0 || ids[len(ids)-1] != id) {
			ids = append(ids, id)
		}
	}
	return ids
}

func TestSandboxAdoptsWhateverTalksToIt(t *testing.T) {
	h := newSandboxHarness(t)
	alex := map[string]any{"id": "user-id-0", "name": "Alex Wilber", "aadObjectId": pgUser}
	lynne := map[string]any{"id": "user-id-1", "name": "Lynne Robbins", "aadObjectId": pgOther}

	// A personal chat: the user's own scope gets Polls behind the catalog.
	personal := h.activity("message", "personal", "aacbaebb-4c4a-4107-88fa-11d30be08601", alex, "check")
	if code, _ := h.post(t, personal); code != http.StatusOK {
		t.Fatalf("check: status %d", code)
	}
	reply, _ := h.replyTo(t, personal)
	card, _ := json.Marshal(reply.Activity)
	for _, want := range []string{"Polls", "1.0.0", "1.1.0", "You can approve."} {
		if !strings.Contains(string(card), want) {
			t.Errorf("personal check lacks %q: %s", want, card)
		}
	}

	// A group chat, first seen through Alex: Alex owns it.
	group := h.activity("message", "groupChat", pgChat, alex, "check")
	if code, _ := h.post(t, group); code != http.StatusOK {
		t.Fatalf("group check: status %d", code)
	}
	list, listID := h.replyTo(t, group)
	b, _ := json.Marshal(list.Activity)
	for _, want := range []string{"Polls", "Tasks", "Whiteboard"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("group check lacks %q: %s", want, b)
		}
	}
	ids := approvalIDs(t, list)
	if len(ids) == 0 {
		t.Fatalf("no approval in %s", b)
	}
	ms := h.sb.tenant.Members(fakegraph.Chat, pgChat)
	if len(ms) != 1 || ms[0].UserID != pgUser || len(ms[0].Roles) != 1 || ms[0].Roles[0] != "owner" || ms[0].TenantID != pgTenant {
		t.Errorf("group chat members after first sight: %+v", ms)
	}

	// Lynne speaks later: she becomes a member, not an owner, and cannot approve.
	approve := func(from map[string]any) (int, string) {
		a := h.activity("invoke", "groupChat", pgChat, from, "")
		a["name"], a["replyToId"] = "adaptiveCard/action", listID
		a["value"] = map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve", "data": map[string]any{"approvalId": ids[0]}}}
		return h.post(t, a)
	}
	if code, body := approve(lynne); code != http.StatusOK || !strings.Contains(body, "can't approve") {
		t.Errorf("a member's Approve: %d %s", code, body)
	}
	ms = h.sb.tenant.Members(fakegraph.Chat, pgChat)
	if len(ms) != 2 || ms[1].UserID != pgOther || len(ms[1].Roles) != 0 {
		t.Errorf("members after Lynne spoke: %+v", ms)
	}
	if code, body := approve(alex); code != http.StatusOK || !strings.Contains(body, "was upgraded to") {
		t.Errorf("the owner's Approve: %d %s", code, body)
	}

	// A meeting chat and a team's channel are adopted the same way.
	meeting := h.activity("message", "groupChat", "19:meeting_NjQ4ZTAw@thread.v2", lynne, "check")
	channel := h.activity("message", "channel", "team-id", alex, "check")
	channel["channelData"] = map[string]any{"tenant": map[string]any{"id": pgTenant},
		"team": map[string]any{"id": "team-id", "name": "My Team", "aadGroupId": "00000000-0000-0000-0000-000000000031"}}
	for _, a := range []map[string]any{meeting, channel} {
		conversation := a["conversation"].(map[string]any)["id"].(string)
		if code, _ := h.post(t, a); code != http.StatusOK {
			t.Fatalf("check in %s: status %d", conversation, code)
		}
		if reply := h.reply(t, conversation); !strings.Contains(reply, "Whiteboard") {
			t.Errorf("check in %s lacks the pending upgrades: %q", conversation, reply)
		}
	}
	if ms := h.sb.tenant.Members(fakegraph.Team, "00000000-0000-0000-0000-000000000031"); len(ms) != 1 || ms[0].UserID != pgUser || ms[0].Roles[0] != "owner" {
		t.Errorf("team members: %+v", ms)
	}
}

// With auth off, a web page that rebinds its own name to 127.0.0.1 reaches
// the listener but not the bot: another Host, or a foreign Origin, is 403.
func TestSandboxServesOnlyLoopbackNames(t *testing.T) {
	h := newSandboxHarness(t)
	alex := map[string]any{"id": "user-id-0", "name": "Alex Wilber", "aadObjectId": pgUser}
	b, _ := json.Marshal(h.activity("message", "personal", "aacbaebb-4c4a-4107-88fa-11d30be08601", alex, "help"))
	send := func(host, origin string) int {
		req, _ := http.NewRequest(http.MethodPost, h.url+"/api/messages", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := send("evil.example", ""); code != http.StatusForbidden {
		t.Errorf("Host evil.example: status %d, want 403", code)
	}
	if code := send("", "http://evil.example"); code != http.StatusForbidden {
		t.Errorf("Origin http://evil.example: status %d, want 403", code)
	}
	if calls := h.connector.Calls(); len(calls) != 0 {
		t.Fatalf("the bot answered a rebound page: %d calls", len(calls))
	}
	if code := send("", ""); code != http.StatusOK {
		t.Errorf("Host %s: status %d, want 200", strings.TrimPrefix(h.url, "http://"), code)
	}
}

// Every Playground command a newcomer is given (README's, the sandbox's
// banner) runs it as the e2e test does, with no outside connection: README
// says nothing in the sandbox talks to Microsoft.
func TestPlaygroundCommandsMakeNoOutsideConnection(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var commands []string
	for _, text := range []string{string(readme), sandboxBanner("http://127.0.0.1:1", "http://127.0.0.1:3978/api/messages")} {
		for line := range strings.Lines(text) {
			if strings.Contains(line, "npx @microsoft/m365agentsplayground") {
				commands = append(commands, strings.TrimSpace(line))
			}
		}
	}
	if len(commands) < 3 {
		t.Fatalf("found %d Playground commands, want README's two and the banner's", len(commands))
	}
	for _, c := range commands {
		if !strings.Contains(c, " --disable-telemetry") || !strings.Contains(c, "APPLICATION_INSIGHTS_NO_STATSBEAT=true ") {
			t.Errorf("%q sends telemetry", c)
		}
	}
}
