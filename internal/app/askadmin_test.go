package app

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/botframework/fakechannel"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

const guestID = "33333333-3333-3333-3333-333333333333"

// askedCards are the cards in the admins' chat saying someone asked an
// admin.
func askedCards(calls []fakechannel.ConnectorCall) []string {
	var out []string
	for _, c := range calls {
		if c.Method == http.MethodPost && c.Path == "/v3/conversations/"+adminChat+"/activities" && strings.Contains(cardOf(c), "asks an admin about") {
			out = append(out, cardOf(c))
		}
	}
	return out
}

// A guest of the chat cannot approve, so they ask an admin: one card in
// the admins' conversation names them, the app, the version, the chat and
// why; the chat's card says an admin was asked, for everyone. Asking
// again, a redelivered click and a click on another replica post nothing
// more. The audit trail records the ask.
func TestAskAnAdminPostsOneCardInTheAdminsConversation(t *testing.T) {
	h := newAdminHarness(t, nil)
	r, r2 := h.replica(t, nil, 0), h.replica(t, nil, 0)
	seedPolls(h.harness, chatID)
	h.graph.AddMembers(fakegraph.Chat, chatID,
		fakegraph.Member{UserID: guestID, DisplayName: "Adele Vance", TenantID: testTenant, Roles: []string{"guest"}})
	h.addAdminChat(t, r)
	r.post(t, h.harness, h.installEvents(chatID)[1])
	eventually(t, 10*time.Second, "the card", func() bool { return cardPosts(h.connector.Calls())[chatID] == 1 })
	i, cardID := cardIndex(t, h.connector.Calls(), chatID)
	if !strings.Contains(cardOf(h.connector.Calls()[i]), `"verb":"askAdmin"`) {
		t.Fatalf("the card offers no Ask an admin: %s", cardOf(h.connector.Calls()[i]))
	}
	approvalID := approvalIDOf(t, h.connector.Calls()[i])
	byAdele := func(id string) map[string]any {
		c := h.click(id, chatID, cardID, "askAdmin", approvalID)
		c["from"] = map[string]any{"id": "29:1adele", "aadObjectId": guestID, "name": "Adele Vance"}
		return c
	}

	code, body := h.exchangeOn(t, r2, byAdele("ask-1"))
	if code != http.StatusOK || !strings.Contains(string(body), "An admin was asked by Adele Vance.") {
		t.Fatalf("ask an admin: %d %s", code, body)
	}
	for _, again := range []struct {
		r  *replica
		id string
	}{{r2, "ask-1"}, {r, "ask-1"}, {r, "ask-2"}, {r2, "ask-3"}} { // redelivered, then asked again
		if code, body := h.exchangeOn(t, again.r, byAdele(again.id)); code != http.StatusOK {
			t.Fatalf("asking again (%s): %d %s", again.id, code, body)
		}
	}
	asked := askedCards(h.connector.Calls())
	if len(asked) != 1 {
		t.Fatalf("%d cards in the admins' conversation, want 1: %v", len(asked), asked)
	}
	// Posted by the replica it was made on: nothing left for the sync.
	st := storeOf(t, h.harness)
	if a, err := st.Approvals().Approval(context.Background(), approvalID); err != nil || len(a.AsksUnposted) != 0 {
		t.Errorf("the posted ask is still to be posted: %+v (%v)", a.AsksUnposted, err)
	}
	if noted, err := st.Admins().Asks(context.Background(), testTenant); err != nil || len(noted) != 0 {
		t.Errorf("asks still listed for the sync: %v (%v)", noted, err)
	}
	for _, want := range []string{"Adele Vance asks an admin about Polls 1.1.0", "is a guest there", chatID, "ChatMessage.Read.Chat",
		"**1.0.0** → **1.1.0**"} {
		if !strings.Contains(asked[0], want) {
			t.Errorf("the admins' card does not say %q: %s", want, asked[0])
		}
	}
	updated := callsTo(h.connector.Calls(), http.MethodPut, "/v3/conversations/"+chatID+"/activities/"+cardID)
	if len(updated) == 0 || !strings.Contains(cardOf(updated[len(updated)-1]), "An admin was asked by Adele Vance.") {
		t.Errorf("the chat's card does not say an admin was asked: %d updates", len(updated))
	}

	eventually(t, 20*time.Second, "the ask in the audit trail", func() bool {
		code, out, _ := h.audit("--tenant", testTenant, "--format", "json")
		if code != 0 {
			return false
		}
		n := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var e approval.AuditEvent
			if json.Unmarshal([]byte(line), &e) == nil && e.Operation == approval.OpAdminAsked && e.ActorID == guestID && e.Detail == "guest" {
				n++
			}
		}
		return n == 1
	})
}

