package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/graph/fakegraph"
	"github.com/upgradeapprovals/bot/state"
)

// endCheckWindow ends a conversation's check window, as its 30 seconds
// passing would: the next check reads Graph.
func (h *harness) endCheckWindow(t *testing.T, conversationID string) {
	t.Helper()
	rdb, closeFn, err := state.Connect(context.Background(), h.env["REDIS_URL"], slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if n, err := rdb.Del(context.Background(), h.env["REDIS_PREFIX"]+"check:{"+conversationID+"}").Result(); err != nil || n != 1 {
		t.Fatalf("no check window to end in %s: %d %v", conversationID, n, err)
	}
}

// graphRequests reads upgradebot_graph_requests_total{command} from /metrics.
func (h *harness) graphRequests(t *testing.T, command string) string {
	t.Helper()
	resp, err := http.Get(h.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	prefix := `upgradebot_graph_requests_total{command="` + command + `"} `
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	return "absent"
}

// A check costs two Graph requests however many apps are installed, and an
// approval four; both reflect a version published a moment ago.
func TestGraphRequestBudgetPerCommand(t *testing.T) {
	h := newHarness(t)
	const chat = "19:abc@thread.v2"
	owner := "11111111-1111-1111-1111-111111111111"
	for i := range 30 {
		id := fmt.Sprintf("0d820ecd-def2-4297-adad-%012d", i)
		h.graph.AddApp(fakegraph.App{ID: id, DisplayName: fmt.Sprintf("App %d", i), Definitions: []fakegraph.Definition{
			{Version: "1.0.0"},
		}})
		h.graph.Install(fakegraph.Chat, chat, id, "1.0.0", nil)
	}
	h.graph.AddMembers(fakegraph.Chat, chat,
		fakegraph.Member{UserID: owner, DisplayName: "Megan Bowen", TenantID: testTenant, Roles: []string{"owner"}})
	// The catalog watcher's first read of the new tenant would land among
	// the counted requests whenever it happens to run (BenchmarkSweep
	// measures what background work costs).
	h.tune = func(d *deps) { d.noBackground = true }
	h.start(t)

	if code := h.post(t, h.message("1700000000020", "check")); code != http.StatusOK {
		t.Fatalf("check: status %d", code)
	}
	if reply := h.connector.WaitCalls(t, 1)[0]; !strings.Contains(fmt.Sprint(reply.Activity), "up to date") {
		t.Fatalf("check replied %v", reply.Activity)
	}
	if n := len(h.graph.Calls()); n != 2 {
		t.Fatalf("check with 30 installed apps made %d Graph requests, want 2", n)
	}
	if got := h.graphRequests(t, "check"); got != "2" {
		t.Errorf("upgradebot_graph_requests_total{command=\"check\"} = %s, want 2", got)
	}

	// The same check again at once reads nothing from Graph: it points at
	// the answer above.
	h.graph.ResetCalls()
	if code := h.post(t, h.message("1700000000019", "check")); code != http.StatusOK {
		t.Fatalf("check: status %d", code)
	}
	if reply := h.connector.WaitCalls(t, 2)[1]; !strings.Contains(fmt.Sprint(reply.Activity["text"]), "my answer is above") {
		t.Fatalf("a repeated check replied %v", reply.Activity)
	}
	if n := len(h.graph.Calls()); n != 0 {
		t.Errorf("a repeated check made %d Graph requests, want none", n)
	}
	if got := h.graphRequests(t, "check"); got != "2" {
		t.Errorf("upgradebot_graph_requests_total{command=\"check\"} = %s after a repeat, want 2", got)
	}
	h.endCheckWindow(t, chat)

	// The admin publishes 1.1.0 of one app; the next check shows it.
	h.graph.Publish("0d820ecd-def2-4297-adad-000000000007", fakegraph.Definition{Version: "1.1.0",
		RSC: []fakegraph.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}})
	h.graph.ResetCalls()
	if code := h.post(t, h.message("1700000000021", "check")); code != http.StatusOK {
		t.Fatalf("check: status %d", code)
	}
	posted := h.connector.WaitCalls(t, 3)[2]
	if card := cardOf(posted); !strings.Contains(card, "App 7") || !strings.Contains(card, "1.1.0") {
		t.Fatalf("the second check does not show the new version: %s", card)
	}
	if n := len(h.graph.Calls()); n != 2 {
		t.Errorf("second check made %d Graph requests, want 2", n)
	}
	approvalID := approvalIDOf(t, posted)

	h.graph.ResetCalls()
	invoke := h.message("1700000000022", "")
	delete(invoke, "text")
	invoke["type"], invoke["name"], invoke["replyToId"] = "invoke", "adaptiveCard/action", "activity-3"
	invoke["value"] = map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
		"data": map[string]any{"approvalId": approvalID}}}
	if code, body := h.exchange(t, invoke); code != http.StatusOK || !strings.Contains(string(body), "was upgraded to 1.1.0") {
		t.Fatalf("approve: %d %s", code, body)
	}
	var methods []string
	for _, c := range h.graph.Calls() {
		methods = append(methods, c.Method+" "+c.Path)
	}
	if len(methods) != 4 {
		t.Errorf("approval made %d Graph requests, want 4 (members, catalog, installation, upgrade): %v", len(methods), methods)
	}
	if got := h.graphRequests(t, "approve"); got != "4" {
		t.Errorf("upgradebot_graph_requests_total{command=\"approve\"} = %s, want 4", got)
	}
}

// A person's check is counted in the tenant's Graph budget as it happens,
// ahead of background work: with a budget of one call a second, the
// sweep's next call is booked behind the check's two.
func TestPeoplesGraphCallsAreCountedAheadOfTheSweep(t *testing.T) {
	h := newHarness(t)
	h.graph.AddApp(fakegraph.App{ID: "0d820ecd-def2-4297-adad-78056cde7c78", DisplayName: "Polls",
		Definitions: []fakegraph.Definition{{Version: "1.0.0"}}})
	h.graph.Install(fakegraph.Chat, "19:abc@thread.v2", "0d820ecd-def2-4297-adad-78056cde7c78", "1.0.0", nil)
	h.tune = func(d *deps) { d.noBackground, d.graphBudget = true, 1 }
	h.start(t)
	sweep := tenantBudget(storeOf(t, h), 1)
	if wait, _, err := sweep.Take(context.Background(), "another-tenant", 1); err != nil || wait != 0 {
		t.Fatalf("an idle tenant's budget: wait %s, %v", wait, err)
	}
	if code := h.post(t, h.message("1700000000030", "check")); code != http.StatusOK {
		t.Fatalf("check: status %d", code)
	}
	h.connector.WaitCalls(t, 1)
	if n := len(h.graph.Calls()); n != 2 {
		t.Fatalf("check made %d Graph requests, want 2", n)
	}
	// 2 s spent and the sweep's own second, less the 1 s burst: about 2 s.
	wait, booked, err := sweep.Take(context.Background(), testTenant, 1)
	if err != nil || !booked || wait < 1500*time.Millisecond {
		t.Errorf("the sweep's next call after a check: wait %s (booked %v, %v), want about 2 s behind the check's calls", wait, booked, err)
	}
}
