package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/botframework/fakechannel"
	"github.com/upgradeapprovals/bot/graph"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
	"github.com/upgradeapprovals/bot/state"
)

const (
	pollsAppID = "0d820ecd-def2-4297-adad-78056cde7c78"
	ownerID    = "11111111-1111-1111-1111-111111111111"
	chatID     = "19:abc@thread.v2"
)

// seedPolls installs Polls 1.0.0 in a chat whose catalog publishes 1.1.0
// with one more RSC permission; Megan owns the chat.
func seedPolls(h *harness, chat string) string {
	h.graph.AddApp(fakegraph.App{ID: pollsAppID, DisplayName: "Polls", Definitions: []fakegraph.Definition{
		{Version: "1.0.0"},
		{Version: "1.1.0", RSC: []fakegraph.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}},
	}})
	iid := h.graph.Install(fakegraph.Chat, chat, pollsAppID, "1.0.0", nil)
	h.graph.AddMembers(fakegraph.Chat, chat,
		fakegraph.Member{UserID: ownerID, DisplayName: "Megan Bowen", TenantID: testTenant, Roles: []string{"owner"}})
	return iid
}

// event is an activity Teams sends about the bot itself in a group chat.
func (h *harness) event(typ, id, chat string, extra map[string]any) map[string]any {
	a := map[string]any{
		"type": typ, "id": id, "channelId": "msteams", "serviceUrl": h.connector.URL(), "locale": "en-US",
		"timestamp":    time.Now().UTC().Format(time.RFC3339),
		"from":         map[string]any{"id": "29:1megan", "aadObjectId": ownerID, "name": "Megan Bowen"},
		"recipient":    map[string]any{"id": "28:" + testAppID, "name": "Upgrade Approvals"},
		"conversation": map[string]any{"id": chat, "conversationType": "groupChat", "tenantId": testTenant, "isGroup": true},
		"channelData":  map[string]any{"tenant": map[string]any{"id": testTenant}},
	}
	for k, v := range extra {
		a[k] = v
	}
	return a
}

func (h *harness) installEvents(chat string) []map[string]any {
	bot := map[string]any{"id": "28:" + testAppID}
	return []map[string]any{
		h.event("conversationUpdate", "f:cu-"+chat, chat, map[string]any{"membersAdded": []any{bot}}),
		h.event("installationUpdate", "f:iu-"+chat, chat, map[string]any{"action": "add"}),
	}
}

// cardOf returns the Adaptive Card a connector call carries, as JSON text.
func cardOf(c fakechannel.ConnectorCall) string {
	b, _ := json.Marshal(c.Activity["attachments"])
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(b))
}

// approvalIDOf reads the approval id from a card's first action.
func approvalIDOf(t *testing.T, c fakechannel.ConnectorCall) string {
	t.Helper()
	var att []struct {
		Content struct {
			Actions []struct {
				Data struct {
					ApprovalID string `json:"approvalId"`
				} `json:"data"`
			} `json:"actions"`
		} `json:"content"`
	}
	if err := json.Unmarshal([]byte(cardOf(c)), &att); err != nil || len(att) != 1 || len(att[0].Content.Actions) == 0 {
		t.Fatalf("not an approval card: %s", cardOf(c))
	}
	return att[0].Content.Actions[0].Data.ApprovalID
}

// settle waits until every scan job is done, then returns every call so
// far: an activity's own posts are made before it is answered, so only a
// scan could still post.
func settle(t *testing.T, h *harness) []fakechannel.ConnectorCall {
	t.Helper()
	h.scansDone(t)
	return h.connector.Calls()
}

func TestInstallWelcomesOnceAndPostsWhatIsPending(t *testing.T) {
	h := newHarness(t)
	seedPolls(h, chatID)
	h.start(t)

	// Teams sends conversationUpdate and installationUpdate together.
	var wg sync.WaitGroup
	for _, ev := range h.installEvents(chatID) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code := h.post(t, ev); code != http.StatusOK {
				t.Errorf("%s: status %d", ev["type"], code)
			}
		}()
	}
	wg.Wait()
	h.connector.WaitCalls(t, 2)
	calls := settle(t, h)
	if len(calls) != 2 {
		t.Fatalf("%d posts, want a welcome and one card: %+v", len(calls), calls)
	}
	welcome, card := calls[0], calls[1]
	for _, c := range calls {
		if c.Method != http.MethodPost || c.Path != "/v3/conversations/"+chatID+"/activities" {
			t.Errorf("%s %s: want a new message in the chat", c.Method, c.Path)
		}
	}
	if s := cardOf(welcome); !strings.Contains(s, "I'm Upgrade Approvals") || !strings.Contains(s, "Chat owners can approve.") ||
		!strings.Contains(s, "notifications off") {
		t.Errorf("first post is not the welcome: %s", s)
	}
	if s := cardOf(card); !strings.Contains(s, "Polls") || !strings.Contains(s, "Read all messages in this chat") {
		t.Errorf("second post is not the pending card: %s", s)
	}

	// Teams redelivers the install after a restart: still nothing new,
	// neither from the events nor from the scan the restarted watcher's
	// first catalog read queues.
	h.shutdown(t)
	reads := h.reads.count()
	h.start(t)
	for _, ev := range h.installEvents(chatID) {
		ev["id"] = ev["id"].(string) + "-again"
		h.post(t, ev)
	}
	h.awaitCatalogReads(t, reads+1)
	if calls := settle(t, h); len(calls) != 2 {
		t.Fatalf("after a redelivered install: %d posts, want still 2", len(calls))
	}
}

