package approval_test

import (
	"slices"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

func TestStatusSets(t *testing.T) {
	open := []approval.Status{approval.StatusPending, approval.StatusUpgrading, approval.StatusUpgraded, approval.StatusFailed,
		approval.StatusUpToDate, approval.StatusUpgradedOutside, approval.StatusNeedsAdmin, approval.StatusSkipped}
	if got := approval.OpenStatuses(); !sameSet(got, open) {
		t.Errorf("open statuses %v, want %v", got, open)
	}
	decidable := []approval.Status{approval.StatusPending, approval.StatusFailed}
	if got := approval.DecidableStatuses(); !sameSet(got, decidable) {
		t.Errorf("decidable statuses %v, want %v", got, decidable)
	}
	for _, s := range approval.Statuses() {
		if s.Open() != slices.Contains(open, s) || s.Decidable() != slices.Contains(decidable, s) {
			t.Errorf("%s: open %v, decidable %v", s, s.Open(), s.Decidable())
		}
		if s.Decidable() && !s.Open() {
			t.Errorf("%s may be decided but is not open", s)
		}
	}
	if n := len(approval.Statuses()); n != 11 {
		t.Errorf("%d statuses, want 11", n)
	}
}

func sameSet(a, b []approval.Status) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestExpiredFromTheExactInstant(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	a := approval.Approval{ExpiresAt: at}
	if a.Expired(at.Add(-time.Nanosecond)) {
		t.Error("expired before its time")
	}
	if !a.Expired(at) {
		t.Error("not expired at the instant it expires")
	}
	if !a.Expired(at.Add(time.Hour)) {
		t.Error("not expired after its time")
	}
}

// A request stays the open one for its installation and version until it
// expires; a skipped version long after, so nothing asks for it again.
func TestOpenForUntilExpiryOrLongAfterASkip(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	a := approval.Approval{Status: approval.StatusPending, ExpiresAt: now.Add(48 * time.Hour)}
	if got := a.OpenFor(now); got != 48*time.Hour {
		t.Errorf("pending: open for %s, want 48h", got)
	}
	if got := a.OpenFor(now.Add(72 * time.Hour)); got != 0 {
		t.Errorf("past its expiry: open for %s, want 0", got)
	}
	skipped := a.Close(approval.Outcome{Status: approval.StatusSkipped, At: now})
	if got := skipped.OpenFor(now.Add(72 * time.Hour)); got != approval.SkipKept || got < 365*24*time.Hour {
		t.Errorf("skipped: open for %s, want %s (over a year)", got, approval.SkipKept)
	}
}

var refused = approval.Problem{Reason: approval.ReasonGraphRefused, Status: 403, GraphCode: "Forbidden",
	Permission: "TeamsAppInstallation.ReadWriteAndConsentForChat.All"}

func TestClaimOnlyWhatMayBeDecided(t *testing.T) {
	megan := approval.Person{ID: "29:megan", AADObjectID: "00000000-0000-0000-0000-000000000001", Name: "Megan"}
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	for _, s := range approval.Statuses() {
		a := approval.Approval{ID: "apr_1", Status: s, Problem: refused, ProblemText: "Graph refused the call"}
		c, ok := a.Claim(megan, at, "token-1")
		if ok != s.Decidable() {
			t.Errorf("%s: claimed %v", s, ok)
		}
		if !ok {
			if c.Status != s || c.ClaimToken != "" {
				t.Errorf("%s: a refused claim changed it: %+v", s, c)
			}
			continue
		}
		if c.Status != approval.StatusUpgrading || !c.Claimed() || c.DecidedBy == nil || *c.DecidedBy != megan ||
			!c.DecidedAt.Equal(at) || c.DecidedAt.Location() != time.UTC || !c.WhatWentWrong().IsZero() {
			t.Errorf("%s: claimed as %+v", s, c)
		}
		if !c.HeldBy("token-1") || c.HeldBy("token-2") || c.HeldBy("") {
			t.Errorf("%s: the claim is not held by its token alone", s)
		}
	}
	if (approval.Approval{Status: approval.StatusPending}).HeldBy("") {
		t.Error("an unclaimed approval is held by the empty token")
	}
}

func TestCloseIsTheRecordOfEveryEnd(t *testing.T) {
	megan := approval.Person{Name: "Megan"}
	adele := approval.Person{Name: "Adele"}
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	claimed, _ := approval.Approval{ID: "apr_1", Status: approval.StatusPending}.Claim(megan, at.Add(-time.Minute), "token-1")

	// An upgrade's outcome keeps who approved it and ends the claim.
	done := claimed.Close(approval.Outcome{Status: approval.StatusFailed, At: at, Problem: refused})
	if done.Status != approval.StatusFailed || done.DecidedBy == nil || done.DecidedBy.Name != "Megan" ||
		!done.DecidedAt.Equal(at) || done.DecidedAt.Location() != time.UTC || done.WhatWentWrong() != refused ||
		done.ClaimToken != "" || done.Claimed() {
		t.Errorf("failed upgrade recorded as %+v", done)
	}
	if !done.Decidable() {
		t.Error("a failed upgrade cannot be retried")
	}
	// A reject after it records who rejected and clears the old problem.
	rejected := done.Close(approval.Outcome{Status: approval.StatusRejected, By: &adele, At: at.Add(time.Hour)})
	if rejected.Status != approval.StatusRejected || rejected.DecidedBy.Name != "Adele" || !rejected.WhatWentWrong().IsZero() ||
		!rejected.DecidedAt.Equal(at.Add(time.Hour)) || rejected.Decidable() || rejected.Status.Open() {
		t.Errorf("reject recorded as %+v", rejected)
	}
	// An expiry names nobody.
	pending := approval.Approval{ID: "apr_2", Status: approval.StatusPending}
	expired := pending.Close(approval.Outcome{Status: approval.StatusExpired, At: at,
		Problem: approval.Problem{Reason: approval.ReasonAppUninstalled}})
	if expired.DecidedBy != nil || expired.Status != approval.StatusExpired || expired.WhatWentWrong().Reason != approval.ReasonAppUninstalled {
		t.Errorf("expiry recorded as %+v", expired)
	}
	if pending.Status != approval.StatusPending {
		t.Error("Close changed the approval it was given")
	}
}

func TestRecordCardKeepsEachCardOnce(t *testing.T) {
	var a approval.Approval
	card := func(id string) approval.PostedCard { return approval.PostedCard{ActivityID: id} }
	a.RecordCard(card("own"))
	a.RecordCard(card("own"))
	a.RecordCard(card("other"))
	a.RecordCard(card("other"))
	if a.CardActivityID != "own" || len(a.OtherCards) != 1 || !a.ShowsOn("other") || a.ShowsOn("third") {
		t.Fatalf("cards %q %+v", a.CardActivityID, a.OtherCards)
	}
	for i := range 2 * approval.MaxOtherCards {
		a.RecordCard(card(string(rune('a' + i))))
	}
	if len(a.OtherCards) != approval.MaxOtherCards {
		t.Errorf("%d other cards kept, want at most %d", len(a.OtherCards), approval.MaxOtherCards)
	}
}

func TestSnoozePutsOffTheReminderAndTheExpiry(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	a := approval.Approval{Status: approval.StatusPending, CreatedAt: at, ExpiresAt: at.Add(168 * time.Hour)}
	if got := a.RemindAt(72 * time.Hour); !got.Equal(at.Add(72 * time.Hour)) {
		t.Errorf("reminder without a snooze at %s", got)
	}
	// Snoozed on day 6 for 72h: the reminder on day 9, then 96h to act.
	s, ok := a.Snooze(approval.Person{Name: "Megan"}, at.Add(144*time.Hour), at.Add(216*time.Hour), 96*time.Hour)
	if !ok || !s.RemindAt(72*time.Hour).Equal(at.Add(216*time.Hour)) || !s.ExpiresAt.Equal(at.Add(312*time.Hour)) {
		t.Errorf("snoozed: ok %v, reminder %s, expires %s", ok, s.RemindAt(72*time.Hour), s.ExpiresAt)
	}
	if !s.Snoozed(at.Add(215*time.Hour)) || s.Snoozed(at.Add(216*time.Hour)) {
		t.Error("snoozed is not exactly until SnoozedUntil")
	}
	// Snoozed early: the expiry stays.
	s, _ = a.Snooze(approval.Person{Name: "Megan"}, at, at.Add(72*time.Hour), 96*time.Hour)
	if !s.ExpiresAt.Equal(a.ExpiresAt) {
		t.Errorf("an early snooze moved the expiry to %s", s.ExpiresAt)
	}
	if _, ok := (approval.Approval{Status: approval.StatusSkipped}).Snooze(approval.Person{}, at, at, 0); ok {
		t.Error("a skipped request was snoozed")
	}
	// Snoozed again while snoozed: nothing moves, so clicking on cannot keep
	// a request open for ever; once the snooze is over, it may be again.
	s, _ = a.Snooze(approval.Person{Name: "Megan"}, at.Add(144*time.Hour), at.Add(216*time.Hour), 96*time.Hour)
	if again, ok := s.Snooze(approval.Person{Name: "Adele"}, at.Add(150*time.Hour), at.Add(222*time.Hour), 96*time.Hour); ok ||
		!again.ExpiresAt.Equal(s.ExpiresAt) || again.SnoozedBy.Name != "Megan" {
		t.Errorf("snoozed again while snoozed: ok %v, expires %s, by %s", ok, again.ExpiresAt, again.SnoozedBy.Name)
	}
	if _, ok := s.Snooze(approval.Person{Name: "Adele"}, at.Add(216*time.Hour), at.Add(288*time.Hour), 96*time.Hour); !ok {
		t.Error("a request whose snooze ended could not be snoozed again")
	}
}
