package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/botframework/fakechannel"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

const adminChat = "19:admins@thread.v2"

// adminHarness is a tenant with the admins' conversation set, and a record
// of the bot each replica builds.
type adminHarness struct {
	*harness
	mu   sync.Mutex
	bots []*bot.Bot
}

func newAdminHarness(t *testing.T, env map[string]string) *adminHarness {
	h := &adminHarness{harness: newHarness(t)}
	h.env["BOT_ADMIN_CONVERSATION"] = adminChat
	h.env["BOT_SCAN_INTERVAL"] = "1s"
	for k, v := range env {
		h.env[k] = v
	}
	h.tune = func(d *deps) {
		d.adminsInterval = 100 * time.Millisecond
		d.built = func(b *bot.Bot) { h.mu.Lock(); h.bots = append(h.bots, b); h.mu.Unlock() }
	}
	return h
}

// withoutConsentPolicy makes the tenant's consent policy unreadable to the
// bot (Policy.Read.All not granted): requests are then left as they are,
// for needsAdmin to move by hand.
func (h *adminHarness) withoutConsentPolicy() *adminHarness {
	h.graph.Revoke("Policy.Read.All")
	return h
}

func (h *adminHarness) bot(i int) *bot.Bot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bots[i]
}

// addAdminChat adds the bot to the admins' conversation, owned by Megan.
func (h *adminHarness) addAdminChat(t *testing.T, r *replica) {
	t.Helper()
	h.graph.Install(fakegraph.Chat, adminChat, "11111111-0000-0000-0000-00000000000e", "1.0.0", nil)
	h.graph.AddMembers(fakegraph.Chat, adminChat,
		fakegraph.Member{UserID: ownerID, DisplayName: "Megan Bowen", TenantID: testTenant, Roles: []string{"owner"}})
	if code := r.post(t, h.harness, h.event("installationUpdate", "f:add-admins", adminChat, map[string]any{"action": "add"})); code != http.StatusOK {
		t.Fatalf("adding the bot to the admins' chat: %d", code)
	}
}

// adminCards are the admins' cards: posts and updates in the admins' chat
// that say an app needs an admin.
func adminCards(calls []fakechannel.ConnectorCall) (posts, updates []fakechannel.ConnectorCall) {
	for _, c := range calls {
		if !strings.HasPrefix(c.Path, "/v3/conversations/"+adminChat+"/activities") || !strings.Contains(cardOf(c), "needs an admin") {
			continue
		}
		if c.Method == http.MethodPost {
			posts = append(posts, c)
		} else if c.Method == http.MethodPut {
			updates = append(updates, c)
		}
	}
	return posts, updates
}

// latestAdminCard is what the admins' card shows now.
func latestAdminCard(calls []fakechannel.ConnectorCall) string {
	posts, updates := adminCards(calls)
	switch {
	case len(updates) > 0:
		return cardOf(updates[len(updates)-1])
	case len(posts) > 0:
		return cardOf(posts[len(posts)-1])
	}
	return ""
}

// needsAdmin moves an approval to needsadmin through the store, as the
// tenant's consent policy would, and tells the bot on replica i. The tests
// that use it keep the policy itself unreadable (withoutConsentPolicy),
// or the scans would put the approval back as the policy says.
func (h *adminHarness) needsAdmin(t *testing.T, i int, id string, to approval.Status) {
	t.Helper()
	from := []approval.Status{approval.StatusPending, approval.StatusNeedsAdmin}
	a, err := storeOf(t, h.harness).Approvals().Transition(context.Background(), id, from, func(a *approval.Approval) { a.Status = to })
	if err != nil {
		t.Fatal(err)
	}
	h.bot(i).NeedsAdminChanged(context.Background(), a)
}