// A replica recorded an ask of an admin and died before posting it: the
// admins' sync, on whichever replica holds its lease, posts it once its
// own replica would have, writes it to the audit trail, and posts it once.
func TestAnAskWhoseReplicaDiedIsPostedByTheAdminsSync(t *testing.T) {
	h := newAdminHarness(t, nil)
	r := h.replica(t, nil, 0)
	seedPolls(h.harness, chatID)
	h.addAdminChat(t, r)
	r.post(t, h.harness, h.installEvents(chatID)[1])
	eventually(t, 10*time.Second, "the card", func() bool { return cardPosts(h.connector.Calls())[chatID] == 1 })
	i, _ := cardIndex(t, h.connector.Calls(), chatID)
	approvalID := approvalIDOf(t, h.connector.Calls()[i])

	// What the dead replica left: the ask noted and recorded, three
	// minutes ago, and no card.
	st, ctx := storeOf(t, h.harness), context.Background()
	adele := approval.Person{ID: "29:1adele", AADObjectID: guestID, Name: "Adele Vance"}
	asked := time.Now().Add(-3 * time.Minute)
	if err := st.Admins().NoteAsk(ctx, testTenant, approvalID, bot.AskerKey(adele), asked); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Approvals().Transition(ctx, approvalID, approval.AdminAskableStatuses(), func(x *approval.Approval) {
		*x, _ = x.AskAdmin(adele, asked, approval.AskGuest)
	}); err != nil {
		t.Fatal(err)
	}
	// Another ask noted just now, whose click never got as far as
	// recording it: it stays listed while its click might still record
	// it, and posts nothing.
	megan := approval.Person{ID: "29:1megan", AADObjectID: "11111111-2222-4333-8444-555555555555", Name: "Megan Bowen"}
	if err := st.Admins().NoteAsk(ctx, testTenant, approvalID, bot.AskerKey(megan), time.Now()); err != nil {
		t.Fatal(err)
	}

	eventually(t, 20*time.Second, "Adele's ask posted and taken off the list", func() bool {
		noted, err := st.Admins().Asks(ctx, testTenant)
		return err == nil && len(noted) == 1 && noted[0].Asker == bot.AskerKey(megan) && len(askedCards(h.connector.Calls())) > 0
	})
	cards := askedCards(h.connector.Calls())
	if len(cards) != 1 || !strings.Contains(cards[0], "Adele Vance asks an admin about Polls 1.1.0") || !strings.Contains(cards[0], "is a guest there") {
		t.Fatalf("the admins' cards: %v", cards)
	}
	if a, err := st.Approvals().Approval(ctx, approvalID); err != nil || len(a.AsksUnposted) != 0 || !a.AdminAsked(adele) {
		t.Errorf("after the sync: unposted %+v, asked by %+v (%v)", a.AsksUnposted, a.AdminAskedBy, err)
	}
	eventually(t, 20*time.Second, "the ask in the audit trail", func() bool {
		code, out, _ := h.audit("--tenant", testTenant, "--format", "json")
		n := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var e approval.AuditEvent
			if json.Unmarshal([]byte(line), &e) == nil && e.Operation == approval.OpAdminAsked && e.ActorID == guestID && e.Detail == "guest" {
				n++
			}
		}
		return code == 0 && n == 1
	})
}

