package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
	"github.com/upgradeapprovals/bot/state"
)

// BenchmarkSweep is the daily sweep of one tenant where the bot is in many
// conversations, through everything a replica runs: the catalog watcher
// (under its lease) queues one scan job per conversation on the Redis
// Streams, every replica's scan workers consume them, read Graph through
// msgraph-sdk-go from the fake tenant (latency added to every request),
// write their records to Redis at REDIS_URL (under a key prefix of their
// own, deleted afterwards) and post the approval cards to a fake connector.
// The conversations are known beforehand (their references and trusted
// service URLs are in Redis, as earlier activities left them) and nothing
// was ever posted there. The Graph budget is lifted unless set, so the
// figures are the bot's own cost; at the production budget
// (graphCallsPerSecond a tenant, of which the sweep may book all but the
// share reserved for follow-ups) the sweep takes at least graph-calls /
// that many seconds, which it reports as budget-bound-s.
//
// It fails unless the cards posted are exactly the pending (installation,
// target version) pairs: one each, none twice, no other. Sizes come from the
// environment (CI runs the small default once):
//
//	BENCH_SWEEP_CONVERSATIONS  conversations in the tenant (default 300; README's figures: 10000)
//	BENCH_SWEEP_GRAPH_LATENCY  added to every Graph request (default 30ms)
//	BENCH_SWEEP_REPLICAS       bot replicas sharing Redis (default 3)
//	BENCH_SWEEP_GRAPH_BUDGET   the tenant's Graph calls a second (default: no limit)
func BenchmarkSweep(b *testing.B) {
	n := benchEnvInt(b, "BENCH_SWEEP_CONVERSATIONS", 300)
	latency := benchEnvDuration(b, "BENCH_SWEEP_GRAPH_LATENCY", 30*time.Millisecond)
	replicas := benchEnvInt(b, "BENCH_SWEEP_REPLICAS", 3)
	budget := benchEnvInt(b, "BENCH_SWEEP_GRAPH_BUDGET", 1<<30)
	for range b.N {
		b.StopTimer()
		s := newSweep(b, n, latency, budget)
		b.StartTimer()
		r := s.run(b, replicas)
		b.StopTimer()
		b.ReportMetric(r.wall.Seconds(), "wall-s")
		b.ReportMetric(float64(n)/r.wall.Seconds(), "conversations/s")
		b.ReportMetric(float64(r.graphCalls), "graph-calls")
		b.ReportMetric(float64(r.graphCalls)/float64(n), "graph-calls/conversation")
		b.ReportMetric(float64(r.graphCalls)/(graphCallsPerSecond-graphCallsPerSecond/followUpShare), "budget-bound-s")
		b.ReportMetric(float64(r.cards), "cards")
		runs := 0
		for _, n := range r.runs {
			runs += n
		}
		b.ReportMetric(float64(runs)/float64(n), "job-runs/conversation")
		b.ReportMetric(float64(r.memAfter)/float64(n), "redis-B/conversation")
		b.ReportMetric(float64(r.memAfter-r.memBefore)/float64(n), "sweep-redis-B/conversation")
		b.Logf("sweep of %d conversations (%d replicas, Graph latency %s, GOMAXPROCS %d): %s wall, %d Graph calls "+
			"(%d installation lists, %d catalog reads, %d other), %d cards for %d pending pairs, Redis %d B/conversation "+
			"(%d B before the sweep: references, index, trusted service URLs; %d keys after)",
			n, replicas, latency, runtime.GOMAXPROCS(0), r.wall.Round(time.Millisecond), r.graphCalls, r.installedCalls,
			r.catalogCalls, r.graphCalls-r.installedCalls-r.catalogCalls, r.cards, len(s.pending),
			r.memAfter/int64(n), r.memBefore/int64(n), r.keys)
		var kinds []string
		for k, v := range r.kinds {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, v/int64(n)))
		}
		slices.Sort(kinds)
		b.Logf("Redis bytes per conversation by key kind: %s", strings.Join(kinds, ", "))
		b.Logf("scan job runs by outcome: %v", r.runs)
		b.ReportMetric(r.followUpWait.Seconds(), "follow-up-wait-s")
		b.Logf("half-way through the sweep its scans had booked the Graph budget %s ahead; a follow-up started then "+
			"(the check after an upgrade) waited %s for its turn", r.sweepAhead.Round(time.Millisecond), r.followUpWait.Round(time.Millisecond))
	}
}

func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	i, err := strconv.Atoi(v)
	if err != nil || i <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return i
}

func benchEnvDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		b.Fatalf("%s=%q: want a Go duration", name, v)
	}
	return d
}

// pair is one pending upgrade: an installation and the version it is
// behind.
type pair struct{ installation, version string }

