package bot

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

// Installations reads and writes the apps installed in chats, teams and
// personal scopes. It only reports what Graph says and does what it is told;
// deciding what is behind and whether to upgrade is the bot's.
type Installations interface {
	// Installed lists the apps installed in scope, each with its installed
	// definition and consented RSC permissions.
	Installed(ctx context.Context, scope approval.Scope) ([]approval.Installation, error)
	// Installation reads one installation afresh, with its installed
	// definition and consented RSC permissions.
	Installation(ctx context.Context, scope approval.Scope, id string) (approval.Installation, error)
	// Upgrade moves the installation to the catalog's current definition
	// (Graph's upgrade takes no version), consenting to exactly consent.
	Upgrade(ctx context.Context, in approval.Installation, consent []approval.Permission) error
}

// Catalog reads the tenant app catalog.
type Catalog interface {
	// Definitions returns every definition, whatever its publishing state,
	// of the given apps; apps the catalog lacks are simply absent. An
	// explicit "check" and every upgrade call it, so it must not answer
	// from a cache.
	Definitions(ctx context.Context, tenantID string, teamsAppIDs []string) ([]approval.AppDefinition, error)
}

// upgrades carries a decision out: it claims an approval, calls Graph's
// upgrade, records how the approval ended and publishes it, and reconciles
// (as the reaper) the claims whose replica died.
type upgrades struct {
	*plumbing
	approvals     ApprovalStore
	installations Installations
	catalog       Catalog
	requests      *requests
	followups     *followups
	publisher     *publisher
	verifier      *verifier
	timeout       time.Duration // Options.UpgradeTimeout
	grace         time.Duration // Options.UpgradeGrace
}

// claimLease is how long an upgrade claim is untouchable: the upgrade call
// and a quarter more for recording it. Past it, the reaper reconciles.
func (up *upgrades) claimLease() time.Duration { return up.timeout + up.timeout/4 }

// claim expires an approval past its time, or records who's approval and,
// once its quorum is met, claims it for an upgrade for lease: of
// concurrent clicks (on any replica) exactly one claim wins. An approval
// that still needs more approvers is returned as recorded, not claimed.
func (up *upgrades) claim(ctx context.Context, a approval.Approval, who approval.Person, lease time.Duration) (approval.Approval, bool, error) {
	now := up.now()
	if a.Expired(now) {
		a, err := up.conclude(ctx, a, approval.Outcome{Status: approval.StatusExpired, At: now})
		return a, false, err
	}
	c, err := up.approvals.ClaimUpgrade(ctx, a.ID, who, now, lease)
	if ErrorCode(err) == CodeConflict {
		return c, false, nil // someone else was first
	}
	if err != nil {
		return a, false, err
	}
	return c, c.Claimed(), nil
}

// conclude closes an approval without a Graph call (a reject, an expiry,
// what a follow-up saw) and publishes it. One decided meanwhile is
// returned as it stands.
func (up *upgrades) conclude(ctx context.Context, a approval.Approval, o approval.Outcome) (approval.Approval, error) {
	done, err := up.record(ctx, a, o)
	if ErrorCode(err) == CodeConflict {
		return done, nil
	}
	if err != nil {
		return a, err
	}
	up.publisher.publish(ctx, done)
	return done, nil
}

// record stores the end of an approval as approval.Approval.Close computes
// it: every path that ends one comes through here. A claimed approval is
// ended by the claim's holder (held is the approval as it holds it); any
// other only from a status that may be decided, else CodeConflict.
func (up *upgrades) record(ctx context.Context, held approval.Approval, o approval.Outcome) (approval.Approval, error) {
	end := func(a *approval.Approval) { *a = a.Close(o) }
	if held.Claimed() {
		return up.approvals.Settle(ctx, held, end)
	}
	return up.approvals.Transition(ctx, held.ID, approval.DecidableStatuses(), end)
}