// Without an admins' conversation, the card offers no Ask an admin.
func TestNoAskAnAdminWithoutAdminsConversation(t *testing.T) {
	h := newHarness(t)
	seedPolls(h, chatID)
	r := h.replica(t, nil, 0)
	r.post(t, h, h.installEvents(chatID)[1])
	eventually(t, 10*time.Second, "the card", func() bool { return cardPosts(h.connector.Calls())[chatID] == 1 })
	i, _ := cardIndex(t, h.connector.Calls(), chatID)
	if s := cardOf(h.connector.Calls()[i]); strings.Contains(s, "askAdmin") || strings.Contains(s, "Ask an admin") {
		t.Errorf("the card offers Ask an admin without an admins' conversation: %s", s)
	}
}

// Before the bot can reach the admins' conversation a click says so and
// records nothing; once it can, an approver (Megan, an owner) asks for a
// second opinion. A request that needs an admin offers Ask an admin as its
// one button, and its asker is told nobody there may consent.
func TestAskAnAdminForASecondOpinionOnceTheAdminsCanBeReached(t *testing.T) {
	h := newAdminHarness(t, nil)
	r := h.replica(t, nil, 0)
	seedPolls(h.harness, chatID)
	r.post(t, h.harness, h.installEvents(chatID)[1])
	eventually(t, 10*time.Second, "the card", func() bool { return cardPosts(h.connector.Calls())[chatID] == 1 })
	i, cardID := cardIndex(t, h.connector.Calls(), chatID)
	approvalID := approvalIDOf(t, h.connector.Calls()[i])

	code, body := h.exchangeOn(t, r, h.click("ask-1", chatID, cardID, "askAdmin", approvalID))
	if code != http.StatusOK || !strings.Contains(string(body), "admins' conversation can't be reached yet") {
		t.Fatalf("asking before the admins' conversation is known: %d %s", code, body)
	}
	if a, err := storeOf(t, h.harness).Approvals().Approval(context.Background(), approvalID); err != nil || len(a.AdminAskedBy) != 0 {
		t.Fatalf("an ask nobody received was recorded: %+v %v", a.AdminAskedBy, err)
	}

	h.addAdminChat(t, r)
	code, body = h.exchangeOn(t, r, h.click("ask-2", chatID, cardID, "askAdmin", approvalID))
	if code != http.StatusOK || !strings.Contains(string(body), "An admin was asked by Megan.") {
		t.Fatalf("ask an admin: %d %s", code, body)
	}
	asked := askedCards(h.connector.Calls())
	if len(asked) != 1 || !strings.Contains(asked[0], "Megan may approve it, and asks an admin for a second opinion first.") {
		t.Fatalf("the admins' cards: %v", asked)
	}

	h.needsAdmin(t, 0, approvalID, approval.StatusNeedsAdmin)
	code, body = h.exchangeOn(t, r, h.click("review-1", chatID, cardID, "review", approvalID))
	if code != http.StatusOK || !strings.Contains(string(body), "An admin needs to allow this upgrade") ||
		!strings.Contains(string(body), `"verb":"askAdmin"`) || strings.Contains(string(body), `"verb":"approve"`) {
		t.Fatalf("the card of a request that needs an admin: %d %s", code, body)
	}
	byAlex := h.click("ask-3", chatID, cardID, "askAdmin", approvalID)
	byAlex["from"] = map[string]any{"id": "29:1alex", "aadObjectId": "44444444-4444-4444-4444-444444444444", "name": "Alex Wilber"}
	code, body = h.exchangeOn(t, r, byAlex)
	if code != http.StatusOK || !strings.Contains(string(body), "An admin was asked by Megan, Alex Wilber.") {
		t.Fatalf("asking about a request that needs an admin: %d %s", code, body)
	}
	asked = askedCards(h.connector.Calls())
	if len(asked) != 2 || !strings.Contains(asked[1], "Nobody there can approve it") {
		t.Fatalf("the admins' cards: %v", asked)
	}
}
