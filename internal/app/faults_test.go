package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/botframework/fakechannel"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
	"github.com/upgradeapprovals/bot/internal/redistest"
	"github.com/upgradeapprovals/bot/state"
)

// Fault tests: the whole bot against a redis-server the test kills, freezes
// and restarts, and a Graph that throttles, fails and dawdles. Whatever
// happens, no approval is lost or doubled and no installation is upgraded
// twice.

const faultOwner = "11111111-1111-1111-1111-111111111111"

// quick shortens the bot's waits so faults play out in seconds.
func quick(d *deps) {
	d.tune = func(o *bot.Options) { o.InvokeWait, o.UpgradeTimeout = time.Second, 5*time.Second }
	d.reaperInterval = 100 * time.Millisecond
}

// seedChats installs Polls 1.0.0 (1.1.0 in the catalog) in n group chats
// owned by faultOwner, and returns the chat ids.
func seedChats(h *harness, n int) []string {
	const pollsID = "0d820ecd-def2-4297-adad-78056cde7c78"
	h.graph.AddApp(fakegraph.App{ID: pollsID, DisplayName: "Polls", Definitions: []fakegraph.Definition{
		{Version: "1.0.0"},
		{Version: "1.1.0", RSC: []fakegraph.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}},
	}})
	var chats []string
	for i := range n {
		chat := fmt.Sprintf("19:chat%d@thread.v2", i)
		h.graph.Install(fakegraph.Chat, chat, pollsID, "1.0.0", nil)
		h.graph.AddMembers(fakegraph.Chat, chat,
			fakegraph.Member{UserID: faultOwner, DisplayName: "Megan Bowen", TenantID: testTenant, Roles: []string{"owner"}})
		chats = append(chats, chat)
	}
	return chats
}

func (h *harness) in(m map[string]any, chat string) map[string]any {
	m["conversation"] = map[string]any{"id": chat, "conversationType": "groupChat", "tenantId": testTenant}
	return m
}

// approve is the Approve click on the card with activity id cardID.
func (h *harness) approve(id, chat, cardID, approvalID string) map[string]any {
	a := h.in(h.message(id, ""), chat)
	delete(a, "text")
	a["type"], a["name"], a["replyToId"] = "invoke", "adaptiveCard/action", cardID
	a["value"] = map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
		"data": map[string]any{"approvalId": approvalID}}}
	return a
}

var approvalIDInCard = regexp.MustCompile(`"approvalId":"(apr_[0-9a-f]+)"`)

// cards returns, per chat, the approval id and activity id of the card the
// bot posted there.
func cards(t *testing.T, calls []fakechannel.ConnectorCall) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	for i, c := range calls {
		if c.Method != http.MethodPost {
			continue
		}
		b, _ := json.Marshal(c.Activity)
		m := approvalIDInCard.FindStringSubmatch(string(b))
		if m == nil {
			continue
		}
		conv, _ := c.Activity["conversation"].(map[string]any)
		chat, _ := conv["id"].(string)
		if prev, ok := out[chat]; ok && prev[0] != m[1] {
			t.Errorf("chat %s got two approvals: %s and %s", chat, prev[0], m[1])
		}
		// The recording connector answers a POST with activity-<call number>.
		out[chat] = [2]string{m[1], fmt.Sprint("activity-", i+1)}
	}
	return out
}

// upgradePosts counts upgrade POSTs per installation path that Graph
// accepted.
func upgradePosts(tn *fakegraph.Tenant) map[string]int {
	out := map[string]int{}
	for _, c := range tn.Calls() {
		if c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/upgrade") {
			out[c.Path]++
		}
	}
	return out
}

// storeOf reads the bot's state as the harness's bot sees it.
func storeOf(t *testing.T, h *harness) *state.Store {
	t.Helper()
	rdb, closeFn, err := state.Connect(context.Background(), h.env["REDIS_URL"], slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeFn() })
	return state.New(rdb, state.Options{Prefix: h.env["REDIS_PREFIX"]})
}

