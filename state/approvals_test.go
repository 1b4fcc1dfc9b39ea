package state_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/bot/storetest"
	"github.com/upgradeapprovals/bot/state"
)

const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"

func sampleApproval() approval.Approval {
	now := time.Now().UTC()
	return approval.Approval{
		Status: approval.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		Conversation: approval.ConversationRef{ConversationID: "19:general@thread.tacv2;messageid=1", TenantID: tenant},
		Upgrade: approval.PendingUpgrade{
			Installation: approval.Installation{ID: "inst", DisplayName: "Polls", Definition: approval.AppDefinition{Version: "1.0.0"},
				Scope: approval.Scope{Kind: approval.ScopeTeam, ID: "team-1", TenantID: tenant}},
			Target: approval.AppDefinition{ID: "def-1.1.0", Version: "1.1.0"},
		},
	}
}

func TestOpenApprovalIsOncePerInstallationAndTarget(t *testing.T) {
	s, _ := newApprovals(t, state.Options{})
	ctx := context.Background()
	first, created, err := s.OpenApproval(ctx, sampleApproval())
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	again, created, err := s.OpenApproval(ctx, sampleApproval())
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("second check opened %s (created %v), want the open %s", again.ID, created, first.ID)
	}
	// Another channel thread of the same team asks about the same
	// installation: the same request, not one per conversation.
	thread := sampleApproval()
	thread.Conversation.ConversationID = "19:random@thread.tacv2;messageid=7"
	if o, created, _ := s.OpenApproval(ctx, thread); created || o.ID != first.ID {
		t.Errorf("another channel of the team opened %s (created %v), want %s", o.ID, created, first.ID)
	}
	// A different target version is a different request.
	other := sampleApproval()
	other.Upgrade.Target.ID, other.Upgrade.Target.Version = "def-1.2.0", "1.2.0"
	if o, created, _ := s.OpenApproval(ctx, other); !created || o.ID == first.ID {
		t.Error("a new catalog version reused the old request")
	}
	// While the upgrade is in flight, check finds the same approval.
	if _, err := s.ClaimUpgrade(ctx, first.ID, approval.Person{Name: "Megan"}, time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if o, created, _ := s.OpenApproval(ctx, sampleApproval()); created || o.ID != first.ID || o.Status != approval.StatusUpgrading {
		t.Errorf("check during the upgrade opened %s (%s, created %v), want the upgrading %s", o.ID, o.Status, created, first.ID)
	}
	if _, err := s.Transition(ctx, first.ID, []approval.Status{approval.StatusUpgrading}, func(a *approval.Approval) { a.Status = approval.StatusRejected }); err != nil {
		t.Fatal(err)
	}
	// Once rejected, a new check opens a new request.
	if n, created, _ := s.OpenApproval(ctx, sampleApproval()); !created || n.ID == first.ID {
		t.Error("a rejected request was reopened instead of replaced")
	}
}

func TestRacingOpensAgreeAcrossReplicas(t *testing.T) {
	a, b := approvalReplicas(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var created atomic.Int32
	ids := make([]string, 24)
	for i := range ids {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, c, err := s.OpenApproval(ctx, sampleApproval())
			if err != nil {
				t.Error(err)
				return
			}
			if c {
				created.Add(1)
			}
			ids[i] = got.ID
		}()
	}
	wg.Wait()
	if created.Load() != 1 {
		t.Errorf("%d approvals created, want 1", created.Load())
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("replicas disagree on the open approval: %v", ids)
		}
	}
}

