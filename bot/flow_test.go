package bot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/bot"
)

const (
	tenant  = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	chatID  = "19:abc@thread.v2"
	owner   = "11111111-1111-1111-1111-111111111111"
	member  = "22222222-2222-2222-2222-222222222222"
	foreign = "33333333-3333-3333-3333-333333333333"
)

// fakeGraph is the bot's view of Microsoft Graph: a catalog and the apps
// installed in every scope, held in memory.
type fakeGraph struct {
	mu         sync.Mutex
	apps       []string                     // installed app names; inst-i runs app-i
	versions   map[string]string            // installation id → installed version
	catalog    []bot.AppDefinition          // every definition of every app
	upgrade    func(bot.Installation) error // fails the upgrade POST when set
	upgrades   []bot.Installation
	members    []bot.Member
	membersErr error
	groups     map[string][]string // group → user ids
	calls      []string            // "Method command" per call
}

// called records a call and the command its context names.
func (g *fakeGraph) called(ctx context.Context, method string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, method+" "+bot.CommandFrom(ctx))
}

func (g *fakeGraph) installation(s bot.Scope, i int) bot.Installation {
	id := fmt.Sprintf("inst-%d", i)
	return bot.Installation{ID: id, Scope: s, TeamsAppID: fmt.Sprintf("app-%d", i), DisplayName: g.apps[i],
		Definition: bot.AppDefinition{ID: "ZGVmMQ==", Version: g.versions[id]}}
}

func (g *fakeGraph) Installed(ctx context.Context, s bot.Scope) ([]bot.Installation, error) {
	g.called(ctx, "Installed")
	g.mu.Lock()
	defer g.mu.Unlock()
	var ins []bot.Installation
	for i := range g.apps {
		ins = append(ins, g.installation(s, i))
	}
	return ins, nil
}

func (g *fakeGraph) Installation(ctx context.Context, s bot.Scope, id string) (bot.Installation, error) {
	g.called(ctx, "Installation")
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range g.apps {
		if in := g.installation(s, i); in.ID == id {
			return in, nil
		}
	}
	return bot.Installation{}, bot.ErrNotFound
}

func (g *fakeGraph) Definitions(ctx context.Context, _ string, ids []string) ([]bot.AppDefinition, error) {
	g.called(ctx, "Definitions")
	g.mu.Lock()
	defer g.mu.Unlock()
	var defs []bot.AppDefinition
	for _, d := range g.catalog {
		if slices.Contains(ids, d.TeamsAppID) {
			defs = append(defs, d)
		}
	}
	return defs, nil
}

func (g *fakeGraph) Upgrade(ctx context.Context, in bot.Installation, _ []bot.Permission) error {
	g.called(ctx, "Upgrade")
	g.mu.Lock()
	g.upgrades = append(g.upgrades, in)
	fail := g.upgrade
	g.mu.Unlock()
	if fail != nil {
		return fail(in)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.versions[in.ID] = bot.NewestPublished(g.catalog)[in.TeamsAppID].Version
	return nil
}

// publish adds a published definition of app-i to the catalog.
func (g *fakeGraph) publish(i int, id, version string, perms ...bot.Permission) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.catalog = append(g.catalog, bot.AppDefinition{ID: id, TeamsAppID: fmt.Sprintf("app-%d", i), DisplayName: g.apps[i],
		Version: version, PublishingState: "published", ShortDescription: "Quick polls", Permissions: perms})
}

func (g *fakeGraph) Members(ctx context.Context, _ bot.Scope) ([]bot.Member, error) {
	g.called(ctx, "Members")
	if g.membersErr != nil {
		return nil, g.membersErr
	}
	return g.members, nil
}

func (g *fakeGraph) InGroup(_ context.Context, _, group, user string) (bool, error) {
	for _, u := range g.groups[group] {
		if u == user {
			return true, nil
		}
	}
	return false, nil
}

func (g *fakeGraph) upgradeCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.upgrades)
}

var chatRead = bot.Permission{Value: "ChatMessage.Read.Chat", Type: "application"}

