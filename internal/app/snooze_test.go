package app

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Remind me later: no reminder while the snooze runs, though the reminder
// was due, and no expiry though the request's first expiry passed; then
// exactly one reminder, under the card. The snooze is in history.
func TestSnoozedReminderComesAfterTheSnoozeNotBefore(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"], h.env["BOT_REMIND_AFTER"], h.env["BOT_SNOOZE"], h.env["BOT_APPROVAL_TTL"] = "1s", "2s", "12s", "4s"
	seedPolls(h, chatID)
	r := h.replica(t, nil, 0)
	r2 := h.replica(t, nil, 0)
	r.post(t, h, h.installEvents(chatID)[1])
	eventually(t, 10*time.Second, "the card", func() bool { return cardPosts(h.connector.Calls())[chatID] == 1 })
	i, cardID := cardIndex(t, h.connector.Calls(), chatID)
	approvalID := approvalIDOf(t, h.connector.Calls()[i])

	code, body := h.exchangeOn(t, r2, h.click("snooze-1", chatID, cardID, "snooze", approvalID))
	if code != http.StatusOK || !strings.Contains(string(body), "Megan asked to be reminded later: no reminder before") {
		t.Fatalf("remind me later: %d %s", code, body)
	}
	a, err := storeOf(t, h).Approvals().Approval(context.Background(), approvalID)
	if err != nil || a.SnoozedUntil.IsZero() {
		t.Fatalf("snoozed approval: %+v %v", a, err)
	}
	under := "/v3/conversations/" + chatID + "/activities/" + cardID
	if n := len(callsTo(h.connector.Calls(), http.MethodPost, under)); n != 0 {
		t.Fatalf("reminded before the snooze was asked for (the machine is too slow for this test): %d", n)
	}

	// Past the reminder's own time and the request's first expiry, with
	// the follow-ups run: nothing yet.
	eventually(t, 10*time.Second, "the reminder's and the expiry's own time to pass", func() bool {
		return time.Now().After(a.CreatedAt.Add(4 * time.Second))
	})
	h.watcherRounds(t, 2)
	if !time.Now().Before(a.SnoozedUntil) {
		t.Fatal("the snooze ended before the check could run (the machine is too slow for this test)")
	}
	if n := len(callsTo(h.connector.Calls(), http.MethodPost, under)); n != 0 {
		t.Fatalf("%d reminders during the snooze, want none", n)
	}
	if n := len(callsTo(h.connector.Calls(), http.MethodPut, under)); n != 1 { // the snooze's own update
		t.Errorf("%d card updates during the snooze, want only the one that says it", n)
	}

	eventually(t, 20*time.Second, "the reminder after the snooze", func() bool {
		return len(callsTo(h.connector.Calls(), http.MethodPost, under)) > 0
	})
	if time.Now().Before(a.SnoozedUntil) {
		t.Fatalf("reminded before the snooze ended at %s", a.SnoozedUntil)
	}
	h.watcherRounds(t, 2)
	if n := len(callsTo(h.connector.Calls(), http.MethodPost, under)); n != 1 {
		t.Errorf("%d reminders after the snooze, want 1", n)
	}

	before := len(h.connector.Calls())
	r.post(t, h, h.message("history-1", "history"))
	calls := h.connector.WaitCalls(t, before+1)
	if s := cardOf(calls[before]); !strings.Contains(s, "Megan asked to be reminded later about **Polls** 1.1.0") {
		t.Errorf("history does not show the snooze: %s", s)
	}
	// And the tenant's audit trail has it, by whom.
	if _, out, _ := h.audit("--tenant", testTenant, "--format", "json"); !strings.Contains(out, `"operation":"AppUpgradeSnoozed"`) ||
		!strings.Contains(out, `"actor":"Megan"`) {
		t.Errorf("the tenant's audit trail does not have the snooze: %s", out)
	}
}
