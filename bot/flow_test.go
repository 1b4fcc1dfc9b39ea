package bot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/bot/memstore"
	"github.com/upgradeapprovals/bot/cards"
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
	mu           sync.Mutex
	apps         []string                          // installed app names; inst-i runs app-i
	versions     map[string]string                 // installation id → installed version
	catalog      []approval.AppDefinition          // every definition of every app
	upgrade      func(approval.Installation) error // runs first in the upgrade POST; an error fails it
	upgrades     []approval.Installation
	members      []approval.Member
	membersErr   error
	installedErr error               // Installed fails with it
	groups       map[string][]string // group → user ids
	chat         approval.Chat       // what Graph says of the chat
	channels     map[string]string   // channel id → membershipType; standard if not here
	calls        []string            // "Method command" per call
}

// called records a call and the command its context names.
func (g *fakeGraph) called(ctx context.Context, method string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, method+" "+bot.CommandFrom(ctx))
}

func (g *fakeGraph) installation(s approval.Scope, i int) approval.Installation {
	id := fmt.Sprintf("inst-%d", i)
	return approval.Installation{ID: id, Scope: s, TeamsAppID: fmt.Sprintf("app-%d", i), DisplayName: g.apps[i],
		Definition: approval.AppDefinition{ID: "ZGVmMQ==", Version: g.versions[id]}}
}

func (g *fakeGraph) Installed(ctx context.Context, s approval.Scope) ([]approval.Installation, error) {
	g.called(ctx, "Installed")
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.installedErr != nil {
		return nil, g.installedErr
	}
	var ins []approval.Installation
	for i := range g.apps {
		ins = append(ins, g.installation(s, i))
	}
	return ins, nil
}

func (g *fakeGraph) Installation(ctx context.Context, s approval.Scope, id string) (approval.Installation, error) {
	g.called(ctx, "Installation")
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range g.apps {
		if in := g.installation(s, i); in.ID == id {
			return in, nil
		}
	}
	return approval.Installation{}, bot.ErrNotFound
}

func (g *fakeGraph) Definitions(ctx context.Context, _ string, ids []string) ([]approval.AppDefinition, error) {
	g.called(ctx, "Definitions")
	g.mu.Lock()
	defer g.mu.Unlock()
	var defs []approval.AppDefinition
	for _, d := range g.catalog {
		if slices.Contains(ids, d.TeamsAppID) {
			defs = append(defs, d)
		}
	}
	return defs, nil
}

func (g *fakeGraph) Upgrade(ctx context.Context, in approval.Installation, _ []approval.Permission) error {
	g.called(ctx, "Upgrade")
	g.mu.Lock()
	g.upgrades = append(g.upgrades, in)
	fail := g.upgrade
	g.mu.Unlock()
	if fail != nil {
		if err := fail(in); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err // as an HTTP client whose deadline passed mid-call
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.versions[in.ID] = approval.NewestPublished(g.catalog)[in.TeamsAppID].Version
	return nil
}

// publish adds a published definition of app-i to the catalog.
func (g *fakeGraph) publish(i int, id, version string, perms ...approval.Permission) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.catalog = append(g.catalog, approval.AppDefinition{ID: id, TeamsAppID: fmt.Sprintf("app-%d", i), DisplayName: g.apps[i],
		Version: version, PublishingState: "published", ShortDescription: "Quick polls", Permissions: perms})
}

func (g *fakeGraph) Members(ctx context.Context, _ approval.Scope) ([]approval.Member, error) {
	g.called(ctx, "Members")
	if g.membersErr != nil {
		return nil, g.membersErr
	}
	return g.members, nil
}

func (g *fakeGraph) Membership(ctx context.Context, _ approval.Scope, userID string) ([]approval.Member, error) {
	g.called(ctx, "Membership")
	if g.membersErr != nil {
		return nil, g.membersErr
	}
	var out []approval.Member
	for _, m := range g.members {
		if strings.EqualFold(m.UserID, userID) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (g *fakeGraph) InGroup(_ context.Context, _, group, user string) (bool, error) {
	for _, u := range g.groups[group] {
		if u == user {
			return true, nil
		}
	}
	return false, nil
}

func (g *fakeGraph) Chat(ctx context.Context, _ approval.Scope) (approval.Chat, error) {
	g.called(ctx, "Chat")
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.chat, nil
}

func (g *fakeGraph) ChannelMembershipType(ctx context.Context, _ approval.Scope, channelID string) (string, error) {
	g.called(ctx, "ChannelMembershipType")
	g.mu.Lock()
	defer g.mu.Unlock()
	if k, ok := g.channels[channelID]; ok {
		return k, nil
	}
	return "standard", nil
}

func (g *fakeGraph) upgradeCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.upgrades)
}

var chatRead = approval.Permission{Value: "ChatMessage.Read.Chat", Type: "application"}

type flow struct {
	t     *testing.T
	bot   *bot.Bot
	conn  *fakeConnector
	state *memstore.Store
	graph *fakeGraph
	now   time.Time
	n     int
}

