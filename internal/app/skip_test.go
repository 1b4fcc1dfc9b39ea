package app

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

// click is a card action on the card cardID in the chat by Megan (an owner).
func (h *harness) click(id, chat, cardID, verb, approvalID string) map[string]any {
	a := h.approve(id, chat, cardID, approvalID)
	a["value"].(map[string]any)["action"].(map[string]any)["verb"] = verb
	return a
}

// An owner skips a version: the card says so for everyone, two sweeps
// and a restart of every replica post nothing for it, and a newer catalog
// version gets its card as usual. The skip is in history.
func TestSkippedVersionGetsNoCardAfterSweepsAndRestarts(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"], h.env["BOT_SWEEP_INTERVAL"] = "1s", "1s"
	seedPolls(h, chatID)
	var rs []*replica
	for range 3 {
		rs = append(rs, h.replica(t, nil, 0))
	}
	rs[0].post(t, h, h.installEvents(chatID)[1])
	eventually(t, 10*time.Second, "the card", func() bool { return cardPosts(h.connector.Calls())[chatID] == 1 })
	_, cardID := cardIndex(t, h.connector.Calls(), chatID)
	approvalID := approvalIDOf(t, h.connector.Calls()[mustIndex(t, h, chatID)])

	code, body := h.exchangeOn(t, rs[1], h.click("skip-1", chatID, cardID, "skip", approvalID))
	if code != http.StatusOK || !strings.Contains(string(body), "Polls 1.1.0 was skipped") || !strings.Contains(string(body), "Skipped by Megan") {
		t.Fatalf("skip: %d %s", code, body)
	}
	eventually(t, 10*time.Second, "the card skipped for everyone", func() bool {
		return sawUpdate(h, cardID, "Polls 1.1.0 was skipped", "Skipped by Megan")
	})
	// Approving a skipped version changes nothing.
	if code, body := h.exchangeOn(t, rs[2], h.approve("approve-1", chatID, cardID, approvalID)); code != http.StatusOK ||
		!strings.Contains(string(body), "was skipped") {
		t.Errorf("approve after the skip: %d %s", code, body)
	}

	h.watcherRounds(t, 2) // two sweeps
	for _, r := range rs {
		r.stop()
	}
	for range 3 {
		rs = append(rs, h.replica(t, nil, 2*time.Second))
	}
	h.watcherRounds(t, 2) // two more, after the restart
	if n := cardPosts(h.connector.Calls())[chatID]; n != 1 {
		t.Fatalf("%d approval cards after the skip, sweeps and a restart; want the one", n)
	}
	under := "/v3/conversations/" + chatID + "/activities/" + cardID
	if n := len(callsTo(h.connector.Calls(), http.MethodPost, under)); n != 0 {
		t.Errorf("%d replies (reminders) under the skipped card", n)
	}
	if n := len(upgradePosts(h.graph)); n != 0 {
		t.Errorf("%d upgrades of a skipped version", n)
	}

	h.graph.Publish(pollsAppID, fakegraph.Definition{Version: "1.2.0",
		RSC: []fakegraph.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}})
	eventually(t, 15*time.Second, "a card for the newer version", func() bool { return cardPosts(h.connector.Calls())[chatID] == 2 })
	var newer string
	for _, c := range h.connector.Calls() {
		if c.Method == http.MethodPost && strings.Contains(cardOf(c), "1.2.0") && strings.Contains(cardOf(c), `"verb":"approve"`) {
			newer = cardOf(c)
		}
	}
	if newer == "" {
		t.Error("the second card is not for 1.2.0")
	}

	before := len(h.connector.Calls())
	rs[len(rs)-1].post(t, h, h.message("history-1", "history"))
	calls := h.connector.WaitCalls(t, before+1)
	if s := cardOf(calls[before]); !strings.Contains(s, "Megan skipped **Polls** 1.1.0") {
		t.Errorf("history does not show the skip: %s", s)
	}
}

func mustIndex(t *testing.T, h *harness, chat string) int {
	i, _ := cardIndex(t, h.connector.Calls(), chat)
	return i
}