func TestAdminsGetOneCardPerAppVersionAcrossThreeReplicas(t *testing.T) {
	h := newAdminHarness(t, nil).withoutConsentPolicy()
	var rs []*replica
	for range 3 {
		rs = append(rs, h.replica(t, nil, 0))
	}
	seedTenant(t, h.harness, rs[0])
	h.graph.Install(fakegraph.Chat, proactiveChats[3], pollsAppID, "1.0.0", nil) // the fourth chat gets Polls too
	h.addAdminChat(t, rs[1])
	h.awaitCatalogReads(t, 1)

	publishPolls11(h.harness)
	eventually(t, 10*time.Second, "a card in each chat with Polls", func() bool { return len(cardPosts(h.connector.Calls())) == 4 })
	ids := map[string]string{}
	for _, c := range h.connector.Calls() {
		if c.Method == http.MethodPost && strings.Contains(cardOf(c), `"verb":"approve"`) {
			ids[strings.TrimSuffix(strings.TrimPrefix(c.Path, "/v3/conversations/"), "/activities")] = approvalIDOf(t, c)
		}
	}

	// The tenant does not let three chats' owners consent: each replica
	// learns of one at the same moment.
	var wg sync.WaitGroup
	for i, chat := range proactiveChats[:3] {
		wg.Go(func() { h.needsAdmin(t, i, ids[chat], approval.StatusNeedsAdmin) })
	}
	wg.Wait()
	eventually(t, 10*time.Second, "the admins' card counting three chats", func() bool {
		return strings.Contains(latestAdminCard(h.connector.Calls()), "3 installations wait")
	})
	card := latestAdminCard(h.connector.Calls())
	for _, want := range []string{"Polls 1.1.0 needs an admin", "Read all messages in this chat", "admin.teams.microsoft.com/policies/manage-apps/" + pollsAppID} {
		if !strings.Contains(card, want) {
			t.Errorf("the admins' card does not say %q: %s", want, card)
		}
	}

	// A fourth chat joins: the same card is updated in place.
	h.needsAdmin(t, 1, ids[proactiveChats[3]], approval.StatusNeedsAdmin)
	eventually(t, 10*time.Second, "the admins' card counting four chats", func() bool {
		return strings.Contains(latestAdminCard(h.connector.Calls()), "4 installations wait")
	})
	// The admin allows it for one chat (the next read of the policy shows
	// it): the card counts three again.
	h.needsAdmin(t, 2, ids[proactiveChats[0]], approval.StatusPending)
	eventually(t, 10*time.Second, "the admins' card counting three again", func() bool {
		return strings.Contains(latestAdminCard(h.connector.Calls()), "3 installations wait")
	})
	posts, updates := adminCards(h.connector.Calls())
	if len(posts) != 1 {
		t.Fatalf("the admins' chat got %d cards for Polls 1.1.0, want 1", len(posts))
	}
	if len(updates) < 2 {
		t.Errorf("the admins' card was updated %d times, want at least 2 (a fourth chat, one allowed)", len(updates))
	}
	for _, u := range updates {
		if u.Path != updates[0].Path {
			t.Errorf("updates went to two messages: %s and %s", updates[0].Path, u.Path)
		}
	}

	// inventory, asked in the admins' chat by an owner: what is behind.
	ask := h.message("f:inv", "inventory")
	ask["conversation"] = map[string]any{"id": adminChat, "conversationType": "groupChat", "tenantId": testTenant, "isGroup": true}
	if code := rs[2].post(t, h.harness, ask); code != http.StatusOK {
		t.Fatalf("inventory: %d", code)
	}
	inv := lastReplyIn(h.connector.Calls(), adminChat)
	for _, want := range []string{"4 installations are behind the catalog", "Polls → 1.1.0 (4)", "1.0.0 ×4",
		"1 open, 3 need an admin, 0 failed, 0 expired"} {
		if !strings.Contains(inv, want) {
			t.Errorf("inventory does not say %q: %s", want, inv)
		}
	}
	// The export lists each installation.
	var out, errOut bytes.Buffer
	if code := inventoryCommand(context.Background(), []string{"--tenant", testTenant, "--format", "json"},
		func(k string) string { return h.env[k] }, &out, &errOut); code != 0 {
		t.Fatalf("inventory --format json: exit %d: %s", code, errOut.String())
	}
	var rows []inventoryRow
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	statuses := map[approval.Status]int{}
	for _, r := range rows {
		statuses[r.RequestStatus]++
		if r.App != "Polls" || r.Version != "1.0.0" || r.CatalogVersion != "1.1.0" || r.ScopeKind != approval.ScopeChat || r.TenantID != testTenant {
			t.Errorf("export row %+v", r)
		}
	}
	if len(rows) != 4 || statuses[approval.StatusNeedsAdmin] != 3 || statuses[approval.StatusPending] != 1 {
		t.Errorf("export: %d rows, statuses %v; want 4, three needing an admin", len(rows), statuses)
	}

	// Elsewhere it answers plainly.
	elsewhere := h.message("f:inv2", "inventory")
	elsewhere["conversation"] = map[string]any{"id": proactiveChats[1], "conversationType": "groupChat", "tenantId": testTenant, "isGroup": true}
	rs[0].post(t, h.harness, elsewhere)
	if got := lastReplyIn(h.connector.Calls(), proactiveChats[1]); !strings.Contains(got, "only in the admins' conversation") {
		t.Errorf("inventory outside the admins' chat answered %s", got)
	}
}

// lastReplyIn is the text and cards of the last message posted in chat.
func lastReplyIn(calls []fakechannel.ConnectorCall, chat string) string {
	for i := len(calls) - 1; i >= 0; i-- {
		c := calls[i]
		if c.Method == http.MethodPost && strings.HasPrefix(c.Path, "/v3/conversations/"+chat+"/activities") {
			text, _ := c.Activity["text"].(string)
			return text + cardOf(c)
		}
	}
	return ""
}

