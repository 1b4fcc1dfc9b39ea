package app

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/botframework/fakechannel"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

const (
	usersOwnConsent = "ManagePermissionGrantsForSelf.microsoft-user-default-legacy"
	teamsAllApps    = "ManagePermissionGrantsForOwnedResource.microsoft-all-application-permissions-for-team"
	chatsAllApps    = "ManagePermissionGrantsForOwnedResource.microsoft-all-application-permissions-for-chat"
	needsAnAdmin    = "An admin needs to allow this upgrade"
)

// policyReads counts the reads of the tenant's authorization policy.
func policyReads(h *harness) int {
	n := 0
	for _, c := range h.graph.Calls() {
		if c.Method == http.MethodGet && c.Path == "/policies/authorizationPolicy" {
			n++
		}
	}
	return n
}

// A tenant whose policy lets nobody consent in chats: the chat's card says
// an admin is needed, with no button; once the admin allows chat consent,
// the next scan offers the owners Approve on the same card, and it works.
func TestChatConsentBlockedThenAllowed(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"] = "1s" // the policy is kept that long, and open cards looked at as often
	h.graph.SetGrantPolicies(usersOwnConsent, teamsAllApps)
	iid := seedPolls(h, chatID)
	r := h.replica(t, nil, 0)
	r.post(t, h, h.installEvents(chatID)[1])
	calls := h.connector.WaitCalls(t, 2)
	cardAt := -1
	for i, c := range calls {
		if c.Method == http.MethodPost && strings.Contains(cardOf(c), needsAnAdmin) {
			cardAt = i
		}
	}
	if cardAt < 0 {
		t.Fatalf("no card says an admin is needed: %v", calls)
	}
	card := cardOf(calls[cardAt])
	for _, want := range []string{"Global Administrator", "resource-specific consent setting for chats", "Read all messages in this chat"} {
		if !strings.Contains(card, want) {
			t.Errorf("card lacks %q: %s", want, card)
		}
	}
	if strings.Contains(card, `"verb":"approve"`) || len(cardPosts(calls)) != 0 {
		t.Errorf("the card offers a button that would fail: %s", card)
	}
	if policyReads(h) == 0 {
		t.Error("the tenant's authorization policy was not read")
	}

	h.graph.SetGrantPolicies(usersOwnConsent, teamsAllApps, chatsAllApps)
	path := "/v3/conversations/" + chatID + "/activities/" + fmt.Sprintf("activity-%d", cardAt+1)
	var offered fakechannel.ConnectorCall
	eventually(t, 15*time.Second, "the card to offer Approve", func() bool {
		for _, c := range callsTo(h.connector.Calls(), http.MethodPut, path) {
			if strings.Contains(cardOf(c), `"verb":"approve"`) {
				offered = c
				return true
			}
		}
		return false
	})
	if strings.Contains(cardOf(offered), needsAnAdmin) {
		t.Errorf("the card still says an admin is needed: %s", cardOf(offered))
	}
	approvalID := approvalIDOf(t, offered)
	invoke := h.event("invoke", "1700000000301", chatID, map[string]any{"name": "adaptiveCard/action", "replyToId": fmt.Sprintf("activity-%d", cardAt+1),
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
			"data": map[string]any{"approvalId": approvalID}}}})
	if code := r.post(t, h, invoke); code != http.StatusOK {
		t.Fatalf("approve: %d", code)
	}
	if v, _ := h.graph.Installed(fakegraph.Chat, chatID, iid); v != "1.1.0" {
		t.Errorf("installed %s after approval, want 1.1.0", v)
	}
}

// An upgrade Graph refuses for consent (412) waits for an admin: no Retry,
// no second upgrade, and the policy is read afresh.
func TestUpgradeRefusedForConsentWaitsForAnAdmin(t *testing.T) {
	h := newHarness(t)
	seedPolls(h, chatID)
	h.start(t)
	h.post(t, h.message("1700000000400", "check"))
	approvalID := approvalIDOf(t, h.connector.WaitCalls(t, 1)[0])
	h.graph.Fail(fakegraph.Fault{Method: http.MethodPost, Path: "/upgrade", Status: http.StatusPreconditionFailed,
		Code: "PreconditionFailed", Message: fakegraph.ConsentRefused})
	before := policyReads(h)
	invoke := h.event("invoke", "1700000000401", chatID, map[string]any{"name": "adaptiveCard/action", "replyToId": "activity-1",
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
			"data": map[string]any{"approvalId": approvalID}}}})
	code, body := h.exchange(t, invoke)
	if code != http.StatusOK || !strings.Contains(string(body), needsAnAdmin) || strings.Contains(string(body), `"verb":"retry"`) ||
		!strings.Contains(string(body), "IsUserAuthorizedToGrantGroupResourceSpecificPermissionsRequest") {
		t.Fatalf("approve: %d %s", code, body)
	}
	if after := policyReads(h); after != before+1 {
		t.Errorf("the policy was read %d times after the refusal, want once", after-before)
	}
	// A second click (an old card, a redelivery) sends nothing.
	h.exchange(t, h.event("invoke", "1700000000402", chatID, invoke))
	upgrades := 0
	for _, c := range h.graph.Calls() {
		if c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/upgrade") {
			upgrades++
		}
	}
	if upgrades != 1 {
		t.Errorf("%d upgrade calls, want 1", upgrades)
	}
}

// Without Policy.Read.All the bot cannot know: owners get their cards as
// before, and the scan goes on.
func TestUnreadableConsentPolicyLeavesCardsAsBefore(t *testing.T) {
	h := newHarness(t)
	h.graph.SetGrantPolicies(usersOwnConsent) // would block chats, if the bot could read it
	h.graph.Revoke("Policy.Read.All")
	seedPolls(h, chatID)
	h.start(t)
	h.post(t, h.message("1700000000500", "check"))
	if card := cardOf(h.connector.WaitCalls(t, 1)[0]); !strings.Contains(card, `"verb":"approve"`) {
		t.Errorf("card %s", card)
	}
}