func TestRemoveForgetsAndClosesApprovalsWithoutPosting(t *testing.T) {
	h := newHarness(t)
	iid := seedPolls(h, chatID)
	h.start(t)
	h.post(t, h.installEvents(chatID)[1])
	calls := h.connector.WaitCalls(t, 2)
	approvalID := approvalIDOf(t, calls[1])

	h.post(t, h.event("installationUpdate", "f:remove-1", chatID, map[string]any{"action": "remove"}))
	if calls := settle(t, h); len(calls) != 2 {
		t.Fatalf("removal posted %d messages, want none", len(calls)-2)
	}

	// A late click on the old card: the request is closed.
	invoke := h.event("invoke", "1700000000100", chatID, map[string]any{"name": "adaptiveCard/action", "replyToId": "activity-2",
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
			"data": map[string]any{"approvalId": approvalID}}}})
	code, body := h.exchange(t, invoke)
	if code != http.StatusOK || !strings.Contains(string(body), "This request has expired") {
		t.Fatalf("approve after removal: %d %s", code, body)
	}
	if v, _ := h.graph.Installed(fakegraph.Chat, chatID, iid); v != "1.0.0" {
		t.Errorf("the app was upgraded after the bot was removed: %s", v)
	}

	// Added again: welcomed again, with a new request for what is pending.
	for _, ev := range h.installEvents(chatID) {
		ev["id"] = ev["id"].(string) + "-readd"
		h.post(t, ev)
	}
	calls = settle(t, h)
	var posts []string
	for _, c := range calls[2:] {
		if c.Method == http.MethodPost {
			posts = append(posts, cardOf(c))
		}
	}
	if len(posts) != 2 || !strings.Contains(posts[0], "I'm Upgrade Approvals") || !strings.Contains(posts[1], `"verb":"approve"`) ||
		strings.Contains(posts[1], approvalID) {
		t.Errorf("re-adding posted %q, want a welcome and a new request", posts)
	}
}

// replica is one more bot process sharing the harness's Redis, Graph and
// connector, as replicas behind Azure Bot Service do.
type replica struct {
	url  string
	stop func()
}

func (h *harness) replica(t testing.TB, env map[string]string, reclaimAfter time.Duration) *replica {
	t.Helper()
	cfg, err := loadConfig(func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return h.env[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	// Replicas in one process share a Graph client unless one has its own
	// Graph (msgraph-sdk-go's process-wide state is not safe for several).
	var g *graph.Client
	if _, own := env["GRAPH_BASE_URL"]; !own {
		if h.sharedGraph == nil {
			creds := newCredentials(cfg, h.aad.Client())
			h.sharedGraph, err = graph.New(graph.Options{BaseURL: cfg.GraphBaseURL, HomeTenantID: cfg.AppTenantID,
				Credential: func(string) (azcore.TokenCredential, error) { return creds.forTenant(cfg.AppTenantID) }})
			if err != nil {
				t.Fatal(err)
			}
		}
		g = h.sharedGraph
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := deps{listener: ln, azureTransport: h.aad.Client(), reclaimAfter: reclaimAfter, graph: g, catalogRead: h.reads.note}
	if h.tune != nil {
		h.tune(&d)
	}
	go func() { done <- serve(ctx, cfg, logger, d) }()
	var once sync.Once
	r := &replica{url: "http://" + ln.Addr().String(), stop: func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Error("replica did not stop")
			}
		})
	}}
	t.Cleanup(r.stop)
	return r
}

func (r *replica) post(t *testing.T, h *harness, body any) int {
	t.Helper()
	saved := h.url
	h.url = r.url
	defer func() { h.url = saved }()
	return h.post(t, body)
}

// cardPosts returns the approval cards posted (not replies, not updates),
// by conversation.
func cardPosts(calls []fakechannel.ConnectorCall) map[string]int {
	out := map[string]int{}
	for _, c := range calls {
		if c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/activities") && strings.Contains(cardOf(c), `"verb":"approve"`) {
			out[strings.TrimSuffix(strings.TrimPrefix(c.Path, "/v3/conversations/"), "/activities")]++
		}
	}
	return out
}

var proactiveChats = []string{"19:a@thread.v2", "19:b@thread.v2", "19:c@thread.v2", "19:d@thread.v2"}

// seedTenant installs Polls 1.0.0 (the catalog's newest) in three chats and
// nothing in the fourth, and adds the bot to all four through replica r.
func seedTenant(t *testing.T, h *harness, r *replica) {
	t.Helper()
	h.graph.AddApp(fakegraph.App{ID: pollsAppID, DisplayName: "Polls", Definitions: []fakegraph.Definition{{Version: "1.0.0"}}})
	for i, chat := range proactiveChats {
		if i < 3 {
			h.graph.Install(fakegraph.Chat, chat, pollsAppID, "1.0.0", nil)
		} else {
			h.graph.Install(fakegraph.Chat, chat, "11111111-0000-0000-0000-00000000000d", "2.0.0", nil)
		}
		h.graph.AddMembers(fakegraph.Chat, chat,
			fakegraph.Member{UserID: ownerID, DisplayName: "Megan Bowen", TenantID: testTenant, Roles: []string{"owner"}})
		if code := r.post(t, h, h.event("installationUpdate", "f:add-"+chat, chat, map[string]any{"action": "add"})); code != http.StatusOK {
			t.Fatalf("install in %s: %d", chat, code)
		}
	}
	if posts := cardPosts(h.connector.Calls()); len(posts) != 0 {
		t.Fatalf("nothing is pending yet, but cards were posted: %v", posts)
	}
}

func publishPolls11(h *harness) {
	h.graph.Publish(pollsAppID, fakegraph.Definition{Version: "1.1.0",
		RSC: []fakegraph.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}})
}