func newFlow(t *testing.T, policy approval.ApproverPolicy, apps ...string) *flow {
	t.Helper()
	f := &flow{t: t, conn: &fakeConnector{}, state: memstore.New(), now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	f.graph = &fakeGraph{
		members: []approval.Member{
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
		f.graph.catalog = append(f.graph.catalog, approval.AppDefinition{ID: "ZGVmNA==", TeamsAppID: fmt.Sprintf("app-%d", i),
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
	return f.clickIn(nil, verb, id, aad)
}

// clickIn clicks from another conversation (nil: the group chat).
func (f *flow) clickIn(conversation map[string]any, verb, id, aad string) string {
	f.t.Helper()
	a := map[string]any{
		"type": "invoke", "name": "adaptiveCard/action", "replyToId": "reply-1",
		"from":  map[string]any{"id": "29:" + aad, "aadObjectId": aad, "name": "User " + aad[:4]},
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": verb, "data": map[string]any{"approvalId": id}}},
	}
	if conversation != nil {
		a["conversation"] = conversation
	}
	resp, err := f.bot.Handle(context.Background(), f.activity(a))
	if err != nil {
		f.t.Fatal(err)
	}
	return answer(resp)
}

// withOptions rebuilds the bot with changed options.
func (f *flow) withOptions(change func(*bot.Options)) *bot.Bot {
	f.t.Helper()
	o := bot.Options{Connector: f.conn, Conversations: f.state, Activities: f.state, Approvals: f.state,
		Installations: f.graph, Catalog: f.graph, Directory: f.graph, Approvers: approval.ApproverPolicy{Owners: true}, Now: func() time.Time { return f.now }}
	change(&o)
	b, err := bot.New(o)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

func (f *flow) drain() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.bot.Drain(ctx); err != nil {
		f.t.Fatal(err)
	}
}

func (f *flow) onlyApproval() approval.Approval {
	f.t.Helper()
	all := f.state.Approvals()
	if len(all) != 1 {
		f.t.Fatalf("%d approvals, want 1", len(all))
	}
	return all[0]
}

// approvalOf returns the id of the approval for the app named name.
func (f *flow) approvalOf(name string) string {
	f.t.Helper()
	for _, a := range f.state.Approvals() {
		if a.Upgrade.Installation.DisplayName == name {
			return a.ID
		}
	}
	f.t.Fatalf("no approval for %s", name)
	return ""
}

func chatScope() approval.Scope {
	return approval.Scope{Kind: approval.ScopeChat, ID: chatID, TenantID: tenant}
}

func TestCheckPostsAnApprovalCardAndOwnerApproves(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
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
	if a.Status != approval.StatusPending || a.CardActivityID != "reply-1" || a.Upgrade.Installation.Scope != chatScope() {
		t.Fatalf("approval %+v", a)
	}

	resp := f.click("approve", a.ID, owner)
	if f.graph.upgradeCount() != 1 {
		t.Fatalf("%d upgrades, want 1", f.graph.upgradeCount())
	}
	if !strings.HasPrefix(resp, "card ") || !strings.Contains(resp, "was upgraded to 1.1.0") {
		t.Errorf("invoke response %s", resp)
	}
	if u, ok := f.conn.updates["reply-1"]; !ok || !strings.Contains(cardText(t, u), "was upgraded to 1.1.0") {
		t.Errorf("the card was not updated for everyone: %+v", f.conn.updates)
	}
	if got := f.onlyApproval(); got.Status != approval.StatusUpgraded || got.DecidedBy.AADObjectID != owner {
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
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
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
		for _, verb := range []string{cards.VerbSkip, cards.VerbSnooze} {
			if resp := f.click(verb, a.ID, who); !strings.Contains(resp, "can't approve") {
				t.Errorf("%s: %s answered %s", who, verb, resp)
			}
		}
	}
	if got := f.onlyApproval(); f.graph.upgradeCount() != 0 || got.Status != approval.StatusPending || !got.SnoozedUntil.IsZero() {
		t.Errorf("a non-owner changed the approval: %d upgrades, %s, snoozed until %s", f.graph.upgradeCount(), got.Status, got.SnoozedUntil)
	}
}

func TestRejectDoesNotUpgrade(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	if resp := f.click("reject", a.ID, owner); !strings.Contains(resp, "was rejected") {
		t.Errorf("response %s", resp)
	}
	if resp := f.click("approve", a.ID, owner); !strings.Contains(resp, "was rejected") {
		t.Errorf("approve after reject: %s", resp)
	}
	if f.graph.upgradeCount() != 0 || f.onlyApproval().Status != approval.StatusRejected {
		t.Errorf("%d upgrades, status %s", f.graph.upgradeCount(), f.onlyApproval().Status)
	}
}

func TestFailedUpgradeCanBeRetried(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.graph.upgrade = func(approval.Installation) error {
		return refusedByGraph("TeamsAppInstallation.ReadWriteAndConsentForChat.All")
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
	if f.graph.upgradeCount() != 2 || f.onlyApproval().Status != approval.StatusUpgraded {
		t.Errorf("%d upgrades, status %s", f.graph.upgradeCount(), f.onlyApproval().Status)
	}
}

func TestSupersededRequestIsReplaced(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
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
	if n := len(f.state.Approvals()); n != 2 {
		t.Errorf("%d approvals, want the superseded one and its replacement", n)
	}
}

func TestAlreadyUpgradedIsRecordedAndShownInHistory(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
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
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
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
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls", "Tasks")
	f.say("check")
	list := cardText(t, f.conn.replies[0])
	if !strings.Contains(list, "2 apps can be upgraded here") || !strings.Contains(list, `"verb":"approveAll"`) {
		t.Fatalf("list %s", list)
	}
	var batch string
	for _, id := range f.state.Batches() {
		batch = id
	}
	// The answer comes at once, every app upgrading…; the list card then
	// shows each outcome.
	if resp := f.click("approveAll", batch, owner); strings.Count(resp, "⏳ Upgrading") != 2 {
		t.Errorf("response %s", resp)
	}
	f.drain()
	if f.graph.upgradeCount() != 2 {
		t.Errorf("%d upgrades, want 2", f.graph.upgradeCount())
	}
	if u := cardText(t, f.conn.update("reply-1")); strings.Count(u, "was upgraded to 1.1.0") != 2 {
		t.Errorf("the list was not updated with both outcomes: %s", u)
	}
}

// Another replica rejects Tasks while this one's update of the list, drawn
// before that, is on its way, and lands last: the list is drawn again, so
// it ends showing both decisions.
func TestListUpdatedWhileItChangesEndsTrue(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls", "Tasks")
	f.say("check")
	polls, tasks := f.approvalOf("Polls"), f.approvalOf("Tasks")
	var once sync.Once
	f.conn.updating = func(id string) {
		if id != "reply-1" {
			return
		}
		once.Do(func() {
			if _, err := f.state.Transition(context.Background(), tasks, []approval.Status{approval.StatusPending}, func(a *approval.Approval) {
				a.Status = approval.StatusRejected
			}); err != nil {
				t.Error(err)
			}
		})
	}
	if resp := f.click("reject", polls, owner); !strings.Contains(resp, "Polls to 1.1.0 was rejected") {
		t.Fatalf("reject: %s", resp)
	}
	// Lists are redrawn after the click's answer; Drain waits for them.
	if err := f.bot.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	u := cardText(t, f.conn.update("reply-1"))
	if !strings.Contains(u, "Polls to 1.1.0 was rejected") || !strings.Contains(u, "Tasks to 1.1.0 was rejected") ||
		strings.Contains(u, `"verb":"approveAll"`) {
		t.Errorf("the list ends showing %s, want both rejected and no Approve all", u)
	}
}

// An approval decided while check's list was being posted (drawn as
// pending, recorded a moment later) is shown on it all the same; a list
// nothing happened to is not drawn again.
func TestListPostedWhileAnApprovalChangedShowsTheChange(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls", "Tasks")
	f.say("check")
	if err := f.bot.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u := f.conn.update("reply-1"); len(u.Attachments) != 0 {
		t.Errorf("a list nothing happened to was drawn again: %s", cardText(t, u))
	}

	g := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls", "Tasks")
	g.conn.replied = func() {
		tasks := g.approvalOf("Tasks")
		if _, err := g.state.Transition(context.Background(), tasks, []approval.Status{approval.StatusPending}, func(a *approval.Approval) {
			a.Status = approval.StatusRejected
		}); err != nil {
			t.Error(err)
		}
	}
	g.say("check")
	if err := g.bot.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u := cardText(t, g.conn.update("reply-1")); !strings.Contains(u, "Tasks to 1.1.0 was rejected") {
		t.Errorf("the list shows %s, want Tasks rejected", u)
	}
}

// A click is answered without waiting for the lists its approval is in to
// be redrawn: each check posts a list, so one approval may be on many, and
// Teams waits only about 15 s for the answer. The redraw follows, and
// Drain waits for it.
func TestClickIsAnsweredBeforeItsListsAreRedrawn(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls", "Tasks")
	f.say("check")
	polls := f.approvalOf("Polls")
	release := make(chan struct{})
	f.conn.mu.Lock()
	f.conn.updating = func(id string) {
		if id == "reply-1" {
			<-release
		}
	}
	f.conn.mu.Unlock()
	answered := make(chan *bot.InvokeResponse, 1)
	go func() {
		resp, _ := f.bot.Handle(context.Background(), f.activity(map[string]any{
			"type": "invoke", "name": "adaptiveCard/action", "replyToId": "reply-1",
			"from":  map[string]any{"id": "29:" + owner, "aadObjectId": owner, "name": "Owner"},
			"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "reject", "data": map[string]any{"approvalId": polls}}},
		}))
		answered <- resp
	}()
	select {
	case resp := <-answered:
		if b := answer(resp); !strings.Contains(b, "Polls to 1.1.0 was rejected") {
			t.Errorf("reject answered %s", b)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the click's answer waited for its list's redraw")
	}
	close(release)
	if err := f.bot.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u := cardText(t, f.conn.update("reply-1")); !strings.Contains(u, "Polls to 1.1.0 was rejected") {
		t.Errorf("the list shows %s, want Polls rejected", u)
	}
}

// A check while one of several pending upgrades is still upgrading (here
// Graph's answer was lost, so it waits out its grace period) lists that
// one as upgrading, as its own card and any redraw of the list do, never
// with a Review that reads as if nobody had approved it yet.
func TestCheckListsAnUpgradingAppAsUpgrading(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls", "Tasks")
	f.bot = f.withOptions(func(o *bot.Options) { o.UpgradeTimeout = time.Second; o.UpgradeGrace = 10 * time.Minute })
	f.say("check")
	polls := f.approvalOf("Polls")
	f.graph.upgrade = func(approval.Installation) error {
		return fmt.Errorf("503 Service Unavailable: %w", bot.ErrUpgradeUncertain)
	}
	if resp := f.click("approve", polls, owner); !strings.Contains(resp, "Upgrading Polls") {
		t.Fatalf("approve: %s", resp)
	}
	f.drain()
	f.say("check")
	if len(f.conn.replies) != 2 {
		t.Fatalf("%d replies, want the first list and the second", len(f.conn.replies))
	}
	list := cardText(t, f.conn.replies[1])
	// Polls has no Review (its id on the list); Tasks keeps its Review and
	// Approve all.
	if !strings.Contains(list, "Upgrading Polls to 1.1.0") || strings.Contains(list, polls) ||
		strings.Count(list, `"verb":"review"`) != 2 || !strings.Contains(list, `"verb":"approveAll"`) {
		t.Errorf("the second check lists Polls, still upgrading, as %s", list)
	}
	if f.graph.upgradeCount() != 1 {
		t.Errorf("%d upgrades sent, want 1", f.graph.upgradeCount())
	}
}

func TestManyBigUpgradesAreSplitIntoCardsTeamsAccepts(t *testing.T) {
	apps := make([]string, 8)
	for i := range apps {
		apps[i] = fmt.Sprintf("App %d", i)
	}
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, apps...)
	var perms []approval.Permission
	for j := range 30 {
		perms = append(perms, approval.Permission{Value: fmt.Sprintf("Contoso.Permission%d.Chat", j), Type: "application"})
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
		if len(c) > bot.MaxCardBytes {
			t.Errorf("a card of %d bytes is over the %d the bot keeps under Teams' limit", len(c), bot.MaxCardBytes)
		}
		listed += strings.Count(c, `{"type":"Action.Execute","title":"Review","verb":"review"`)
	}
	if listed != 8 {
		t.Errorf("%d apps listed, want all 8", listed)
	}
}

func TestPersonalScopeUserApprovesTheirOwn(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	personal := map[string]any{"id": "a:1personal", "conversationType": "personal", "tenantId": tenant}
	_, err := f.bot.Handle(context.Background(), f.activity(map[string]any{"type": "message", "text": "check",
		"conversation": personal}))
	if err != nil {
		t.Fatal(err)
	}
	a := f.onlyApproval()
	if a.Upgrade.Installation.Scope.Kind != approval.ScopeUser || a.Upgrade.Installation.Scope.ID != owner {
		t.Fatalf("scope %+v", a.Upgrade.Installation.Scope)
	}
	if resp := f.clickIn(personal, "approve", a.ID, member); !strings.Contains(resp, "no longer known") {
		t.Errorf("another user acted on someone's personal app: %s", resp)
	}
	if resp := f.clickIn(personal, "approve", a.ID, owner); !strings.Contains(resp, "was upgraded") {
		t.Errorf("the user could not approve their own: %s", resp)
	}
}

func TestApproverGroupPolicy(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Groups: []string{"g-it"}}, "Polls")
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

// Named approvers and approver groups are people of the chat's own tenant:
// an external participant arrives with their home tenant's object id, and
// a deployment serving several tenants must not let a name configured for
// one approve in another. Nor does someone outside the chat count.
func TestNamedApproversAreMembersFromTheChatsTenant(t *testing.T) {
	const outsider = "33333333-3333-3333-3333-333333333333"
	f := newFlow(t, approval.ApproverPolicy{Users: []string{outsider, member}, Groups: []string{"g-it"}}, "Polls")
	f.graph.groups = map[string][]string{"g-it": {owner}}
	f.graph.members = append(f.graph.members, approval.Member{UserID: outsider, DisplayName: "Guest",
		TenantID: "0b5a2a62-0000-4000-8000-00000000beef", Roles: []string{"owner"}})
	f.say("check")
	a := f.onlyApproval()
	if resp := f.click("approve", a.ID, outsider); !strings.Contains(resp, "can't approve") {
		t.Errorf("a named user from another tenant approved: %s", resp)
	}
	f.graph.members = slices.DeleteFunc(f.graph.members, func(m approval.Member) bool { return m.UserID == owner })
	if resp := f.click("approve", a.ID, owner); !strings.Contains(resp, "can't approve") {
		t.Errorf("a group member who is not in the chat approved: %s", resp)
	}
	if f.graph.upgradeCount() != 0 {
		t.Fatalf("%d upgrades", f.graph.upgradeCount())
	}
	if resp := f.click("approve", a.ID, member); !strings.Contains(resp, "was upgraded") {
		t.Errorf("a named member of the chat's tenant could not approve: %s", resp)
	}
}

// "meeting=organizer": in a meeting's chat the organizer approves, and
// only there; the chat's owners still approve as the plain rule says,
// and a guest never does.
func TestMeetingOrganizerApproves(t *testing.T) {
	p, err := approval.ParseApproverPolicy([]string{"chat=owners", "team=owners", "meeting=organizer"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFlow(t, p, "Polls")
	// Graph lists a meeting chat's members without roles.
	f.graph.members = []approval.Member{
		{UserID: owner, TenantID: tenant, Roles: []string{}, DisplayName: "Megan"},
		{UserID: member, TenantID: tenant, Roles: []string{}, DisplayName: "Alex"},
	}
	f.graph.chat = approval.Chat{Meeting: true, Organizer: member}
	f.say("check")
	a := f.onlyApproval()
	if resp := f.click("approve", a.ID, owner); !strings.Contains(resp, "can't approve") {
		t.Errorf("a member who did not organize the meeting approved: %s", resp)
	}
	if resp := f.click("approve", a.ID, member); !strings.Contains(resp, "was upgraded") {
		t.Errorf("the meeting's organizer could not approve: %s", resp)
	}
	if !slices.Contains(f.graph.calls, "Chat approve") {
		t.Errorf("the chat was not read from Graph at click time: %q", f.graph.calls)
	}

	// In a group chat the organizer rule is not a rule: owners approve.
	g := newFlow(t, p, "Polls")
	g.graph.chat = approval.Chat{Organizer: member}
	g.graph.members = append(g.graph.members, approval.Member{UserID: foreign, TenantID: tenant, Roles: []string{"owner", "guest"}})
	g.say("check")
	b := g.onlyApproval()
	if resp := g.click("approve", b.ID, member); !strings.Contains(resp, "can't approve") {
		t.Errorf("an organizer rule approved in a group chat: %s", resp)
	}
	if resp := g.click("approve", b.ID, foreign); !strings.Contains(resp, "can't approve") {
		t.Errorf("a guest approved: %s", resp)
	}
	if resp := g.click("approve", b.ID, owner); !strings.Contains(resp, "was upgraded") {
		t.Errorf("a chat owner could not approve under chat=owners: %s", resp)
	}
}

func TestSubmitTwinUpdatesTheCard(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
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

// The submit twin is decided like the invoke; what speaks to the clicker
// alone is a reply, never a replacement of the card every approver needs.
func TestSubmitTwinAnswersRefusalsWithAReply(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	replies := len(f.conn.replies)
	submit := func(from, id string) {
		t.Helper()
		if _, err := f.bot.Handle(context.Background(), f.activity(map[string]any{"type": "message", "replyToId": "reply-1",
			"from": map[string]any{"id": "29:" + from, "aadObjectId": from, "name": "User"}, "value": map[string]any{"verb": "approve", "approvalId": id}})); err != nil {
			t.Fatal(err)
		}
	}
	submit(member, a.ID)
	if len(f.conn.updates) != 0 || f.graph.upgradeCount() != 0 || len(f.conn.replies) != replies+1 ||
		!strings.Contains(cardText(t, f.conn.replies[replies]), "You can't approve this upgrade") {
		t.Fatalf("a member's submit: %d upgrades, updates %+v, replies %+v", f.graph.upgradeCount(), f.conn.updates, f.conn.replies[replies:])
	}
	submit(owner, "apr_nope")
	if len(f.conn.updates) != 0 || len(f.conn.replies) != replies+2 || !strings.Contains(f.conn.replies[replies+1].Text, "no longer known") {
		t.Fatalf("an unknown approval's submit: updates %+v, replies %+v", f.conn.updates, f.conn.replies[replies:])
	}
}

// When nothing is pending, "check" says which apps it found and at which
// version, by name, so "up to date" can be trusted at a glance.
func TestCheckListsTheAppsItFoundUpToDate(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Tasks", "Polls")
	f.graph.versions["inst-0"], f.graph.versions["inst-1"] = "1.1.0", "1.1.0"
	f.say("check")
	c := cardText(t, f.conn.replies[0])
	if !strings.Contains(c, "All apps in this chat are up to date") || !strings.Contains(c, "2 apps are installed:") ||
		!strings.Contains(c, `"facts":[{"title":"Polls","value":"1.1.0"},{"title":"Tasks","value":"1.1.0"}]`) {
		t.Errorf("check with nothing pending: %s", c)
	}
	if n := len(f.state.Approvals()); n != 0 {
		t.Errorf("%d approvals opened", n)
	}
}

func TestUnknownApprovalAndNoGraph(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true})
	if resp := f.click("approve", "apr_nope", owner); !strings.HasPrefix(resp, "refused ") || !strings.Contains(resp, "no longer known") {
		t.Errorf("unknown approval: %s", resp)
	}
	f.say("check")
	if c := cardText(t, f.conn.replies[0]); !strings.Contains(c, "up to date") {
		t.Errorf("nothing pending: %s", c)
	}

	conn, st := &fakeConnector{}, memstore.New()
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
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	f.graph.membersErr = graphFailure(bot.CodeForbidden, "graph: list chat members: 403 Forbidden (Forbidden: Missing scope permissions on the request.)",
		approval.Problem{Reason: approval.ReasonGraphRefused, Status: 403, GraphCode: "Forbidden",
			GraphMessage: "Missing scope permissions on the request.", Permission: "ChatMember.Read.All"})
	resp := f.click("approve", f.onlyApproval().ID, owner)
	if !refusedWith(resp, bot.CodeForbidden) || !strings.Contains(resp, "ChatMember.Read.All") {
		t.Errorf("response %s", resp)
	}
	// In the clicker's language, without Go's error chain.
	click := f.activity(map[string]any{"type": "invoke", "name": "adaptiveCard/action", "replyToId": "reply-1", "locale": "zh-CN",
		"from":  map[string]any{"id": "29:" + owner, "aadObjectId": owner, "name": "User " + owner[:4]},
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve", "data": map[string]any{"approvalId": f.onlyApproval().ID}}}})
	got, err := f.bot.Handle(context.Background(), click)
	if err != nil {
		t.Fatal(err)
	}
	zh := answer(got)
	if !refusedWith(zh, bot.CodeForbidden) || !strings.Contains(zh, "ChatMember.Read.All") || !strings.Contains(zh, "Microsoft Graph 拒绝了机器人的调用") {
		t.Errorf("zh-CN response %s", zh)
	}
	for _, chain := range append(goChain, "list chat members") {
		if strings.Contains(resp, chain) || strings.Contains(zh, chain) {
			t.Errorf("the clicker reads %q: %s | %s", chain, resp, zh)
		}
	}
	if f.graph.upgradeCount() != 0 || f.onlyApproval().Status != approval.StatusPending {
		t.Error("the approval moved although the approver could not be checked")
	}
}

func TestApprovalFromAnotherConversationOrTenantIsUnknown(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	unknown := f.click("approve", "apr_nope", owner)
	for name, conv := range map[string]map[string]any{
		"another chat":    {"id": "19:other@thread.v2", "conversationType": "groupChat", "tenantId": tenant},
		"another tenant":  {"id": chatID, "conversationType": "groupChat", "tenantId": "99999999-9999-9999-9999-999999999999"},
		"a personal chat": {"id": "a:1personal", "conversationType": "personal", "tenantId": tenant},
	} {
		if resp := f.clickIn(conv, "approve", a.ID, owner); resp != unknown {
			t.Errorf("%s: %s, want the same answer as an unknown id: %s", name, resp, unknown)
		}
		if resp := f.clickIn(conv, "review", a.ID, owner); resp != unknown {
			t.Errorf("%s: review showed %s", name, resp)
		}
	}
	if f.graph.upgradeCount() != 0 || f.onlyApproval().Status != approval.StatusPending {
		t.Fatalf("an action from elsewhere changed the approval")
	}

	g := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls", "Tasks")
	g.say("check")
	var batch string
	for _, id := range g.state.Batches() {
		batch = id
	}
	other := map[string]any{"id": "19:other@thread.v2", "conversationType": "groupChat", "tenantId": tenant}
	if resp := g.clickIn(other, "approveAll", batch, owner); !strings.Contains(resp, "no longer known") {
		t.Errorf("approve all from another chat: %s", resp)
	}
	g.drain()
	if g.graph.upgradeCount() != 0 {
		t.Errorf("%d upgrades from a batch of another chat", g.graph.upgradeCount())
	}
}

func TestOneApprovalPerTeamInstallationAcrossChannels(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	team := func(channel string) map[string]any {
		return map[string]any{"type": "message", "text": "check",
			"conversation": map[string]any{"id": channel, "conversationType": "channel", "tenantId": tenant},
			"channelData":  map[string]any{"team": map[string]any{"id": "19:team@thread.tacv2", "aadGroupId": "team-group"}}}
	}
	for _, ch := range []string{"19:general@thread.tacv2;messageid=1", "19:random@thread.tacv2;messageid=2"} {
		if _, err := f.bot.Handle(context.Background(), f.activity(team(ch))); err != nil {
			t.Fatal(err)
		}
	}
	a := f.onlyApproval() // one approval for the team's one installation
	// An owner in the other channel can act on it: same team, same installation.
	click := f.activity(map[string]any{
		"type": "invoke", "name": "adaptiveCard/action", "replyToId": "reply-2",
		"conversation": map[string]any{"id": "19:random@thread.tacv2;messageid=2", "conversationType": "channel", "tenantId": tenant},
		"channelData":  map[string]any{"team": map[string]any{"id": "19:team@thread.tacv2", "aadGroupId": "team-group"}},
		"value":        map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve", "data": map[string]any{"approvalId": a.ID}}},
	})
	out, err := f.bot.Handle(context.Background(), click)
	if err != nil {
		t.Fatal(err)
	}
	if b := answer(out); !strings.Contains(b, "was upgraded") {
		t.Errorf("approve from another channel of the team: %s", b)
	}
	// Both channels' cards show the outcome.
	for _, id := range []string{"reply-1", "reply-2"} {
		if u := cardText(t, f.conn.update(id)); !strings.Contains(u, "was upgraded") {
			t.Errorf("card %s after the upgrade: %s", id, u)
		}
	}
}

func TestCheckDuringUpgradeOpensNoSecondApproval(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	release := make(chan struct{})
	f.graph.upgrade = func(approval.Installation) error { <-release; return nil }
	f.say("check")
	a := f.onlyApproval()
	click := f.activity(map[string]any{"type": "invoke", "name": "adaptiveCard/action", "replyToId": "reply-1",
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve", "data": map[string]any{"approvalId": a.ID}}}})
	done := make(chan error)
	go func() { _, err := f.bot.Handle(context.Background(), click); done <- err }()
	upgrading := func() bool {
		got, _ := f.state.Approval(context.Background(), a.ID)
		return got.Status == approval.StatusUpgrading
	}
	for !upgrading() {
		time.Sleep(time.Millisecond)
	}
	f.say("check")
	if n := len(f.state.Approvals()); n != 1 {
		t.Errorf("check during the upgrade: %d approvals, want 1", n)
	}
	if c := cardText(t, f.conn.replies[len(f.conn.replies)-1]); !strings.Contains(c, "Upgrading Polls") {
		t.Errorf("check during the upgrade shows %s, want the upgrading card", c)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSlowUpgradeAnswersStillWorkingThenUpdatesTheCard(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.bot = f.withOptions(func(o *bot.Options) { o.InvokeWait = 50 * time.Millisecond })
	release := make(chan struct{})
	f.graph.upgrade = func(approval.Installation) error { <-release; return nil }
	f.say("check")
	a := f.onlyApproval()
	resp := f.click("approve", a.ID, owner)
	if !strings.Contains(resp, "Still working") || strings.Contains(resp, `"verb":"approve"`) {
		t.Fatalf("slow upgrade answered %s, want the upgrading card without buttons", resp)
	}
	// Clicking again while it runs changes nothing and says the same.
	if again := f.click("approve", a.ID, owner); !strings.Contains(again, "Still working") {
		t.Errorf("second click: %s", again)
	}
	close(release)
	f.drain()
	if f.graph.upgradeCount() != 1 {
		t.Errorf("%d upgrades, want 1", f.graph.upgradeCount())
	}
	if u := cardText(t, f.conn.update("reply-1")); !strings.Contains(u, "was upgraded to 1.1.0") {
		t.Errorf("card after the upgrade: %s", u)
	}
}

func TestReaperFinishesAnUpgradeWhoseRecordWasLost(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.bot = f.withOptions(func(o *bot.Options) { o.UpgradeTimeout = time.Second })
	f.say("check")
	a := f.onlyApproval()
	// Graph answers 204, then Redis is gone before the outcome is written
	// (as if the replica died there).
	f.graph.upgrade = func(approval.Installation) error {
		f.state.FailWrites(bot.Errorf(bot.CodeUnavailable, "state: redis unavailable"))
		return nil
	}
	f.click("approve", a.ID, owner)
	f.drain()
	f.state.FailWrites(nil)
	if got := f.onlyApproval(); got.Status != approval.StatusUpgrading {
		t.Fatalf("status %s, want upgrading (the record was lost)", got.Status)
	}
	// Nothing to do while the claim's lease lives.
	if n, err := f.bot.Reap(context.Background()); n != 0 || err != nil {
		t.Fatalf("reaped %d (%v) while the lease lives", n, err)
	}
	f.state.ExpireClaims()
	if n, err := f.bot.Reap(context.Background()); n != 1 || err != nil {
		t.Fatalf("reaped %d, %v; want 1", n, err)
	}
	if got := f.onlyApproval(); got.Status != approval.StatusUpgraded || got.DecidedBy == nil || got.DecidedBy.AADObjectID != owner {
		t.Errorf("after reaping: %+v", got)
	}
	if f.graph.upgradeCount() != 1 {
		t.Errorf("%d upgrade calls, want exactly 1 (the reaper reads, never upgrades)", f.graph.upgradeCount())
	}
	if u := cardText(t, f.conn.update("reply-1")); !strings.Contains(u, "was upgraded to 1.1.0") {
		t.Errorf("card after reaping: %s", u)
	}
	if n, _ := f.bot.Reap(context.Background()); n != 0 {
		t.Errorf("reaped again: %d", n)
	}
}

func TestReaperUpgradesAClaimThatNeverReachedGraph(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	// A replica claims, then dies before calling Graph.
	if _, err := f.state.ClaimUpgrade(context.Background(), a.ID, approval.Person{Name: "Megan", AADObjectID: owner}, f.now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if resp := f.click("review", a.ID, owner); !strings.Contains(resp, "Upgrading Polls") {
		t.Errorf("an upgrading approval shows %s", resp)
	}
	if resp := f.click("approve", a.ID, owner); !strings.Contains(resp, "Upgrading Polls") || f.graph.upgradeCount() != 0 {
		t.Errorf("approve during the claim: %s, %d upgrades", resp, f.graph.upgradeCount())
	}
	f.state.ExpireClaims()
	if n, err := f.bot.Reap(context.Background()); n != 1 || err != nil {
		t.Fatalf("reaped %d, %v", n, err)
	}
	if got := f.onlyApproval(); got.Status != approval.StatusUpgraded || got.DecidedBy.Name != "Megan" {
		t.Errorf("after reaping: %s by %+v", got.Status, got.DecidedBy)
	}
	if f.graph.upgradeCount() != 1 {
		t.Errorf("%d upgrades, want 1", f.graph.upgradeCount())
	}
}

func TestReaperNeverSendsAnUpgradeTwice(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	// The replica marked the upgrade as sent and died: Graph may or may
	// not have received it, and it shows the old version.
	c, err := f.state.ClaimUpgrade(context.Background(), a.ID, approval.Person{Name: "Megan", AADObjectID: owner}, f.now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f.state.Amend(context.Background(), c, func(a *approval.Approval) { a.UpgradeSentAt = f.now })
	f.state.ExpireClaims()
	f.now = f.now.Add(time.Hour) // past the grace period Graph gets to show it
	if n, err := f.bot.Reap(context.Background()); n != 1 || err != nil {
		t.Fatalf("reaped %d, %v", n, err)
	}
	got := f.onlyApproval()
	if got.Status != approval.StatusFailed || got.Problem != (approval.Problem{Reason: approval.ReasonInterrupted, InstalledVersion: "1.0.0"}) {
		t.Errorf("after reaping: %s %+v", got.Status, got.Problem)
	}
	if f.graph.upgradeCount() != 0 {
		t.Errorf("the reaper upgraded %d times", f.graph.upgradeCount())
	}
	if resp := f.click("retry", a.ID, owner); !strings.Contains(resp, "was upgraded") {
		t.Errorf("retry after reaping: %s", resp)
	}
}

// An upgrade whose answer was a 5xx may have taken with Graph slow to show
// it: the card offers Retry only once the grace period has passed and the
// installation still runs the old version, so Retry never upgrades twice.
func TestUncertainUpgradeOffersRetryOnlyAfterItsGracePeriod(t *testing.T) {
	for _, took := range []bool{true, false} {
		t.Run(fmt.Sprintf("took=%v", took), func(t *testing.T) {
			f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
			f.bot = f.withOptions(func(o *bot.Options) { o.UpgradeTimeout = time.Second; o.UpgradeGrace = 10 * time.Minute })
			f.say("check")
			a := f.onlyApproval()
			f.graph.upgrade = func(approval.Installation) error {
				return fmt.Errorf("503 Service Unavailable: %w", bot.ErrUpgradeUncertain)
			}
			resp := f.click("approve", a.ID, owner)
			f.drain()
			if !strings.Contains(resp, "Upgrading Polls") || strings.Contains(resp, `"verb":"retry"`) {
				t.Fatalf("answer to an unconfirmed upgrade: %s", resp)
			}
			// Within the grace period: a reaper pass, a lease run out and a
			// Retry click change nothing and send nothing.
			f.now = f.now.Add(5 * time.Minute)
			f.state.ExpireClaims()
			if n, err := f.bot.Reap(context.Background()); n != 0 || err != nil {
				t.Fatalf("reaped %d, %v within the grace period", n, err)
			}
			if resp := f.click("retry", a.ID, owner); !strings.Contains(resp, "Upgrading Polls") {
				t.Errorf("retry within the grace period: %s", resp)
			}
			if got := f.onlyApproval(); got.Status != approval.StatusUpgrading || f.graph.upgradeCount() != 1 {
				t.Fatalf("within the grace period: %s after %d upgrades", got.Status, f.graph.upgradeCount())
			}
			if took { // Graph shows the upgrade late
				f.graph.mu.Lock()
				f.graph.versions["inst-0"] = "1.1.0"
				f.graph.mu.Unlock()
			}
			f.now = f.now.Add(6 * time.Minute)
			f.state.ExpireClaims()
			if n, err := f.bot.Reap(context.Background()); n != 1 || err != nil {
				t.Fatalf("reaped %d, %v after the grace period", n, err)
			}
			got := f.onlyApproval()
			card := cardText(t, f.conn.updates["reply-1"])
			switch {
			case took && (got.Status != approval.StatusUpgraded || !strings.Contains(card, "was upgraded")):
				t.Errorf("Graph shows the upgrade: %s, card %s", got.Status, card)
			case !took && (got.Status != approval.StatusFailed || !strings.Contains(card, `"verb":"retry"`)):
				t.Errorf("Graph shows the old version: %s, card %s", got.Status, card)
			}
			if f.graph.upgradeCount() != 1 {
				t.Errorf("%d upgrades sent, want 1", f.graph.upgradeCount())
			}
		})
	}
}

// Approve all answers at once, with every app upgrading, and runs at most
// Parallel upgrades at a time. In a synctest bubble "at once" and "at most"
// need no clock: the answer comes while no upgrade has ended, and once every
// goroutine waits, exactly Parallel upgrades are with Graph.
func TestApproveAllRunsBoundedInParallel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		apps := make([]string, 10)
		for i := range apps {
			apps[i] = fmt.Sprintf("App %d", i)
		}
		f := newFlow(t, approval.ApproverPolicy{Owners: true}, apps...)
		f.bot = f.withOptions(func(o *bot.Options) { o.Parallel = 3 })
		release := make(chan struct{})
		var mu sync.Mutex
		running, peak := 0, 0
		f.graph.upgrade = func(approval.Installation) error {
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			<-release
			mu.Lock()
			running--
			mu.Unlock()
			return nil
		}
		f.say("check")
		var batch string
		for _, id := range f.state.Batches() {
			batch = id
		}
		// Were the answer to wait for an upgrade, every goroutine would be
		// stuck and synctest would report the deadlock.
		if resp := f.click("approveAll", batch, owner); strings.Count(resp, "Upgrading") != 10 {
			t.Errorf("approve all answered %s, want 10 upgrading", resp)
		}
		synctest.Wait()
		mu.Lock()
		if running != 3 {
			t.Errorf("%d upgrades with Graph at once, want Parallel (3)", running)
		}
		mu.Unlock()
		close(release)
		f.drain()
		if f.graph.upgradeCount() != 10 || peak != 3 {
			t.Errorf("%d upgrades, at most %d at once; want 10, at most 3", f.graph.upgradeCount(), peak)
		}
		if u := cardText(t, f.conn.update("reply-1")); strings.Count(u, "was upgraded") != 10 {
			t.Errorf("final list: %s", u)
		}
	})
}

// Upgrades with RSC consent can take tens of seconds each: the last of ten
// apps upgrading four at a time starts minutes after the click. Each gets
// its full deadline from its start and keeps its claim while it waits, so
// none fails for time spent queueing and the reaper takes none over.
func TestApproveAllGivesEachUpgradeItsOwnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		apps := make([]string, 10)
		for i := range apps {
			apps[i] = fmt.Sprintf("App %d", i)
		}
		f := newFlow(t, approval.ApproverPolicy{Owners: true}, apps...)
		f.bot = f.withOptions(func(o *bot.Options) { o.Parallel = 4 }) // UpgradeTimeout: the default minute
		f.graph.upgrade = func(approval.Installation) error { time.Sleep(35 * time.Second); return nil }
		f.say("check")
		var batch string
		for _, id := range f.state.Batches() {
			batch = id
		}
		f.click("approveAll", batch, owner)
		// Past the first waves' claim leases, the third wave still waits.
		time.Sleep(80 * time.Second)
		if n, err := f.bot.Reap(context.Background()); n != 0 || err != nil {
			t.Errorf("the reaper settled %d queued upgrades (%v)", n, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := f.bot.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if u := cardText(t, f.conn.update("reply-1")); strings.Count(u, "was upgraded") != 10 {
			t.Errorf("final list: %s", u)
		}
		if f.graph.upgradeCount() != 10 {
			t.Errorf("%d upgrades sent, want 10", f.graph.upgradeCount())
		}
	})
}

// Redis failing just after check's card went out must not fail the turn:
// Teams would deliver the message again and a second card would follow.
func TestCheckWhoseCardCannotBeRecordedPostsItOnce(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.conn.replied = func() {
		f.state.FailWrites(bot.Errorf(bot.CodeUnavailable, "redis: connection refused"))
	}
	if _, err := f.bot.Handle(context.Background(), f.activity(map[string]any{"type": "message", "text": "check"})); err != nil {
		t.Fatalf("check failed after its card was posted: %v", err)
	}
	if len(f.conn.replies) != 1 {
		t.Errorf("%d replies, want the one card", len(f.conn.replies))
	}
}

// A card whose record landed but whose answer was lost is recorded again
// by the retry: once, not twice (it would be updated twice for everyone).
func TestCardRecordedWhileItsAnswerWasLostIsRecordedOnce(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	f.state.LoseAnswers(1)
	f.say("check")
	a := f.onlyApproval()
	var seen []string
	for _, c := range a.OtherCards {
		seen = append(seen, c.ActivityID)
	}
	if a.CardActivityID != "reply-1" || !slices.Equal(seen, []string{"reply-2"}) {
		t.Errorf("cards recorded: %q and %v, want reply-1 and [reply-2]", a.CardActivityID, seen)
	}
}

// Redis dies just after writing that an upgrade is about to be sent, so
// its replica never learns the mark landed and, without it, never calls
// Graph. Once Redis is back, within the claim's lease, the replica takes
// the mark back: the reaper then upgrades (the owner approved and nobody
// called Graph) instead of waiting out the grace period kept for an
// upgrade that might have been sent.
func TestUpgradeMarkWrittenAsRedisDiedIsTakenBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
		f.bot = f.withOptions(func(o *bot.Options) {
			o.UpgradeTimeout, o.UpgradeGrace, o.InvokeWait = 10*time.Second, 10*time.Minute, time.Second
		})
		f.say("check")
		id := f.onlyApproval().ID
		down := bot.Errorf(bot.CodeUnavailable, "redis: connection refused")
		f.state.Crash(1, down) // the claim is answered; the mark lands unanswered
		if resp := f.click("approve", id, owner); !strings.Contains(resp, "Upgrading Polls") {
			t.Fatalf("approve: %s", resp)
		}
		time.Sleep(6 * time.Second) // past the half of the deadline the mark is retried for
		f.state.FailWrites(nil)     // Redis is back
		f.drain()
		if a := f.onlyApproval(); !a.UpgradeSentAt.IsZero() || a.Status != approval.StatusUpgrading {
			t.Fatalf("after Redis came back: %s, marked sent at %v; want upgrading, unmarked", a.Status, a.UpgradeSentAt)
		}
		time.Sleep(15 * time.Second) // the claim's lease ends
		if n, err := f.bot.Reap(context.Background()); n != 1 || err != nil {
			t.Fatalf("the reaper settled %d (%v), want 1", n, err)
		}
		if a := f.onlyApproval(); a.Status != approval.StatusUpgraded || f.graph.upgradeCount() != 1 {
			t.Errorf("approval %s after %d upgrades, want upgraded after 1", a.Status, f.graph.upgradeCount())
		}
	})
}

func TestRedeliveredApproveIsAnsweredAndUpgradesOnce(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	invoke := f.activity(map[string]any{
		"type": "invoke", "name": "adaptiveCard/action", "replyToId": "reply-1",
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve", "data": map[string]any{"approvalId": a.ID}}},
	})
	for i := range 3 { // Teams gave up waiting and delivers the same invoke again
		resp, err := f.bot.Handle(context.Background(), invoke)
		if err != nil || resp == nil {
			t.Fatalf("delivery %d: %v %v", i, resp, err)
		}
		if b := answer(resp); !strings.Contains(b, "was upgraded") {
			t.Errorf("delivery %d answered %s", i, b)
		}
	}
	if f.graph.upgradeCount() != 1 {
		t.Errorf("%d upgrades, want 1", f.graph.upgradeCount())
	}
}

func TestExpiredRequestCannotBeRejected(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	f.now = f.now.Add(8 * 24 * time.Hour)
	if resp := f.click("reject", a.ID, owner); !strings.Contains(resp, "expired") {
		t.Errorf("response %s", resp)
	}
	if got := f.onlyApproval(); got.Status != approval.StatusExpired || got.DecidedBy != nil {
		t.Errorf("a late reject recorded %s by %+v", got.Status, got.DecidedBy)
	}
}

func TestHistoryInAChannelCoversEveryThread(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	in := func(thread string, m map[string]any) map[string]any {
		m["conversation"] = map[string]any{"id": "19:general@thread.tacv2;messageid=" + thread, "conversationType": "channel", "tenantId": tenant}
		m["channelData"] = map[string]any{"team": map[string]any{"id": "19:team@thread.tacv2", "aadGroupId": "team-group"}}
		return m
	}
	handle := func(m map[string]any) *bot.InvokeResponse {
		t.Helper()
		resp, err := f.bot.Handle(context.Background(), f.activity(m))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	handle(in("1", map[string]any{"type": "message", "text": "check"}))
	a := f.onlyApproval()
	handle(in("1", map[string]any{"type": "invoke", "name": "adaptiveCard/action", "replyToId": "reply-1",
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve", "data": map[string]any{"approvalId": a.ID}}}}))
	f.drain()
	// A new post in the channel is a new thread: it still sees the decision.
	handle(in("7", map[string]any{"type": "message", "text": "history"}))
	if h := cardText(t, f.conn.replies[len(f.conn.replies)-1]); !strings.Contains(h, "**Polls** upgraded 1.0.0 → 1.1.0") {
		t.Errorf("history in another thread of the channel: %s", h)
	}
}

// A check repeated in the same conversation within the window points at
// the answer already given: Graph is read once, and no second request or
// card is recorded. A check whose Graph read failed may be retried at once,
// and after the window a check reads Graph again.
func TestRepeatedCheckReadsGraphOnce(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.bot = f.withOptions(func(o *bot.Options) { o.Checks = f.state; o.CheckWindow = 30 * time.Second })
	graphCalls := func() int {
		f.graph.mu.Lock()
		defer f.graph.mu.Unlock()
		return len(f.graph.calls)
	}
	f.say("check")
	first := graphCalls()
	if first == 0 || len(f.conn.replies) != 1 {
		t.Fatalf("the first check made %d Graph calls and %d replies", first, len(f.conn.replies))
	}
	f.now = f.now.Add(10 * time.Second)
	f.say("检查")
	if got := graphCalls(); got != first {
		t.Errorf("a repeated check made %d more Graph calls", got-first)
	}
	if len(f.conn.replies) != 2 || !strings.Contains(f.conn.replies[1].Text, "my answer is above") ||
		!strings.Contains(f.conn.replies[1].Text, "20 seconds") || len(f.conn.replies[1].Attachments) != 0 {
		t.Errorf("the repeat answered %+v", f.conn.replies[1:])
	}
	if n := len(f.state.Approvals()); n != 1 {
		t.Errorf("%d approvals recorded", n)
	}

	// Past the window Graph is read again.
	f.now = f.now.Add(25 * time.Second)
	f.say("check")
	if got := graphCalls(); got != 2*first {
		t.Errorf("a check after the window made %d Graph calls, want %d", got-first, first)
	}

	// A failed read holds no window: the retry reads Graph.
	g := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	g.bot = g.withOptions(func(o *bot.Options) { o.Checks = g.state })
	g.graph.installedErr = bot.Errorf(bot.CodeUnavailable, "graph: 503 Service Unavailable")
	g.say("check")
	if len(g.conn.replies) != 1 || !strings.Contains(g.conn.replies[0].Text, "couldn't look up") {
		t.Fatalf("a failed check answered %+v", g.conn.replies)
	}
	g.graph.installedErr = nil
	g.say("check")
	if n := strings.Count(strings.Join(g.graph.calls, "\n"), "Installed"); n != 2 || len(g.state.Approvals()) != 1 {
		t.Errorf("the retry of a failed check read Graph's installations %d times in all, and opened %d approvals",
			n, len(g.state.Approvals()))
	}
}

// With two approvers needed, an owner who approved and is a guest by the
// time the second approves no longer counts: Graph is asked again about
// the earlier approver when the quorum would be met, and the upgrade
// waits for another approver.
func TestQuorumRechecksEarlierApproversWhenItWouldBeMet(t *testing.T) {
	const adele = "55555555-5555-5555-5555-555555555555"
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.graph.members = append(f.graph.members, approval.Member{UserID: adele, TenantID: tenant, Roles: []string{"owner"}, DisplayName: "Adele"})
	f.bot = f.withOptions(func(o *bot.Options) { o.ApprovalQuorum = 2 })
	f.say("check")
	id := f.onlyApproval().ID
	f.click("approve", id, adele)
	if got := f.onlyApproval(); len(got.Approvals) != 1 || got.Status != approval.StatusPending {
		t.Fatalf("after Adele: %s with %d approvals", got.Status, len(got.Approvals))
	}
	for i, m := range f.graph.members {
		if m.UserID == adele {
			f.graph.members[i].Roles = []string{"guest"}
		}
	}
	f.click("approve", id, owner)
	got := f.onlyApproval()
	if f.graph.upgradeCount() != 0 || got.Status != approval.StatusPending || len(got.Approvals) != 1 || got.Approvals[0].AADObjectID != owner {
		t.Errorf("after Megan, Adele a guest: %d upgrades, %s, approvals %+v; want none, pending, Megan's alone", f.graph.upgradeCount(), got.Status, got.Approvals)
	}
}

// A card action no handler knows (a button of a card an earlier release
// posted, an invoke without a verb or with a value that is not one) is
// refused as invalid, in the clicker's words, and changes nothing.
func TestUnknownOrMalformedCardActionIsRefusedInTheClickersWords(t *testing.T) {
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls")
	f.say("check")
	a := f.onlyApproval()
	for name, value := range map[string]any{
		"a verb no longer known": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approveLater", "data": map[string]any{"approvalId": a.ID}}},
		"no verb":                map[string]any{"action": map[string]any{"type": "Action.Execute", "data": map[string]any{"approvalId": a.ID}}},
		"no action":              map[string]any{},
		"a value not an object":  "approve",
	} {
		for locale, want := range map[string]string{"en-US": "no longer known", "zh-CN": "此请求已不存在"} {
			resp, err := f.bot.Handle(context.Background(), f.activity(map[string]any{
				"type": "invoke", "name": "adaptiveCard/action", "replyToId": "reply-1", "locale": locale, "value": value}))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got := answer(resp); !refusedWith(got, bot.CodeInvalid) || !strings.Contains(got, want) {
				t.Errorf("%s (%s): %s", name, locale, got)
			}
		}
	}
	if f.graph.upgradeCount() != 0 || f.onlyApproval().Status != approval.StatusPending {
		t.Error("an unknown action changed the approval")
	}
}
