package approval

import (
	"slices"
	"strings"
	"time"
)

// Status is where an approval stands.
type Status string

const (
	StatusPending    Status = "pending"
	StatusUpgrading  Status = "upgrading" // claimed by one approver; the upgrade call is in flight
	StatusUpgraded   Status = "upgraded"
	StatusRejected   Status = "rejected"
	StatusFailed     Status = "failed" // may be retried
	StatusExpired    Status = "expired"
	StatusSuperseded Status = "superseded" // the catalog changed; a new approval replaces it
	StatusUpToDate   Status = "uptodate"   // someone upgraded it another way first
	// StatusUpgradedOutside: the installation reached the target version
	// another way (Teams' Update button, the admin center, an approval
	// elsewhere) while the request was open.
	StatusUpgradedOutside Status = "upgradedoutside"
	// StatusNeedsAdmin: the tenant does not let this scope's approvers
	// consent to the upgrade's resource-specific permissions (its consent
	// policy, or Graph refused the consent): an admin must allow it first.
	// Still the request for its version (Open), but nobody can approve it
	// (not Decidable); once the policy allows it, it is pending again.
	StatusNeedsAdmin Status = "needsadmin"
	// StatusSkipped: an approver chose to skip this version. Still the
	// request for its installation and version (Open: no new request or
	// card for it, ever), but nobody can approve it (not Decidable); a
	// newer catalog version is a request of its own.
	StatusSkipped Status = "skipped"
)

// StatusSnoozed is not an approval's status: it is the history line of
// "Remind me later" (the approval stays pending, its SnoozedUntil set).
const StatusSnoozed Status = "snoozed"

// New is a pending request for the upgrade u, asked in the conversation ref
// in locale, open for ttl from now.
func New(u PendingUpgrade, ref ConversationRef, locale string, now time.Time, ttl time.Duration) Approval {
	now = now.UTC()
	return Approval{Status: StatusPending, Upgrade: u, Conversation: ref, Locale: locale, CreatedAt: now,
		ExpiresAt: now.Add(ttl)}
}

// Statuses lists every status.
func Statuses() []Status {
	return []Status{StatusPending, StatusUpgrading, StatusUpgraded, StatusRejected, StatusFailed, StatusExpired,
		StatusSuperseded, StatusUpToDate, StatusUpgradedOutside, StatusNeedsAdmin, StatusSkipped}
}

// Open reports whether an approval in status s is still the request for
// its installation and target version (its OpenKey): opening the same
// request again finds it. A rejected, expired or superseded one gives way
// to a new request; one upgraded (here or elsewhere) or in flight does not.
func (s Status) Open() bool {
	return s != StatusRejected && s != StatusExpired && s != StatusSuperseded
}

// OpenStatuses lists the statuses for which Open holds, for a store that
// decides in a script which approval is open.
func OpenStatuses() []Status { return filter(Status.Open) }

// Decidable reports whether an approver can still act on an approval in
// status s: approve (claim it for an upgrade) or reject it. A failed
// upgrade may be retried.
func (s Status) Decidable() bool { return s == StatusPending || s == StatusFailed }

// DecidableStatuses lists the statuses for which Decidable holds: the ones
// an approval may be claimed, or closed without a claim, from.
func DecidableStatuses() []Status { return filter(Status.Decidable) }