func TestNewCatalogVersionPostsOneCardPerConversationAcrossThreeReplicas(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"] = "1s"
	var rs []*replica
	for range 3 {
		rs = append(rs, h.replica(t, nil, 0))
	}
	seedTenant(t, h, rs[0])
	h.awaitCatalogReads(t, 1) // the watcher has seen 1.0.0

	publishPolls11(h)
	start := time.Now()
	eventually(t, 10*time.Second, "a card in each affected chat", func() bool { return len(cardPosts(h.connector.Calls())) == 3 })
	t.Logf("cards posted %s after the catalog changed", time.Since(start).Round(10*time.Millisecond))
	h.watcherRounds(t, 3) // more catalog reads and follow-ups, on whichever replica holds the lease
	posts := cardPosts(h.connector.Calls())
	for _, chat := range proactiveChats[:3] {
		if posts[chat] != 1 {
			t.Errorf("%s got %d cards, want exactly 1", chat, posts[chat])
		}
	}
	if posts[proactiveChats[3]] != 0 {
		t.Errorf("a chat without Polls got a card")
	}

	// Restarting every replica posts nothing again: "once" lives in Redis.
	// A replica stopped mid-job leaves it unacknowledged: the new ones take
	// it over within seconds, not the default minute, so the queue empties.
	for _, r := range rs {
		r.stop()
	}
	for range 3 {
		h.replica(t, map[string]string{"BOT_SWEEP_INTERVAL": "1s"}, 2*time.Second)
	}
	h.watcherRounds(t, 3) // a sweep comes before each of these reads
	if again := cardPosts(h.connector.Calls()); len(again) != 3 || again[proactiveChats[0]] != 1 {
		t.Errorf("after restarts and sweeps: %v, want still one card per chat", again)
	}
}

// hangingGraph forwards to the fake tenant but never answers installation
// listings: a replica using it hangs mid-job.
type hangingGraph struct {
	next http.Handler
	hung chan struct{}
}

func (g *hangingGraph) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/installedApps") {
		select {
		case g.hung <- struct{}{}:
		default:
		}
		<-r.Context().Done()
		return
	}
	g.next.ServeHTTP(w, r)
}

func TestJobOfAKilledReplicaIsReclaimedAndPostedOnce(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"] = "1s"
	setup := h.replica(t, nil, 0)
	seedTenant(t, h, setup)
	h.awaitCatalogReads(t, 1) // the watcher has seen 1.0.0
	setup.stop()

	// The only replica now hangs on Graph in the middle of its scans.
	hang := &hangingGraph{next: h.graph, hung: make(chan struct{}, 16)}
	hangSrv := httptest.NewServer(hang)
	t.Cleanup(hangSrv.Close)
	doomed := h.replica(t, map[string]string{"GRAPH_BASE_URL": hangSrv.URL + "/v1.0"}, 0)
	publishPolls11(h)
	select {
	case <-hang.hung:
	case <-time.After(10 * time.Second):
		t.Fatal("the doomed replica never started a scan")
	}
	doomed.stop() // killed mid-job: its jobs stay unacknowledged
	if posts := cardPosts(h.connector.Calls()); len(posts) != 0 {
		t.Fatalf("cards posted before the reclaim: %v", posts)
	}

	for chat, n := range reclaimByTwoReplicas(t, h) {
		if n != 1 {
			t.Errorf("%s got %d cards, want 1", chat, n)
		}
	}
}

// reclaimByTwoReplicas starts two replicas that take over scan jobs left
// unacknowledged for 2 s, waits until the three chats with Polls have a
// card and every job is acknowledged, then, once the queue is empty (an
// acknowledged job leaves it, so no reclaim can run it again) and the
// watcher has done more rounds, returns the cards posted per chat.
func reclaimByTwoReplicas(t *testing.T, h *harness) map[string]int {
	t.Helper()
	const reclaimAfter = 2 * time.Second
	h.replica(t, nil, reclaimAfter)
	h.replica(t, nil, reclaimAfter)
	eventually(t, 30*time.Second, "the reclaimed jobs to post", func() bool { return len(cardPosts(h.connector.Calls())) == 3 })
	eventually(t, 10*time.Second, "every job acknowledged", func() bool {
		for _, n := range pendingJobs(t, h) {
			if n > 0 {
				return false
			}
		}
		return true
	})
	h.watcherRounds(t, 3)
	return cardPosts(h.connector.Calls())
}

// cardIndex returns the position of the first approval card posted in a
// chat, and the activity id the fake connector gave it.
func cardIndex(t *testing.T, calls []fakechannel.ConnectorCall, chat string) (int, string) {
	t.Helper()
	for i, c := range calls {
		if c.Method == http.MethodPost && c.Path == "/v3/conversations/"+chat+"/activities" && strings.Contains(cardOf(c), `"verb":"approve"`) {
			return i, fmt.Sprintf("activity-%d", i+1)
		}
	}
	t.Fatalf("no approval card in %s", chat)
	return 0, ""
}

// callsTo returns the calls with this method and path.
func callsTo(calls []fakechannel.ConnectorCall, method, path string) []fakechannel.ConnectorCall {
	var out []fakechannel.ConnectorCall
	for _, c := range calls {
		if c.Method == method && c.Path == path {
			out = append(out, c)
		}
	}
	return out
}

func TestCardUpdatedWhenUpgradedOutsideTheBot(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"] = "1s" // a chat with an open card is looked at every scan interval
	iid := seedPolls(h, chatID)
	r := h.replica(t, nil, 0)
	r.post(t, h, h.installEvents(chatID)[1])
	h.connector.WaitCalls(t, 2)
	_, cardID := cardIndex(t, h.connector.Calls(), chatID)

	h.graph.UpgradeOutside(fakegraph.Chat, chatID, iid, "1.1.0") // Teams' own Update button
	path := "/v3/conversations/" + chatID + "/activities/" + cardID
	eventually(t, 10*time.Second, "the card to be updated", func() bool {
		return len(callsTo(h.connector.Calls(), http.MethodPut, path)) > 0
	})
	h.watcherRounds(t, 3) // more scans of the chat
	puts := callsTo(h.connector.Calls(), http.MethodPut, path)
	if len(puts) != 1 || !strings.Contains(cardOf(puts[0]), "already up to date (upgraded outside this bot)") {
		t.Fatalf("updates of the card: %d, first %s", len(puts), cardOf(puts[0]))
	}
	if posts := cardPosts(h.connector.Calls()); posts[chatID] != 1 {
		t.Errorf("%d approval cards, want the one", posts[chatID])
	}
}