// runUpgrade calls Graph's upgrade for a claim and records the outcome. The
// call ends by deadline, which falls inside the claim's lease, so nobody
// reconciles a claim whose Graph call may still be running.
func (up *upgrades) runUpgrade(ctx context.Context, c approval.Approval, deadline time.Time) approval.Approval {
	sent := up.now().UTC()
	// The mark must be true: Graph is called only once it is written. A
	// write that fails may still have landed, so it is retried (Redis
	// may be back) while there is time left to call Graph.
	err := retryStore(ctx, time.Until(deadline)/2, func(ctx context.Context) error {
		marked, err := up.approvals.Amend(ctx, c, func(a *approval.Approval) { a.UpgradeSentAt = sent })
		if err == nil {
			c = marked // what settle writes against
		}
		return err
	})
	if err != nil {
		// No Graph call without the mark: the reaper upgrades a claim that
		// certainly never reached Graph, once its lease ends.
		up.log.WarnContext(ctx, "cannot mark the upgrade as sent; leaving it to the reaper", "approval", c.ID, "err", err)
		up.unmark(ctx, c, sent, deadline)
		return c
	}
	gctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	uerr := up.upgrade(gctx, c.Upgrade)
	cancel()
	if errors.Is(uerr, ErrUpgradeUncertain) {
		if !up.upgradeTook(ctx, c.Upgrade) {
			return up.awaitConfirmation(ctx, c, sent, uerr)
		}
		up.log.WarnContext(ctx, "the upgrade failed but took effect", "approval", c.ID, "err", uerr)
		uerr = nil
	}
	status, problem := approval.StatusUpgraded, approval.Problem{}
	switch {
	case errors.Is(uerr, approval.ErrAlreadyUpgraded):
		status = approval.StatusUpToDate
	case errors.Is(uerr, approval.ErrSuperseded):
		status = approval.StatusSuperseded
	case uerr != nil:
		status, problem = approval.StatusFailed, approval.ProblemOf(uerr)
		up.log.WarnContext(ctx, "upgrade failed", "approval", c.ID, "err", uerr)
	}
	return up.settle(ctx, c, status, problem)
}

// unmark takes back a mark that may have landed although its answer was
// lost (Redis dying between writing and answering): Graph was not called,
// and a mark left behind would have the reaper treat the upgrade as
// perhaps sent, waiting out its grace period and then offering Retry,
// rather than upgrading what the approver approved. It is retried until
// deadline, inside the claim's lease; once the reaper has taken the claim
// over, the claim token no longer matches and nothing is written.
func (up *upgrades) unmark(ctx context.Context, c approval.Approval, sent, deadline time.Time) {
	err := retryStore(ctx, time.Until(deadline), func(ctx context.Context) error {
		_, err := up.approvals.Amend(ctx, c, func(a *approval.Approval) {
			if a.UpgradeSentAt.Equal(sent) {
				a.UpgradeSentAt = time.Time{}
			}
		})
		return err
	})
	if err != nil {
		up.log.WarnContext(ctx, "cannot take back the mark of an upgrade never sent; the reaper will wait out its grace period",
			"approval", c.ID, "err", err)
	}
}

// upgradeTook reads the installation back, a few times (Graph may briefly
// show the old version), to learn whether an upgrade whose answer was a 5xx
// or was lost took effect: it is never sent again to find out.
func (up *upgrades) upgradeTook(ctx context.Context, u approval.PendingUpgrade) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), up.timeout)
	defer cancel()
	pause := min(2*time.Second, up.timeout/10)
	for i := range 3 {
		if i > 0 {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(pause):
			}
		}
		in, err := up.installations.Installation(ctx, u.Installation.Scope, u.Installation.ID)
		if err == nil && approval.CompareVersions(in.Definition.Version, u.Target.Version) >= 0 {
			return true
		}
	}
	return false
}

// awaitConfirmation keeps an uncertain upgrade "upgrading…" until its
// grace period ends: the claim is held that long, then the reaper reads the
// installation and records upgraded, or failed with Retry. Offering Retry
// sooner could send a second upgrade for one Graph was slow to show.
func (up *upgrades) awaitConfirmation(ctx context.Context, c approval.Approval, sent time.Time, cause error) approval.Approval {
	up.log.WarnContext(ctx, "Microsoft Graph did not confirm the upgrade; waiting before offering Retry",
		"approval", c.ID, "until", sent.Add(up.grace), "err", cause)
	return up.holdForGrace(ctx, c, sent)
}

// holdForGrace holds an unconfirmed upgrade's claim for what is left of
// its grace period, and has its cards say when Retry will be offered.
func (up *upgrades) holdForGrace(ctx context.Context, c approval.Approval, sent time.Time) approval.Approval {
	if retryAt := sent.Add(up.grace).UTC(); !c.RetryAt.Equal(retryAt) {
		err := retryStore(ctx, recordTimeout, func(ctx context.Context) error {
			marked, err := up.approvals.Amend(ctx, c, func(a *approval.Approval) { a.RetryAt = retryAt })
			if err == nil {
				c = marked
			}
			return err
		})
		if err == nil {
			up.publisher.updateCardsOnly(context.WithoutCancel(ctx), c)
		} else {
			up.log.WarnContext(ctx, "cannot note when Retry will be offered", "approval", c.ID, "err", err)
		}
	}
	err := retryStore(ctx, recordTimeout, func(ctx context.Context) error {
		held, err := up.approvals.HoldClaim(ctx, c.ID, c.ClaimToken, up.graceLeft(sent))
		if err == nil {
			c = held
		}
		return err
	})
	if err != nil {
		// The claim's own lease ends soon: the reaper then holds it again
		// for what is left of the grace period.
		up.log.WarnContext(ctx, "cannot hold the claim for the grace period", "approval", c.ID, "err", err)
	}
	return c
}