func TestInventoryCommandBadFlagsExit2NamingTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		name string
	}{
		{[]string{"--format", "xml"}, nil, "--format"},
		{[]string{"--tenant", "contoso.com"}, nil, "--tenant"},
		{[]string{"--tenant", testTenant}, nil, "REDIS_URL"},
		{[]string{"--tenant", testTenant}, map[string]string{"REDIS_URL": "http://localhost:6379"}, "REDIS_URL"},
	} {
		var out, stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"inventory"}, tc.args...), func(k string) string { return tc.env[k] }, &stderr, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.name) || out.Len() != 0 {
			t.Errorf("inventory %v: exit %d, %q; want 2 naming %s", tc.args, code, stderr.String(), tc.name)
		}
	}
	var stderr bytes.Buffer
	if code := Run(context.Background(), []string{"inventory", "--colour"}, func(string) string { return "" }, &stderr, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "-colour") {
		t.Errorf("an unknown flag: exit %d, %q", code, stderr.String())
	}
}

// digests are the digests posted in the admins' chat.
func digests(calls []fakechannel.ConnectorCall) []string {
	var out []string
	for _, c := range calls {
		if c.Method == http.MethodPost && strings.HasPrefix(c.Path, "/v3/conversations/"+adminChat+"/activities") &&
			strings.Contains(cardOf(c), "App upgrades: the digest") {
			out = append(out, cardOf(c))
		}
	}
	return out
}

