package bot

import (
	"context"
	"errors"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

// ApprovalStore keeps approvals, batches and the audit trail.
type ApprovalStore interface {
	// OpenApproval returns the approval open under a.OpenKey() (its status
	// is one of approval.OpenStatuses), or stores a under
	// a new id (a.ID is ignored) and returns it with created true. It is
	// atomic across replicas: racing opens of one key return one approval.
	OpenApproval(ctx context.Context, a approval.Approval) (stored approval.Approval, created bool, err error)
	// Approval returns an approval, or an error with CodeNotFound.
	Approval(ctx context.Context, id string) (approval.Approval, error)
	// Transition applies change to the approval atomically if its status is
	// one of from; otherwise it returns the approval as it is and an error
	// with CodeConflict.
	Transition(ctx context.Context, id string, from []approval.Status, change func(*approval.Approval)) (approval.Approval, error)
	Claims
	// SaveBatch remembers approval ids under a new batch id ("approve all"),
	// and the batch under each approval (ListedIn).
	SaveBatch(ctx context.Context, ids []string) (string, error)
	// Batch returns a batch: its approval ids and the messages listing
	// them, or CodeNotFound.
	Batch(ctx context.Context, id string) (approval.Batch, error)
	// RecordList remembers a message that lists the batch, so that it is
	// kept true; recording one twice changes nothing. A batch keeps a
	// bounded number of them: past it, a new one is not remembered.
	// CodeNotFound when the batch is gone.
	RecordList(ctx context.Context, batchID string, list approval.PostedCard) error
	// ListedIn returns the batches an approval was listed in, newest first
	// (a bounded number of them).
	ListedIn(ctx context.Context, approvalID string) ([]string, error)
	// RecordOutcome appends the event e to its tenant's audit trail (as
	// AppendAudit) and, as a history line, to a conversation's history,
	// and returns the lists to redraw: the batches e.ApprovalID is listed
	// in, as ListedIn returns them. Recording a decision needs all three,
	// and gets them in one round trip. On error the lists are unknown, and
	// the event may or may not have been added. The history keeps a
	// bounded number of the newest lines.
	RecordOutcome(ctx context.Context, conversationID string, e approval.AuditEvent) (listedIn []string, err error)
	// Audit returns up to n events of a conversation, newest first.
	Audit(ctx context.Context, conversationID string, n int) ([]approval.AuditEvent, error)
	AuditTrail
}

// AuditTrail is each tenant's audit trail: every event of its approvals,
// in the order they were appended.
type AuditTrail interface {
	// AppendAudit appends e to the trail of e.TenantID. On error the event
	// may or may not have been added: a retry may record it twice.
	AppendAudit(ctx context.Context, e approval.AuditEvent) error
}

// Claims are the upgrade claims on approvals: who may call Graph's upgrade
// for an approval, decided in the store, never from a copy read before.
type Claims interface {
	// ClaimUpgrade records who's approval of an approval that may be
	// decided (approval.DecidableStatuses) and, once its quorum of distinct
	// approvers is met (approval.Approval.Approve), claims it under a new
	// ClaimToken and a lease that expires in the store after lease, in
	// the same atomic step. An approval counted while more are needed (or
	// repeated) is returned not Claimed, without error. Of concurrent
	// claims exactly one wins; the others get the approval as it stands
	// and CodeConflict.
	ClaimUpgrade(ctx context.Context, id string, who approval.Person, at time.Time, lease time.Duration) (approval.Approval, error)
	// TakeOverClaim gives an upgrading approval whose lease has expired (its
	// replica died or hung) a new ClaimToken and lease, so one reconciler
	// finishes it. A live lease, or any other status, is CodeConflict.
	TakeOverClaim(ctx context.Context, id string, lease time.Duration) (approval.Approval, error)
	// Amend applies change to the upgrading approval held.ID if held's
	// ClaimToken is still its own, keeping the claim; otherwise CodeConflict.
	// held is the approval as its holder last had it: the store may write
	// against it without reading first, but only if it is still what the
	// store holds.
	Amend(ctx context.Context, held approval.Approval, change func(*approval.Approval)) (approval.Approval, error)
	// HoldClaim keeps an upgrading approval's claim, if token is still its
	// ClaimToken, for lease from now; otherwise CodeConflict.
	HoldClaim(ctx context.Context, id, token string, lease time.Duration) (approval.Approval, error)
	// Settle applies change (the outcome) to the upgrading approval held.ID
	// if held's ClaimToken is still its own, and ends the claim; otherwise
	// CodeConflict. held is as for Amend.
	Settle(ctx context.Context, held approval.Approval, change func(*approval.Approval)) (approval.Approval, error)
	// ExpiredClaims lists up to n upgrading approvals whose lease has expired.
	// It may list one late, by up to the lease a refused ClaimUpgrade or
	// HoldClaim asked for, and one no longer upgrading: TakeOverClaim tells.
	ExpiredClaims(ctx context.Context, n int) ([]string, error)
}

// CheckWindows limit "check" per conversation: each reads Graph (the
// installations and the catalog) and may record approvals, so a repeat
// moments later answers by pointing at the first one's answer instead.
type CheckWindows interface {
	// ClaimCheck starts a check in a conversation at at, unless one started
	// there within window: then claimed is false and since is when that one
	// started. The claim lasts window, across replicas.
	ClaimCheck(ctx context.Context, conversationID string, at time.Time, window time.Duration) (claimed bool, since time.Time, err error)
	// ReleaseCheck gives back the claim made at at (the check failed), so
	// a retry reads Graph.
	ReleaseCheck(ctx context.Context, conversationID string, at time.Time) error
}

// Leases elect one replica for background work: a lease is held by one
// holder until it expires or the holder renews it.
type Leases interface {
	// HoldLease takes the lease name for holder, or renews it if holder
	// holds it, for ttl. It reports whether holder now holds it.
	HoldLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}

// ErrUpgradeUncertain is in the chain of an Installations.Upgrade error
// when the upgrade may have taken effect anyway: Graph answered 5xx, or the
// answer was lost. The installation is then read back, never upgraded again.
var ErrUpgradeUncertain = errors.New("the upgrade may have taken effect")
