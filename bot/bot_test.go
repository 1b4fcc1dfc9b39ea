package bot_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/botframework"
)

// fakeConnector records what the bot writes.
type fakeConnector struct {
	mu      sync.Mutex
	replies []bot.Message
	sends   []bot.Message
	updates map[string]bot.Message // by activity id
	err     error
	panics  bool   // Reply panics, as a bug would
	replied func() // runs after a reply was sent
	// updating runs as an update is sent, before it lands: another
	// replica may act meanwhile.
	updating func(id string)
}

func (f *fakeConnector) Reply(_ context.Context, _ approval.ConversationRef, _ string, m bot.Message) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panics {
		panic("connector bug")
	}
	if f.err != nil {
		return "", f.err
	}
	f.replies = append(f.replies, m)
	if f.replied != nil {
		defer f.replied() // after the lock is released
	}
	return fmt.Sprintf("reply-%d", len(f.replies)), nil
}

func (f *fakeConnector) Send(_ context.Context, _ approval.ConversationRef, m bot.Message) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sends = append(f.sends, m)
	return fmt.Sprintf("send-%d", len(f.sends)), nil
}

func (f *fakeConnector) Update(_ context.Context, _ approval.ConversationRef, id string, m bot.Message) error {
	f.mu.Lock()
	updating := f.updating
	f.mu.Unlock()
	if updating != nil {
		updating(id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.updates == nil {
		f.updates = map[string]bot.Message{}
	}
	f.updates[id] = m
	return nil
}

func (f *fakeConnector) update(id string) bot.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.updates[id]
}

// memState is an in-memory ConversationStore, ActivityLog and
// ApprovalStore (the Redis one is tested in state/).
type memState struct {
	mu        sync.Mutex
	refs      map[string]approval.ConversationRef
	claims    map[string]bool
	approvals map[string]approval.Approval
	open      map[approval.OpenKey]string
	batches   map[string][]string
	lists     map[string][]approval.PostedCard // by batch
	audit     map[string][]approval.AuditEvent
	leases    map[string]time.Time // claim leases by approval id
	down      error                // every approval call fails with it
	// lostAnswers approval writes take effect but answer unavailable, as
	// when Redis's reply is lost.
	lostAnswers int
}

func newMemState() *memState {
	return &memState{refs: map[string]approval.ConversationRef{}, claims: map[string]bool{}, approvals: map[string]approval.Approval{},
		open: map[approval.OpenKey]string{}, batches: map[string][]string{}, audit: map[string][]approval.AuditEvent{},
		leases: map[string]time.Time{}}
}

func (m *memState) OpenApproval(_ context.Context, a approval.Approval) (approval.Approval, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.open[a.OpenKey()]; ok {
		if e := m.approvals[id]; e.Status.Open() {
			return e, false, nil
		}
	}
	a.ID = "apr_" + approval.NewToken()
	m.approvals[a.ID], m.open[a.OpenKey()] = a, a.ID
	return a, true, nil
}

func (m *memState) update(id string, f func(a *approval.Approval) error) (approval.Approval, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down != nil {
		return approval.Approval{}, m.down
	}
	a, ok := m.approvals[id]
	if !ok {
		return a, bot.Errorf(bot.CodeNotFound, "no approval")
	}
	if err := f(&a); err != nil {
		return a, err
	}
	m.approvals[id] = a
	if m.lostAnswers > 0 {
		m.lostAnswers--
		return approval.Approval{}, bot.Errorf(bot.CodeUnavailable, "redis: i/o timeout")
	}
	return a, nil
}

func (m *memState) ClaimUpgrade(_ context.Context, id string, who approval.Person, at time.Time, lease time.Duration) (approval.Approval, error) {
	return m.update(id, func(a *approval.Approval) error {
		claimed, ok := a.Claim(who, at, approval.NewToken())
		if !ok {
			return bot.Errorf(bot.CodeConflict, "approval is %s", a.Status)
		}
		*a = claimed
		m.leases[id] = time.Now().Add(lease)
		return nil
	})
}

func (m *memState) TakeOverClaim(_ context.Context, id string, lease time.Duration) (approval.Approval, error) {
	return m.update(id, func(a *approval.Approval) error {
		if !a.Claimed() || time.Now().Before(m.leases[id]) {
			return bot.Errorf(bot.CodeConflict, "approval is %s", a.Status)
		}
		a.ClaimToken = approval.NewToken()
		m.leases[id] = time.Now().Add(lease)
		return nil
	})
}

func (m *memState) Amend(_ context.Context, held approval.Approval, change func(*approval.Approval)) (approval.Approval, error) {
	return m.update(held.ID, func(a *approval.Approval) error {
		if !a.HeldBy(held.ClaimToken) {
			return bot.Errorf(bot.CodeConflict, "approval is %s", a.Status)
		}
		change(a)
		return nil
	})
}

func (m *memState) HoldClaim(_ context.Context, id, token string, lease time.Duration) (approval.Approval, error) {
	return m.update(id, func(a *approval.Approval) error {
		if !a.HeldBy(token) {
			return bot.Errorf(bot.CodeConflict, "approval is %s", a.Status)
		}
		m.leases[id] = time.Now().Add(lease)
		return nil
	})
}

func (m *memState) Settle(_ context.Context, held approval.Approval, change func(*approval.Approval)) (approval.Approval, error) {
	return m.update(held.ID, func(a *approval.Approval) error {
		if !a.HeldBy(held.ClaimToken) {
			return bot.Errorf(bot.CodeConflict, "approval is %s", a.Status)
		}
		change(a)
		a.ClaimToken = ""
		delete(m.leases, held.ID)
		return nil
	})
}

func (m *memState) ExpiredClaims(context.Context, int) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, until := range m.leases {
		if time.Now().After(until) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (m *memState) status(id string) approval.Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.approvals[id].Status
}

// expireLeases makes every claim's lease run out now.
func (m *memState) expireLeases() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range m.leases {
		m.leases[id] = time.Now().Add(-time.Second)
	}
}