type flow struct {
	t     *testing.T
	bot   *bot.Bot
	conn  *fakeConnector
	state *memState
	graph *fakeGraph
	now   time.Time
	n     int
}

func newFlow(t *testing.T, policy bot.ApproverPolicy, apps ...string) *flow {
	t.Helper()
	f := &flow{t: t, conn: &fakeConnector{}, state: newMemState(), now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	f.graph = &fakeGraph{
		members: []bot.Member{
			{UserID: owner, TenantID: tenant, Roles: []string{"owner"}, DisplayName: "Megan"},
			{UserID: member, TenantID: tenant, Roles: []string{}},
			{UserID: foreign, TenantID: "99999999-9999-9999-9999-999999999999", Roles: []string{"owner"}},
		},
		apps: apps, versions: map[string]string{},
	}
	// Each app runs 1.0.0; the catalog publishes 1.1.0 asking for one more
	// permission, and has a rejected 1.2.0.
	for i := range apps {
		f.graph.versions[fmt.Sprintf("inst-%d", i)] = "1.0.0"
		f.graph.publish(i, "ZGVmMQ==", "1.0.0")
		f.graph.publish(i, "ZGVmMg==", "1.1.0", chatRead)
		f.graph.catalog = append(f.graph.catalog, bot.AppDefinition{ID: "ZGVmNA==", TeamsAppID: fmt.Sprintf("app-%d", i),
			Version: "1.2.0", PublishingState: "rejected"})
	}
	b, err := bot.New(bot.Options{Connector: f.conn, Conversations: f.state, Activities: f.state, Approvals: f.state,
		Installations: f.graph, Catalog: f.graph, Directory: f.graph, Approvers: policy, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.bot = b
	return f
}

func (f *flow) activity(m map[string]any) *bot.Activity {
	f.t.Helper()
	f.n++
	a := map[string]any{
		"id": fmt.Sprint(f.n), "channelId": "msteams", "serviceUrl": "https://smba.trafficmanager.net/amer/", "locale": "en-US",
		"from":         map[string]any{"id": "29:megan", "aadObjectId": owner, "name": "Megan Bowen"},
		"recipient":    map[string]any{"id": "28:bot", "name": "Upgrade Approvals"},
		"conversation": map[string]any{"id": chatID, "conversationType": "groupChat", "tenantId": tenant},
	}
	for k, v := range m {
		a[k] = v
	}
	b, _ := json.Marshal(a)
	return decode(f.t, string(b))
}

func (f *flow) say(text string) {
	f.t.Helper()
	if _, err := f.bot.Handle(context.Background(), f.activity(map[string]any{"type": "message", "text": text})); err != nil {
		f.t.Fatal(err)
	}
}

// click sends an Action.Execute invoke as user aad and returns the JSON of
// the invoke response body.
func (f *flow) click(verb, id, aad string) string {
	f.t.Helper()
	resp, err := f.bot.Handle(context.Background(), f.activity(map[string]any{
		"type": "invoke", "name": "adaptiveCard/action", "replyToId": "reply-1",
		"from":  map[string]any{"id": "29:" + aad, "aadObjectId": aad, "name": "User " + aad[:4]},
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": verb, "data": map[string]any{"approvalId": id}}},
	}))
	if err != nil {
		f.t.Fatal(err)
	}
	b, _ := json.Marshal(resp.Body)
	return string(b)
}

func (f *flow) onlyApproval() bot.Approval {
	f.t.Helper()
	if len(f.state.approvals) != 1 {
		f.t.Fatalf("%d approvals, want 1", len(f.state.approvals))
	}
	for _, a := range f.state.approvals {
		return a
	}
	return bot.Approval{}
}

func chatScope() bot.Scope { return bot.Scope{Kind: bot.ScopeChat, ID: chatID, TenantID: tenant} }

func TestCheckPostsAnApprovalCardAndOwnerApproves(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	if len(f.conn.replies) != 1 {
		t.Fatalf("%d replies", len(f.conn.replies))
	}
	card := cardText(t, f.conn.replies[0])
	for _, want := range []string{`"verb":"approve"`, "Read all messages in this chat", "Chat owners can approve."} {
		if !strings.Contains(card, want) {
			t.Errorf("card lacks %s", want)
		}
	}
	a := f.onlyApproval()
	if a.Status != bot.StatusPending || a.CardActivityID != "reply-1" || a.Upgrade.Installation.Scope != chatScope() {
		t.Fatalf("approval %+v", a)
	}

	resp := f.click("approve", a.ID, owner)
	if f.graph.upgradeCount() != 1 {
		t.Fatalf("%d upgrades, want 1", f.graph.upgradeCount())
	}
	if !strings.Contains(resp, `"type":"application/vnd.microsoft.card.adaptive"`) || !strings.Contains(resp, "was upgraded to 1.1.0") {
		t.Errorf("invoke response %s", resp)
	}
	if u, ok := f.conn.updates["reply-1"]; !ok || !strings.Contains(cardText(t, u), "was upgraded to 1.1.0") {
		t.Errorf("the card was not updated for everyone: %+v", f.conn.updates)
	}
	if got := f.onlyApproval(); got.Status != bot.StatusUpgraded || got.DecidedBy.AADObjectID != owner {
		t.Errorf("approval after approve %+v", got)
	}

	// A second click (or Teams redelivering) does not upgrade again.
	resp = f.click("approve", a.ID, owner)
	if f.graph.upgradeCount() != 1 || !strings.Contains(resp, "was upgraded") {
		t.Errorf("second click: %d upgrades, response %s", f.graph.upgradeCount(), resp)
	}

	f.say("history")
	if h := cardText(t, f.conn.replies[len(f.conn.replies)-1]); !strings.Contains(h, "approved: **Polls** upgraded 1.0.0 → 1.1.0") {
		t.Errorf("history %s", h)
	}
}

func TestOnlyOwnersOfOurTenantMayApprove(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	for _, who := range []string{member, foreign, "44444444-4444-4444-4444-444444444444"} {
		resp := f.click("approve", a.ID, who)
		if !strings.Contains(resp, "can't approve") {
			t.Errorf("%s: response %s", who, resp)
		}
		if resp := f.click("reject", a.ID, who); !strings.Contains(resp, "can't approve") {
			t.Errorf("%s rejected: %s", who, resp)
		}
	}
	if f.graph.upgradeCount() != 0 || f.onlyApproval().Status != bot.StatusPending {
		t.Errorf("a non-owner changed the approval: %d upgrades, %s", f.graph.upgradeCount(), f.onlyApproval().Status)
	}
}

func TestRejectDoesNotUpgrade(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	if resp := f.click("reject", a.ID, owner); !strings.Contains(resp, "was rejected") {
		t.Errorf("response %s", resp)
	}
	if resp := f.click("approve", a.ID, owner); !strings.Contains(resp, "was rejected") {
		t.Errorf("approve after reject: %s", resp)
	}
	if f.graph.upgradeCount() != 0 || f.onlyApproval().Status != bot.StatusRejected {
		t.Errorf("%d upgrades, status %s", f.graph.upgradeCount(), f.onlyApproval().Status)
	}
}

func TestFailedUpgradeCanBeRetried(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Owners: true}, "Polls")
	f.graph.upgrade = func(bot.Installation) error {
		return bot.Errorf(bot.CodeForbidden, "graph: upgrade Polls in chat: 403 Forbidden; an admin must grant the application permission TeamsAppInstallation.ReadWriteAndConsentForChat.All")
	}
	f.say("check")
	a := f.onlyApproval()
	resp := f.click("approve", a.ID, owner)
	if !strings.Contains(resp, "failed") || !strings.Contains(resp, "ReadWriteAndConsentForChat") || !strings.Contains(resp, `"verb":"retry"`) {
		t.Fatalf("response %s", resp)
	}
	f.graph.upgrade = nil
	if resp := f.click("retry", a.ID, owner); !strings.Contains(resp, "was upgraded") {
		t.Errorf("retry: %s", resp)
	}
	if f.graph.upgradeCount() != 2 || f.onlyApproval().Status != bot.StatusUpgraded {
		t.Errorf("%d upgrades, status %s", f.graph.upgradeCount(), f.onlyApproval().Status)
	}
}

func TestSupersededRequestIsReplaced(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	// The admin publishes 1.2.1 after the card went out.
	f.graph.publish(0, "ZGVmMw==", "1.2.1", chatRead)
	if resp := f.click("approve", a.ID, owner); !strings.Contains(resp, "catalog has changed") {
		t.Errorf("response %s", resp)
	}
	if f.graph.upgradeCount() != 0 {
		t.Error("upgraded although the catalog no longer publishes what was approved")
	}
	if len(f.conn.sends) != 1 || !strings.Contains(cardText(t, f.conn.sends[0]), "1.2.1") {
		t.Fatalf("no new request for 1.2.1: %+v", f.conn.sends)
	}
	if len(f.state.approvals) != 2 {
		t.Errorf("%d approvals, want the superseded one and its replacement", len(f.state.approvals))
	}
}

func TestAlreadyUpgradedIsRecordedAndShownInHistory(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	// Someone upgrades the app elsewhere (the Teams client, another card).
	f.graph.versions["inst-0"] = "1.1.0"
	if resp := f.click("approve", f.onlyApproval().ID, owner); !strings.Contains(resp, "already up to date") {
		t.Errorf("response %s", resp)
	}
	if f.graph.upgradeCount() != 0 {
		t.Error("upgraded twice")
	}
	f.say("history")
	if h := cardText(t, f.conn.replies[len(f.conn.replies)-1]); !strings.Contains(h, "was already at 1.1.0") {
		t.Errorf("history %s", h)
	}
}

func TestExpiredRequestCannotBeApproved(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	f.now = f.now.Add(8 * 24 * time.Hour)
	if resp := f.click("approve", a.ID, owner); !strings.Contains(resp, "expired") {
		t.Errorf("response %s", resp)
	}
	if f.graph.upgradeCount() != 0 {
		t.Error("an expired request was upgraded")
	}
}

func TestCheckWithSeveralAppsAndApproveAll(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Owners: true}, "Polls", "Tasks")
	f.say("check")
	list := cardText(t, f.conn.replies[0])
	if !strings.Contains(list, "2 apps can be upgraded here") || !strings.Contains(list, `"verb":"approveAll"`) {
		t.Fatalf("list %s", list)
	}
	var batch string
	for id := range f.state.batches {
		batch = id
	}
	if resp := f.click("approveAll", batch, owner); !strings.Contains(resp, "All apps in this chat are up to date") {
		t.Errorf("response %s", resp)
	}
	if f.graph.upgradeCount() != 2 {
		t.Errorf("%d upgrades, want 2", f.graph.upgradeCount())
	}
}

