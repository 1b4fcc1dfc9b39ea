// Package storetest is the conformance suite of the application's stores:
// what bot.ApprovalStore (with its Claims), bot.ConversationStore and
// bot.ActivityLog promise, asserted against any implementation. The Redis
// store and the in-memory one tests use both run it, so the fake cannot
// drift from the real thing.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

// Store is what the suite tests: the stores the application keeps its
// approvals, conversations and handled activities in.
type Store interface {
	bot.ApprovalStore
	bot.ConversationStore
	bot.ActivityLog
}

// Run runs the suite. open returns a new, empty store for the test t,
// cleaned up when t ends; every subtest opens its own.
func Run(t *testing.T, open func(t *testing.T) Store) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, Store)
	}{
		{"OpenApprovalIsOncePerOpenKey", openIsOncePerOpenKey},
		{"OpenApprovalDedupesOnlyWhileOpen", openDedupesOnlyWhileOpen},
		{"RacingOpensReturnOneApproval", racingOpensReturnOne},
		{"UnknownApprovalIsNotFound", unknownApprovalIsNotFound},
		{"TransitionAppliesOnlyFromTheGivenStatuses", transitionOnlyFromGiven},
		{"RacingTransitionsHaveOneWinner", racingTransitionsHaveOneWinner},
		{"ClaimUpgradeClaimsADecidableApproval", claimUpgradeClaimsDecidable},
		{"RacingClaimsHaveOneWinner", racingClaimsHaveOneWinner},
		{"ApprovalsCountOncePerPersonUntilTheQuorum", approvalsCountOncePerPerson},
		{"RacingApproversMeetAQuorumOnce", racingApproversMeetAQuorumOnce},
		{"TakeOverClaimOnlyOnceTheLeaseExpired", takeOverOnlyOnceExpired},
		{"HoldClaimNeedsTheClaimToken", holdClaimNeedsTheToken},
		{"AmendAndSettleNeedTheClaimToken", amendAndSettleNeedTheToken},
		{"ClaimHolderKeepsWhatOthersWroteMeanwhile", holderKeepsOthersWrites},
		{"ExpiredClaimsListsExpiredLeasesUpToN", expiredClaimsUpToN},
		{"BatchKeepsItsApprovals", batchKeepsItsApprovals},
		{"RecordListIsIdempotentAndBounded", recordListIdempotentAndBounded},
		{"ListedInIsNewestFirstAndBounded", listedInNewestFirstAndBounded},
		{"RecordOutcomeReturnsTheListsToRedraw", recordOutcomeReturnsLists},
		{"AuditIsNewestFirstUpToN", auditNewestFirstUpToN},
		{"ReferenceRoundTrips", referenceRoundTrips},
		{"ThreadsShareTheirChannelsReference", threadsShareChannelReference},
		{"ActivityIsClaimedOnceUntilReleased", activityClaimedOnce},
		{"ClaimAndSaveReferenceIsClaimAndSaveReference", claimAndSaveReference},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open(t)) })
	}
}

const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"

// sample is a pending approval for a team installation, open for an hour
// from now (a store may let an approval's open key expire with it).
func sample() approval.Approval {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return approval.Approval{
		Status: approval.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour), Locale: "zh-CN",
		Conversation: approval.ConversationRef{ConversationID: "19:general@thread.tacv2;messageid=1", TenantID: tenant,
			ServiceURL: "https://smba.trafficmanager.net/amer/", ChannelID: "msteams", BotID: "28:bot",
			Scope: &approval.Scope{Kind: approval.ScopeTeam, ID: "team-1", TenantID: tenant}, UpdatedAt: now},
		Upgrade: approval.PendingUpgrade{
			Installation: approval.Installation{ID: "inst", DisplayName: "Polls", Definition: approval.AppDefinition{Version: "1.0.0"},
				Scope: approval.Scope{Kind: approval.ScopeTeam, ID: "team-1", TenantID: tenant}},
			Target: approval.AppDefinition{ID: "def-1.1.0", Version: "1.1.0"},
		},
	}
}

func opened(t *testing.T, s Store, a approval.Approval) approval.Approval {
	t.Helper()
	got, created, err := s.OpenApproval(context.Background(), a)
	if err != nil || !created {
		t.Fatalf("open %s: created %v, %v", a.OpenKey(), created, err)
	}
	return got
}

func claimed(t *testing.T, s Store, id string, lease time.Duration) approval.Approval {
	t.Helper()
	c, err := s.ClaimUpgrade(context.Background(), id, approval.Person{ID: "29:megan", Name: "Megan"}, time.Now(), lease)
	if err != nil {
		t.Fatalf("claim %s: %v", id, err)
	}
	return c
}

func stored(t *testing.T, s Store, id string) approval.Approval {
	t.Helper()
	a, err := s.Approval(context.Background(), id)
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return a
}

func wantCode(t *testing.T, what string, err error, code bot.Code) {
	t.Helper()
	if got := bot.ErrorCode(err); got != code {
		t.Errorf("%s: %v (code %q), want code %q", what, err, got, code)
	}
}

// eventually polls cond until it holds, for up to 5 s: a lease ends when
// the store's clock says so, which a test can wait for but not set.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// race runs f n times at once and waits for all of them.
func race(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}