func (m *memState) Approval(_ context.Context, id string) (approval.Approval, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.approvals[id]
	if !ok {
		return a, bot.Errorf(bot.CodeNotFound, "no approval")
	}
	return a, nil
}

func (m *memState) Transition(_ context.Context, id string, from []approval.Status, change func(*approval.Approval)) (approval.Approval, error) {
	return m.update(id, func(a *approval.Approval) error {
		if !slices.Contains(from, a.Status) {
			return bot.Errorf(bot.CodeConflict, "approval is %s", a.Status)
		}
		change(a)
		return nil
	})
}

func (m *memState) SaveBatch(_ context.Context, ids []string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := fmt.Sprintf("bat_%d", len(m.batches))
	m.batches[id] = ids
	return id, nil
}

func (m *memState) Batch(_ context.Context, id string) (approval.Batch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids, ok := m.batches[id]
	if !ok {
		return approval.Batch{}, bot.Errorf(bot.CodeNotFound, "no batch")
	}
	return approval.Batch{ID: id, Approvals: ids, Lists: slices.Clone(m.lists[id])}, nil
}

func (m *memState) RecordList(_ context.Context, id string, l approval.PostedCard) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.batches[id]; !ok {
		return bot.Errorf(bot.CodeNotFound, "no batch")
	}
	if m.lists == nil {
		m.lists = map[string][]approval.PostedCard{}
	}
	if !slices.ContainsFunc(m.lists[id], func(c approval.PostedCard) bool { return c.ActivityID == l.ActivityID }) {
		m.lists[id] = append(m.lists[id], l)
	}
	return nil
}

func (m *memState) ListedIn(_ context.Context, approvalID string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for id, ids := range m.batches {
		if slices.Contains(ids, approvalID) {
			out = append(out, id)
		}
	}
	return out, nil
}

func (m *memState) RecordOutcome(ctx context.Context, conv string, e approval.AuditEvent) ([]string, error) {
	m.mu.Lock()
	m.audit[conv] = append([]approval.AuditEvent{e}, m.audit[conv]...)
	m.mu.Unlock()
	return m.ListedIn(ctx, e.ApprovalID)
}

func (m *memState) Audit(_ context.Context, conv string, n int) ([]approval.AuditEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.audit[conv][:min(n, len(m.audit[conv]))], nil
}
func (m *memState) SaveReference(_ context.Context, r approval.ConversationRef) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refs[r.ConversationID] = r
	return nil
}
func (m *memState) Reference(_ context.Context, id string) (approval.ConversationRef, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.refs[id]
	if !ok {
		return r, bot.Errorf(bot.CodeNotFound, "no reference")
	}
	return r, nil
}
func (m *memState) Claim(_ context.Context, k string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.claims[k] {
		return false, nil
	}
	m.claims[k] = true
	return true, nil
}
func (m *memState) Release(_ context.Context, k string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.claims, k)
	return nil
}

func decode(t *testing.T, s string) *bot.Activity {
	t.Helper()
	var a bot.Activity
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		t.Fatal(err)
	}
	return &a
}