func TestReminderOnceThenExpiryUpdatesTheCard(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"], h.env["BOT_REMIND_AFTER"], h.env["BOT_APPROVAL_TTL"] = "1s", "1s", "5s"
	seedPolls(h, chatID)
	r := h.replica(t, nil, 0)
	r.post(t, h, h.installEvents(chatID)[1])
	h.connector.WaitCalls(t, 2)
	_, cardID := cardIndex(t, h.connector.Calls(), chatID)
	under := "/v3/conversations/" + chatID + "/activities/" + cardID

	eventually(t, 10*time.Second, "the reminder", func() bool { return len(callsTo(h.connector.Calls(), http.MethodPost, under)) > 0 })
	reminder := callsTo(h.connector.Calls(), http.MethodPost, under)[0]
	if reminder.Activity["replyToId"] != cardID {
		t.Errorf("reminder replies to %v, want the card %s", reminder.Activity["replyToId"], cardID)
	}
	s := cardOf(reminder)
	if !strings.Contains(s, "Reminder: Polls 1.1.0 is waiting for approval") || !strings.Contains(s, "<at>Megan Bowen</at>") ||
		!strings.Contains(s, `"mentioned":{"id":"`+ownerID+`","name":"Megan Bowen"}`) {
		t.Errorf("reminder %s does not @mention the owner", s)
	}

	eventually(t, 15*time.Second, "the expiry", func() bool { return len(callsTo(h.connector.Calls(), http.MethodPut, under)) > 0 })
	h.watcherRounds(t, 3) // more follow-ups
	calls := h.connector.Calls()
	if n := len(callsTo(calls, http.MethodPost, under)); n != 1 {
		t.Errorf("%d reminders, want 1", n)
	}
	puts := callsTo(calls, http.MethodPut, under)
	if len(puts) != 1 || !strings.Contains(cardOf(puts[0]), "This request has expired") {
		t.Errorf("card updates %d: %v", len(puts), puts)
	}
}

func TestUpgradeReportsAGrantThatDidNotTake(t *testing.T) {
	h := newHarness(t)
	seedPolls(h, chatID)
	h.graph.DropGrant(fakegraph.Chat, chatID, "ChatMessage.Read.Chat")
	h.start(t)
	h.post(t, h.message("1700000000200", "check"))
	approvalID := approvalIDOf(t, h.connector.WaitCalls(t, 1)[0])

	invoke := h.event("invoke", "1700000000201", chatID, map[string]any{"name": "adaptiveCard/action", "replyToId": "activity-1",
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
			"data": map[string]any{"approvalId": approvalID}}}})
	if code, body := h.exchange(t, invoke); code != http.StatusOK || !strings.Contains(string(body), "Polls was upgraded to 1.1.0") {
		t.Fatalf("approve: %d %s", code, body)
	}
	path := "/v3/conversations/" + chatID + "/activities/activity-1"
	eventually(t, 30*time.Second, "the verification", func() bool {
		for _, c := range callsTo(h.connector.Calls(), http.MethodPut, path) {
			if strings.Contains(cardOf(c), "permissions in force do not match") {
				return true
			}
		}
		return false
	})
	puts := callsTo(h.connector.Calls(), http.MethodPut, path)
	s := cardOf(puts[len(puts)-1])
	for _, want := range []string{"This consented permission has no grant in force", "ChatMessage.Read.Chat",
		"Remove the app here and add it again"} {
		if !strings.Contains(s, want) {
			t.Errorf("verification card lacks %q: %s", want, s)
		}
	}
	var grantsRead bool
	for _, c := range h.graph.Calls() {
		grantsRead = grantsRead || (c.Method == http.MethodGet && c.Path == "/chats/"+chatID+"/permissionGrants")
	}
	if !grantsRead {
		t.Error("the chat's permissionGrants were not read")
	}
}

func TestUpgradeWithEveryGrantInForceIsVerified(t *testing.T) {
	h := newHarness(t)
	seedPolls(h, chatID)
	h.start(t)
	h.post(t, h.message("1700000000300", "check"))
	approvalID := approvalIDOf(t, h.connector.WaitCalls(t, 1)[0])
	invoke := h.event("invoke", "1700000000301", chatID, map[string]any{"name": "adaptiveCard/action", "replyToId": "activity-1",
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
			"data": map[string]any{"approvalId": approvalID}}}})
	h.exchange(t, invoke)
	path := "/v3/conversations/" + chatID + "/activities/activity-1"
	eventually(t, 30*time.Second, "the verification", func() bool {
		for _, c := range callsTo(h.connector.Calls(), http.MethodPut, path) {
			if strings.Contains(cardOf(c), "Verified: the new version runs with exactly the permissions that were consented") {
				return true
			}
		}
		return false
	})
}

