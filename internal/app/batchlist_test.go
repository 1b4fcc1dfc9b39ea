package app

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/botframework/fakechannel"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

// List tests: the card a check posts for several pending upgrades is kept
// true as they are decided, whichever replica decides them, also after the
// replica that ran "Approve all" died.

const (
	listChat  = "19:lists@thread.v2"
	pollsApp  = "0d820ecd-def2-4297-adad-78056cde7c78"
	tasksApp  = "2f1ed7a5-6b55-4a3c-9d6e-4c3f8f0e1a10"
	upgraded  = "was upgraded to 1.1.0"
	upgrading = "⏳ Upgrading"
)

// seedListChat installs Polls and Tasks 1.0.0 in a group chat owned by
// faultOwner; Polls 1.1.0 is in the catalog, and Tasks 1.1.0 too when
// tasksBehind.
func seedListChat(h *harness, tasksBehind bool) {
	rsc := []fakegraph.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}
	h.graph.AddApp(fakegraph.App{ID: pollsApp, DisplayName: "Polls", Definitions: []fakegraph.Definition{
		{Version: "1.0.0"}, {Version: "1.1.0", RSC: rsc}}})
	tasks := []fakegraph.Definition{{Version: "1.0.0"}}
	if tasksBehind {
		tasks = append(tasks, fakegraph.Definition{Version: "1.1.0"})
	}
	h.graph.AddApp(fakegraph.App{ID: tasksApp, DisplayName: "Tasks", Definitions: tasks})
	h.graph.Install(fakegraph.Chat, listChat, pollsApp, "1.0.0", nil)
	h.graph.Install(fakegraph.Chat, listChat, tasksApp, "1.0.0", nil)
	h.graph.AddMembers(fakegraph.Chat, listChat,
		fakegraph.Member{UserID: faultOwner, DisplayName: "Megan Bowen", TenantID: testTenant, Roles: []string{"owner"}})
}