// A group-chat message as Teams sends it: the bot's mention is in the text
// and in the entities, followed by a non-breaking space.
const groupMessage = `{
  "type": "message", "id": "1700000000001", "channelId": "msteams",
  "serviceUrl": "https://smba.trafficmanager.net/amer/", "locale": "en-US",
  "text": "<at>Upgrade Approvals</at>\u00a0help ",
  "from": {"id": "29:1abc", "aadObjectId": "11111111-1111-1111-1111-111111111111", "name": "Megan"},
  "recipient": {"id": "28:00000000-0000-0000-0000-0000000000b0", "name": "Upgrade Approvals"},
  "conversation": {"id": "19:abc@thread.v2", "conversationType": "groupChat", "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47", "isGroup": true},
  "entities": [
    {"type": "mention", "text": "<at>Upgrade Approvals</at>", "mentioned": {"id": "28:00000000-0000-0000-0000-0000000000b0", "name": "Upgrade Approvals"}},
    {"type": "clientInfo", "locale": "en-US"}
  ],
  "channelData": {"tenant": {"id": "72f988bf-86f1-41af-91ab-2d7cd011db47"}}
}`

func TestTextWithoutMention(t *testing.T) {
	a := decode(t, groupMessage)
	if got := a.TextWithoutMention(); got != "help" {
		t.Errorf("got %q, want help", got)
	}
	// Another user's mention stays.
	a.Text = "<at>Upgrade Approvals</at> check <at>Megan</at>"
	a.Entities = append(a.Entities, bot.Entity{Type: "mention", Text: "<at>Megan</at>"})
	if got := a.TextWithoutMention(); got != "check <at>Megan</at>" {
		t.Errorf("got %q", got)
	}
}

func TestScopeOfEachConversationType(t *testing.T) {
	for _, tc := range []struct {
		name, patch string
		want        approval.Scope
	}{
		{"group chat", `{"conversation":{"id":"19:abc@thread.v2","conversationType":"groupChat"}}`, approval.Scope{Kind: approval.ScopeChat, ID: "19:abc@thread.v2"}},
		{"meeting chat", `{"conversation":{"id":"19:meeting_NjQ@thread.v2","conversationType":"groupChat"}}`, approval.Scope{Kind: approval.ScopeChat, ID: "19:meeting_NjQ@thread.v2"}},
		{"channel", `{"conversation":{"id":"19:gen@thread.tacv2;messageid=1","conversationType":"channel"},"channelData":{"team":{"id":"19:gen@thread.tacv2","aadGroupId":"22222222-2222-2222-2222-222222222222"}}}`, approval.Scope{Kind: approval.ScopeTeam, ID: "22222222-2222-2222-2222-222222222222"}},
		{"personal", `{"conversation":{"id":"a:1xyz","conversationType":"personal"},"from":{"id":"29:1","aadObjectId":"33333333-3333-3333-3333-333333333333"}}`, approval.Scope{Kind: approval.ScopeUser, ID: "33333333-3333-3333-3333-333333333333"}},
	} {
		a := decode(t, tc.patch)
		got, ok := a.Scope()
		if !ok || got != tc.want {
			t.Errorf("%s: scope %+v %v, want %+v", tc.name, got, ok, tc.want)
		}
	}
	if _, ok := decode(t, `{"conversation":{"id":"19:x","conversationType":"channel"}}`).Scope(); ok {
		t.Error("a channel without a team's aadGroupId has no Graph scope")
	}
}