func TestRedisKilledMidLoadLosesAndDoublesNothing(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t)
	h.env["REDIS_URL"] = rs.URL()
	h.tune = quick
	chats := seedChats(h, 6)
	h.start(t)

	for i, chat := range chats {
		if code := h.post(t, h.in(h.message(fmt.Sprint("check-", i), "check"), chat)); code != http.StatusOK {
			t.Fatalf("check in %s: %d", chat, code)
		}
	}
	posted := cards(t, h.connector.WaitCalls(t, len(chats)))
	if len(posted) != len(chats) {
		t.Fatalf("cards in %d chats, want %d", len(posted), len(chats))
	}

	// Every chat's owner clicks Approve while Redis dies and comes back;
	// Teams redelivers whatever was not answered 200.
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	killed := make(chan struct{})
	for i, chat := range chats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i >= len(chats)/2 {
				<-killed // half the clicks arrive while Redis is down
			}
			click := h.approve(fmt.Sprint("approve-", i), chat, posted[chat][1], posted[chat][0])
			for range 200 {
				code, _ := h.exchange(t, click)
				mu.Lock()
				codes[code]++
				mu.Unlock()
				if code == http.StatusOK {
					return
				}
				// Teams' pace of redelivery: part of the scenario, not a wait.
				time.Sleep(100 * time.Millisecond)
			}
			t.Errorf("the approval in %s was never answered 200", chat)
		}()
	}
	// The first half's clicks get under way before Redis dies: the race
	// under test, not a wait for an outcome.
	time.Sleep(50 * time.Millisecond)
	rs.Kill()
	close(killed)
	// While Redis is down, a message is answered 503 (Teams redelivers).
	if code := h.post(t, h.in(h.message("while-down", "help"), chats[0])); code != http.StatusServiceUnavailable {
		t.Errorf("a message while Redis is down: %d, want 503", code)
	}
	eventually(t, 10*time.Second, "a click answered 503 while Redis is down", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return codes[http.StatusServiceUnavailable] > 0
	})
	rs.Restart()
	wg.Wait()
	if codes[http.StatusServiceUnavailable] == 0 {
		t.Errorf("no click was answered 503 while Redis was down: %v", codes)
	}
	for code := range codes {
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Errorf("answers %v: want only 200 and 503", codes)
		}
	}

	// Afterwards every approval is decided once: upgraded, one POST each.
	st := storeOf(t, h)
	for _, chat := range chats {
		id := posted[chat][0]
		var last string
		eventually(t, 20*time.Second, "approval in "+chat+" settles", func() bool {
			a, err := st.Approvals().Approval(context.Background(), id)
			last = fmt.Sprintf("%s %+v %v", a.Status, a.Problem, err)
			return err == nil && a.Status == approval.StatusUpgraded
		}, &last)
	}
	for path, n := range upgradePosts(h.graph) {
		if n != 1 {
			t.Errorf("%s: %d upgrade POSTs, want 1", path, n)
		}
	}
	if n := len(upgradePosts(h.graph)); n != len(chats) {
		t.Errorf("%d installations upgraded, want %d", n, len(chats))
	}
	// And check finds nothing left to approve, in every chat. For about a
	// second after Redis is back, go-redis's pool may still fail a new
	// connection at once (it retries dialing in the background), so a
	// message can be answered 503 and is redelivered, as Teams does.
	before := len(h.connector.Calls())
	for i, chat := range chats {
		check := h.in(h.message(fmt.Sprint("recheck-", i), "check"), chat)
		code := h.post(t, check)
		for try := 0; code == http.StatusServiceUnavailable && try < 50; try++ {
			time.Sleep(100 * time.Millisecond) // Teams' pace of redelivery
			code = h.post(t, check)
		}
		if code != http.StatusOK {
			t.Fatalf("check: %d", code)
		}
	}
	for _, c := range h.connector.WaitCalls(t, before+len(chats))[before:] {
		if b, _ := json.Marshal(c.Activity); approvalIDInCard.Match(b) {
			t.Errorf("a second approval was posted after the restart: %s", b)
		}
	}
}

func TestFrozenRedisIsAnswered503Within5s(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t)
	h.env["REDIS_URL"] = rs.URL()
	h.start(t)
	if code := h.post(t, h.message("1700000000101", "help")); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	rs.Freeze()
	start := time.Now()
	code := h.post(t, h.message("1700000000102", "help"))
	took := time.Since(start)
	rs.Thaw()
	if code != http.StatusServiceUnavailable || took > 5*time.Second {
		t.Errorf("with Redis frozen: %d after %s, want 503 within 5 s", code, took.Round(time.Millisecond))
	}
	// Teams redelivers once Redis is back.
	eventually(t, 10*time.Second, "redelivery answered", func() bool {
		return h.post(t, h.message("1700000000102", "help")) == http.StatusOK
	})
}

// slowGraph delays the upgrade POST by delay, and can answer it with a
// status after letting it take effect.
type slowGraph struct {
	next    http.Handler
	delay   time.Duration
	mu      sync.Mutex
	lose    int // the next lose upgrade POSTs take effect but answer 503
	onTaken func()
}

