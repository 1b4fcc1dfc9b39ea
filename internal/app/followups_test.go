package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

// A sweep has booked the tenant's Graph budget for the next minute when an
// owner approves an upgrade: the check of what the upgrade granted takes
// its calls from the share reserved for follow-ups and its card says so
// within seconds, while the sweep goes on at its pace.
func TestVerificationDoesNotWaitBehindASweepThatSaturatesTheBudget(t *testing.T) {
	const busy = 200
	h := newHarness(t)
	h.tune = func(d *deps) { d.graphBudget = 5 } // the sweep books 4 calls a second, follow-ups 1
	seedPolls(h, chatID)
	st := storeOf(t, h)
	ctx := context.Background()
	trust := botframework.NewServiceURLs(botframework.ServiceURLOptions{Records: st.Conversations()})
	for i := range busy {
		chat := fmt.Sprintf("19:busy-%d@thread.v2", i)
		h.graph.Install(fakegraph.Chat, chat, pollsAppID, "1.1.0", nil)
		ref := approval.ConversationRef{ConversationID: chat, ConversationType: "groupChat", ServiceURL: h.connector.URL(),
			ChannelID: "msteams", TenantID: testTenant, BotID: "28:" + testAppID, Locale: "en-US",
			Scope: &approval.Scope{Kind: approval.ScopeChat, ID: chat, TenantID: testTenant}, UpdatedAt: time.Now().UTC()}
		if err := st.Conversations().SaveReference(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if err := trust.TrustServiceURL(ctx, chat, ref.ServiceURL); err != nil {
			t.Fatal(err)
		}
	}
	h.start(t) // the watcher's first round sweeps
	// Spending nothing, a sweep-lane take says how far ahead it is booked.
	probe := st.BudgetWithFollowUps(5, 1)
	eventually(t, 20*time.Second, "the sweep booking the budget 20 s ahead", func() bool {
		w, _, err := probe.Take(ctx, testTenant, 0)
		return err == nil && w > 20*time.Second
	})

	h.post(t, h.message("1700000000400", "check"))
	approvalID := approvalIDOf(t, h.connector.WaitCalls(t, 1)[0])
	invoke := h.event("invoke", "1700000000401", chatID, map[string]any{"name": "adaptiveCard/action", "replyToId": "activity-1",
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
			"data": map[string]any{"approvalId": approvalID}}}})
	if code, body := h.exchange(t, invoke); code != http.StatusOK || !strings.Contains(string(body), "Polls was upgraded to 1.1.0") {
		t.Fatalf("approve: %d %s", code, body)
	}
	path := "/v3/conversations/" + chatID + "/activities/activity-1"
	eventually(t, 10*time.Second, "the verification, with the sweep still booked ahead", func() bool {
		for _, c := range callsTo(h.connector.Calls(), http.MethodPut, path) {
			if strings.Contains(cardOf(c), "Verified: the new version runs with exactly the permissions that were consented") {
				return true
			}
		}
		return false
	})
	swept := 0
	for _, c := range h.graph.Calls() {
		if c.Method == http.MethodGet && strings.Contains(c.Path, "busy") && strings.HasSuffix(c.Path, "/installedApps") {
			swept++
		}
	}
	if swept >= busy {
		t.Errorf("the sweep had scanned all %d chats before the verification: it did not saturate the budget", busy)
	}
	t.Logf("verified while the sweep had scanned %d of %d chats", swept, busy)
}