func TestOneDigestAcrossThreeReplicasAndNoneWhenNothingChanged(t *testing.T) {
	h := newAdminHarness(t, map[string]string{"BOT_DIGEST_INTERVAL": "1s"})
	var rs []*replica
	for range 3 {
		rs = append(rs, h.replica(t, nil, 0))
	}
	h.addAdminChat(t, rs[0])
	ad, ctx := storeOf(t, h.harness).Admins(), context.Background()
	last := func() time.Time {
		at, err := ad.LastDigest(ctx, testTenant)
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	eventually(t, 10*time.Second, "the digest's interval to start", func() bool { return !last().IsZero() })
	start := last()

	// Requests change across the tenant after it: one upgraded, one needs
	// an admin, one still pending.
	changed := start.Add(time.Millisecond)
	for i, st := range []approval.Status{approval.StatusUpgraded, approval.StatusNeedsAdmin, approval.StatusPending} {
		if err := ad.NoteRequest(ctx, testTenant, bot.RequestNote{InstallationID: fmt.Sprintf("inst-%d", i), ApprovalID: fmt.Sprintf("apr_%d", i),
			TeamsAppID: pollsAppID, Target: "1.1.0", Status: st, Created: start.Add(-time.Hour), At: changed}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "a digest", func() bool { return len(digests(h.connector.Calls())) > 0 })
	// Two more intervals pass (the last digest's time moves on) with
	// nothing changed: no other digest, from any replica.
	for range 2 {
		prev := last()
		eventually(t, 10*time.Second, "another interval", func() bool { return last().After(prev) })
	}
	got := digests(h.connector.Calls())
	if len(got) != 1 {
		t.Fatalf("%d digests, want 1", len(got))
	}
	for _, want := range []string{`"title":"Upgraded","value":"1"`, `"title":"Need an admin","value":"1"`, `"title":"Still waiting","value":"2"`} {
		if !strings.Contains(got[0], want) {
			t.Errorf("the digest does not say %s: %s", want, got[0])
		}
	}
}

// Before the bot is in the admins' conversation nothing can be posted
// there; once it is added, the card of what waits is posted.
func TestAdminsCardWaitsForTheBotInTheAdminsConversation(t *testing.T) {
	h := newAdminHarness(t, nil).withoutConsentPolicy()
	r := h.replica(t, nil, 0)
	seedTenant(t, h.harness, r)
	h.awaitCatalogReads(t, 1)
	publishPolls11(h.harness)
	eventually(t, 10*time.Second, "a card in each chat with Polls", func() bool { return len(cardPosts(h.connector.Calls())) == 3 })
	var id string
	for _, c := range h.connector.Calls() {
		if c.Method == http.MethodPost && strings.Contains(cardOf(c), `"verb":"approve"`) {
			id = approvalIDOf(t, c)
			break
		}
	}
	h.needsAdmin(t, 0, id, approval.StatusNeedsAdmin)
	h.watcherRounds(t, 2)
	if posts, _ := adminCards(h.connector.Calls()); len(posts) != 0 {
		t.Fatalf("posted %d admins' cards before the bot was in the admins' conversation", len(posts))
	}
	h.addAdminChat(t, r)
	eventually(t, 10*time.Second, "the admins' card once the bot is there", func() bool {
		return strings.Contains(latestAdminCard(h.connector.Calls()), "1 installation waits")
	})
}

// The whole path, on three replicas: the tenant's consent policy lets no
// chat owner consent, so the cards a new version brings to three chats say
// an admin is needed, and the admins' conversation gets one card for the
// three, updated when a fourth chat joins; once the admin allows chat
// consent, the chats' owners get Approve and the admins' card says nothing
// waits.
func TestConsentPolicyBlocksChatsThenAdminAllows(t *testing.T) {
	h := newAdminHarness(t, nil)
	h.graph.SetGrantPolicies(usersOwnConsent, teamsAllApps)
	var rs []*replica
	for range 3 {
		rs = append(rs, h.replica(t, nil, 0))
	}
	seedTenant(t, h.harness, rs[0])
	h.addAdminChat(t, rs[1])
	h.awaitCatalogReads(t, 1)

	publishPolls11(h.harness)
	needing := func() map[string]int {
		out := map[string]int{}
		for _, c := range h.connector.Calls() {
			if strings.HasPrefix(c.Path, "/v3/conversations/19:") && !strings.HasPrefix(c.Path, "/v3/conversations/"+adminChat) &&
				strings.Contains(cardOf(c), needsAnAdmin) {
				out[strings.SplitN(strings.TrimPrefix(c.Path, "/v3/conversations/"), "/", 2)[0]]++
			}
		}
		return out
	}
	eventually(t, 15*time.Second, "three chats' cards saying an admin is needed", func() bool { return len(needing()) == 3 })
	if n := len(cardPosts(h.connector.Calls())); n != 0 {
		t.Errorf("%d chats were offered Approve while the policy blocks their owners' consent", n)
	}
	eventually(t, 15*time.Second, "the admins' card counting three chats", func() bool {
		return strings.Contains(latestAdminCard(h.connector.Calls()), "3 installations wait")
	})

	// Polls comes to the fourth chat: its card too waits for an admin, and
	// the admins' card counts it.
	h.graph.Install(fakegraph.Chat, proactiveChats[3], pollsAppID, "1.0.0", nil)
	check := h.message("f:check-d", "check")
	check["conversation"] = map[string]any{"id": proactiveChats[3], "conversationType": "groupChat", "tenantId": testTenant, "isGroup": true}
	if code := rs[2].post(t, h.harness, check); code != http.StatusOK {
		t.Fatalf("check in the fourth chat: %d", code)
	}
	eventually(t, 15*time.Second, "the admins' card counting four chats", func() bool {
		return strings.Contains(latestAdminCard(h.connector.Calls()), "4 installations wait")
	})
	if posts, _ := adminCards(h.connector.Calls()); len(posts) != 1 {
		t.Errorf("the admins' chat got %d cards for Polls 1.1.0, want 1", len(posts))
	}

	// The admin allows chat consent: the next scans offer the owners
	// Approve, and the admins' card says nothing waits.
	h.graph.SetGrantPolicies(usersOwnConsent, teamsAllApps, chatsAllApps)
	eventually(t, 20*time.Second, "every chat's card offering Approve", func() bool {
		offered := map[string]bool{}
		for _, c := range h.connector.Calls() {
			if strings.Contains(cardOf(c), `"verb":"approve"`) {
				offered[strings.SplitN(strings.TrimPrefix(c.Path, "/v3/conversations/"), "/", 2)[0]] = true
			}
		}
		return len(offered) == 4
	})
	eventually(t, 15*time.Second, "the admins' card saying nothing waits", func() bool {
		card := latestAdminCard(h.connector.Calls())
		return card != "" && !strings.Contains(card, "installations wait") && !strings.Contains(card, "installation waits")
	})
}

// A digest Teams did not take is sent again, not lost with its interval.
func TestDigestTeamsRefusedIsSentAgain(t *testing.T) {
	h := newAdminHarness(t, map[string]string{"BOT_DIGEST_INTERVAL": "1s"})
	r := h.replica(t, nil, 0)
	h.addAdminChat(t, r)
	ad, ctx := storeOf(t, h.harness).Admins(), context.Background()
	var start time.Time
	eventually(t, 10*time.Second, "the digest's interval to start", func() bool {
		at, err := ad.LastDigest(ctx, testTenant)
		start = at
		return err == nil && !at.IsZero()
	})
	h.connector.FailNext(http.StatusInternalServerError)
	if err := ad.NoteRequest(ctx, testTenant, bot.RequestNote{InstallationID: "inst-0", ApprovalID: "apr_0",
		TeamsAppID: pollsAppID, Target: "1.1.0", Status: approval.StatusUpgraded, Created: start.Add(-time.Hour), At: start.Add(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the digest sent again after Teams refused it", func() bool { return len(digests(h.connector.Calls())) >= 2 })
}