func newBot(t *testing.T, conn *fakeConnector, st *memState) *bot.Bot {
	t.Helper()
	b, err := bot.New(bot.Options{Connector: conn, Conversations: st, Activities: st, Approvals: st})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHelpRepliesOnceAndRemembersConversation(t *testing.T) {
	conn, st := &fakeConnector{}, newMemState()
	b := newBot(t, conn, st)
	for i := 0; i < 2; i++ {
		if _, err := b.Handle(context.Background(), decode(t, groupMessage)); err != nil {
			t.Fatal(err)
		}
	}
	if len(conn.replies) != 1 {
		t.Fatalf("%d replies to a twice-delivered activity, want 1", len(conn.replies))
	}
	if got := cardText(t, conn.replies[0]); !strings.Contains(got, "List pending app upgrades here") || conn.replies[0].Locale != "en-US" {
		t.Errorf("reply %s", got)
	}
	ref, err := st.Reference(context.Background(), "19:abc@thread.v2")
	if err != nil {
		t.Fatal(err)
	}
	if ref.ServiceURL != "https://smba.trafficmanager.net/amer/" || ref.BotID != "28:00000000-0000-0000-0000-0000000000b0" ||
		ref.Scope == nil || ref.Scope.Kind != approval.ScopeChat || ref.TenantID != "72f988bf-86f1-41af-91ab-2d7cd011db47" {
		t.Errorf("reference %+v", ref)
	}
}

func TestHelpInChinese(t *testing.T) {
	conn, st := &fakeConnector{}, newMemState()
	a := decode(t, groupMessage)
	a.Locale = "zh-CN"
	a.Text = "<at>Upgrade Approvals</at> 帮助"
	if _, err := newBot(t, conn, st).Handle(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if len(conn.replies) != 1 || !strings.Contains(cardText(t, conn.replies[0]), "检查") {
		t.Errorf("replies %+v", conn.replies)
	}
}

func TestFailedActivityIsHandledOnRedelivery(t *testing.T) {
	conn, st := &fakeConnector{err: bot.Errorf(bot.CodeUnavailable, "connector down")}, newMemState()
	b := newBot(t, conn, st)
	if _, err := b.Handle(context.Background(), decode(t, groupMessage)); !errors.Is(err, bot.ErrUnavailable) {
		t.Fatalf("err %v, want unavailable", err)
	}
	conn.err = nil
	if _, err := b.Handle(context.Background(), decode(t, groupMessage)); err != nil {
		t.Fatal(err)
	}
	if len(conn.replies) != 1 {
		t.Errorf("%d replies after redelivery, want 1", len(conn.replies))
	}
}

func TestPanicReleasesTheActivityClaim(t *testing.T) {
	conn, st := &fakeConnector{panics: true}, newMemState()
	b := newBot(t, conn, st)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the handler's panic was swallowed")
			}
		}()
		b.Handle(context.Background(), decode(t, groupMessage))
	}()
	conn.panics = false
	if _, err := b.Handle(context.Background(), decode(t, groupMessage)); err != nil {
		t.Fatal(err)
	}
	if len(conn.replies) != 1 {
		t.Errorf("%d replies after the redelivery of a panicked activity, want 1", len(conn.replies))
	}
}

func TestUnknownActivityTypesAndInvokesAreAccepted(t *testing.T) {
	conn, st := &fakeConnector{}, newMemState()
	b := newBot(t, conn, st)
	resp, err := b.Handle(context.Background(), decode(t, `{"type":"messageReaction","id":"r1","conversation":{"id":"19:x"}}`))
	if err != nil || resp != nil {
		t.Errorf("messageReaction: %v %v", resp, err)
	}
	resp, err = b.Handle(context.Background(), decode(t, `{"type":"invoke","name":"task/fetch","id":"i1","conversation":{"id":"19:x"}}`))
	if err != nil || botframework.InvokeBody(resp) != nil {
		t.Errorf("unknown invoke: %+v %v", resp, err)
	}
	resp, err = b.Handle(context.Background(), decode(t, `{"type":"invoke","name":"adaptiveCard/action","id":"i2","conversation":{"id":"19:x"},"value":{"action":{"type":"Action.Execute","verb":"nope"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(botframework.InvokeBody(resp))
	if !strings.Contains(string(body), `"type":"application/vnd.microsoft.error"`) || !strings.Contains(string(body), `"statusCode":400`) {
		t.Errorf("unknown verb answered %s", body)
	}
	if len(conn.replies) != 0 {
		t.Error("the bot replied to a non-message")
	}
}

func TestRouterPanicsOnDuplicateRegistration(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	r := bot.NewRouter()
	h := func(context.Context, *bot.Turn) (*bot.InvokeResponse, error) { return nil, nil }
	r.OnVerb("approve", h)
	r.OnVerb("approve", h)
}

func TestErrorCodes(t *testing.T) {
	err := bot.Errorf(bot.CodeNotFound, "installation %q: %w", "x", errors.New("404"))
	if !errors.Is(err, bot.ErrNotFound) || errors.Is(err, bot.ErrConflict) {
		t.Error("errors.Is does not match by code")
	}
	if bot.ErrorCode(errors.New("plain")) != bot.CodeInternal || bot.ErrorCode(nil) != "" {
		t.Error("ErrorCode defaults")
	}
	if err.Error() != `installation "x": 404` {
		t.Errorf("message %q", err.Error())
	}
}

// cardText returns the JSON of the single Adaptive Card a message carries.
func cardText(t *testing.T, m bot.Message) string {
	t.Helper()
	if m.Text != "" || len(m.Attachments) != 1 || m.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" {
		t.Fatalf("message is not a single card: %+v", m)
	}
	b, err := json.Marshal(m.Attachments[0].Content)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
