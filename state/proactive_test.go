package state_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/state"
)

var (
	_ bot.ProactiveStore = (*state.Proactive)(nil)
	_ bot.JobQueue       = (*state.Queue)(nil)
)

func TestReferenceIsWrittenOnlyWhenNewOrChangedAndIndexedByTenant(t *testing.T) {
	s, _ := newConversations(t, state.Options{})
	ctx := context.Background()
	seen := time.Now().UTC().Truncate(time.Second)
	ref := approval.ConversationRef{ConversationID: "19:a@thread.v2", ServiceURL: "https://smba.trafficmanager.net/amer/",
		ChannelID: "msteams", TenantID: tenant, BotID: "28:app", UpdatedAt: seen}
	if err := s.SaveReference(ctx, ref); err != nil {
		t.Fatal(err)
	}
	ref.UpdatedAt = seen.Add(time.Minute)
	if err := s.SaveReference(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Reference(ctx, ref.ConversationID); !got.UpdatedAt.Equal(seen) {
		t.Errorf("an unchanged reference was rewritten (updated %s)", got.UpdatedAt)
	}
	ref.ServiceURL = "https://smba.trafficmanager.net/emea/"
	if err := s.SaveReference(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Reference(ctx, ref.ConversationID); got.ServiceURL != ref.ServiceURL {
		t.Errorf("a changed reference was not written: %s", got.ServiceURL)
	}
	other := ref
	other.ConversationID = "19:b@thread.v2"
	if err := s.SaveReference(ctx, other); err != nil {
		t.Fatal(err)
	}
	if ts, _ := s.Tenants(ctx); len(ts) != 1 || ts[0] != tenant {
		t.Errorf("tenants %v", ts)
	}
	convs := func() map[string]bool {
		m := map[string]bool{}
		if err := s.Conversations(ctx, tenant, func(id string) error { m[id] = true; return nil }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := convs(); len(m) != 2 || !m["19:a@thread.v2"] || !m["19:b@thread.v2"] {
		t.Errorf("where the bot is: %v", m)
	}
	if err := s.Forget(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if m := convs(); len(m) != 1 || m["19:a@thread.v2"] {
		t.Errorf("after forgetting: %v", m)
	}
	if _, err := s.Reference(ctx, ref.ConversationID); bot.ErrorCode(err) != bot.CodeNotFound {
		t.Errorf("forgotten reference: %v", err)
	}
}

// A tenant the bot is no longer in anywhere leaves the tenant set, so the
// catalog watcher and sweeps stop reading its Graph: when its last
// conversation is forgotten (the bot removed), or when a sweep finds its
// last scope's reference gone. A conversation seen again brings it back.
func TestTenantWithNoScopeLeftLeavesTheTenantSet(t *testing.T) {
	prefix := fmt.Sprintf("test:leave:%d:", time.Now().UnixNano())
	s, rdb := newConversations(t, state.Options{Prefix: prefix, ReferenceTTL: time.Hour})
	ctx := context.Background()
	tenants := func() []string {
		t.Helper()
		ts, err := s.Tenants(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	ref := func(id string) approval.ConversationRef {
		return approval.ConversationRef{ConversationID: id, ServiceURL: "https://smba.trafficmanager.net/amer/", ChannelID: "msteams",
			TenantID: tenant, BotID: "28:app", UpdatedAt: time.Now().UTC(),
			Scope: &approval.Scope{Kind: approval.ScopeChat, ID: id, TenantID: tenant}}
	}
	a, b := ref("19:a@thread.v2"), ref("19:b@thread.v2")
	for _, r := range []approval.ConversationRef{a, b} {
		if err := s.SaveReference(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Forget(ctx, a); err != nil {
		t.Fatal(err)
	}
	if ts := tenants(); len(ts) != 1 {
		t.Errorf("with a chat left, tenants %v, want %s", ts, tenant)
	}
	if err := s.Forget(ctx, b); err != nil {
		t.Fatal(err)
	}
	if ts := tenants(); len(ts) != 0 {
		t.Errorf("with no chat left, tenants %v, want none", ts)
	}

	// Back in a chat, then its reference runs out unseen: the next sweep
	// drops the scope and the tenant with it.
	if err := s.SaveReference(ctx, a); err != nil {
		t.Fatal(err)
	}
	if ts := tenants(); len(ts) != 1 {
		t.Fatalf("a chat seen again: tenants %v, want %s", ts, tenant)
	}
	if err := rdb.Del(ctx, prefix+"ref:{"+a.ConversationID+"}").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Conversations(ctx, tenant, func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if ts := tenants(); len(ts) != 0 {
		t.Errorf("after a sweep found no reference left, tenants %v, want none", ts)
	}
}

// The installation scope counts, by value: once known it is written; the
// same scope again (another activity, another copy) is no change.
func TestReferenceScopeIsComparedByValue(t *testing.T) {
	s, _ := newConversations(t, state.Options{})
	ctx := context.Background()
	seen := time.Now().UTC().Truncate(time.Second)
	ref := approval.ConversationRef{ConversationID: "19:a@thread.v2", ServiceURL: "https://smba.trafficmanager.net/amer/",
		ChannelID: "msteams", TenantID: tenant, BotID: "28:app", UpdatedAt: seen}
	if err := s.SaveReference(ctx, ref); err != nil {
		t.Fatal(err)
	}
	ref.Scope = &approval.Scope{Kind: approval.ScopeChat, ID: ref.ConversationID, TenantID: tenant}
	ref.UpdatedAt = seen.Add(time.Minute)
	if err := s.SaveReference(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Reference(ctx, ref.ConversationID); got.Scope == nil || *got.Scope != *ref.Scope {
		t.Errorf("a reference that gained its scope was not written: %+v", got.Scope)
	}
	same := *ref.Scope
	ref.Scope, ref.UpdatedAt = &same, seen.Add(2*time.Minute)
	if err := s.SaveReference(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Reference(ctx, ref.ConversationID); !got.UpdatedAt.Equal(seen.Add(time.Minute)) {
		t.Errorf("the same scope rewrote the reference (updated %s)", got.UpdatedAt)
	}
	other := same
	other.ID = "19:b@thread.v2"
	ref.Scope, ref.UpdatedAt = &other, seen.Add(3*time.Minute)
	if err := s.SaveReference(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Reference(ctx, ref.ConversationID); got.Scope == nil || got.Scope.ID != "19:b@thread.v2" {
		t.Errorf("a changed scope was not written: %+v", got.Scope)
	}
}

// An idle worker reads each shard on every poll, but moves delayed jobs
// and looks for a dead replica's jobs there only every TendEvery: idle
// replicas must not keep Redis busy.
func TestIdleQueueTendsShardsOnlyEveryTendEvery(t *testing.T) {
	s, rdb := newStore(t, state.Options{})
	hook := &roundTrips{}
	rdb.AddHook(hook)
	ctx := context.Background()
	q, err := s.Queue(state.QueueOptions{Consumer: "idle", Shards: 4, Block: 20 * time.Millisecond, TendEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := q.Next(ctx); err != nil || ok { // creates the groups and tends every shard once
		t.Fatalf("empty queue: %v %v", ok, err)
	}
	hook.single.Store(0)
	const polls = 10
	for range polls {
		if _, ok, err := q.Next(ctx); err != nil || ok {
			t.Fatalf("empty queue: %v %v", ok, err)
		}
	}
	if got := hook.single.Load(); got != polls*4 {
		t.Errorf("%d polls of 4 idle shards sent %d commands, want one read a shard (%d)", polls, got, polls*4)
	}
}

func TestQueueHandsAnAbandonedJobToAnotherConsumer(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	dead, err := s.Queue(state.QueueOptions{Consumer: "dead", Shards: 1, Block: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	alive, _ := s.Queue(state.QueueOptions{Consumer: "alive", Shards: 1, Block: 50 * time.Millisecond, ReclaimAfter: 200 * time.Millisecond})
	if _, ok, err := alive.Next(ctx); err != nil || ok {
		t.Fatalf("empty queue: %v %v", ok, err)
	}
	if err := alive.Enqueue(ctx, bot.ScanJob{TenantID: tenant, ConversationID: "19:a@thread.v2", Reason: "sweep"}); err != nil {
		t.Fatal(err)
	}
	j, ok, err := dead.Next(ctx)
	if err != nil || !ok || j.ConversationID != "19:a@thread.v2" {
		t.Fatalf("first delivery: %+v %v %v", j, ok, err)
	}
	// The consumer dies without acknowledging.
	if _, ok, _ := alive.Next(ctx); ok {
		t.Fatal("a job in flight was handed out again at once")
	}
	var j2 bot.Job
	eventually(t, "the job reclaimed once idle for 200 ms", func() bool {
		var ok bool
		var err error
		j2, ok, err = alive.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
	if j2.ID != j.ID {
		t.Fatalf("reclaimed %+v, want the abandoned job %s", j2, j.ID)
	}
	if st, _ := alive.Stats(ctx); st.Length != 1 || st.OldestAge <= 0 {
		t.Errorf("stats %+v", st)
	}
	if err := alive.Ack(ctx, j2); err != nil {
		t.Fatal(err)
	}
	// Longer than ReclaimAfter: the job would be reclaimed by now had the
	// acknowledgement not removed it. The idle time is what is under test.
	time.Sleep(300 * time.Millisecond)
	if _, ok, _ := alive.Next(ctx); ok {
		t.Error("an acknowledged job came back")
	}
	if st, _ := alive.Stats(ctx); st.Length != 0 {
		t.Errorf("stats after ack %+v", st)
	}
}

func TestDelayedJobComesBackWhenDue(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	q, _ := s.Queue(state.QueueOptions{Consumer: "c", Shards: 2, Block: 20 * time.Millisecond})
	if err := q.Enqueue(ctx, bot.ScanJob{TenantID: tenant, ConversationID: "19:a@thread.v2"}); err != nil {
		t.Fatal(err)
	}
	next := func() (bot.Job, bool) {
		for range 4 { // every shard, twice
			if j, ok, err := q.Next(ctx); err != nil {
				t.Fatal(err)
			} else if ok {
				return j, true
			}
		}
		return bot.Job{}, false
	}
	j, ok := next()
	if !ok {
		t.Fatal("no job")
	}
	j.Attempt = 3
	if err := q.Delay(ctx, j, time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok := next(); ok {
		t.Fatal("a delayed job ran early")
	}
	if st, _ := q.Stats(ctx); st.Length != 1 {
		t.Errorf("a delayed job is not counted: %+v", st)
	}
	var j2 bot.Job
	eventually(t, "the delayed job once due", func() bool { j2, ok = next(); return ok })
	if j2.Attempt != 3 || j2.ConversationID != j.ConversationID {
		t.Fatalf("delayed job: %+v", j2)
	}
}

// A sweep of one tenant puts every job on one shard: each Next hands one out
// while any is left, never coming back empty from the shards that have none.
func TestOneBusyShardIsServedWithoutWaitingOnTheEmptyOnes(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	q, _ := s.Queue(state.QueueOptions{Consumer: "c", Shards: 4, Block: 50 * time.Millisecond})
	const jobs = 12
	for i := range jobs {
		if err := q.Enqueue(ctx, bot.ScanJob{TenantID: tenant, ConversationID: fmt.Sprintf("19:%d@thread.v2", i)}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for i := range jobs {
		j, ok, err := q.Next(ctx)
		if err != nil || !ok {
			t.Fatalf("call %d of Next: ok %v, err %v, with %d jobs still queued", i+1, ok, err, jobs-i)
		}
		seen[j.ConversationID] = true
		if err := q.Ack(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != jobs {
		t.Errorf("%d distinct jobs, want %d", len(seen), jobs)
	}
	if _, ok, err := q.Next(ctx); err != nil || ok {
		t.Errorf("an empty queue handed out a job (ok %v, err %v)", ok, err)
	}
}

func TestLeaseIsHeldByOneAndFencesTheOldHolder(t *testing.T) {
	prefix := fmt.Sprintf("test:lease:%d:", time.Now().UnixNano())
	s, rdb := newStore(t, state.Options{Prefix: prefix})
	ctx := context.Background()
	w := s.Watch()
	// leaseHolder reads who holds the lease and its token ("token|holder").
	leaseHolder := func() (string, int64) {
		v, err := rdb.Get(ctx, prefix+"lease:{watcher}").Result()
		if err != nil {
			return "", 0
		}
		tok, holder, _ := strings.Cut(v, "|")
		n, _ := strconv.ParseInt(tok, 10, 64)
		return holder, n
	}
	t1, ok, err := w.Acquire(ctx, "a", time.Second)
	if err != nil || !ok {
		t.Fatalf("a: %v %v", ok, err)
	}
	if _, ok, _ := w.Acquire(ctx, "b", time.Second); ok {
		t.Fatal("b took a held lease")
	}
	if again, ok, _ := w.Acquire(ctx, "a", time.Second); !ok || again != t1 {
		t.Fatalf("renewal: %d %v, want token %d", again, ok, t1)
	}
	if err := w.SaveSweep(ctx, t1, time.Now()); err != nil {
		t.Fatal(err)
	}
	// a stalls past its lease; b takes over with a higher token.
	var t2 int64
	eventually(t, "b to take the lease once a's ends", func() bool {
		t2, ok, err = w.Acquire(ctx, "b", time.Second)
		return err == nil && ok
	})
	if t2 <= t1 {
		t.Fatalf("b after expiry: token %d, want more than %d", t2, t1)
	}
	if holder, tok := leaseHolder(); holder != "b" || tok != t2 {
		t.Errorf("holder %s %d", holder, tok)
	}
	if err := w.SaveCatalog(ctx, t1, tenant, map[string]string{"app": "9.9"}); !errors.Is(err, bot.ErrLeaseLost) {
		t.Errorf("the old holder's write: %v, want ErrLeaseLost", err)
	}
	if err := w.SaveCatalog(ctx, t2, tenant, map[string]string{"app": "1.1"}); err != nil {
		t.Fatal(err)
	}
	if seen, known, _ := w.SeenCatalog(ctx, tenant); !known || seen["app"] != "1.1" {
		t.Errorf("seen %v %v", seen, known)
	}
	if err := w.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if holder, _ := leaseHolder(); holder != "b" {
		t.Error("a released b's lease")
	}
}

func TestPostClaimIsOnceUnlessAbandoned(t *testing.T) {
	st, _ := newStore(t, state.Options{})
	s := st.Proactive()
	ctx := context.Background()
	claim := func(stale time.Duration) bool {
		ok, _, err := s.ClaimPost(ctx, tenant, "inst", "def-1.1", stale)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !claim(time.Minute) || claim(time.Minute) {
		t.Fatal("claim is not once")
	}
	// Another scan, forced or not, learns that a post is under way.
	if ok, held, err := s.ClaimPost(ctx, tenant, "inst", "def-1.1", time.Minute); err != nil || ok || !held {
		t.Fatalf("a claim in progress: granted %v, held %v, %v", ok, held, err)
	}
	eventually(t, "an abandoned claim taken over once 10 ms stale", func() bool { return claim(10 * time.Millisecond) })
	if err := s.PostDone(ctx, tenant, "inst", "def-1.1", "apr_1"); err != nil {
		t.Fatal(err)
	}
	// Longer than the 10 ms staleness: a claim still under way could be
	// taken over by now. The passing time is what is under test.
	time.Sleep(50 * time.Millisecond)
	if claim(10 * time.Millisecond) {
		t.Fatal("a posted card was claimed again")
	}
	if _, held, _ := s.ClaimPost(ctx, tenant, "inst", "def-1.1", time.Minute); held {
		t.Fatal("a posted card reads as a post under way")
	}
	if err := s.ReleasePost(ctx, tenant, "inst", "def-1.1"); err != nil || claim(time.Minute) {
		t.Fatal("releasing a done post made it claimable")
	}
}

// A second's worth of calls goes through at once; calls beyond it are
// booked one after another at the budget's pace, each for its own moment.
func TestBudgetLimitsATenantPerSecondAndBooksTheRest(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	b := s.Budget(10)
	var waits []time.Duration
	for range 10 {
		w, booked, err := b.Take(ctx, tenant, 2) // a scan: 200 ms of budget
		if err != nil {
			t.Fatal(err)
		}
		if booked != (w > 0) {
			t.Errorf("wait %s, booked %v", w, booked)
		}
		waits = append(waits, w)
	}
	for i, w := range waits {
		want := time.Duration(max(0, i-4)) * 200 * time.Millisecond
		if w > want || w < want-50*time.Millisecond {
			t.Errorf("take %d: wait %s, want about %s (%v)", i+1, w, want, waits)
		}
	}
	if w, _, _ := b.Take(ctx, "other-tenant", 2); w != 0 {
		t.Error("one tenant's spending limited another")
	}
}

// People's commands spend the tenant's budget without waiting, even
// while Graph has the tenant paused, and the sweep's next booking waits
// behind what they spent: together they stay within the tenant's calls a
// second.
func TestPeoplesCallsGoAheadOfTheSweep(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	b := s.Budget(10)
	for range 30 { // a busy minute of checks: 3 s of the budget
		if err := b.Spend(ctx, tenant, 1); err != nil {
			t.Fatal(err)
		}
	}
	w, booked, err := b.Take(ctx, tenant, 1)
	if err != nil || !booked || w < 2050*time.Millisecond || w > 2100*time.Millisecond {
		t.Errorf("the sweep's next call: wait %s (booked %v, %v), want about 2.1 s (3 s spent and its own 0.1 s, less the 1 s burst)", w, booked, err)
	}
	if err := b.Pause(ctx, tenant, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := b.Spend(ctx, tenant, 1); err != nil {
		t.Errorf("a person's call while the tenant is paused: %v", err)
	}
	if w, _, _ := b.Take(ctx, "other-tenant", 1); w != 0 {
		t.Error("one tenant's people held up another's sweep")
	}
	// Someone clicking without end holds background work up a minute at most.
	if err := b.Spend(ctx, "clicked-tenant", 100_000); err != nil {
		t.Fatal(err)
	}
	if w, _, _ := b.Take(ctx, "clicked-tenant", 1); w > time.Minute {
		t.Errorf("after endless clicks the sweep waits %s, want at most a minute", w)
	}
}

// Graph throttled a tenant for two minutes: its budget says to wait that
// long, on every replica, and a shorter pause does not cut it short.
func TestBudgetPausedUntilRetryAfter(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	b, other := s.Budget(10), s.Budget(10) // two replicas
	if err := b.Pause(ctx, tenant, time.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := other.Pause(ctx, tenant, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	w, booked, err := other.Take(ctx, tenant, 2)
	if err != nil || booked {
		t.Fatalf("booked %v, err %v: a paused tenant's budget books nothing", booked, err)
	}
	if w < 2*time.Minute-5*time.Second || w > 2*time.Minute {
		t.Errorf("a paused tenant's budget says wait %s, want about 2m", w)
	}
	if w, _, _ := other.Take(ctx, "other-tenant", 2); w != 0 {
		t.Error("one tenant's pause held up another")
	}
}

// A sweep booked the tenant's budget for the next half minute: a follow-up
// still goes at once, from the share reserved for follow-ups, and the next
// waits behind that one only; the sweep's next booking is not moved.
func TestFollowUpsTakeTheirReservedShareNotTheSweepsTurn(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	b := s.BudgetWithFollowUps(10, 2) // the sweep books 8 calls a second
	var last time.Duration
	for range 100 {
		w, _, err := b.Take(ctx, tenant, 2)
		if err != nil {
			t.Fatal(err)
		}
		last = w
	}
	if last < 20*time.Second {
		t.Fatalf("the sweep's 100th scan waits %s: the budget is not saturated", last)
	}
	w, booked, err := b.TakeFollowUp(ctx, tenant, 2)
	if err != nil || w != 0 || booked {
		t.Errorf("a follow-up behind the sweep: wait %s, booked %v, err %v; want it now", w, booked, err)
	}
	w, booked, err = b.TakeFollowUp(ctx, tenant, 2)
	if err != nil || !booked || w < 950*time.Millisecond || w > time.Second {
		t.Errorf("a second follow-up: wait %s, booked %v, err %v; want about 1s (2 calls at 2 a second)", w, booked, err)
	}
	next, _, _ := b.Take(ctx, tenant, 2)
	if next > last+500*time.Millisecond { // 250 ms for its own two calls
		t.Errorf("the sweep's next scan waits %s after %s: follow-ups moved it", next, last)
	}
	// Without a sweep, a follow-up spends the whole budget's room.
	idle := s.BudgetWithFollowUps(10, 2)
	for i := range 5 {
		if w, _, _ := idle.TakeFollowUp(ctx, "idle-tenant", 2); w != 0 {
			t.Errorf("follow-up %d of an idle tenant waits %s, want none (a second's worth of the budget)", i+1, w)
		}
	}
}