func openIsOncePerOpenKey(t *testing.T, s Store) {
	ctx := context.Background()
	a := sample()
	a.ID = "apr_chosen_by_caller"
	first := opened(t, s, a)
	if first.ID == "" || first.ID == a.ID {
		t.Errorf("the stored approval has id %q, want a new one", first.ID)
	}
	want := a
	want.ID = first.ID
	if !reflect.DeepEqual(first, want) {
		t.Errorf("stored\n%+v\nwant what was opened\n%+v", first, want)
	}
	if got := stored(t, s, first.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, want)
	}
	again, created, err := s.OpenApproval(ctx, sample())
	if err != nil || created || again.ID != first.ID {
		t.Errorf("second open: %s created %v %v, want the open %s", again.ID, created, err, first.ID)
	}
	// Another thread of the team asks about the same installation and
	// version: the same request.
	thread := sample()
	thread.Conversation.ConversationID = "19:random@thread.tacv2;messageid=7"
	if got, created, err := s.OpenApproval(ctx, thread); err != nil || created || got.ID != first.ID ||
		got.Conversation.ConversationID != sample().Conversation.ConversationID {
		t.Errorf("open from another channel: %s created %v %v, want the open %s as it was", got.ID, created, err, first.ID)
	}
	// Another target version, installation or tenant is another request.
	version, inst, otherTenant := sample(), sample(), sample()
	version.Upgrade.Target.ID, version.Upgrade.Target.Version = "def-1.2.0", "1.2.0"
	inst.Upgrade.Installation.ID = "inst-2"
	otherTenant.Upgrade.Installation.Scope.TenantID = "99999999-9999-9999-9999-999999999999"
	ids := map[string]bool{first.ID: true}
	for _, other := range []approval.Approval{version, inst, otherTenant} {
		got := opened(t, s, other)
		if ids[got.ID] {
			t.Errorf("%s reused approval %s", other.OpenKey(), got.ID)
		}
		ids[got.ID] = true
	}
}

// An approval stays the request for its open key exactly while its status
// is open (approval.OpenStatuses).
func openDedupesOnlyWhileOpen(t *testing.T, s Store) {
	ctx := context.Background()
	for i, st := range approval.Statuses() {
		a := sample()
		a.Upgrade.Installation.ID = fmt.Sprint("inst-", i)
		first := opened(t, s, a)
		if _, err := s.Transition(ctx, first.ID, approval.Statuses(), func(x *approval.Approval) { x.Status = st }); err != nil {
			t.Fatal(err)
		}
		got, created, err := s.OpenApproval(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case st.Open() && (created || got.ID != first.ID || got.Status != st):
			t.Errorf("open over a %s approval: %s (%s) created %v, want the %s one", st, got.ID, got.Status, created, first.ID)
		case !st.Open() && (!created || got.ID == first.ID || got.Status != approval.StatusPending):
			t.Errorf("open over a %s approval: %s (%s) created %v, want a new pending one", st, got.ID, got.Status, created)
		}
		if !st.Open() {
			if old := stored(t, s, first.ID); old.Status != st {
				t.Errorf("the %s approval replaced is now %s", st, old.Status)
			}
		}
	}
}

func racingOpensReturnOne(t *testing.T, s Store) {
	var created atomic.Int32
	ids := make([]string, 24)
	race(len(ids), func(i int) {
		got, c, err := s.OpenApproval(context.Background(), sample())
		if err != nil {
			t.Error(err)
			return
		}
		if c {
			created.Add(1)
		}
		ids[i] = got.ID
	})
	if created.Load() != 1 {
		t.Errorf("%d approvals created, want 1", created.Load())
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("racing opens disagree on the open approval: %v", ids)
		}
	}
}

func unknownApprovalIsNotFound(t *testing.T, s Store) {
	ctx := context.Background()
	_, err := s.Approval(ctx, "apr_none")
	wantCode(t, "read an unknown approval", err, bot.CodeNotFound)
	_, err = s.Transition(ctx, "apr_none", approval.Statuses(), func(*approval.Approval) {})
	wantCode(t, "transition of an unknown approval", err, bot.CodeNotFound)
}

func transitionOnlyFromGiven(t *testing.T, s Store) {
	ctx := context.Background()
	a := opened(t, s, sample())
	got, err := s.Transition(ctx, a.ID, []approval.Status{approval.StatusFailed, approval.StatusUpgraded},
		func(x *approval.Approval) {
			x.Status, x.Problem = approval.StatusRejected, approval.Problem{Reason: approval.ReasonUnexpected, GraphMessage: "should not be written"}
		})
	wantCode(t, "transition from statuses it is not in", err, bot.CodeConflict)
	if !reflect.DeepEqual(got, a) {
		t.Errorf("a conflicting transition returned\n%+v\nwant the approval as it is\n%+v", got, a)
	}
	if now := stored(t, s, a.ID); !reflect.DeepEqual(now, a) {
		t.Errorf("a conflicting transition changed the approval: %+v", now)
	}
	by := approval.Person{ID: "29:megan", AADObjectID: "11111111-1111-1111-1111-111111111111", Name: "Megan"}
	got, err = s.Transition(ctx, a.ID, approval.DecidableStatuses(), func(x *approval.Approval) {
		*x = x.Close(approval.Outcome{Status: approval.StatusRejected, By: &by, At: a.CreatedAt.Add(time.Minute)})
	})
	if err != nil || got.Status != approval.StatusRejected || got.DecidedBy == nil || *got.DecidedBy != by {
		t.Fatalf("transition from its status: %+v %v", got, err)
	}
	if now := stored(t, s, a.ID); !reflect.DeepEqual(now, got) {
		t.Errorf("read back\n%+v\nwant what the transition returned\n%+v", now, got)
	}
}

