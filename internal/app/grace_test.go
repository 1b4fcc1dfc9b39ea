package app

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

// An upgrade whose answer was a 503 and whose installation still shows the
// old version waits BOT_UPGRADE_GRACE before Retry is offered, and its
// card says until when: the upgrade's sending time plus the setting.
func TestUpgradeGraceIsTheSettingAndTheCardSaysUntilWhen(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_UPGRADE_GRACE"] = "37m"
	h.tune = quick
	chats := seedChats(h, 1)
	h.start(t)
	if code := h.post(t, h.in(h.message("1", "check"), chats[0])); code != http.StatusOK {
		t.Fatalf("check: %d", code)
	}
	card := cards(t, h.connector.WaitCalls(t, 1))[chats[0]]
	h.graph.Fail(fakegraph.Fault{Method: http.MethodPost, Path: "/upgrade", Status: 503, Code: "ServiceUnavailable", Times: 5})
	if code, body := h.exchange(t, h.approve("2", chats[0], card[1], card[0])); code != http.StatusOK ||
		!strings.Contains(string(body), "Still working") {
		t.Fatalf("approve: %d %s", code, body)
	}
	st := storeOf(t, h)
	var a approval.Approval
	eventually(t, 10*time.Second, "the approval notes when Retry will be offered", func() bool {
		var err error
		a, err = st.Approvals().Approval(context.Background(), card[0])
		return err == nil && !a.RetryAt.IsZero()
	})
	if a.Status != approval.StatusUpgrading || !a.RetryAt.Equal(a.UpgradeSentAt.Add(37*time.Minute).UTC()) {
		t.Fatalf("the approval is %s, Retry at %s for an upgrade sent at %s; want upgrading until 37m after",
			a.Status, a.RetryAt, a.UpgradeSentAt)
	}
	at := a.RetryAt.Format("2006-01-02T15:04:05Z")
	want := "by {{DATE(" + at + ", SHORT)}} {{TIME(" + at + ")}}, this card offers Retry"
	eventually(t, 10*time.Second, "the card says until when Retry waits", func() bool {
		for _, c := range h.connector.Calls() {
			if b, _ := json.Marshal(c.Activity); c.Method == http.MethodPut && strings.Contains(string(b), want) {
				return true
			}
		}
		return false
	})
	if n := len(upgradePosts(h.graph)); n != 1 {
		t.Errorf("%d upgrade POSTs, want 1", n)
	}
	if got, err := st.Approvals().Approval(context.Background(), card[0]); err != nil || got.Status != approval.StatusUpgrading {
		t.Errorf("within the grace the approval is %s (%v), want still upgrading", got.Status, err)
	}
}