func TestNotificationsOffStopsProactivePostsOnlyForApprovers(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"] = "1s"
	r := h.replica(t, nil, 0)
	seedTenant(t, h, r)
	quiet := proactiveChats[0]
	say := func(id, from, text string) string {
		m := h.message(id, text)
		m["conversation"].(map[string]any)["id"] = quiet
		m["from"] = map[string]any{"id": "29:1" + from, "aadObjectId": from, "name": from}
		n := len(h.connector.Calls())
		r.post(t, h, m)
		return fmt.Sprint(h.connector.WaitCalls(t, n+1)[n].Activity["text"])
	}
	if got := say("1700000000400", "22222222-2222-2222-2222-222222222222", "notifications off"); !strings.Contains(got, "Only someone who can approve") {
		t.Errorf("a non-owner turned notifications off: %q", got)
	}
	if got := say("1700000000401", ownerID, "关闭通知"); !strings.Contains(got, "Notifications are off") {
		t.Errorf("owner: %q", got)
	}
	publishPolls11(h)
	eventually(t, 10*time.Second, "cards in the other chats", func() bool { return len(cardPosts(h.connector.Calls())) == 2 })
	h.watcherRounds(t, 2) // the quiet chat's scan, queued with the others, is done
	if posts := cardPosts(h.connector.Calls()); posts[quiet] != 0 {
		t.Errorf("a quiet chat got %d cards", posts[quiet])
	}
}

// In a team channel people talk to the bot in threads ("…;messageid=…"),
// while unprompted cards go to the channel itself: "notifications off" in
// a thread quiets the channel.
func TestNotificationsOffInAChannelThreadQuietsTheChannel(t *testing.T) {
	const (
		team    = "8f3c1e62-5d4b-4a7e-9c21-0b6d2f4e8a10"
		channel = "19:general@thread.tacv2"
	)
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"] = "1s"
	r := h.replica(t, nil, 0)
	seedTenant(t, h, r) // the group chats: where the new version does get its cards
	h.graph.Install(fakegraph.Team, team, pollsAppID, "1.0.0", nil)
	h.graph.AddMembers(fakegraph.Team, team,
		fakegraph.Member{UserID: ownerID, DisplayName: "Megan Bowen", TenantID: testTenant, Roles: []string{"owner"}})
	inChannel := func(a map[string]any, conversation string) map[string]any {
		return inTeamChannel(a, team, channel, conversation)
	}
	if code := r.post(t, h, inChannel(h.event("installationUpdate", "f:add-team", channel, map[string]any{"action": "add"}), channel)); code != http.StatusOK {
		t.Fatalf("install in the team: %d", code)
	}
	m := inChannel(h.message("1700000000500", "notifications off"), channel+";messageid=1700000000499")
	m["from"] = map[string]any{"id": "29:1megan", "aadObjectId": ownerID, "name": "Megan Bowen"}
	n := len(h.connector.Calls())
	r.post(t, h, m)
	if got := fmt.Sprint(h.connector.WaitCalls(t, n+1)[n].Activity["text"]); !strings.Contains(got, "Notifications are off") {
		t.Fatalf("owner in a thread: %q", got)
	}
	publishPolls11(h)
	eventually(t, 10*time.Second, "cards in the group chats", func() bool { return len(cardPosts(h.connector.Calls())) >= 3 })
	h.watcherRounds(t, 2) // the channel's scan, queued in the same round, is done
	for conv, k := range cardPosts(h.connector.Calls()) {
		if strings.HasPrefix(conv, channel) || strings.HasPrefix(conv, url.PathEscape(channel)) {
			t.Errorf("the quiet channel got %d cards at %s", k, conv)
		}
	}
}

// inTeamChannel moves activity a into a channel of a team (the General
// channel's id is the team's), or into one of its threads when
// conversation is "channel;messageid=…".
func inTeamChannel(a map[string]any, team, channel, conversation string) map[string]any {
	a["conversation"] = map[string]any{"id": conversation, "conversationType": "channel", "tenantId": testTenant, "isGroup": true}
	a["channelData"] = map[string]any{"tenant": map[string]any{"id": testTenant},
		"team": map[string]any{"id": "19:general@thread.tacv2", "aadGroupId": team}, "channel": map[string]any{"id": channel}}
	return a
}

