package bot

import (
	"context"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

// reap reconciles upgrade claims whose lease has ended: their replica died
// or hung between claiming and recording the outcome (perhaps after Graph's
// 204). A claim that certainly never reached Graph (not marked as sent) is
// upgraded now: the approver approved and nobody called Graph. Any other is
// never sent again — a second POST could double an upgrade whose first one
// took: the reaper reads the installation and records what Graph shows,
// upgraded if it runs the target version, failed (with Retry) if not once
// the upgrade's grace period has passed (until then it holds the claim
// again), and updates the card. It returns how many it settled.
func (up *upgrades) reap(ctx context.Context) (int, error) {
	if up.installations == nil {
		return 0, nil
	}
	ids, err := up.approvals.ExpiredClaims(ctx, 100)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		c, err := up.approvals.TakeOverClaim(ctx, id, up.claimLease())
		switch ErrorCode(err) {
		case "":
		case CodeConflict, CodeNotFound:
			continue // alive, settled meanwhile, or gone
		default:
			return n, err
		}
		if up.reconcile(ctx, c) {
			n++
		}
	}
	return n, nil
}

func (up *upgrades) reconcile(ctx context.Context, c approval.Approval) bool {
	if c.UpgradeSentAt.IsZero() {
		up.log.InfoContext(ctx, "upgrading an approval whose replica stopped before calling Graph", "approval", c.ID)
		return !up.runUpgrade(ctx, c, time.Now().Add(up.timeout)).Claimed()
	}
	u := c.Upgrade
	gctx, cancel := context.WithTimeout(ctx, up.timeout)
	in, err := up.installations.Installation(gctx, u.Installation.Scope, u.Installation.ID)
	cancel()
	status, problem := approval.StatusUpgraded, approval.Problem{}
	switch {
	case err == nil && approval.CompareVersions(in.Definition.Version, u.Target.Version) >= 0:
	case err == nil && up.now().Before(c.UpgradeSentAt.Add(up.grace)):
		// Graph may not show an upgrade that took yet: Retry waits.
		up.holdForGrace(ctx, c, c.UpgradeSentAt)
		return false
	case err == nil:
		status = approval.StatusFailed
		problem = approval.Problem{Reason: approval.ReasonInterrupted, InstalledVersion: in.Definition.Version}
	case ErrorCode(err) == CodeNotFound:
		status, problem = approval.StatusFailed, approval.ProblemOf(err)
		up.log.WarnContext(ctx, "an interrupted upgrade's installation is gone", "approval", c.ID, "err", err)
	default:
		// Graph cannot tell now: the new lease ends and a later pass retries.
		up.log.WarnContext(ctx, "cannot reconcile an interrupted upgrade yet", "approval", c.ID, "err", err)
		return false
	}
	up.log.InfoContext(ctx, "reconciled an interrupted upgrade", "approval", c.ID, "outcome", status)
	up.settle(ctx, c, status, problem)
	return true
}

// ReaperLease names the lease that makes one replica the reaper.
const ReaperLease = "reaper"

// runReaper runs reap every interval on whichever replica holds the reaper
// lease, until ctx ends. A claim is thus reconciled within its lease plus
// about two intervals of its replica dying.
func (up *upgrades) runReaper(ctx context.Context, leases Leases, every time.Duration) {
	holder := approval.NewToken()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		held, err := leases.HoldLease(ctx, ReaperLease, holder, 3*every)
		if err == nil && held {
			if n, err := up.reap(ctx); err != nil {
				up.log.WarnContext(ctx, "reaper pass failed", "err", err)
			} else if n > 0 {
				up.log.InfoContext(ctx, "reaper settled interrupted upgrades", "count", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