func filter(keep func(Status) bool) []Status {
	var out []Status
	for _, s := range Statuses() {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// Decidable reports whether an approver can still act on the approval.
func (a Approval) Decidable() bool { return a.Status.Decidable() }

// Expired reports whether the approval is past its time at now: from the
// instant ExpiresAt on, it can no longer be approved or rejected, only
// closed as expired.
func (a Approval) Expired(now time.Time) bool { return !now.Before(a.ExpiresAt) }

// SkipKept is how long a skipped version stays skipped.
const SkipKept = 400 * 24 * time.Hour

// OpenFor is how long from now the approval stays the open request for its
// OpenKey, so that no check, scan or replica opens another for the same
// installation and version: until it expires, or for a skipped version
// SkipKept, long after it would have expired.
func (a Approval) OpenFor(now time.Time) time.Duration {
	if a.Status == StatusSkipped {
		return SkipKept
	}
	return max(a.ExpiresAt.Sub(now), 0)
}

// Claim returns the approval claimed by who at at for an upgrade under
// token, which only the claim's holder knows; false when its status may not
// be claimed (someone else was first, or it was closed).
func (a Approval) Claim(who Person, at time.Time, token string) (Approval, bool) {
	if !a.Status.Decidable() {
		return a, false
	}
	a.Status, a.DecidedBy, a.DecidedAt, a.ClaimToken = StatusUpgrading, &who, at.UTC(), token
	a.Problem, a.ProblemText, a.RetryAt = Problem{}, "", time.Time{}
	return a, true
}

// Claimed reports whether an upgrade claim holds the approval.
func (a Approval) Claimed() bool { return a.Status == StatusUpgrading }

// HeldBy reports whether the claim named token holds the approval: only its
// holder may change it or record the upgrade's outcome.
func (a Approval) HeldBy(token string) bool {
	return a.Status == StatusUpgrading && token != "" && a.ClaimToken == token
}

// Outcome is how a decision or a follow-up ends an approval.
type Outcome struct {
	Status Status
	// By decided it; nil keeps who claimed it, or nobody (an expiry, an
	// approval closed by what the bot saw).
	By *Person
	At time.Time
	// Problem is why it failed or was closed; zero clears the one of an
	// earlier failure.
	Problem Problem
}

// Close returns the approval ended with o: its status, who decided it and
// when, why, and no claim any more. Every way an approval ends (a reject,
// an expiry, an upgrade's outcome, a follow-up, the bot's removal) records
// this record. A failed outcome stays decidable: Retry claims it again.
func (a Approval) Close(o Outcome) Approval {
	a.Status, a.DecidedAt, a.Problem, a.ProblemText, a.ClaimToken = o.Status, o.At.UTC(), o.Problem, "", ""
	a.RetryAt = time.Time{}
	if o.By != nil {
		a.DecidedBy = o.By
	}
	return a
}

// Snooze returns the pending approval with its reminder and any expiry
// notice put off until until (Remind me later), by who at at: the one
// reminder then comes at until at the earliest, and the request does not
// expire before it has had, after that reminder, as long as any request
// has after its reminder (afterReminder: the approval TTL less the time to
// the reminder). false when it may no longer be decided, or is snoozed
// already: one snooze at a time, so clicking on cannot keep it open.
func (a Approval) Snooze(who Person, at, until time.Time, afterReminder time.Duration) (Approval, bool) {
	if !a.Status.Decidable() || a.Claimed() || a.Snoozed(at) {
		return a, false
	}
	a.SnoozedUntil, a.SnoozedBy = until.UTC(), &who
	if end := a.SnoozedUntil.Add(afterReminder); end.After(a.ExpiresAt) {
		a.ExpiresAt = end
	}
	return a, true
}

// Snoozed reports whether the approval's reminder is put off at now.
func (a Approval) Snoozed(now time.Time) bool { return now.Before(a.SnoozedUntil) }

// RemindAt is when the approval's one reminder is due: remindAfter after it
// was opened, or when its snooze ends if later.
func (a Approval) RemindAt(remindAfter time.Duration) time.Time {
	at := a.CreatedAt.Add(remindAfter)
	if a.SnoozedUntil.After(at) {
		return a.SnoozedUntil
	}
	return at
}

// AdminAskable reports whether someone may still ask an admin about an
// approval in status s: while it waits for a decision or for an admin.
func (s Status) AdminAskable() bool { return s.Decidable() || s == StatusNeedsAdmin }

// AdminAskableStatuses lists the statuses for which AdminAskable holds.
func AdminAskableStatuses() []Status { return filter(Status.AdminAskable) }

// AskAdmin returns the approval with who recorded as having asked an admin
// about it at at, because of why, and the ask as not yet posted; false
// when they asked already, or it may no longer be asked about. Each person
// asks once per request.
func (a Approval) AskAdmin(who Person, at time.Time, why AskReason) (Approval, bool) {
	if !a.Status.AdminAskable() || a.AdminAsked(who) {
		return a, false
	}
	a.AdminAskedBy = append(slices.Clone(a.AdminAskedBy), who)
	a.AsksUnposted = append(slices.Clone(a.AsksUnposted), AdminAsk{Person: who, At: at.UTC(), Why: why})
	return a, true
}

// AdminAsked reports whether who asked an admin about the approval.
func (a Approval) AdminAsked(who Person) bool { return slices.ContainsFunc(a.AdminAskedBy, who.same) }

// TakeBackAsk returns the approval without who's ask (the admins' card
// could not be posted): they may ask again.
func (a Approval) TakeBackAsk(who Person) Approval {
	a.AdminAskedBy = slices.DeleteFunc(slices.Clone(a.AdminAskedBy), who.same)
	a.AsksUnposted = a.AsksUnposted.Without(who)
	return a
}

// same reports whether p is who: by Entra object id, or by channel id
// when neither has one.
func (who Person) same(p Person) bool {
	if who.AADObjectID != "" || p.AADObjectID != "" {
		return strings.EqualFold(p.AADObjectID, who.AADObjectID)
	}
	return p.ID == who.ID
}