type sweep struct {
	h         *harness
	n         int
	budget    int // the tenant's Graph calls a second
	store     *state.Store
	rdb       redis.UniversalClient
	prefix    string
	graph     *countingGraph
	connector *cardCounter
	// pending is every (installation, target version) the fake tenant has
	// behind its catalog in a conversation the bot knows.
	pending map[pair]bool
}

type sweepResult struct {
	wall                                     time.Duration
	graphCalls, installedCalls, catalogCalls int
	cards                                    int
	memBefore, memAfter                      int64
	keys                                     int
	kinds                                    map[string]int64 // bytes by key kind, after
	runs                                     map[string]int   // scan job runs by outcome (ok, throttled, …)
	// Half-way through the sweep (half the cards posted): how far ahead
	// the sweep had booked the budget, and how long a follow-up (the
	// check after an upgrade: two calls) started then waited for its turn.
	sweepAhead, followUpWait time.Duration
}

// scanRuns reads a replica's upgradebot_scans_total by outcome.
func scanRuns(b *testing.B, base string) map[string]int {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]int{}
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, `upgradebot_scans_total{outcome="`)
		if !ok {
			continue
		}
		outcome, v, _ := strings.Cut(rest, `"} `)
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.Fatalf("metrics line %q", line)
		}
		out[outcome] += int(n)
	}
	return out
}

const (
	tasksAppID      = "0d820ecd-def2-4297-adad-00000000000a"
	whiteboardAppID = "0d820ecd-def2-4297-adad-00000000000b"
)