func TestStaleClaimHasExactlyOneTakeover(t *testing.T) {
	a, b := approvalReplicas(t)
	ctx := context.Background()
	ap, _, err := a.OpenApproval(ctx, sampleApproval())
	if err != nil {
		t.Fatal(err)
	}
	claim, err := a.ClaimUpgrade(ctx, ap.ID, approval.Person{Name: "Megan"}, time.Now(), 300*time.Millisecond)
	if err != nil || claim.ClaimToken == "" || claim.Status != approval.StatusUpgrading {
		t.Fatalf("claim %+v %v", claim, err)
	}
	// While the lease lives nobody takes over, and nothing is listed.
	if _, err := b.TakeOverClaim(ctx, ap.ID, time.Minute); !errors.Is(err, bot.ErrConflict) {
		t.Errorf("takeover of a live claim: %v, want conflict", err)
	}
	if ids, _ := b.ExpiredClaims(ctx, 10); len(ids) != 0 {
		t.Errorf("expired claims %v while the lease lives", ids)
	}
	eventually(t, "the claim listed as expired once its 300 ms lease ends", func() bool {
		ids, err := b.ExpiredClaims(ctx, 10)
		return err == nil && len(ids) == 1 && ids[0] == ap.ID
	})
	// The index lists a claim from the instant its lease ends by the
	// claimant's clock, which can be a moment before Redis expires the
	// lease key: a round in which every takeover still meets the live key
	// is run again. Two winners in one round is the failure.
	var wins atomic.Int32
	tokens := make(chan approval.Approval, 16)
	for deadline := time.Now().Add(5 * time.Second); wins.Load() == 0 && time.Now().Before(deadline); {
		var wg sync.WaitGroup
		for i := range 16 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := s.TakeOverClaim(ctx, ap.ID, time.Minute)
				switch {
				case err == nil:
					wins.Add(1)
					tokens <- got
				case !errors.Is(err, bot.ErrConflict):
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	close(tokens)
	if wins.Load() != 1 {
		t.Fatalf("%d takeovers won, want exactly 1", wins.Load())
	}
	winner := <-tokens
	// The first claimant, back from the dead, can no longer record anything.
	if _, err := a.Settle(ctx, claim, func(x *approval.Approval) { x.Status = approval.StatusFailed }); !errors.Is(err, bot.ErrConflict) {
		t.Errorf("the old claim settled: %v", err)
	}
	done, err := b.Settle(ctx, winner, func(x *approval.Approval) { x.Status = approval.StatusUpgraded })
	if err != nil || done.Status != approval.StatusUpgraded || done.ClaimToken != "" {
		t.Fatalf("settle by the takeover: %+v %v", done, err)
	}
	if _, err := b.Settle(ctx, winner, func(x *approval.Approval) { x.Status = approval.StatusFailed }); !errors.Is(err, bot.ErrConflict) {
		t.Errorf("settled twice: %v", err)
	}
	if ids, _ := b.ExpiredClaims(ctx, 10); len(ids) != 0 {
		t.Errorf("a settled claim is still listed: %v", ids)
	}
	// A decided approval cannot be claimed again.
	if _, err := a.ClaimUpgrade(ctx, ap.ID, approval.Person{}, time.Now(), time.Minute); !errors.Is(err, bot.ErrConflict) {
		t.Errorf("claim of an upgraded approval: %v", err)
	}
}

func TestLeaseHasOneHolder(t *testing.T) {
	a, b := replicas(t)
	ctx := context.Background()
	if ok, err := a.HoldLease(ctx, "reaper", "one", 300*time.Millisecond); !ok || err != nil {
		t.Fatalf("first holder: %v %v", ok, err)
	}
	if ok, _ := b.HoldLease(ctx, "reaper", "two", time.Second); ok {
		t.Error("two holders at once")
	}
	if ok, _ := a.HoldLease(ctx, "reaper", "one", 300*time.Millisecond); !ok {
		t.Error("the holder could not renew")
	}
	eventually(t, "a takeover once the 300 ms lease ends", func() bool {
		ok, _ := b.HoldLease(ctx, "reaper", "two", time.Second)
		return ok
	})
}

// eventually polls cond until it holds; a Redis TTL ends when Redis says so.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// An upgrade Graph did not confirm keeps its claim through the grace
// period: only its holder can extend it, and nothing lists it as expired
// before the extended lease ends.
func TestHeldClaimOutlivesItsFirstLease(t *testing.T) {
	a, b := approvalReplicas(t)
	ctx := context.Background()
	ap, _, err := a.OpenApproval(ctx, sampleApproval())
	if err != nil {
		t.Fatal(err)
	}
	claim, err := a.ClaimUpgrade(ctx, ap.ID, approval.Person{Name: "Megan"}, time.Now(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.HoldClaim(ctx, ap.ID, "not-the-token", time.Minute); !errors.Is(err, bot.ErrConflict) {
		t.Errorf("hold with another token: %v, want conflict", err)
	}
	held, err := b.HoldClaim(ctx, ap.ID, claim.ClaimToken, time.Minute)
	if err != nil || held.ClaimToken != claim.ClaimToken || held.Status != approval.StatusUpgrading {
		t.Fatalf("hold %+v %v", held, err)
	}
	// Past the first lease: a claim not held would be listed by now. The
	// passing time is what is under test.
	time.Sleep(300 * time.Millisecond)
	if ids, _ := b.ExpiredClaims(ctx, 10); slices.Contains(ids, ap.ID) {
		t.Errorf("a held claim is listed as expired: %v", ids)
	}
	if _, err := b.TakeOverClaim(ctx, ap.ID, time.Minute); !errors.Is(err, bot.ErrConflict) {
		t.Errorf("takeover of a held claim: %v, want conflict", err)
	}
	if _, err := a.Settle(ctx, claim, func(x *approval.Approval) { x.Status = approval.StatusFailed }); err != nil {
		t.Fatalf("the holder settles: %v", err)
	}
	if _, err := a.HoldClaim(ctx, ap.ID, claim.ClaimToken, time.Minute); !errors.Is(err, bot.ErrConflict) {
		t.Errorf("hold after settling: %v, want conflict", err)
	}
}

func TestOnlyOneClaimWins(t *testing.T) {
	a, b := approvalReplicas(t)
	ctx := context.Background()
	ap, _, err := a.OpenApproval(ctx, sampleApproval())
	if err != nil {
		t.Fatal(err)
	}
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Transition(ctx, ap.ID, []approval.Status{approval.StatusPending}, func(x *approval.Approval) {
				x.Status = approval.StatusUpgrading
				x.DecidedBy = &approval.Person{Name: fmt.Sprint(i)}
			})
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, bot.ErrConflict):
				conflicts.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != 15 {
		t.Fatalf("%d claims won and %d conflicted, want 1 and 15", wins.Load(), conflicts.Load())
	}
	got, err := b.Approval(ctx, ap.ID)
	if err != nil || got.Status != approval.StatusUpgrading || got.DecidedBy == nil {
		t.Errorf("after the race: %+v %v", got, err)
	}
}

func TestTransitionOfUnknownApproval(t *testing.T) {
	s, _ := newApprovals(t, state.Options{})
	_, err := s.Transition(context.Background(), "apr_none", []approval.Status{approval.StatusPending}, func(*approval.Approval) {})
	if !errors.Is(err, bot.ErrNotFound) {
		t.Errorf("err %v, want not_found", err)
	}
	if _, err := s.Approval(context.Background(), "apr_none"); !errors.Is(err, bot.ErrNotFound) {
		t.Errorf("err %v, want not_found", err)
	}
}

func TestBatchAndAudit(t *testing.T) {
	s, _ := newApprovals(t, state.Options{})
	ctx := context.Background()
	id, err := s.SaveBatch(ctx, []string{"apr_1", "apr_2"})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := s.Batch(ctx, id); err != nil || b.ID != id || len(b.Approvals) != 2 || b.Approvals[1] != "apr_2" || len(b.Lists) != 0 {
		t.Errorf("batch %+v %v", b, err)
	}
	for i := range 60 {
		if _, err := s.RecordOutcome(ctx, "19:abc@thread.v2", approval.AuditEvent{App: fmt.Sprint(i), Status: approval.StatusUpgraded}); err != nil {
			t.Fatal(err)
		}
	}
	events, err := s.Audit(ctx, "19:abc@thread.v2", 10)
	if err != nil || len(events) != 10 || events[0].App != "59" {
		t.Fatalf("audit %+v %v, want the newest first", events, err)
	}
	all, _ := s.Audit(ctx, "19:abc@thread.v2", 100)
	if len(all) != 50 {
		t.Errorf("history keeps %d events, want 50", len(all))
	}
}

// A batch's list messages are recorded with it (once each, bounded, gone
// with it), and each approval knows the batches it is listed in, newest
// first, so that any replica can redraw them.
func TestBatchListsAreKeptWithTheBatch(t *testing.T) {
	prefix := fmt.Sprintf("test:lists:%d:", time.Now().UnixNano())
	s, rdb := newApprovals(t, state.Options{Prefix: prefix})
	ctx := context.Background()
	a, _, err := s.OpenApproval(ctx, sampleApproval())
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.SaveBatch(ctx, []string{a.ID, "apr_other"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.SaveBatch(ctx, []string{a.ID})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.ListedIn(ctx, a.ID); err != nil || !slices.Equal(got, []string{second, first}) {
		t.Errorf("listed in %v %v, want %v newest first", got, err, []string{second, first})
	}
	if got, _ := s.ListedIn(ctx, "apr_other"); !slices.Equal(got, []string{first}) {
		t.Errorf("the other approval is listed in %v, want %v", got, []string{first})
	}
	if got, err := s.ListedIn(ctx, "apr_none"); err != nil || len(got) != 0 {
		t.Errorf("an approval never listed is in %v %v", got, err)
	}

	list := approval.PostedCard{Conversation: approval.ConversationRef{ConversationID: "19:abc@thread.v2", Locale: "zh-CN",
		Scope: &approval.Scope{Kind: approval.ScopeChat, ID: "19:abc@thread.v2", TenantID: tenant}}, ActivityID: "1700000000001"}
	for range 2 { // the check's reply, then Approve all on it
		if err := s.RecordList(ctx, first, list); err != nil {
			t.Fatal(err)
		}
	}
	b, err := s.Batch(ctx, first)
	if err != nil || len(b.Lists) != 1 || b.Lists[0].ActivityID != list.ActivityID ||
		b.Lists[0].Conversation.Locale != "zh-CN" || b.Lists[0].Conversation.Scope == nil {
		t.Fatalf("batch %+v %v, want the one list as recorded", b, err)
	}
	if b, _ := s.Batch(ctx, second); len(b.Lists) != 0 {
		t.Errorf("another batch has the list: %+v", b.Lists)
	}
	for i := range 30 {
		list.ActivityID = fmt.Sprint("activity-", i)
		if err := s.RecordList(ctx, first, list); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := s.Batch(ctx, first); len(b.Lists) != 20 {
		t.Errorf("a batch keeps %d lists, want at most 20", len(b.Lists))
	}
	if err := s.RecordList(ctx, "bat_none", list); !errors.Is(err, bot.ErrNotFound) {
		t.Errorf("recording a list of no batch: %v, want not_found", err)
	}
	// The lists expire with their batch.
	batchTTL := rdb.PTTL(ctx, prefix+"batch:{"+first+"}").Val()
	if ttl := rdb.PTTL(ctx, prefix+"batchlists:{"+first+"}").Val(); ttl <= 0 || ttl > batchTTL {
		t.Errorf("the lists expire in %s, the batch in %s", ttl, batchTTL)
	}
}

// The claim holder writes against the approval as it last had it; a card
// another replica recorded meanwhile is neither lost nor a reason to fail.
func TestClaimHolderKeepsWhatOthersWroteMeanwhile(t *testing.T) {
	a, b := approvalReplicas(t)
	ctx := context.Background()
	ap, _, err := a.OpenApproval(ctx, sampleApproval())
	if err != nil {
		t.Fatal(err)
	}
	claim, err := a.ClaimUpgrade(ctx, ap.ID, approval.Person{Name: "Megan"}, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	marked, err := a.Amend(ctx, claim, func(x *approval.Approval) { x.UpgradeSentAt = time.Now().UTC() })
	if err != nil || marked.UpgradeSentAt.IsZero() {
		t.Fatalf("amend: %+v %v", marked, err)
	}
	card := approval.PostedCard{ActivityID: "activity-9", Conversation: approval.ConversationRef{ConversationID: "19:random@thread.tacv2;messageid=7"}}
	if _, err := b.Transition(ctx, ap.ID, []approval.Status{approval.StatusUpgrading}, func(x *approval.Approval) {
		x.OtherCards = append(x.OtherCards, card)
	}); err != nil {
		t.Fatal(err)
	}
	done, err := a.Settle(ctx, marked, func(x *approval.Approval) { x.Status = approval.StatusUpgraded })
	if err != nil || done.Status != approval.StatusUpgraded || done.UpgradeSentAt.IsZero() || !slices.Contains(done.OtherCards, card) {
		t.Fatalf("settle against an older copy: %+v %v", done, err)
	}
	stored, err := b.Approval(ctx, ap.ID)
	if err != nil || stored.Status != approval.StatusUpgraded || !slices.Contains(stored.OtherCards, card) || stored.ClaimToken != "" {
		t.Errorf("stored %+v %v", stored, err)
	}
	// A holder whose claim was settled cannot write with its old copy.
	if _, err := a.Amend(ctx, marked, func(x *approval.Approval) { x.Problem = approval.Problem{Reason: approval.ReasonUnexpected} }); !errors.Is(err, bot.ErrConflict) {
		t.Errorf("amend after settling: %v, want conflict", err)
	}
}

// The Redis store keeps the application's storage contract, the same one
// the in-memory store bot's tests use passes.
func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s, _ := newStore(t, state.Options{})
		return contractStore{s.Approvals(), s.Conversations()}
	})
}

// contractStore is the parts of a Store the contract covers, as the wiring
// hands them to the bot.
type contractStore struct {
	*state.Approvals
	*state.Conversations
}

// A skipped version stays the open request long after it would have
// expired, so nothing opens a new one for it; a snooze that moves the
// expiry keeps the request open until then too.
func TestSkipAndSnoozeKeepTheRequestOpen(t *testing.T) {
	prefix := fmt.Sprintf("test:skip:%d:", time.Now().UnixNano())
	s, rdb := newApprovals(t, state.Options{Prefix: prefix})
	ctx := context.Background()
	openTTL := func() time.Duration {
		keys, err := rdb.Keys(ctx, prefix+"open:*").Result()
		if err != nil || len(keys) != 1 {
			t.Fatalf("open keys %v %v", keys, err)
		}
		return rdb.PTTL(ctx, keys[0]).Val()
	}
	a, _, err := s.OpenApproval(ctx, sampleApproval())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	snoozed, err := s.Transition(ctx, a.ID, approval.DecidableStatuses(), func(x *approval.Approval) {
		*x, _ = x.Snooze(approval.Person{Name: "Megan"}, now, now.Add(72*time.Hour), 96*time.Hour)
	})
	if err != nil || !snoozed.ExpiresAt.After(now.Add(160*time.Hour)) {
		t.Fatalf("snooze: %v, expires %s", err, snoozed.ExpiresAt)
	}
	if ttl := openTTL(); ttl < 167*time.Hour {
		t.Errorf("after a snooze to %s the request stays open only %s", snoozed.ExpiresAt, ttl)
	}
	if _, err := s.Transition(ctx, a.ID, approval.DecidableStatuses(), func(x *approval.Approval) {
		*x = x.Close(approval.Outcome{Status: approval.StatusSkipped, By: &approval.Person{Name: "Megan"}, At: now})
	}); err != nil {
		t.Fatal(err)
	}
	if ttl := openTTL(); ttl < 365*24*time.Hour {
		t.Errorf("a skipped version stays skipped only %s", ttl)
	}
	if ttl := rdb.PTTL(ctx, prefix+"approval:{"+a.ID[4:12]+"}:"+a.ID).Val(); ttl < 365*24*time.Hour {
		t.Errorf("a skipped approval is kept only %s", ttl)
	}
	again, created, err := s.OpenApproval(ctx, sampleApproval())
	if err != nil || created || again.ID != a.ID || again.Status != approval.StatusSkipped {
		t.Errorf("opening the skipped version again: %s %s created %v %v", again.ID, again.Status, created, err)
	}
}
