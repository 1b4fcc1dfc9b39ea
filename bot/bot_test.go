package bot_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/bot/memstore"
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

func newBot(t *testing.T, conn *fakeConnector, st *memstore.Store) *bot.Bot {
	t.Helper()
	b, err := bot.New(bot.Options{Connector: conn, Conversations: st, Activities: st, Approvals: st})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHelpRepliesOnceAndRemembersConversation(t *testing.T) {
	conn, st := &fakeConnector{}, memstore.New()
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
	conn, st := &fakeConnector{}, memstore.New()
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
	conn, st := &fakeConnector{err: bot.Errorf(bot.CodeUnavailable, "connector down")}, memstore.New()
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
	conn, st := &fakeConnector{panics: true}, memstore.New()
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
	conn, st := &fakeConnector{}, memstore.New()
	b := newBot(t, conn, st)
	resp, err := b.Handle(context.Background(), decode(t, `{"type":"messageReaction","id":"r1","conversation":{"id":"19:x"}}`))
	if err != nil || resp != nil {
		t.Errorf("messageReaction: %v %v", resp, err)
	}
	resp, err = b.Handle(context.Background(), decode(t, `{"type":"invoke","name":"task/fetch","id":"i1","conversation":{"id":"19:x"}}`))
	if err != nil || answer(resp) != "" {
		t.Errorf("unknown invoke: %+v %v", resp, err)
	}
	resp, err = b.Handle(context.Background(), decode(t, `{"type":"invoke","name":"adaptiveCard/action","id":"i2","conversation":{"id":"19:x"},"value":{"action":{"type":"Action.Execute","verb":"nope"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := answer(resp); !refusedWith(got, bot.CodeInvalid) {
		t.Errorf("unknown verb answered %s", got)
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