// storeEarlierReferences writes conversation references as releases before
// one reference per channel did: one per thread, each in the tenant's set.
func storeEarlierReferences(t *testing.T, h *harness, refs ...approval.ConversationRef) {
	t.Helper()
	rdb, closeFn, err := state.Connect(context.Background(), h.env["REDIS_URL"], slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	ctx, prefix := context.Background(), h.env["REDIS_PREFIX"]
	for _, ref := range refs {
		v, _ := json.Marshal(struct {
			V int `json:"v"`
			approval.ConversationRef
		}{1, ref})
		err := errors.Join(rdb.Set(ctx, prefix+"ref:{"+ref.ConversationID+"}", v, 90*24*time.Hour).Err(),
			rdb.SAdd(ctx, prefix+"where:{"+ref.TenantID+"}", ref.ConversationID).Err(),
			rdb.SAdd(ctx, prefix+"tenants", ref.TenantID).Err())
		if err != nil {
			t.Fatal(err)
		}
	}
}

// In a team people talk to the bot in many threads of several channels,
// and an earlier release stored a reference for every thread: a sweep still
// reads the team's installed apps from Graph once, and posts one card per
// pending upgrade as a new post in the channel last talked in, while each
// command was answered in its own thread.
func TestSweepReadsATeamOnceHoweverManyThreadsItWasTalkedToIn(t *testing.T) {
	const (
		team     = "8f3c1e62-5d4b-4a7e-9c21-0b6d2f4e8a10"
		general  = "19:general@thread.tacv2"
		planning = "19:planning@thread.tacv2"
	)
	h := newHarness(t)
	h.graph.AddApp(fakegraph.App{ID: pollsAppID, DisplayName: "Polls", Definitions: []fakegraph.Definition{
		{Version: "1.0.0"}, {Version: "1.1.0", RSC: []fakegraph.Permission{{Value: "ChannelMessage.Read.Group", Type: "application"}}}}})
	h.graph.AddApp(fakegraph.App{ID: whiteboardAppID, DisplayName: "Whiteboard", Definitions: []fakegraph.Definition{
		{Version: "3.1.0"}, {Version: "3.2.0"}}})
	h.graph.Install(fakegraph.Team, team, pollsAppID, "1.0.0", nil)
	h.graph.Install(fakegraph.Team, team, whiteboardAppID, "3.1.0", nil)
	h.graph.AddMembers(fakegraph.Team, team,
		fakegraph.Member{UserID: ownerID, DisplayName: "Megan Bowen", TenantID: testTenant, Roles: []string{"owner"}})
	st := storeOf(t, h)
	ctx := context.Background()

	// The first replica sweeps at once, while it knows no conversation yet,
	// and not again for a day.
	r := h.replica(t, nil, 0)
	eventually(t, 10*time.Second, "the first sweep", func() bool { last, _ := st.Watch().LastSweep(ctx); return !last.IsZero() })
	var earlier []approval.ConversationRef
	for _, thread := range []string{general + ";messageid=1699990000001", planning + ";messageid=1699990000002",
		"19:design@thread.tacv2;messageid=1699990000003", "19:design@thread.tacv2;messageid=1699990000004"} {
		earlier = append(earlier, approval.ConversationRef{ConversationID: thread, ConversationType: "channel",
			ServiceURL: h.connector.URL(), ChannelID: "msteams", TenantID: testTenant, BotID: "28:" + testAppID, Locale: "en-US",
			Scope: &approval.Scope{Kind: approval.ScopeTeam, ID: team, TenantID: testTenant}, UpdatedAt: time.Now().UTC()})
	}
	storeEarlierReferences(t, h, earlier...)
	threads := []string{general + ";messageid=1700000000600", general + ";messageid=1700000000610",
		planning + ";messageid=1700000000620", general + ";messageid=1700000000600", planning + ";messageid=1700000000630",
		planning + ";messageid=1700000000620"}
	for i, thread := range threads {
		id := fmt.Sprintf("17000000007%02d", i)
		n := len(h.connector.Calls())
		if code := r.post(t, h, inTeamChannel(h.message(id, "help"), team, approval.BaseConversation(thread), thread)); code != http.StatusOK {
			t.Fatalf("help in %s: %d", thread, code)
		}
		reply := h.connector.WaitCalls(t, n+1)[n]
		if want := "/v3/conversations/" + url.PathEscape(thread) + "/activities/" + id; reply.Method != http.MethodPost || reply.Path != want {
			t.Errorf("help in %s answered with %s %s, want a reply in the thread (%s)", thread, reply.Method, reply.Path, want)
		}
	}
	r.stop()

	// The next replica's first round sweeps (a second is long enough).
	eventually(t, 5*time.Second, "a second since the sweep", func() bool {
		last, _ := st.Watch().LastSweep(ctx)
		return time.Since(last) > time.Second
	})
	h.graph.ResetCalls()
	before := len(h.connector.Calls())
	h.replica(t, map[string]string{"BOT_SWEEP_INTERVAL": "1s"}, 0)
	queue, err := st.Queue(state.QueueOptions{Consumer: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the sweep's cards", func() bool {
		qs, err := queue.Stats(ctx)
		return err == nil && qs.Length == 0 && len(cardPosts(h.connector.Calls()[before:])) > 0
	})
	reads := 0
	for _, c := range h.graph.Calls() {
		if c.Method == http.MethodGet && c.Path == "/teams/"+team+"/installedApps" {
			reads++
		}
	}
	if reads != 1 {
		t.Errorf("the sweep read the team's installed apps %d times, want once", reads)
	}
	posts := cardPosts(h.connector.Calls()[before:])
	if len(posts) != 1 || posts[planning] != 2 {
		t.Errorf("cards posted %v, want the two pending upgrades, each once, in %s (the channel last talked in)", posts, planning)
	}
	for _, c := range h.connector.Calls()[before:] {
		if c.Activity["replyToId"] != nil {
			t.Errorf("%s %s replies to %v: an unprompted card starts a thread of its own", c.Method, c.Path, c.Activity["replyToId"])
		}
	}
}

func TestNewCatalogVersionOnARedisCluster(t *testing.T) {
	cl := startRedisCluster(t)
	h := newHarness(t)
	h.env["REDIS_URL"] = cl.url()
	h.env["BOT_SCAN_INTERVAL"] = "1s"
	var rs []*replica
	for range 3 {
		rs = append(rs, h.replica(t, nil, 0))
	}
	seedTenant(t, h, rs[1])
	h.awaitCatalogReads(t, 1) // the watcher has seen 1.0.0
	publishPolls11(h)
	eventually(t, 15*time.Second, "a card in each affected chat", func() bool { return len(cardPosts(h.connector.Calls())) == 3 })
	h.watcherRounds(t, 3)
	posts := cardPosts(h.connector.Calls())
	for _, chat := range proactiveChats[:3] {
		if posts[chat] != 1 {
			t.Errorf("%s got %d cards on the cluster, want exactly 1", chat, posts[chat])
		}
	}
}

// delayedJobs returns when each delayed scan job is due, read from the
// queue's sorted sets in Redis.
func delayedJobs(t *testing.T, h *harness) []time.Time {
	t.Helper()
	rdb, closeFn, err := state.Connect(context.Background(), h.env["REDIS_URL"], slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	ctx := context.Background()
	var out []time.Time
	iter := rdb.Scan(ctx, 0, h.env["REDIS_PREFIX"]+"jobs-delayed:*", 100).Iterator()
	for iter.Next(ctx) {
		zs, err := rdb.ZRangeWithScores(ctx, iter.Val(), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, z := range zs {
			out = append(out, time.UnixMilli(int64(z.Score)))
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// tendLog counts, per stream, the bot's reclaims of idle scan jobs: each
// follows the move of that shard's due delayed jobs onto the stream, in
// one tending of the shard.
type tendLog struct {
	mu      sync.Mutex
	reclaim map[string]int
}

func (l *tendLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *tendLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if args := cmd.Args(); strings.EqualFold(cmd.Name(), "xautoclaim") && len(args) > 1 {
			l.mu.Lock()
			l.reclaim[fmt.Sprint(args[1])]++
			l.mu.Unlock()
		}
		return err
	}
}

func (l *tendLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// awaitTends waits until each of the queue's four shards has been tended
// twice more (so once begun after this call): a delayed job that were due
// would have been moved back onto its stream.
func (l *tendLog) awaitTends(t *testing.T) {
	t.Helper()
	snapshot := func() map[string]int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return maps.Clone(l.reclaim)
	}
	before := snapshot()
	eventually(t, 10*time.Second, "the scan workers to tend every shard", func() bool {
		now := snapshot()
		if len(now) < 4 {
			return false
		}
		for stream, n := range now {
			if n < before[stream]+2 {
				return false
			}
		}
		return true
	})
}

// Graph throttles a scan and asks for two minutes, longer than the Graph
// client waits by itself: the scan job is put off by exactly Graph's
// Retry-After, kept on the queue, and Graph is not asked again meanwhile,
// by this job or by the tenant's other scans.
func TestThrottledScanIsDelayedByGraphsRetryAfter(t *testing.T) {
	h := newHarness(t)
	seedPolls(h, chatID)
	ctx := context.Background()
	st := storeOf(t, h)
	// The bot was added here earlier; the first watcher round sweeps it.
	if err := st.Conversations().SaveReference(ctx, approval.ConversationRef{ConversationID: chatID, ConversationType: "groupChat",
		ServiceURL: h.connector.URL(), ChannelID: "msteams", TenantID: testTenant, BotID: "28:" + testAppID, Locale: "en-US",
		Scope: &approval.Scope{Kind: approval.ScopeChat, ID: chatID, TenantID: testTenant}, UpdatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	h.graph.Fail(fakegraph.Fault{Method: http.MethodGet, Path: "/installedApps", Status: http.StatusTooManyRequests,
		Code: "TooManyRequests", Message: "Application is over its MailboxConcurrency limit.", RetryAfter: "120", Times: 100})
	tends := &tendLog{reclaim: map[string]int{}}
	h.tune = func(d *deps) { d.redisHook = tends }
	start := time.Now()
	h.replica(t, nil, 0)
	var due []time.Time
	eventually(t, 20*time.Second, "the throttled scan to be delayed", func() bool { due = delayedJobs(t, h); return len(due) > 0 })
	tends.awaitTends(t) // more worker rounds: the job must stay put
	due = delayedJobs(t, h)
	if len(due) != 1 {
		t.Fatalf("%d delayed jobs, want the one", len(due))
	}
	if wait := due[0].Sub(start); wait < 120*time.Second || wait > 120*time.Second+time.Since(start) {
		t.Errorf("the job is due in %s, want Graph's Retry-After of 2m0s", wait.Round(time.Second))
	}
	listings := 0
	for _, c := range h.graph.Calls() {
		if strings.HasSuffix(c.Path, "/installedApps") {
			listings++
		}
	}
	if listings != 1 {
		t.Errorf("Graph was asked %d times for the installations, want once", listings)
	}
	if posts := cardPosts(h.connector.Calls()); len(posts) != 0 {
		t.Errorf("cards posted while throttled: %v", posts)
	}

	// Another scan of the throttled tenant waits for the same moment
	// without asking Graph.
	const other = "19:other@thread.v2"
	if err := st.Conversations().SaveReference(ctx, approval.ConversationRef{ConversationID: other, ConversationType: "groupChat",
		ServiceURL: h.connector.URL(), ChannelID: "msteams", TenantID: testTenant, BotID: "28:" + testAppID, Locale: "en-US",
		Scope: &approval.Scope{Kind: approval.ScopeChat, ID: other, TenantID: testTenant}, UpdatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	q, err := st.Queue(state.QueueOptions{Consumer: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(ctx, bot.ScanJob{TenantID: testTenant, ConversationID: other, Reason: "followup"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the second scan to be delayed", func() bool { due = delayedJobs(t, h); return len(due) == 2 })
	for _, d := range due {
		if wait := d.Sub(start); wait < 119*time.Second || wait > 120*time.Second+time.Since(start) {
			t.Errorf("a job is due in %s, want when Graph's Retry-After ends", wait.Round(time.Second))
		}
	}
	listings = 0
	for _, c := range h.graph.Calls() {
		if strings.HasSuffix(c.Path, "/installedApps") {
			listings++
		}
	}
	if listings != 1 {
		t.Errorf("Graph was asked %d times for installations while it throttled the tenant, want once", listings)
	}
}

// BOT_PROACTIVE=off: being added still welcomes (it answers the install),
// but no approval card comes unasked, on the install or when a version is
// published; "check" still posts one.
func TestProactiveOffWelcomesButPostsNoCardUnasked(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_PROACTIVE"], h.env["BOT_SCAN_INTERVAL"] = "off", "1s"
	seedPolls(h, chatID)
	r := h.replica(t, nil, 0)
	for _, ev := range h.installEvents(chatID) {
		if code := r.post(t, h, ev); code != http.StatusOK {
			t.Fatalf("%s: status %d", ev["type"], code)
		}
	}
	calls := h.connector.WaitCalls(t, 1)
	if s := cardOf(calls[0]); !strings.Contains(s, "I'm Upgrade Approvals") || !strings.Contains(s, "Send **check** and I show") ||
		strings.Contains(s, "notifications off") {
		t.Fatalf("first post is not the welcome that offers check: %s", s)
	}
	h.graph.Publish(pollsAppID, fakegraph.Definition{Version: "1.2.0",
		RSC: []fakegraph.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}})
	h.watcherRounds(t, 3) // the read that sees 1.2.0 queues scans of the chat, and more rounds follow
	if calls := h.connector.Calls(); len(calls) != 1 {
		t.Fatalf("%d posts with BOT_PROACTIVE=off, want only the welcome; the second: %s", len(calls), cardOf(calls[1]))
	}

	r.post(t, h, h.message("1700000000500", "check"))
	if s := cardOf(h.connector.WaitCalls(t, 2)[1]); !strings.Contains(s, `"verb":"approve"`) || !strings.Contains(s, "1.2.0") {
		t.Errorf("check answered %s, want the pending card", s)
	}
}

// sameShardTenant returns a tenant id whose scan jobs share a stream with
// tenant's (state.Queue spreads tenants over four streams by FNV-1a).
func sameShardTenant(tenant string) string {
	shard := func(id string) uint32 {
		h := fnv.New32a()
		h.Write([]byte(id))
		return h.Sum32() % 4
	}
	for i := 0; ; i++ {
		if id := fmt.Sprintf("0b0b0b0b-0000-4000-8000-%012d", i); shard(id) == shard(tenant) {
			return id
		}
	}
}

// A tenant whose budget is spent for the next half minute does not hold up
// another tenant's scan queued behind its jobs on the same stream: their
// jobs leave the stream until their turn, and the other tenant's card
// comes at once.
func TestAThrottledTenantDoesNotHoldUpAnother(t *testing.T) {
	h := newHarness(t)
	h.tune = func(d *deps) { d.graphBudget = 2 } // one scan a second
	ctx := context.Background()
	st := storeOf(t, h)
	trust := botframework.NewServiceURLs(botframework.ServiceURLOptions{Records: st.Conversations()})
	known := func(tenant, chat string) {
		t.Helper()
		ref := approval.ConversationRef{ConversationID: chat, ConversationType: "groupChat", ServiceURL: h.connector.URL(),
			ChannelID: "msteams", TenantID: tenant, BotID: "28:" + testAppID, Locale: "en-US",
			Scope: &approval.Scope{Kind: approval.ScopeChat, ID: chat, TenantID: tenant}, UpdatedAt: time.Now().UTC()}
		if err := st.Conversations().SaveReference(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if err := trust.TrustServiceURL(ctx, chat, ref.ServiceURL); err != nil {
			t.Fatal(err)
		}
	}
	h.graph.AddApp(fakegraph.App{ID: pollsAppID, DisplayName: "Polls", Definitions: []fakegraph.Definition{{Version: "1.0.0"}, {Version: "1.1.0"}}})
	for i := range 30 {
		chat := fmt.Sprintf("19:busy-%d@thread.v2", i)
		h.graph.Install(fakegraph.Chat, chat, pollsAppID, "1.1.0", nil)
		known(testTenant, chat)
	}
	other := sameShardTenant(testTenant)
	const otherChat = "19:other-tenant@thread.v2"
	h.graph.Install(fakegraph.Chat, otherChat, pollsAppID, "1.0.0", nil)
	known(other, otherChat)

	h.replica(t, nil, 0) // its first watcher round sweeps both tenants
	eventually(t, 10*time.Second, "the other tenant's card", func() bool { return cardPosts(h.connector.Calls())[otherChat] == 1 })
	listings := 0
	for _, c := range h.graph.Calls() {
		if strings.HasSuffix(c.Path, "/installedApps") && strings.Contains(c.Path, "busy") {
			listings++
		}
	}
	if listings >= 30 {
		t.Errorf("the busy tenant's sweep was done (%d scans) before the other tenant's card came", listings)
	}
}

// A team's unprompted cards go to a standard channel, which all its members
// see: the channel last talked in if Graph says it is standard, else the
// team's General channel, never a private or shared channel, whoever
// talked there last.
func TestTeamCardsGoOnlyToAStandardChannel(t *testing.T) {
	const (
		general  = "19:general@thread.tacv2"
		private  = "19:private@thread.tacv2"
		planning = "19:planning@thread.tacv2"
	)
	teams := []string{"8f3c1e62-5d4b-4a7e-9c21-0b6d2f4e8a10", "9a4d2f73-6e5c-4b8f-8d32-1c7e3a5f9b21"}
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"] = "1s"
	r := h.replica(t, nil, 0)
	h.graph.AddApp(fakegraph.App{ID: pollsAppID, DisplayName: "Polls", Definitions: []fakegraph.Definition{{Version: "1.0.0"}}})
	for i, team := range teams {
		h.graph.Install(fakegraph.Team, team, pollsAppID, "1.0.0", nil)
		h.graph.AddMembers(fakegraph.Team, team,
			fakegraph.Member{UserID: ownerID, DisplayName: "Megan Bowen", TenantID: testTenant, Roles: []string{"owner"}})
		h.graph.SetChannel(team, private, "private")
		// The first team was last talked to in a private channel, the
		// second in a standard one.
		last := []string{private, planning}[i]
		msg := inTeamChannel(h.message(fmt.Sprintf("17000000009%02d", i), "help"), team, last, last+";messageid=1700000000900")
		msg["channelData"].(map[string]any)["team"].(map[string]any)["id"] = general + fmt.Sprint(i)
		n := len(h.connector.Calls())
		if code := r.post(t, h, msg); code != http.StatusOK {
			t.Fatalf("help in %s: %d", last, code)
		}
		h.connector.WaitCalls(t, n+1)
	}
	h.watcherRounds(t, 1) // the tenant's catalog as it was
	publishPolls11(h)
	eventually(t, 10*time.Second, "the teams' cards", func() bool { return len(cardPosts(h.connector.Calls())) == 2 })
	h.watcherRounds(t, 2)
	posts := cardPosts(h.connector.Calls())
	if posts[general+"0"] != 1 || posts[planning] != 1 || len(posts) != 2 {
		t.Errorf("cards posted %v, want one in the first team's General channel (%s0) and one in %s", posts, general, planning)
	}
	for conv := range posts {
		if strings.Contains(conv, "private") {
			t.Errorf("a card went to the private channel %s", conv)
		}
	}
}