// newSweep seeds a tenant: of every ten conversations nine are group chats
// and one is a channel (five channels to a team). Each chat has Polls
// (behind in every other chat, with a new RSC permission), Tasks (up to
// date) and Whiteboard (behind in every third); each team has Polls behind
// and Whiteboard up to date.
func newSweep(b *testing.B, n int, latency time.Duration, budget int) *sweep {
	h := newHarness(b)
	s := &sweep{h: h, n: n, budget: budget, pending: map[pair]bool{},
		prefix: fmt.Sprintf("bench:sweep:%d:", time.Now().UnixNano())}
	h.env["REDIS_PREFIX"] = s.prefix
	h.tune = func(d *deps) { d.graphBudget = budget }

	s.graph = &countingGraph{next: h.graph, latency: latency}
	gsrv := httptest.NewServer(s.graph)
	b.Cleanup(gsrv.Close)
	h.graph.BaseURL = gsrv.URL
	h.env["GRAPH_BASE_URL"] = gsrv.URL + "/v1.0"
	s.connector = newCardCounter()
	csrv := httptest.NewServer(s.connector)
	b.Cleanup(csrv.Close)
	serviceURL := csrv.URL + "/"

	chatRead := fakegraph.Permission{Value: "ChatMessage.Read.Chat", Type: "application"}
	h.graph.AddApp(fakegraph.App{ID: pollsAppID, DisplayName: "Polls", Definitions: []fakegraph.Definition{
		{Version: "1.0.0"}, {Version: "1.1.0", RSC: []fakegraph.Permission{chatRead}}}})
	h.graph.AddApp(fakegraph.App{ID: tasksAppID, DisplayName: "Tasks", Definitions: []fakegraph.Definition{{Version: "2.0.0"}}})
	h.graph.AddApp(fakegraph.App{ID: whiteboardAppID, DisplayName: "Whiteboard", Definitions: []fakegraph.Definition{
		{Version: "3.1.0"}, {Version: "3.2.0"}}})
	install := func(kind, scope, app, version, current string, consented []fakegraph.Permission) {
		id := h.graph.Install(kind, scope, app, version, consented)
		if version != current {
			s.pending[pair{id, current}] = true
		}
	}

	refs := make([]approval.ConversationRef, 0, n)
	for i := range n {
		ref := approval.ConversationRef{ServiceURL: serviceURL, ChannelID: "msteams", TenantID: testTenant,
			BotID: "28:" + testAppID, BotName: "Upgrade Approvals", Locale: "en-US", UpdatedAt: time.Now().UTC()}
		if i%10 == 9 {
			team := fmt.Sprintf("7e57a000-0000-4000-8000-%012d", i/50)
			ref.ConversationID = fmt.Sprintf("19:bench-channel-%d@thread.tacv2", i)
			ref.ConversationType = "channel"
			ref.Scope = &approval.Scope{Kind: approval.ScopeTeam, ID: team, TenantID: testTenant}
			if i%50 == 9 { // the team's first channel
				install(fakegraph.Team, team, pollsAppID, "1.0.0", "1.1.0", nil)
				install(fakegraph.Team, team, whiteboardAppID, "3.2.0", "3.2.0", nil)
			}
		} else {
			chat := fmt.Sprintf("19:bench-chat-%d@thread.v2", i)
			ref.ConversationID, ref.ConversationType = chat, "groupChat"
			ref.Scope = &approval.Scope{Kind: approval.ScopeChat, ID: chat, TenantID: testTenant}
			if i%2 == 0 {
				install(fakegraph.Chat, chat, pollsAppID, "1.0.0", "1.1.0", nil)
			} else {
				install(fakegraph.Chat, chat, pollsAppID, "1.1.0", "1.1.0", []fakegraph.Permission{chatRead})
			}
			install(fakegraph.Chat, chat, tasksAppID, "2.0.0", "2.0.0", nil)
			if i%3 == 0 {
				install(fakegraph.Chat, chat, whiteboardAppID, "3.1.0", "3.2.0", nil)
			} else {
				install(fakegraph.Chat, chat, whiteboardAppID, "3.2.0", "3.2.0", nil)
			}
		}
		refs = append(refs, ref)
	}

	rdb, closeRedis, err := state.Connect(context.Background(), h.env["REDIS_URL"], slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	s.rdb = rdb
	s.store = state.New(rdb, state.Options{Prefix: s.prefix})
	b.Cleanup(func() {
		s.deleteKeys(b)
		closeRedis()
	})
	// What an activity in each conversation left: its reference (indexed
	// under the tenant) and its trusted service URL.
	trust := botframework.NewServiceURLs(botframework.ServiceURLOptions{Records: s.store.Conversations()})
	var wg sync.WaitGroup
	var failed atomic.Value
	next := make(chan approval.ConversationRef)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for ref := range next {
				err := s.store.Conversations().SaveReference(ctx, ref)
				if err == nil {
					err = trust.TrustServiceURL(ctx, ref.ConversationID, ref.ServiceURL)
				}
				if err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for _, ref := range refs {
		next <- ref
	}
	close(next)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return s
}

// run starts the replicas (the first watcher round sweeps: no sweep was
// ever recorded), waits until the sweep is queued and every job is done,
// then stops them and checks the cards.
func (s *sweep) run(b *testing.B, replicas int) sweepResult {
	ctx := context.Background()
	var r sweepResult
	var err error
	if r.memBefore, _, _, err = s.memory(ctx); err != nil {
		b.Fatal(err)
	}
	queue, err := s.store.Queue(state.QueueOptions{Consumer: "bench-observer"})
	if err != nil {
		b.Fatal(err)
	}
	watch := s.store.Watch()

	start := time.Now()
	var rs []*replica
	for range replicas {
		rs = append(rs, s.h.replica(b, nil, 0))
	}
	var seen string
	budget := s.store.BudgetWithFollowUps(s.budget, max(s.budget/followUpShare, 1))
	probed := false
	eventually(b, 2*time.Minute+time.Duration(s.n)*50*time.Millisecond, "the sweep to finish", func() bool {
		if !probed && s.connector.cards() >= len(s.pending)/2 {
			probed = true
			var err1, err2 error
			r.sweepAhead, _, err1 = budget.Take(ctx, testTenant, 0) // books nothing
			r.followUpWait, _, err2 = budget.TakeFollowUp(ctx, testTenant, 2)
			if err := errors.Join(err1, err2); err != nil {
				b.Fatal(err)
			}
		}
		swept, err := watch.LastSweep(ctx)
		if err != nil {
			b.Fatal(err)
		}
		st, err := queue.Stats(ctx)
		if err != nil {
			b.Fatal(err)
		}
		seen = fmt.Sprintf("%d jobs left, %d cards posted", st.Length, s.connector.cards())
		return !swept.IsZero() && st.Length == 0
	}, &seen)
	r.wall = time.Since(start)
	b.StopTimer()
	r.runs = map[string]int{}
	for _, rep := range rs {
		for outcome, n := range scanRuns(b, rep.url) {
			r.runs[outcome] += n
		}
		rep.stop()
	}

	r.graphCalls, r.installedCalls, r.catalogCalls = s.graph.counts()
	r.cards = s.connector.cards()
	if r.memAfter, r.keys, r.kinds, err = s.memory(ctx); err != nil {
		b.Fatal(err)
	}
	s.checkCards(b)
	return r
}

// checkCards fails unless every pending pair got exactly one card and
// nothing else did.
func (s *sweep) checkCards(b *testing.B) {
	ctx := context.Background()
	posted := map[pair]int{}
	var problems []string
	for id, convs := range s.connector.posts() {
		a, err := s.store.Approvals().Approval(ctx, id)
		if err != nil {
			b.Fatalf("a card for approval %s that Redis does not hold: %v", id, err)
		}
		p := pair{a.Upgrade.Installation.ID, a.Upgrade.Target.Version}
		posted[p] += len(convs)
		if convs[0] != a.Conversation.ConversationID {
			problems = append(problems, fmt.Sprintf("approval %s of %s posted in %s", id, a.Conversation.ConversationID, convs[0]))
		}
	}
	for p := range s.pending {
		if posted[p] != 1 {
			problems = append(problems, fmt.Sprintf("%s → %s: %d cards, want 1", p.installation, p.version, posted[p]))
		}
	}
	for p, k := range posted {
		if !s.pending[p] {
			problems = append(problems, fmt.Sprintf("%s → %s is not pending but got %d cards", p.installation, p.version, k))
		}
	}
	if k := s.connector.other(); k > 0 {
		problems = append(problems, fmt.Sprintf("%d connector calls besides the approval cards", k))
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		b.Fatalf("cards posted are not exactly the %d pending pairs (%d problems), e.g.:\n%s", len(s.pending), len(problems),
			strings.Join(problems[:min(len(problems), 10)], "\n"))
	}
}

// memory sums MEMORY USAGE over every key under the sweep's prefix, also by
// kind (the key's first word: ref, approval, …).
func (s *sweep) memory(ctx context.Context) (int64, int, map[string]int64, error) {
	var total int64
	keys := 0
	kinds := map[string]int64{}
	iter := s.rdb.Scan(ctx, 0, s.prefix+"*", 1000).Iterator()
	batch := make([]string, 0, 1000)
	flush := func() error {
		cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.MemoryUsage(ctx, k, 0)
			}
			return nil
		})
		if err != nil && err != redis.Nil {
			return err
		}
		for i, c := range cmds {
			v, _ := c.(*redis.IntCmd).Result() // a key that expired meanwhile counts 0
			total += v
			kind := strings.TrimPrefix(batch[i], s.prefix)
			if j := strings.IndexAny(kind, ":{|"); j > 0 {
				kind = kind[:j]
			}
			kinds[kind] += v
		}
		keys += len(batch)
		batch = batch[:0]
		return nil
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return 0, 0, nil, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return 0, 0, nil, err
	}
	return total, keys, kinds, flush()
}