// Of racing transitions from one status, exactly one applies.
func racingTransitionsHaveOneWinner(t *testing.T, s Store) {
	a := opened(t, s, sample())
	var wins, conflicts atomic.Int32
	race(16, func(i int) {
		_, err := s.Transition(context.Background(), a.ID, []approval.Status{approval.StatusPending}, func(x *approval.Approval) {
			x.Status, x.DecidedBy = approval.StatusRejected, &approval.Person{Name: fmt.Sprint(i)}
		})
		switch {
		case err == nil:
			wins.Add(1)
		case errors.Is(err, bot.ErrConflict):
			conflicts.Add(1)
		default:
			t.Error(err)
		}
	})
	if wins.Load() != 1 || conflicts.Load() != 15 {
		t.Fatalf("%d transitions won and %d conflicted, want 1 and 15", wins.Load(), conflicts.Load())
	}
	if got := stored(t, s, a.ID); got.Status != approval.StatusRejected || got.DecidedBy == nil {
		t.Errorf("after the race: %+v", got)
	}
}

// A pending or failed approval may be claimed (approval.Approval.Claim);
// any other is CodeConflict, with the approval as it stands.
func claimUpgradeClaimsDecidable(t *testing.T, s Store) {
	ctx := context.Background()
	a := opened(t, s, sample())
	who := approval.Person{ID: "29:megan", AADObjectID: "11111111-1111-1111-1111-111111111111", Name: "Megan"}
	at := time.Now().UTC().Truncate(time.Millisecond)
	c, err := s.ClaimUpgrade(ctx, a.ID, who, at, time.Minute)
	if err != nil || !c.Claimed() || c.ClaimToken == "" || c.DecidedBy == nil || *c.DecidedBy != who || !c.DecidedAt.Equal(at) {
		t.Fatalf("claim: %+v %v", c, err)
	}
	if got := stored(t, s, a.ID); !reflect.DeepEqual(got, c) {
		t.Errorf("read back\n%+v\nwant the claimed approval\n%+v", got, c)
	}
	again, err := s.ClaimUpgrade(ctx, a.ID, approval.Person{Name: "Adele"}, time.Now(), time.Minute)
	wantCode(t, "claim of an upgrading approval", err, bot.CodeConflict)
	if !reflect.DeepEqual(again, c) {
		t.Errorf("a conflicting claim returned\n%+v\nwant the approval as it stands\n%+v", again, c)
	}
	// A failed upgrade may be claimed again; a closed approval may not.
	if _, err := s.Settle(ctx, c, func(x *approval.Approval) {
		x.Status, x.Problem = approval.StatusFailed, approval.Problem{Reason: approval.ReasonUnexpected, GraphMessage: "Graph refused"}
	}); err != nil {
		t.Fatal(err)
	}
	retry, err := s.ClaimUpgrade(ctx, a.ID, who, time.Now(), time.Minute)
	if err != nil || !retry.Claimed() || retry.ClaimToken == "" || retry.ClaimToken == c.ClaimToken || !retry.Problem.IsZero() {
		t.Fatalf("claim of a failed approval: %+v %v", retry, err)
	}
	if _, err := s.Settle(ctx, retry, func(x *approval.Approval) { x.Status = approval.StatusUpgraded }); err != nil {
		t.Fatal(err)
	}
	for _, st := range approval.Statuses() {
		if st.Decidable() {
			continue
		}
		if _, err := s.Transition(ctx, a.ID, approval.Statuses(), func(x *approval.Approval) { x.Status = st }); err != nil {
			t.Fatal(err)
		}
		got, err := s.ClaimUpgrade(ctx, a.ID, who, time.Now(), time.Minute)
		wantCode(t, "claim of a "+string(st)+" approval", err, bot.CodeConflict)
		if got.Status != st {
			t.Errorf("a conflicting claim of a %s approval returned it %s", st, got.Status)
		}
	}
}

func racingClaimsHaveOneWinner(t *testing.T, s Store) {
	a := opened(t, s, sample())
	var wins atomic.Int32
	var winner atomic.Value
	losers := make([]approval.Approval, 16)
	race(len(losers), func(i int) {
		got, err := s.ClaimUpgrade(context.Background(), a.ID, approval.Person{Name: fmt.Sprint(i)}, time.Now(), time.Minute)
		switch {
		case err == nil:
			wins.Add(1)
			winner.Store(got)
		case errors.Is(err, bot.ErrConflict):
			losers[i] = got
		default:
			t.Error(err)
		}
	})
	if wins.Load() != 1 {
		t.Fatalf("%d claims won, want exactly 1", wins.Load())
	}
	won := winner.Load().(approval.Approval)
	for _, l := range losers {
		if l.ID != "" && (!l.Claimed() || l.ClaimToken != won.ClaimToken) {
			t.Errorf("a losing claim got %s with token %q, want the winner's claim", l.Status, l.ClaimToken)
		}
	}
	if got := stored(t, s, a.ID); got.ClaimToken != won.ClaimToken || !reflect.DeepEqual(got.DecidedBy, won.DecidedBy) {
		t.Errorf("stored %+v, want the winner's claim %+v", got, won)
	}
}