// cardActions returns the verb and approval (or batch) id of every button
// of the card a connector call carries.
func cardActions(t *testing.T, c fakechannel.ConnectorCall) map[string][]string {
	t.Helper()
	b, _ := json.Marshal(c.Activity["attachments"])
	var att []struct {
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(b, &att); err != nil || len(att) != 1 {
		t.Fatalf("not one card: %s", b)
	}
	out := map[string][]string{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["type"] == "Action.Execute" {
				data, _ := v["data"].(map[string]any)
				verb, _ := v["verb"].(string)
				id, _ := data["approvalId"].(string)
				out[verb] = append(out[verb], id)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var content any
	_ = json.Unmarshal(att[0].Content, &content)
	walk(content)
	return out
}

// cardAction is a click on a button (verb, naming id) of the card with
// activity id cardID in the list chat.
func (h *harness) cardAction(id, cardID, verb, approvalID string) map[string]any {
	a := h.approve(id, listChat, cardID, approvalID)
	a["value"].(map[string]any)["action"].(map[string]any)["verb"] = verb
	return a
}

// lastUpdate returns the newest PUT of activity cardID in the list chat,
// its position among calls, and its card as text.
func lastUpdate(calls []fakechannel.ConnectorCall, cardID string) (int, string) {
	for i := len(calls) - 1; i >= 0; i-- {
		c := calls[i]
		if c.Method == http.MethodPut && c.Path == "/v3/conversations/"+listChat+"/activities/"+cardID {
			b, _ := json.Marshal(c.Activity)
			return i, string(b)
		}
	}
	return -1, ""
}

// The replica that runs "Approve all" dies once Graph has taken both
// upgrades (its Redis goes away, so it records at most the first outcome).
// Another replica's reaper settles both approvals from Graph, and the list
// the approver clicked shows each outcome, drawn from Redis by that
// replica. (Dying after the first upgrade only would leave it to chance
// whether the second reached Graph: one that never did waits out the
// upgrade grace period before it is offered again.)
func TestApproveAllListIsKeptTrueWhenItsReplicaDies(t *testing.T) {
	d := newDyingReplica(t)
	var taken atomic.Int32
	d.sg.mu.Lock()
	d.sg.onTaken = func() {
		if taken.Add(1) == 2 {
			d.rs.Kill()
		}
	}
	d.sg.mu.Unlock()
	a := d.harness
	// No catalog watcher: its first round, once check made the tenant
	// known, would post each app's own card among the calls checked here.
	// The reaper runs all the same.
	a.tune = func(d *deps) { quick(d); d.noBackground = true }
	seedListChat(a, true)
	a.start(t)
	if code := a.post(t, a.in(a.message("1", "check"), listChat)); code != http.StatusOK {
		t.Fatalf("check: %d", code)
	}
	// The recording connector answers a POST with activity-<call number>.
	list := a.connector.WaitCalls(t, 1)[0]
	batch := cardActions(t, list)["approveAll"]
	if len(batch) != 1 || len(cardActions(t, list)["review"]) != 2 {
		t.Fatalf("check did not post a list of both apps with Approve all: %v", cardActions(t, list))
	}
	code, body := a.exchange(t, a.cardAction("2", "activity-1", "approveAll", batch[0]))
	if code != http.StatusOK || strings.Count(string(body), upgrading) != 2 {
		t.Fatalf("approve all: %d %s", code, body)
	}
	eventually(t, 10*time.Second, "Graph upgrades both apps", func() bool { return taken.Load() == 2 })
	a.shutdown(t)
	died := len(a.connector.Calls())
	if _, card := lastUpdate(a.connector.Calls(), "activity-1"); strings.Count(card, upgraded) == 2 {
		t.Fatalf("the dying replica showed both outcomes: %s", card)
	}

	_, st := d.successor(t)
	var last string
	eventually(t, 30*time.Second, "the list shows both upgrades", func() bool {
		i, card := lastUpdate(a.connector.Calls(), "activity-1")
		last = card
		return i >= died && strings.Count(card, upgraded) == 2 && !strings.Contains(card, upgrading)
	}, &last)
	for _, id := range cardActions(t, list)["review"] {
		if ap, err := st.Approvals().Approval(context.Background(), id); err != nil || ap.Status != approval.StatusUpgraded {
			t.Errorf("approval %s: %s %v", id, ap.Status, err)
		}
	}
	for path, n := range upgradePosts(a.graph) {
		if n != 1 {
			t.Errorf("%s was upgraded %d times", path, n)
		}
	}
	if strings.Contains(last, `"verb":"approveAll"`) || strings.Contains(last, `"verb":"review"`) {
		t.Errorf("the settled list still offers buttons: %s", last)
	}
}

// Polls gets its own card from a first check; after Tasks 1.1.0 is
// published, a second check lists both. Approving Polls on its own card
// updates that card and the list: Polls upgraded, Tasks still to review,
// and Approve all still there for it.
func TestListShowsAnApprovalDecidedOnItsOwnCard(t *testing.T) {
	h := newHarness(t)
	h.tune = func(d *deps) { d.noBackground = true }
	seedListChat(h, false)
	h.start(t)
	if code := h.post(t, h.in(h.message("1", "check"), listChat)); code != http.StatusOK {
		t.Fatalf("first check: %d", code)
	}
	own := cardActions(t, h.connector.WaitCalls(t, 1)[0])["approve"]
	if len(own) != 1 {
		t.Fatalf("the first check posted no card for Polls alone")
	}
	h.graph.Publish(tasksApp, fakegraph.Definition{Version: "1.1.0"})
	h.endCheckWindow(t, listChat)
	if code := h.post(t, h.in(h.message("2", "check"), listChat)); code != http.StatusOK {
		t.Fatalf("second check: %d", code)
	}
	list := cardActions(t, h.connector.WaitCalls(t, 2)[1])
	if len(list["approveAll"]) != 1 || len(list["review"]) != 2 || list["review"][0] != own[0] && list["review"][1] != own[0] {
		t.Fatalf("the second check did not list Polls and Tasks: %v", list)
	}

	code, body := h.exchange(t, h.cardAction("3", "activity-1", "approve", own[0]))
	if code != http.StatusOK || !strings.Contains(string(body), "Polls "+upgraded) {
		t.Fatalf("approve: %d %s", code, body)
	}
	calls := h.connector.WaitCalls(t, 4)
	if i, _ := lastUpdate(calls, "activity-1"); i < 0 {
		t.Error("Polls' own card was not updated for everyone")
	}
	_, card := lastUpdate(calls, "activity-2")
	if !strings.Contains(card, "Polls "+upgraded) || strings.Contains(card, "Tasks "+upgraded) {
		t.Fatalf("the list does not show Polls upgraded and Tasks pending: %s", card)
	}
	var put fakechannel.ConnectorCall
	_ = json.Unmarshal([]byte(card), &put.Activity)
	if got := cardActions(t, put); len(got["review"]) != 1 || len(got["approveAll"]) != 1 || got["review"][0] == own[0] {
		t.Errorf("the list's buttons %v, want Review for Tasks only and Approve all", got)
	}
	if n := len(upgradePosts(h.graph)); n != 1 {
		t.Errorf("%d installations upgraded, want Polls only", n)
	}
}