func (s *slowGraph) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/upgrade") {
		s.next.ServeHTTP(w, r)
		return
	}
	time.Sleep(s.delay) // the slow upgrade under test
	s.mu.Lock()
	lose := s.lose > 0
	if lose {
		s.lose--
	}
	onTaken := s.onTaken
	s.mu.Unlock()
	rec := httptest.NewRecorder()
	s.next.ServeHTTP(rec, r)
	if onTaken != nil && rec.Code == http.StatusNoContent {
		onTaken()
	}
	if lose {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// behind puts handler in front of the harness's fake Graph.
func (h *harness) behind(t *testing.T, wrap func(http.Handler) http.Handler) {
	t.Helper()
	srv := httptest.NewServer(wrap(h.graph))
	t.Cleanup(srv.Close)
	h.graph.BaseURL = srv.URL
	h.env["GRAPH_BASE_URL"] = srv.URL + "/v1.0"
}

func TestGraphStormsAndSlowAnswersNeverUpgradeTwice(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults []fakegraph.Fault
		delay  time.Duration
		lose   int
		posts  int // upgrade POSTs that reach Graph
	}{
		{name: "429 storm with Retry-After, then slow", delay: 1500 * time.Millisecond, posts: 3,
			faults: []fakegraph.Fault{{Method: http.MethodPost, Path: "/upgrade", Status: 429, Code: "TooManyRequests", RetryAfter: "1", Times: 2}}},
		{name: "503 after the upgrade took", delay: 1500 * time.Millisecond, lose: 1, posts: 1},
		{name: "503 before anything happened", posts: 1,
			faults: []fakegraph.Fault{{Method: http.MethodPost, Path: "/upgrade", Status: 503, Code: "ServiceUnavailable", RetryAfter: "0", Times: 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.tune = func(d *deps) {
				quick(d)
				tune := d.tune
				d.tune = func(o *bot.Options) { tune(o); o.UpgradeTimeout, o.UpgradeGrace = 10*time.Second, 2*time.Second }
			}
			h.behind(t, func(next http.Handler) http.Handler { return &slowGraph{next: next, delay: tc.delay, lose: tc.lose} })
			chats := seedChats(h, 1)
			h.start(t)
			if code := h.post(t, h.in(h.message("1", "check"), chats[0])); code != http.StatusOK {
				t.Fatalf("check: %d", code)
			}
			card := cards(t, h.connector.WaitCalls(t, 1))[chats[0]]
			for _, f := range tc.faults {
				h.graph.Fail(f)
			}
			h.graph.ResetCalls()
			start := time.Now()
			code, body := h.exchange(t, h.approve("2", chats[0], card[1], card[0]))
			if took := time.Since(start); code != http.StatusOK || took > 5*time.Second {
				t.Fatalf("approve: %d after %s", code, took)
			}
			if tc.delay > 0 && !strings.Contains(string(body), "Still working") {
				t.Errorf("the clicker got %s, want the still-working card", body)
			}
			// A second click while it runs does nothing new.
			if code, body := h.exchange(t, h.approve("3", chats[0], card[1], card[0])); code != http.StatusOK ||
				(tc.delay > 0 && !strings.Contains(string(body), "Still working")) {
				t.Errorf("second click: %d %s", code, body)
			}
			want := "was upgraded to 1.1.0"
			if tc.lose == 0 && tc.delay == 0 {
				want = "failed"
			}
			eventually(t, 15*time.Second, "the card shows the outcome", func() bool {
				for _, c := range h.connector.Calls() {
					if b, _ := json.Marshal(c.Activity); c.Method == http.MethodPut && strings.Contains(string(b), want) {
						return true
					}
				}
				return false
			})
			var n int
			for _, v := range upgradePosts(h.graph) {
				n += v
			}
			if n != tc.posts {
				t.Errorf("%d upgrade POSTs reached Graph, want %d", n, tc.posts)
			}
		})
	}
}

// dyingReplica is a harness on its own redis-server, which dies the moment
// Graph has upgraded: the replica that called Graph cannot record anything
// more, as if it had been killed right there.
type dyingReplica struct {
	*harness
	rs *redistest.Server
	sg *slowGraph
}

func newDyingReplica(t *testing.T) *dyingReplica {
	t.Helper()
	rs := redistest.Start(t)
	a := newHarness(t)
	a.env["REDIS_URL"] = rs.URL()
	a.tune = quick
	sg := &slowGraph{onTaken: rs.Kill}
	a.behind(t, func(next http.Handler) http.Handler { sg.next = next; return sg })
	return &dyingReplica{harness: a, rs: rs, sg: sg}
}

// successor stops the dead replica, brings Redis back with its data and
// starts another replica on it, sharing the fakes and tuned alike; it
// returns that replica and its store.
func (d *dyingReplica) successor(t *testing.T) (*harness, *state.Store) {
	t.Helper()
	d.shutdown(t) // that replica is gone
	d.sg.mu.Lock()
	d.sg.onTaken = nil
	d.sg.mu.Unlock()
	d.rs.Restart()
	a := d.harness
	b := &harness{channel: a.channel, aad: a.aad, connector: a.connector, graph: a.graph, env: a.env, tune: a.tune}
	b.start(t)
	return b, storeOf(t, b)
}

func TestKilledBetweenGraphsAnswerAndTheRecordIsReconciled(t *testing.T) {
	d := newDyingReplica(t)
	a := d.harness
	chats := seedChats(a, 1)
	a.start(t)
	if code := a.post(t, a.in(a.message("1", "check"), chats[0])); code != http.StatusOK {
		t.Fatalf("check: %d", code)
	}
	card := cards(t, a.connector.WaitCalls(t, 1))[chats[0]]
	a.exchange(t, a.approve("2", chats[0], card[1], card[0]))

	// Another replica's reaper reconciles it from Graph, without upgrading.
	_, st := d.successor(t)
	eventually(t, 20*time.Second, "the reaper settles the approval", func() bool {
		ap, err := st.Approvals().Approval(context.Background(), card[0])
		return err == nil && ap.Status == approval.StatusUpgraded
	})
	if n := len(upgradePosts(a.graph)); n != 1 {
		t.Errorf("%d upgrade POSTs, want exactly 1", n)
	}
	for _, n := range upgradePosts(a.graph) {
		if n != 1 {
			t.Errorf("%d upgrade POSTs, want exactly 1", n)
		}
	}
	eventually(t, 5*time.Second, "the card shows the upgrade", func() bool {
		for _, c := range a.connector.Calls() {
			b, _ := json.Marshal(c.Activity)
			if c.Method == http.MethodPut && strings.HasSuffix(c.Path, "/"+card[1]) && strings.Contains(string(b), "was upgraded to 1.1.0") {
				return true
			}
		}
		return false
	})
}

// Three bot replicas on a real three-master Redis Cluster: approvals are
// opened and claimed across slots without CROSSSLOT or MOVED errors, each
// installation is upgraded once however many replicas get the click, and
// the bots work again after a master restarts.
func TestThreeReplicasOnRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	first := newHarness(t)
	first.env["REDIS_URL"] = c.URL()
	first.tune = quick
	chats := seedChats(first, 6)
	bots := []*harness{first}
	for range 2 {
		bots = append(bots, &harness{channel: first.channel, aad: first.aad, connector: first.connector, graph: first.graph,
			env: first.env, tune: quick})
	}
	for _, h := range bots {
		h.start(t)
	}
	for i, chat := range chats {
		h := bots[i%3]
		if code := h.post(t, h.in(h.message(fmt.Sprint("check-", i), "check"), chat)); code != http.StatusOK {
			t.Fatalf("check in %s on replica %d: %d", chat, i%3, code)
		}
	}
	posted := cards(t, first.connector.WaitCalls(t, len(chats)))
	var wg sync.WaitGroup
	for i, chat := range chats {
		for r, h := range bots {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, body := h.exchange(t, h.approve(fmt.Sprint("approve-", i, "-", r), chat, posted[chat][1], posted[chat][0]))
				if code != http.StatusOK {
					t.Errorf("approve in %s on replica %d: %d %s", chat, r, code, body)
				}
			}()
		}
	}
	wg.Wait()
	st := storeOf(t, first)
	for _, chat := range chats {
		eventually(t, 20*time.Second, "approval in "+chat+" settles", func() bool {
			a, err := st.Approvals().Approval(context.Background(), posted[chat][0])
			return err == nil && a.Status == approval.StatusUpgraded
		})
	}
	for path, n := range upgradePosts(first.graph) {
		if n != 1 {
			t.Errorf("%s: %d upgrade POSTs, want 1", path, n)
		}
	}
	if n := len(upgradePosts(first.graph)); n != len(chats) {
		t.Errorf("%d installations upgraded, want %d", n, len(chats))
	}

	// A master restarts; afterwards every replica answers again.
	c.Nodes[1].Restart()
	c.WaitHealthy(t)
	for r, h := range bots {
		for i, chat := range chats {
			id := fmt.Sprint("after-", r, "-", i)
			eventually(t, 20*time.Second, "replica answers after the restart", func() bool {
				return h.post(t, h.in(h.message(id, "help"), chat)) == http.StatusOK
			})
		}
	}
}