// A claim whose lease expired (its replica died) is taken over exactly
// once; the old holder can then write nothing.
func takeOverOnlyOnceExpired(t *testing.T, s Store) {
	ctx := context.Background()
	_, err := s.TakeOverClaim(ctx, opened(t, s, sample()).ID, time.Minute)
	wantCode(t, "takeover of a pending approval", err, bot.CodeConflict)

	live := sample()
	live.Upgrade.Installation.ID = "inst-live"
	liveClaim := claimed(t, s, opened(t, s, live).ID, time.Minute)
	got, err := s.TakeOverClaim(ctx, liveClaim.ID, time.Minute)
	wantCode(t, "takeover of a live claim", err, bot.CodeConflict)
	if got.ClaimToken != liveClaim.ClaimToken {
		t.Errorf("a conflicting takeover returned token %q, want the live %q", got.ClaimToken, liveClaim.ClaimToken)
	}

	dead := sample()
	dead.Upgrade.Installation.ID = "inst-dead"
	old := claimed(t, s, opened(t, s, dead).ID, 20*time.Millisecond)
	// Racing reconcilers take over once the lease is gone: never two of
	// one round, and one as soon as the store sees it expired.
	var taken approval.Approval
	eventually(t, "a takeover once the 20 ms lease ends", func() bool {
		var wins atomic.Int32
		var won atomic.Value
		race(8, func(int) {
			got, err := s.TakeOverClaim(ctx, old.ID, time.Minute)
			switch {
			case err == nil:
				wins.Add(1)
				won.Store(got)
			case !errors.Is(err, bot.ErrConflict):
				t.Error(err)
			}
		})
		if wins.Load() > 1 {
			t.Fatalf("%d takeovers of one expired claim won, want 1", wins.Load())
		}
		if wins.Load() == 1 {
			taken = won.Load().(approval.Approval)
		}
		return wins.Load() == 1
	})
	if !taken.Claimed() || taken.ClaimToken == "" || taken.ClaimToken == old.ClaimToken || taken.DecidedBy == nil {
		t.Errorf("taken over: %+v, want a new claim token on the same claim", taken)
	}
	if _, err := s.TakeOverClaim(ctx, old.ID, time.Minute); !errors.Is(err, bot.ErrConflict) {
		t.Errorf("takeover of a claim just taken over: %v, want conflict", err)
	}
	_, err = s.Settle(ctx, old, func(x *approval.Approval) { x.Status = approval.StatusFailed })
	wantCode(t, "settle by the holder taken over", err, bot.CodeConflict)
	done, err := s.Settle(ctx, taken, func(x *approval.Approval) { x.Status = approval.StatusUpgraded })
	if err != nil || done.Status != approval.StatusUpgraded || done.ClaimToken != "" {
		t.Fatalf("settle by the takeover: %+v %v", done, err)
	}
	_, err = s.TakeOverClaim(ctx, old.ID, time.Minute)
	wantCode(t, "takeover of a settled approval", err, bot.CodeConflict)
}

func holdClaimNeedsTheToken(t *testing.T, s Store) {
	ctx := context.Background()
	// A refused hold may delay listing the claim as expired (ExpiredClaims),
	// so it is tried on a claim of its own.
	other := sample()
	other.Upgrade.Installation.ID = "inst-other"
	live := claimed(t, s, opened(t, s, other).ID, time.Minute)
	_, err := s.HoldClaim(ctx, live.ID, "not-the-token", time.Minute)
	wantCode(t, "hold with another token", err, bot.CodeConflict)
	_, err = s.HoldClaim(ctx, live.ID, "", time.Minute)
	wantCode(t, "hold with no token", err, bot.CodeConflict)
	if got := stored(t, s, live.ID); !reflect.DeepEqual(got, live) {
		t.Errorf("a refused hold changed the claim: %+v", got)
	}

	c := claimed(t, s, opened(t, s, sample()).ID, 20*time.Millisecond)
	eventually(t, "the 20 ms lease listed as expired", func() bool {
		ids, err := s.ExpiredClaims(ctx, 10)
		return err == nil && slices.Contains(ids, c.ID)
	})
	// Its holder keeps the claim for a lease from now, even once it
	// expired, as long as nobody took it over.
	held, err := s.HoldClaim(ctx, c.ID, c.ClaimToken, time.Minute)
	if err != nil || !reflect.DeepEqual(held, c) {
		t.Fatalf("hold by its holder: %+v %v, want the claim as it was", held, err)
	}
	if ids, err := s.ExpiredClaims(ctx, 10); err != nil || slices.Contains(ids, c.ID) {
		t.Errorf("a held claim is listed as expired: %v %v", ids, err)
	}
	_, err = s.TakeOverClaim(ctx, c.ID, time.Minute)
	wantCode(t, "takeover of a held claim", err, bot.CodeConflict)
	// A hold for less lets the claim expire sooner.
	if _, err := s.HoldClaim(ctx, c.ID, c.ClaimToken, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the claim held for 20 ms listed as expired", func() bool {
		ids, err := s.ExpiredClaims(ctx, 10)
		return err == nil && slices.Contains(ids, c.ID)
	})
	if _, err := s.Settle(ctx, c, func(x *approval.Approval) { x.Status = approval.StatusFailed }); err != nil {
		t.Fatal(err)
	}
	_, err = s.HoldClaim(ctx, c.ID, c.ClaimToken, time.Minute)
	wantCode(t, "hold after settling", err, bot.CodeConflict)
}

