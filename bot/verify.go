package bot

import (
	"context"
	"errors"
	"fmt"

	"github.com/upgradeapprovals/bot/approval"
)

// GrantChecker reads the grants in force where an app is installed, to tell
// whether an upgrade's consent took.
type GrantChecker interface {
	// PermissionGrants lists the RSC grants in force in a scope.
	PermissionGrants(ctx context.Context, scope approval.Scope) ([]approval.Grant, error)
}

// errNotYetUpgraded: Graph can show the old version for a while after an
// upgrade returned 204; the verification job is retried.
var errNotYetUpgraded = errors.New("bot: the installation does not show the new version yet")

// verifier checks, as a job after an upgrade, that the new version runs
// with exactly the consented permissions, and says so on its cards.
type verifier struct {
	*plumbing
	approvals     ApprovalStore
	installations Installations
	grants        GrantChecker // nil: nothing is verified
	jobs          JobQueue     // nil: nothing is verified
	publisher     *publisher
}

// ReasonVerify is the job that checks an upgraded installation's grants.
const ReasonVerify = "verify"

// queue asks for the post-upgrade check, as a job: it survives a
// restart and Graph's delay in showing the new version.
func (vf *verifier) queue(ctx context.Context, a approval.Approval) {
	if vf.jobs == nil || vf.grants == nil {
		return
	}
	j := ScanJob{TenantID: a.Upgrade.Installation.Scope.TenantID, ConversationID: a.Conversation.ConversationID,
		Reason: ReasonVerify, ApprovalID: a.ID}
	if err := vf.jobs.Enqueue(ctx, j); err != nil {
		vf.log.WarnContext(ctx, "cannot queue the post-upgrade check", "approval", a.ID, "err", err)
	}
}

// verifyUpgrade re-reads an upgraded installation and the RSC grants in its
// scope and says on the card whether the new version runs with exactly the
// consented permissions, naming any that did not take.
func (vf *verifier) verifyUpgrade(ctx context.Context, approvalID string) error {
	if vf.grants == nil {
		return nil
	}
	a, err := vf.approvals.Approval(ctx, approvalID)
	if ErrorCode(err) == CodeNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	if a.Status != approval.StatusUpgraded || a.Verification != nil {
		return nil
	}
	v, err := vf.verify(ctx, a)
	if err != nil {
		return err
	}
	done, err := vf.approvals.Transition(ctx, a.ID, []approval.Status{approval.StatusUpgraded}, func(c *approval.Approval) { c.Verification = &v })
	if err != nil {
		if ErrorCode(err) == CodeConflict {
			return nil
		}
		return err
	}
	if len(v.Missing) > 0 {
		vf.log.WarnContext(ctx, "an upgrade's consent did not take", "approval", a.ID, "missing", len(v.Missing))
		vf.audit(ctx, vf.approvals, done.Event(approval.OpConsentMissing, vf.now(), nil,
			"not in force: "+approval.FormatPermissions(v.Missing)))
	}
	// Every card showing the approval says it, like its outcome (a check's
	// reply and a proactive post can both show one approval).
	vf.publisher.updateCards(ctx, done)
	return nil
}

func (vf *verifier) verify(ctx context.Context, a approval.Approval) (approval.Verification, error) {
	scope, target := a.Upgrade.Installation.Scope, a.Upgrade.Target
	now, err := vf.installations.Installation(ctx, scope, a.Upgrade.Installation.ID)
	if err != nil {
		return approval.Verification{}, err
	}
	version, consented := now.Definition.Version, now.Consented
	if approval.CompareVersions(version, target.Version) < 0 {
		return approval.Verification{}, fmt.Errorf("%w (%s, not %s)", errNotYetUpgraded, version, target.Version)
	}
	if len(target.Permissions) == 0 {
		return approval.Verification{}, nil
	}
	grants, err := vf.grants.PermissionGrants(ctx, scope)
	if ErrorCode(err) == CodeForbidden {
		vf.log.WarnContext(ctx, "cannot read the grants in force to verify an upgrade", "approval", a.ID, "err", err)
		return approval.Verification{Problem: approval.ProblemOf(err)}, nil
	}
	if err != nil {
		return approval.Verification{}, err
	}
	return approval.Verification{Missing: approval.MissingPermissions(target.Permissions, consented, grants)}, nil
}
