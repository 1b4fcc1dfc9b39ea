package bot

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

// ConsentPolicies reads what a tenant lets its chat and team owners consent
// to (its authorization policy and RSC pre-approval policies).
type ConsentPolicies interface {
	ConsentFacts(ctx context.Context, tenantID string) (approval.ConsentFacts, error)
}

// ConsentCache keeps each tenant's consent facts for a while, shared by
// every replica, so that a tenant's policy is read at most once a scan
// interval.
type ConsentCache interface {
	// CachedConsent returns the tenant's facts; ok is false when none are
	// kept (never read, run out, or forgotten).
	CachedConsent(ctx context.Context, tenantID string) (f approval.ConsentFacts, ok bool, err error)
	// CacheConsent keeps the tenant's facts for ttl.
	CacheConsent(ctx context.Context, tenantID string, f approval.ConsentFacts, ttl time.Duration) error
	// ForgetConsent drops them, so the next look reads the policy afresh.
	ForgetConsent(ctx context.Context, tenantID string) error
}

// consent decides, from each tenant's consent policy, whether a request's
// approvers may consent to its upgrade: a request they may not is marked as
// needing an admin (no Approve button), and goes back to pending once a
// fresh read of the policy allows it.
type consent struct {
	*plumbing
	policies  ConsentPolicies // nil: nothing is known; requests stay as they are
	cache     ConsentCache    // nil: the policy is read at every look
	maxAge    time.Duration   // Options.ConsentMaxAge
	approvals ApprovalStore
	publisher *publisher
	// unreadable remembers the tenants whose policy the bot may not read,
	// so the log says so once per tenant and process.
	unreadable sync.Map
}

// facts returns the tenant's consent facts, from the cache while they are
// kept, else read from Graph and kept for maxAge; ok is false when nothing
// is known (no Graph, or it failed: the next look reads again). A policy
// the bot may not read is logged once and kept as unread, so it is not
// asked for again until maxAge has passed.
func (c *consent) facts(ctx context.Context, tenantID string) (approval.ConsentFacts, bool) {
	if c.policies == nil {
		return approval.ConsentFacts{}, false
	}
	if c.cache != nil {
		f, ok, err := c.cache.CachedConsent(ctx, tenantID)
		if err == nil && ok {
			return f, true
		}
		if err != nil {
			c.log.WarnContext(ctx, "cannot read the kept consent policy; reading it from Graph", "tenant", tenantID, "err", err)
		}
	}
	f, err := c.policies.ConsentFacts(ctx, tenantID)
	switch {
	case ErrorCode(err) == CodeForbidden:
		if _, said := c.unreadable.LoadOrStore(strings.ToLower(tenantID), true); !said {
			c.log.WarnContext(ctx, "cannot read the tenant's consent policy; owners get approval cards as before, and an upgrade Graph refuses for consent waits for an admin",
				"tenant", tenantID, "err", err)
		}
		f = approval.ConsentFacts{}
	case err != nil:
		c.log.WarnContext(ctx, "cannot read the tenant's consent policy", "tenant", tenantID, "err", err)
		return approval.ConsentFacts{}, false
	default:
		c.unreadable.Delete(strings.ToLower(tenantID))
	}
	if c.cache != nil {
		if err := c.cache.CacheConsent(ctx, tenantID, f, c.maxAge); err != nil {
			c.log.WarnContext(ctx, "cannot keep the tenant's consent policy", "tenant", tenantID, "err", err)
		}
	}
	return f, true
}

// forget drops a tenant's kept facts: Graph refused an upgrade for
// consent, so the policy is read afresh.
func (c *consent) forget(ctx context.Context, tenantID string) {
	if c.cache == nil {
		return
	}
	if err := c.cache.ForgetConsent(ctx, tenantID); err != nil {
		c.log.WarnContext(ctx, "cannot forget the tenant's consent policy", "tenant", tenantID, "err", err)
	}
}

// apply brings an open request in line with its tenant's consent policy:
// a pending one its approvers may not consent to needs an admin; one that
// needs an admin is pending again once the policy allows it
// (approval.Approval.MayOfferAgain). Its cards are updated when it changes.
// Whatever fails leaves the request as it is.
func (c *consent) apply(ctx context.Context, a approval.Approval) approval.Approval {
	if a.Status != approval.StatusPending && a.Status != approval.StatusNeedsAdmin {
		return a
	}
	u := a.Upgrade
	tenant := a.OpenKey().TenantID
	if a.Status == approval.StatusPending && !approval.AsksApplicationConsent(u.ConsentPermissions()) {
		return a // nothing to consent to: no need to read the policy
	}
	f, ok := c.facts(ctx, tenant)
	if !ok {
		return a
	}
	var change func(*approval.Approval)
	switch {
	case a.Status == approval.StatusPending &&
		approval.ConsentEligibility(f, u.Installation.Scope.Kind, u.ConsentPermissions()) == approval.EligibilityNeedsAdmin:
		change = func(x *approval.Approval) {
			*x = x.NeedsAdmin(approval.Problem{Reason: approval.ReasonConsentPolicy}, f.Fingerprint())
		}
	case a.MayOfferAgain(f):
		change = func(x *approval.Approval) { *x = x.OfferAgain() }
	default:
		return a
	}
	changed, err := c.approvals.Transition(ctx, a.ID, []approval.Status{a.Status}, change)
	if err != nil {
		if ErrorCode(err) != CodeConflict {
			c.log.WarnContext(ctx, "cannot record what the consent policy says of a request", "approval", a.ID, "err", err)
		}
		return a
	}
	c.log.InfoContext(ctx, "the tenant's consent policy changed a request", "approval", a.ID, "app", u.Installation.DisplayName,
		"status", changed.Status)
	op := approval.OpNeedsAdmin
	if changed.Status == approval.StatusPending {
		op = approval.OpAdminAllowed
	}
	c.audit(ctx, c.approvals, changed.Event(op, c.now(), nil, ""))
	c.publisher.admins.approvalChanged(ctx, changed) // the admins' card counts it, or no longer
	c.publisher.updateCards(ctx, changed)
	return changed
}