// graceLeft is how long a claim whose upgrade was sent at sent still
// waits for Graph to show it.
func (up *upgrades) graceLeft(sent time.Time) time.Duration {
	return max(sent.Add(up.grace).Sub(up.now()), time.Second)
}

// settle records the outcome of a claim, then its history line and card.
// If the record cannot be written (Redis is down for half the upgrade
// timeout) the claim stays upgrading and the reaper reconciles it from
// Graph once its lease ends.
func (up *upgrades) settle(ctx context.Context, c approval.Approval, status approval.Status, problem approval.Problem) approval.Approval {
	now := up.now().UTC()
	var done approval.Approval
	failed := false // a write failed: a later conflict may be our own write having landed
	err := retryStore(ctx, up.timeout/2, func(ctx context.Context) error {
		var err error
		done, err = up.record(ctx, c, approval.Outcome{Status: status, At: now, Problem: problem})
		failed = failed || ErrorCode(err) == CodeUnavailable
		return err
	})
	if ErrorCode(err) == CodeConflict {
		if !failed || done.Status != status || !done.DecidedAt.Equal(now) {
			return done // settled by someone else: the reaper after our lease ended
		}
		err = nil // our write landed though its answer was lost
	}
	if err != nil {
		up.log.ErrorContext(ctx, "cannot record an upgrade's outcome; the reaper will reconcile it",
			"approval", c.ID, "outcome", status, "err", err)
		return c
	}
	up.publisher.publish(ctx, done)
	if status == approval.StatusUpgraded {
		up.verifier.queue(ctx, done)
	}
	if status == approval.StatusSuperseded {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), up.timeout)
		up.reopen(rctx, done)
		cancel()
	}
	return done
}

// reopen posts a new request when the catalog moved on since approval.
func (up *upgrades) reopen(ctx context.Context, old approval.Approval) {
	ups, err := up.requests.pendingUpgrades(ctx, old.Upgrade.Installation.Scope)
	if err != nil {
		up.log.WarnContext(ctx, "cannot renew a superseded request", "approval", old.ID, "err", err)
		return
	}
	for _, u := range ups {
		if u.Installation.ID != old.Upgrade.Installation.ID {
			continue
		}
		a, created, err := up.requests.open(ctx, old.Conversation, u, old.Locale)
		if created {
			up.followups.follow(ctx, a)
		}
		if err == nil && a.Status == approval.StatusPending && a.CardActivityID == "" {
			_, err = up.requests.postCard(ctx, old.Conversation, "", a, old.Locale)
		}
		if err != nil {
			up.log.WarnContext(ctx, "cannot post the renewed request", "approval", old.ID, "err", err)
		}
	}
}

// upgrade performs an approved upgrade after reading, at once, the catalog
// and the installation as they are now: see mayUpgrade.
func (up *upgrades) upgrade(ctx context.Context, u approval.PendingUpgrade) error {
	in := u.Installation
	var (
		wg     sync.WaitGroup
		defs   []approval.AppDefinition
		defErr error
	)
	wg.Go(func() { defs, defErr = up.catalog.Definitions(ctx, in.Scope.TenantID, []string{in.TeamsAppID}) })
	now, err := up.installations.Installation(ctx, in.Scope, in.ID)
	wg.Wait()
	if err = cmp.Or(err, defErr); err != nil {
		return err
	}
	if err := mayUpgrade(u, defs, now); err != nil {
		return err
	}
	return up.installations.Upgrade(ctx, in, u.Target.Permissions)
}

// mayUpgrade is approval.MayUpgrade with the code of its refusal:
// CodeNotFound when the catalog no longer publishes the app, CodeConflict
// otherwise.
func mayUpgrade(approved approval.PendingUpgrade, current []approval.AppDefinition, now approval.Installation) error {
	err := approval.MayUpgrade(approved, current, now)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, approval.ErrNotPublished):
		return &Error{Code: CodeNotFound, Message: err.Error(), Err: err}
	}
	return &Error{Code: CodeConflict, Message: err.Error(), Err: err}
}