func amendAndSettleNeedTheToken(t *testing.T, s Store) {
	ctx := context.Background()
	c := claimed(t, s, opened(t, s, sample()).ID, time.Minute)
	sent := time.Now().UTC().Truncate(time.Millisecond)
	marked, err := s.Amend(ctx, c, func(x *approval.Approval) { x.UpgradeSentAt = sent })
	if err != nil || !marked.UpgradeSentAt.Equal(sent) || marked.ClaimToken != c.ClaimToken || !marked.Claimed() {
		t.Fatalf("amend by the holder: %+v %v, want the change with the claim kept", marked, err)
	}
	if got := stored(t, s, c.ID); !reflect.DeepEqual(got, marked) {
		t.Errorf("read back\n%+v\nwant the amended\n%+v", got, marked)
	}
	forged := marked
	forged.ClaimToken = "not-the-token"
	_, err = s.Amend(ctx, forged, func(x *approval.Approval) {
		x.Problem = approval.Problem{Reason: approval.ReasonUnexpected, GraphMessage: "forged"}
	})
	wantCode(t, "amend with another token", err, bot.CodeConflict)
	_, err = s.Settle(ctx, forged, func(x *approval.Approval) { x.Status = approval.StatusFailed })
	wantCode(t, "settle with another token", err, bot.CodeConflict)
	if got := stored(t, s, c.ID); !reflect.DeepEqual(got, marked) {
		t.Errorf("a write with another token changed the approval: %+v", got)
	}
	done, err := s.Settle(ctx, marked, func(x *approval.Approval) {
		*x = x.Close(approval.Outcome{Status: approval.StatusUpgraded, At: sent.Add(time.Second)})
	})
	if err != nil || done.Status != approval.StatusUpgraded || done.ClaimToken != "" || !done.UpgradeSentAt.Equal(sent) {
		t.Fatalf("settle by the holder: %+v %v", done, err)
	}
	if got := stored(t, s, c.ID); !reflect.DeepEqual(got, done) {
		t.Errorf("read back\n%+v\nwant the settled\n%+v", got, done)
	}
	if ids, err := s.ExpiredClaims(ctx, 10); err != nil || slices.Contains(ids, c.ID) {
		t.Errorf("a settled claim is listed: %v %v", ids, err)
	}
	_, err = s.Settle(ctx, marked, func(x *approval.Approval) { x.Status = approval.StatusFailed })
	wantCode(t, "settle twice", err, bot.CodeConflict)
	_, err = s.Amend(ctx, marked, func(x *approval.Approval) {
		x.Problem = approval.Problem{Reason: approval.ReasonUnexpected, GraphMessage: "late"}
	})
	wantCode(t, "amend after settling", err, bot.CodeConflict)
}

// The holder writes against the approval as it last had it; a card
// recorded by someone else meanwhile is neither lost nor a reason to fail.
func holderKeepsOthersWrites(t *testing.T, s Store) {
	ctx := context.Background()
	c := claimed(t, s, opened(t, s, sample()).ID, time.Minute)
	card := approval.PostedCard{ActivityID: "activity-9", Conversation: approval.ConversationRef{ConversationID: "19:random@thread.tacv2;messageid=7"}}
	if _, err := s.Transition(ctx, c.ID, []approval.Status{approval.StatusUpgrading}, func(x *approval.Approval) { x.RecordCard(card) }); err != nil {
		t.Fatal(err)
	}
	marked, err := s.Amend(ctx, c, func(x *approval.Approval) { x.UpgradeSentAt = time.Now().UTC() })
	if err != nil || marked.UpgradeSentAt.IsZero() || !marked.ShowsOn(card.ActivityID) {
		t.Fatalf("amend against an older copy: %+v %v", marked, err)
	}
	if _, err := s.Transition(ctx, c.ID, []approval.Status{approval.StatusUpgrading}, func(x *approval.Approval) {
		x.RecordCard(approval.PostedCard{ActivityID: "activity-10"})
	}); err != nil {
		t.Fatal(err)
	}
	done, err := s.Settle(ctx, marked, func(x *approval.Approval) { x.Status = approval.StatusUpgraded })
	if err != nil || done.Status != approval.StatusUpgraded || done.UpgradeSentAt.IsZero() || !done.ShowsOn("activity-9") || !done.ShowsOn("activity-10") {
		t.Fatalf("settle against an older copy: %+v %v", done, err)
	}
	if got := stored(t, s, c.ID); !reflect.DeepEqual(got, done) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, done)
	}
}