func (s *sweep) deleteKeys(b *testing.B) {
	ctx := context.Background()
	iter := s.rdb.Scan(ctx, 0, s.prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	for len(keys) > 0 {
		k := min(len(keys), 500)
		if err := s.rdb.Unlink(ctx, keys[:k]...).Err(); err != nil {
			b.Logf("cannot delete the sweep's keys: %v", err)
			return
		}
		keys = keys[k:]
	}
}

// countingGraph adds latency to every Graph request and counts them.
type countingGraph struct {
	next      http.Handler
	latency   time.Duration
	all       atomic.Int64
	installed atomic.Int64
	catalog   atomic.Int64
}

func (g *countingGraph) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.all.Add(1)
	switch {
	case strings.HasSuffix(r.URL.Path, "/installedApps"):
		g.installed.Add(1)
	case strings.HasPrefix(r.URL.Path, "/v1.0/appCatalogs/"):
		g.catalog.Add(1)
	}
	time.Sleep(g.latency) // Graph's own latency, which the benchmark models
	g.next.ServeHTTP(w, r)
}

func (g *countingGraph) counts() (all, installed, catalog int) {
	return int(g.all.Load()), int(g.installed.Load()), int(g.catalog.Load())
}

// cardCounter is a Bot Framework connector that keeps, of each message
// posted, only the approval id of an approval card and where it went.
type cardCounter struct {
	mu     sync.Mutex
	byID   map[string][]string // approval id → conversations it was posted in
	n      int
	others int
}

func newCardCounter() *cardCounter { return &cardCounter{byID: map[string][]string{}} }

var approvalIDField = regexp.MustCompile(`"approvalId":"([^"]+)"`)

func (c *cardCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	conv, inConversation := strings.CutPrefix(r.URL.Path, "/v3/conversations/")
	conv, newMessage := strings.CutSuffix(conv, "/activities")
	isPost := inConversation && newMessage && r.Method == http.MethodPost
	c.mu.Lock()
	c.n++
	id := fmt.Sprintf("activity-%d", c.n)
	m := approvalIDField.FindSubmatch(body)
	if isPost && m != nil && strings.Contains(string(body), `"verb":"approve"`) {
		c.byID[string(m[1])] = append(c.byID[string(m[1])], conv)
	} else {
		c.others++
	}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]string{"id": id})
}

func (c *cardCounter) cards() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, convs := range c.byID {
		n += len(convs)
	}
	return n
}

func (c *cardCounter) other() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.others
}

func (c *cardCounter) posts() map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]string, len(c.byID))
	for id, convs := range c.byID {
		out[id] = slices.Clone(convs)
	}
	return out
}
