package app

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

const secondOwner = "22222222-2222-2222-2222-222222222222"

// quorumChat is a group chat with Polls behind the catalog and two owners,
// Megan Bowen and Alex Wilber, on three replicas that need two approvers;
// it returns the replicas, the chat, and the card check posted there.
func quorumChat(t *testing.T, h *harness) ([]*replica, string, [2]string) {
	t.Helper()
	h.env["BOT_APPROVAL_QUORUM"] = "2"
	chat := seedChats(h, 1)[0]
	h.graph.AddMembers(fakegraph.Chat, chat,
		fakegraph.Member{UserID: secondOwner, DisplayName: "Alex Wilber", TenantID: testTenant, Roles: []string{"owner"}})
	var rs []*replica
	for range 3 {
		rs = append(rs, h.replica(t, nil, 0))
	}
	if code := rs[0].post(t, h, h.in(h.message("check-1", "check"), chat)); code != http.StatusOK {
		t.Fatalf("check: %d", code)
	}
	card := cards(t, h.connector.WaitCalls(t, 1))[chat]
	if !strings.Contains(cardOf(h.connector.Calls()[0]), "The upgrade runs once 2 different approvers approve.") {
		t.Errorf("the card does not say two approvers are needed: %s", cardOf(h.connector.Calls()[0]))
	}
	return rs, chat, card
}

// by makes a click come from Alex Wilber, the chat's second owner.
func byAlex(a map[string]any) map[string]any {
	a["from"] = map[string]any{"id": "29:2alex", "aadObjectId": secondOwner, "name": "Alex Wilber"}
	return a
}

func reject(a map[string]any) map[string]any {
	a["value"].(map[string]any)["action"].(map[string]any)["verb"] = "reject"
	return a
}

// Two owners approve at the same moment on two replicas: one upgrade, and
// the card names both.
func TestQuorumOfTwoOwnersOnTwoReplicasUpgradesOnce(t *testing.T) {
	h := newHarness(t)
	rs, chat, card := quorumChat(t, h)
	var wg sync.WaitGroup
	for i, click := range []map[string]any{h.approve("megan-1", chat, card[1], card[0]), byAlex(h.approve("alex-1", chat, card[1], card[0]))} {
		wg.Go(func() {
			if code, _ := h.exchangeOn(t, rs[1+i], click); code != http.StatusOK {
				t.Errorf("click %d: %d", i, code)
			}
		})
	}
	wg.Wait()
	eventually(t, 20*time.Second, "the card to say both approved and it was upgraded", func() bool {
		return sawUpdate(h, card[1], "was upgraded to 1.1.0", "Approved by Megan, Alex Wilber") ||
			sawUpdate(h, card[1], "was upgraded to 1.1.0", "Approved by Alex Wilber, Megan")
	})
	posts := upgradePosts(h.graph)
	if len(posts) != 1 {
		t.Errorf("upgrade POSTs %v, want exactly one", posts)
	}
	for path, n := range posts {
		if n != 1 {
			t.Errorf("%s: %d upgrade POSTs, want 1", path, n)
		}
	}
	a, err := storeOf(t, h).Approvals().Approval(context.Background(), card[0])
	if err != nil || a.Status != approval.StatusUpgraded || len(a.Approvals) != 2 {
		t.Errorf("after both approved: %s with %d approvals, %v", a.Status, len(a.Approvals), err)
	}
}

// A Reject after one approval ends the request: nothing is upgraded. One
// approver's second click counted once.
func TestRejectAfterOneApprovalEndsTheRequest(t *testing.T) {
	h := newHarness(t)
	rs, chat, card := quorumChat(t, h)
	// Megan clicks twice, on two replicas (a double click, Teams
	// redelivering): one approval, and the card says so for everyone.
	for i, r := range rs[:2] {
		if code, body := h.exchangeOn(t, r, h.approve("megan-"+string(rune('a'+i)), chat, card[1], card[0])); code != http.StatusOK ||
			!strings.Contains(string(body), "1 more approval is needed.") {
			t.Fatalf("Megan's approval %d: %d %s", i, code, body)
		}
	}
	a, err := storeOf(t, h).Approvals().Approval(context.Background(), card[0])
	if err != nil || a.Status != approval.StatusPending || len(a.Approvals) != 1 {
		t.Fatalf("after Megan's two clicks: %s with %d approvals, %v", a.Status, len(a.Approvals), err)
	}
	eventually(t, 10*time.Second, "the card updated for everyone to say who approved so far", func() bool {
		return sawUpdate(h, card[1], "Approved so far by Megan (1 of 2)")
	})
	code, body := h.exchangeOn(t, rs[2], reject(byAlex(h.approve("alex-1", chat, card[1], card[0]))))
	if code != http.StatusOK || !strings.Contains(string(body), "was rejected") {
		t.Fatalf("reject: %d %s", code, body)
	}
	a, err = storeOf(t, h).Approvals().Approval(context.Background(), card[0])
	if err != nil || a.Status != approval.StatusRejected || a.DecidedBy == nil || a.DecidedBy.Name != "Alex Wilber" {
		t.Fatalf("after the reject: %+v %v", a, err)
	}
	// Megan approving again changes nothing.
	if code, body := h.exchangeOn(t, rs[0], h.approve("megan-2", chat, card[1], card[0])); code != http.StatusOK || !strings.Contains(string(body), "was rejected") {
		t.Errorf("approve after the reject: %d %s", code, body)
	}
	if n := len(upgradePosts(h.graph)); n != 0 {
		t.Errorf("%d upgrade POSTs after a reject, want none", n)
	}
}

// exchangeOn posts an activity to replica r; unlike replica.post, clicks
// may race on several replicas at once.
func (h *harness) exchangeOn(t *testing.T, r *replica, body any) (int, []byte) {
	t.Helper()
	return h.exchangeAt(t, r.url, body)
}

// sawUpdate reports whether the card with activity id cardID was updated
// to one that says every one of want.
func sawUpdate(h *harness, cardID string, want ...string) bool {
	for _, c := range h.connector.Calls() {
		if c.Method != http.MethodPut || !strings.HasSuffix(c.Path, "/"+cardID) {
			continue
		}
		card, all := cardOf(c), true
		for _, w := range want {
			all = all && strings.Contains(card, w)
		}
		if all {
			return true
		}
	}
	return false
}