func expiredClaimsUpToN(t *testing.T, s Store) {
	ctx := context.Background()
	if ids, err := s.ExpiredClaims(ctx, 10); err != nil || len(ids) != 0 {
		t.Errorf("expired claims of an empty store: %v %v", ids, err)
	}
	var expiring []string
	for i := range 3 {
		a := sample()
		a.Upgrade.Installation.ID = fmt.Sprint("inst-", i)
		expiring = append(expiring, claimed(t, s, opened(t, s, a).ID, 20*time.Millisecond).ID)
	}
	live := sample()
	live.Upgrade.Installation.ID = "inst-live"
	liveID := claimed(t, s, opened(t, s, live).ID, time.Minute).ID
	pending := sample()
	pending.Upgrade.Installation.ID = "inst-pending"
	opened(t, s, pending)
	var ids []string
	eventually(t, "three 20 ms leases listed as expired", func() bool {
		var err error
		ids, err = s.ExpiredClaims(ctx, 10)
		return err == nil && len(ids) >= 3
	})
	slices.Sort(ids)
	slices.Sort(expiring)
	if !slices.Equal(ids, expiring) {
		t.Errorf("expired claims %v, want %v (not the live %s)", ids, expiring, liveID)
	}
	if ids, err := s.ExpiredClaims(ctx, 2); err != nil || len(ids) != 2 {
		t.Errorf("up to 2 expired claims: %v %v", ids, err)
	}
}

func batchKeepsItsApprovals(t *testing.T, s Store) {
	ctx := context.Background()
	id, err := s.SaveBatch(ctx, []string{"apr_1", "apr_2", "apr_3"})
	if err != nil || id == "" {
		t.Fatalf("save batch: %q %v", id, err)
	}
	other, err := s.SaveBatch(ctx, []string{"apr_1"})
	if err != nil || other == id {
		t.Fatalf("a second batch: %q %v, want an id of its own", other, err)
	}
	b, err := s.Batch(ctx, id)
	if err != nil || b.ID != id || !slices.Equal(b.Approvals, []string{"apr_1", "apr_2", "apr_3"}) || len(b.Lists) != 0 {
		t.Errorf("batch %+v %v", b, err)
	}
	_, err = s.Batch(ctx, "bat_none")
	wantCode(t, "an unknown batch", err, bot.CodeNotFound)
}

func listCard(activityID string) approval.PostedCard {
	return approval.PostedCard{ActivityID: activityID, Conversation: approval.ConversationRef{ConversationID: "19:abc@thread.v2",
		Locale: "zh-CN", Scope: &approval.Scope{Kind: approval.ScopeChat, ID: "19:abc@thread.v2", TenantID: tenant}}}
}