func TestManyBigUpgradesAreSplitIntoCardsTeamsAccepts(t *testing.T) {
	apps := make([]string, 8)
	for i := range apps {
		apps[i] = fmt.Sprintf("App %d", i)
	}
	f := newFlow(t, bot.ApproverPolicy{Owners: true}, apps...)
	var perms []bot.Permission
	for j := range 30 {
		perms = append(perms, bot.Permission{Value: fmt.Sprintf("Contoso.Permission%d.Chat", j), Type: "application"})
	}
	for i := range apps {
		f.graph.publish(i, "ZGVmNQ==", "2.0.0", perms...)
	}
	f.say("check")
	if len(f.conn.replies) < 2 {
		t.Fatalf("%d messages for 8 apps with 30 permissions each, want them split", len(f.conn.replies))
	}
	listed := 0
	for _, r := range f.conn.replies {
		c := cardText(t, r)
		if len(c) > 28*1024 {
			t.Errorf("a card of %d bytes is over Teams' limit", len(c))
		}
		listed += strings.Count(c, `{"type":"Action.Execute","title":"Review","verb":"review"`)
	}
	if listed != 8 {
		t.Errorf("%d apps listed, want all 8", listed)
	}
}

func TestPersonalScopeUserApprovesTheirOwn(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Owners: true}, "Polls")
	_, err := f.bot.Handle(context.Background(), f.activity(map[string]any{"type": "message", "text": "check",
		"conversation": map[string]any{"id": "a:1personal", "conversationType": "personal", "tenantId": tenant}}))
	if err != nil {
		t.Fatal(err)
	}
	a := f.onlyApproval()
	if a.Upgrade.Installation.Scope.Kind != bot.ScopeUser || a.Upgrade.Installation.Scope.ID != owner {
		t.Fatalf("scope %+v", a.Upgrade.Installation.Scope)
	}
	if resp := f.click("approve", a.ID, member); !strings.Contains(resp, "can't approve") {
		t.Errorf("another user approved someone's personal app: %s", resp)
	}
	if resp := f.click("approve", a.ID, owner); !strings.Contains(resp, "was upgraded") {
		t.Errorf("the user could not approve their own: %s", resp)
	}
}