func recordListIdempotentAndBounded(t *testing.T, s Store) {
	ctx := context.Background()
	first, err := s.SaveBatch(ctx, []string{"apr_1"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.SaveBatch(ctx, []string{"apr_1"})
	if err != nil {
		t.Fatal(err)
	}
	list := listCard("1700000000001")
	for range 2 { // the check's reply, then Approve all on it
		if err := s.RecordList(ctx, first, list); err != nil {
			t.Fatal(err)
		}
	}
	b, err := s.Batch(ctx, first)
	if err != nil || len(b.Lists) != 1 || !reflect.DeepEqual(b.Lists[0], list) {
		t.Fatalf("batch %+v %v, want the one list as recorded", b, err)
	}
	if b, err := s.Batch(ctx, second); err != nil || len(b.Lists) != 0 {
		t.Errorf("another batch has lists: %+v %v", b, err)
	}
	const many = 60
	for i := range many {
		if err := s.RecordList(ctx, first, listCard(fmt.Sprint("activity-", i))); err != nil {
			t.Fatal(err)
		}
	}
	b, err = s.Batch(ctx, first)
	if err != nil || len(b.Lists) >= many+1 || !slices.ContainsFunc(b.Lists, func(c approval.PostedCard) bool { return c.ActivityID == list.ActivityID }) {
		t.Errorf("after %d more lists the batch keeps %d (%v), want fewer, the first among them", many, len(b.Lists), err)
	}
	wantCode(t, "a list of an unknown batch", s.RecordList(ctx, "bat_none", list), bot.CodeNotFound)
}

func listedInNewestFirstAndBounded(t *testing.T, s Store) {
	ctx := context.Background()
	first, err := s.SaveBatch(ctx, []string{"apr_a", "apr_other"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.SaveBatch(ctx, []string{"apr_a"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.ListedIn(ctx, "apr_a"); err != nil || !slices.Equal(got, []string{second, first}) {
		t.Errorf("listed in %v %v, want %v newest first", got, err, []string{second, first})
	}
	if got, err := s.ListedIn(ctx, "apr_other"); err != nil || !slices.Equal(got, []string{first}) {
		t.Errorf("the other approval is listed in %v %v, want %v", got, err, []string{first})
	}
	if got, err := s.ListedIn(ctx, "apr_none"); err != nil || len(got) != 0 {
		t.Errorf("an approval never listed is in %v %v", got, err)
	}
	const many = 60
	saved := []string{second, first}
	for range many {
		id, err := s.SaveBatch(ctx, []string{"apr_a"})
		if err != nil {
			t.Fatal(err)
		}
		saved = slices.Insert(saved, 0, id)
	}
	got, err := s.ListedIn(ctx, "apr_a")
	if err != nil || len(got) == 0 || len(got) >= len(saved) || !slices.Equal(got, saved[:len(got)]) {
		t.Errorf("listed in %d batches (%v), want the newest of the %d first, not all of them", len(got), err, len(saved))
	}
}

func recordOutcomeReturnsLists(t *testing.T, s Store) {
	ctx := context.Background()
	first, err := s.SaveBatch(ctx, []string{"apr_a"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.SaveBatch(ctx, []string{"apr_b", "apr_a"})
	if err != nil {
		t.Fatal(err)
	}
	e := approval.AuditEvent{At: time.Now().UTC().Truncate(time.Millisecond), Status: approval.StatusUpgraded, Actor: "Megan",
		App: "Polls", From: "1.0.0", To: "1.1.0", ApprovalID: "apr_a"}
	listed, err := s.RecordOutcome(ctx, "19:abc@thread.v2", e)
	if err != nil || !slices.Equal(listed, []string{second, first}) {
		t.Errorf("record outcome: lists %v %v, want %v as ListedIn", listed, err, []string{second, first})
	}
	if got, err := s.Audit(ctx, "19:abc@thread.v2", 10); err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], e) {
		t.Errorf("history %+v %v, want the one line recorded", got, err)
	}
	unlisted := e
	unlisted.ApprovalID = "apr_c"
	if listed, err := s.RecordOutcome(ctx, "19:abc@thread.v2", unlisted); err != nil || len(listed) != 0 {
		t.Errorf("record outcome of an approval in no list: %v %v", listed, err)
	}
}

func auditNewestFirstUpToN(t *testing.T, s Store) {
	ctx := context.Background()
	const conv, many = "19:abc@thread.v2", 120
	for i := range many {
		if _, err := s.RecordOutcome(ctx, conv, approval.AuditEvent{App: fmt.Sprint(i), Status: approval.StatusUpgraded}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RecordOutcome(ctx, "19:other@thread.v2", approval.AuditEvent{App: "elsewhere"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Audit(ctx, conv, 10)
	if err != nil || len(got) != 10 {
		t.Fatalf("up to 10 events: %d %v", len(got), err)
	}
	for i, e := range got {
		if want := fmt.Sprint(many - 1 - i); e.App != want {
			t.Errorf("event %d is %s, want %s: the newest first", i, e.App, want)
		}
	}
	all, err := s.Audit(ctx, conv, 2*many)
	if err != nil || len(all) == 0 || len(all) >= many || all[0].App != fmt.Sprint(many-1) {
		t.Errorf("the whole history: %d events (%v), want the newest, fewer than the %d recorded", len(all), err, many)
	}
	for _, n := range []int{0, -1} {
		if got, err := s.Audit(ctx, conv, n); err != nil || len(got) != 0 {
			t.Errorf("up to %d events: %d %v", n, len(got), err)
		}
	}
	if got, err := s.Audit(ctx, "19:quiet@thread.v2", 10); err != nil || len(got) != 0 {
		t.Errorf("history of a conversation with none: %v %v", got, err)
	}
}

func reference(id string) approval.ConversationRef {
	return approval.ConversationRef{ConversationID: id, ConversationType: "channel", ServiceURL: "https://smba.trafficmanager.net/amer/",
		ChannelID: "msteams", TenantID: tenant, BotID: "28:bot", BotName: "Upgrade Approvals", Locale: "en-US",
		Scope:     &approval.Scope{Kind: approval.ScopeTeam, ID: "22222222-2222-2222-2222-222222222222", TenantID: tenant},
		UpdatedAt: time.Now().UTC().Truncate(time.Second)}
}

func referenceRoundTrips(t *testing.T, s Store) {
	ctx := context.Background()
	_, err := s.Reference(ctx, "19:unknown@thread.v2")
	wantCode(t, "an unknown conversation", err, bot.CodeNotFound)
	ref := reference("19:general@thread.tacv2")
	if err := s.SaveReference(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Reference(ctx, ref.ConversationID); err != nil || !reflect.DeepEqual(got, ref) {
		t.Errorf("reference %+v %v, want %+v", got, err, ref)
	}
	moved := ref
	moved.ServiceURL, moved.Locale = "https://smba.trafficmanager.net/emea/", "zh-CN"
	if err := s.SaveReference(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Reference(ctx, ref.ConversationID); err != nil || !reflect.DeepEqual(got, moved) {
		t.Errorf("changed reference %+v %v, want %+v", got, err, moved)
	}
}

// A channel's threads share the channel's reference: saving a thread's
// saves the channel's, and each thread reads it with its own id.
func threadsShareChannelReference(t *testing.T, s Store) {
	ctx := context.Background()
	const channel = "19:general@thread.tacv2"
	saved := reference(channel + ";messageid=1")
	if err := s.SaveReference(ctx, saved); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{channel, channel + ";messageid=1", channel + ";messageid=2"} {
		want := saved
		want.ConversationID = id
		if got, err := s.Reference(ctx, id); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("reference of %s: %+v %v, want %+v", id, got, err, want)
		}
	}
	_, err := s.Reference(ctx, "19:random@thread.tacv2;messageid=1")
	wantCode(t, "a thread of another channel", err, bot.CodeNotFound)
}

func activityClaimedOnce(t *testing.T, s Store) {
	ctx := context.Background()
	const key = "19:abc|1700000000001"
	var wins atomic.Int32
	race(20, func(int) {
		ok, err := s.Claim(ctx, key)
		if err != nil {
			t.Error(err)
		}
		if ok {
			wins.Add(1)
		}
	})
	if wins.Load() != 1 {
		t.Fatalf("%d claims of one activity won, want 1", wins.Load())
	}
	if ok, err := s.Claim(ctx, "19:abc|1700000000002"); !ok || err != nil {
		t.Errorf("another activity: %v %v", ok, err)
	}
	if err := s.Release(ctx, key); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Claim(ctx, key); !ok || err != nil {
		t.Errorf("a released activity cannot be claimed again: %v %v", ok, err)
	}
	if ok, _ := s.Claim(ctx, key); ok {
		t.Error("an activity claimed again was claimed a third time")
	}
	if err := s.Release(ctx, "19:abc|never-claimed"); err != nil {
		t.Errorf("release of an activity never claimed: %v", err)
	}
}

// A store that offers bot.ReferenceClaimer does what Claim and
// SaveReference do, the reference saved also for a redelivery.
func claimAndSaveReference(t *testing.T, s Store) {
	rc, ok := s.(bot.ReferenceClaimer)
	if !ok {
		t.Skip("the store does not offer ClaimAndSaveReference")
	}
	ctx := context.Background()
	ref := reference("19:general@thread.tacv2")
	if first, err := rc.ClaimAndSaveReference(ctx, "k", ref); !first || err != nil {
		t.Fatalf("first delivery: %v %v", first, err)
	}
	if got, err := s.Reference(ctx, ref.ConversationID); err != nil || !reflect.DeepEqual(got, ref) {
		t.Errorf("reference %+v %v, want %+v", got, err, ref)
	}
	moved := ref
	moved.ServiceURL = "https://smba.trafficmanager.net/emea/"
	if first, err := rc.ClaimAndSaveReference(ctx, "k", moved); first || err != nil {
		t.Errorf("redelivery: %v %v, want not first", first, err)
	}
	if got, err := s.Reference(ctx, ref.ConversationID); err != nil || got.ServiceURL != moved.ServiceURL {
		t.Errorf("reference after a redelivery %+v %v, want %s", got, err, moved.ServiceURL)
	}
	if ok, _ := s.Claim(ctx, "k"); ok {
		t.Error("an activity claimed with its reference was claimed again")
	}
}

// With a quorum of two, a first approval is recorded without a claim, a
// second click by the same person changes nothing, and a second approver
// claims it.
func approvalsCountOncePerPerson(t *testing.T, s Store) {
	ctx := context.Background()
	q := sample()
	q.Quorum = 2
	a := opened(t, s, q)
	megan := approval.Person{ID: "29:megan", AADObjectID: "11111111-1111-1111-1111-111111111111", Name: "Megan"}
	alex := approval.Person{ID: "29:alex", AADObjectID: "22222222-2222-2222-2222-222222222222", Name: "Alex"}
	first, err := s.ClaimUpgrade(ctx, a.ID, megan, time.Now(), time.Minute)
	if err != nil || first.Claimed() || len(first.Approvals) != 1 || first.Approvals[0].Person != megan {
		t.Fatalf("first approval: %+v %v", first, err)
	}
	if got := stored(t, s, a.ID); !reflect.DeepEqual(got, first) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, first)
	}
	again, err := s.ClaimUpgrade(ctx, a.ID, megan, time.Now(), time.Minute)
	if err != nil || again.Claimed() || len(again.Approvals) != 1 {
		t.Fatalf("the same approver again: %+v %v", again, err)
	}
	c, err := s.ClaimUpgrade(ctx, a.ID, alex, time.Now(), time.Minute)
	if err != nil || !c.Claimed() || len(c.Approvals) != 2 || c.DecidedBy == nil || *c.DecidedBy != alex {
		t.Fatalf("second approver: %+v %v", c, err)
	}
	if exp, err := s.ExpiredClaims(ctx, 10); err != nil || slices.Contains(exp, a.ID) {
		t.Errorf("a live claim is listed as expired: %v %v", exp, err)
	}
}

// Approvers racing on a quorum of two: one is counted, one claims, the
// rest find it claimed; the store keeps exactly two approvals.
func racingApproversMeetAQuorumOnce(t *testing.T, s Store) {
	q := sample()
	q.Quorum = 2
	a := opened(t, s, q)
	var claimed, counted, conflicts atomic.Int32
	race(16, func(i int) {
		who := approval.Person{ID: fmt.Sprintf("29:p%d", i), Name: fmt.Sprint(i)}
		got, err := s.ClaimUpgrade(context.Background(), a.ID, who, time.Now(), time.Minute)
		switch {
		case err == nil && got.Claimed():
			claimed.Add(1)
		case err == nil:
			counted.Add(1)
		case errors.Is(err, bot.ErrConflict):
			conflicts.Add(1)
		default:
			t.Error(err)
		}
	})
	if claimed.Load() != 1 || counted.Load() != 1 || conflicts.Load() != 14 {
		t.Fatalf("%d claimed, %d counted, %d conflicted; want 1, 1, 14", claimed.Load(), counted.Load(), conflicts.Load())
	}
	if got := stored(t, s, a.ID); !got.Claimed() || len(got.Approvals) != 2 {
		t.Errorf("stored %s with %d approvals, want upgrading with 2", got.Status, len(got.Approvals))
	}
}