func TestApproverGroupPolicy(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Groups: []string{"g-it"}}, "Polls")
	f.graph.groups = map[string][]string{"g-it": {member}}
	f.say("check")
	a := f.onlyApproval()
	if resp := f.click("approve", a.ID, owner); !strings.Contains(resp, "can't approve") {
		t.Errorf("an owner outside the group approved: %s", resp)
	}
	if resp := f.click("approve", a.ID, member); !strings.Contains(resp, "was upgraded") {
		t.Errorf("a group member could not approve: %s", resp)
	}
}

func TestSubmitTwinUpdatesTheCard(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	_, err := f.bot.Handle(context.Background(), f.activity(map[string]any{"type": "message", "replyToId": "reply-1",
		"value": map[string]any{"verb": "approve", "approvalId": a.ID}}))
	if err != nil {
		t.Fatal(err)
	}
	if f.graph.upgradeCount() != 1 || !strings.Contains(cardText(t, f.conn.updates["reply-1"]), "was upgraded") {
		t.Errorf("submit: %d upgrades, updates %+v", f.graph.upgradeCount(), f.conn.updates)
	}
}

func TestUnknownApprovalAndNoGraph(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Owners: true})
	if resp := f.click("approve", "apr_nope", owner); !strings.Contains(resp, "application/vnd.microsoft.error") || !strings.Contains(resp, "no longer known") {
		t.Errorf("unknown approval: %s", resp)
	}
	f.say("check")
	if c := cardText(t, f.conn.replies[0]); !strings.Contains(c, "up to date") {
		t.Errorf("nothing pending: %s", c)
	}

	conn, st := &fakeConnector{}, newMemState()
	b, _ := bot.New(bot.Options{Connector: conn, Conversations: st, Activities: st, Approvals: st})
	if _, err := b.Handle(context.Background(), decode(t, groupMessage)); err != nil {
		t.Fatal(err)
	}
	a := decode(t, groupMessage)
	a.ID, a.Text = "x2", "检查"
	if _, err := b.Handle(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if len(conn.replies) != 2 || !strings.Contains(conn.replies[1].Text, "Microsoft Graph access is not configured") {
		t.Errorf("check without Graph: %+v", conn.replies)
	}
}

func TestApproverCheckFailureIsShownToTheClicker(t *testing.T) {
	f := newFlow(t, bot.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	f.graph.membersErr = bot.Errorf(bot.CodeForbidden, "graph: list chat members: 403 Forbidden; an admin must grant the application permission ChatMember.Read.All")
	resp := f.click("approve", f.onlyApproval().ID, owner)
	if !strings.Contains(resp, "application/vnd.microsoft.error") || !strings.Contains(resp, "ChatMember.Read.All") || !strings.Contains(resp, `"statusCode":403`) {
		t.Errorf("response %s", resp)
	}
	if f.graph.upgradeCount() != 0 || f.onlyApproval().Status != bot.StatusPending {
		t.Error("the approval moved although the approver could not be checked")
	}
}
