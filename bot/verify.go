package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/upgradeapprovals/bot/cards"
)

// Grant is a resource-specific permission in force in a chat, team or
// user's personal scope (a resourceSpecificPermissionGrant).
type Grant struct {
	ClientID    string
	ClientAppID string
	Permission  Permission
}

// GrantChecker reads the grants in force where an app is installed, to tell
// whether an upgrade's consent took.
type GrantChecker interface {
	// PermissionGrants lists the RSC grants in force in a scope.
	PermissionGrants(ctx context.Context, scope Scope) ([]Grant, error)
}

// Verification is what the bot found after an upgrade, shown on its card.
type Verification struct {
	// Missing are permissions of the new version that are not both
	// consented and granted in the scope.
	Missing []Permission `json:"missing,omitempty"`
	// Problem: the check itself failed.
	Problem string `json:"problem,omitempty"`
}

// errNotYetUpgraded: Graph can show the old version for a while after an
// upgrade returned 204; the verification job is retried.
var errNotYetUpgraded = errors.New("bot: the installation does not show the new version yet")

// queueVerify asks for the post-upgrade check, as a job: it survives a
// restart and Graph's delay in showing the new version.
func (b *Bot) queueVerify(ctx context.Context, a Approval) {
	if b.opts.Jobs == nil || b.opts.Grants == nil {
		return
	}
	j := ScanJob{TenantID: a.Upgrade.Installation.Scope.TenantID, ConversationID: a.Conversation.ConversationID,
		Reason: ReasonVerify, ApprovalID: a.ID}
	if err := b.opts.Jobs.Enqueue(ctx, j); err != nil {
		b.opts.Logger.WarnContext(ctx, "cannot queue the post-upgrade check", "approval", a.ID, "err", err)
	}
}

// ReasonVerify is the job that checks an upgraded installation's grants.
const ReasonVerify = "verify"

// VerifyUpgrade re-reads an upgraded installation and the RSC grants in its
// scope and says on the card whether the new version runs with exactly the
// consented permissions, naming any that did not take.
func (b *Bot) VerifyUpgrade(ctx context.Context, approvalID string) error {
	if b.opts.Grants == nil {
		return nil
	}
	a, err := b.opts.Approvals.Approval(ctx, approvalID)
	if ErrorCode(err) == CodeNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	if a.Status != StatusUpgraded || a.Verification != nil {
		return nil
	}
	v, err := b.verify(ctx, a)
	if err != nil {
		return err
	}
	done, err := b.opts.Approvals.Transition(ctx, a.ID, []ApprovalStatus{StatusUpgraded}, func(c *Approval) { c.Verification = &v })
	if err != nil {
		if ErrorCode(err) == CodeConflict {
			return nil
		}
		return err
	}
	if len(v.Missing) > 0 {
		b.opts.Logger.WarnContext(ctx, "an upgrade's consent did not take", "approval", a.ID, "missing", len(v.Missing))
	}
	// Every card showing the approval says it, like its outcome (a check's
	// reply and a proactive post can both show one approval).
	b.updateCards(ctx, done)
	return nil
}

func (b *Bot) verify(ctx context.Context, a Approval) (Verification, error) {
	scope, target := a.Upgrade.Installation.Scope, a.Upgrade.Target
	now, err := b.opts.Installations.Installation(ctx, scope, a.Upgrade.Installation.ID)
	if err != nil {
		return Verification{}, err
	}
	version, consented := now.Definition.Version, now.Consented
	if CompareVersions(version, target.Version) < 0 {
		return Verification{}, fmt.Errorf("%w (%s, not %s)", errNotYetUpgraded, version, target.Version)
	}
	if len(target.Permissions) == 0 {
		return Verification{}, nil
	}
	grants, err := b.opts.Grants.PermissionGrants(ctx, scope)
	if ErrorCode(err) == CodeForbidden {
		return Verification{Problem: err.Error()}, nil
	}
	if err != nil {
		return Verification{}, err
	}
	// v1.0 does not say which Entra app an installation is, so a
	// permission counts as granted when some grant in the scope holds it.
	have := map[string]bool{}
	for _, g := range grants {
		have[g.Permission.key()] = true
	}
	isConsented := map[string]bool{}
	for _, p := range consented {
		isConsented[p.key()] = true
	}
	var v Verification
	for _, p := range target.Permissions {
		if !have[p.key()] || !isConsented[p.key()] {
			v.Missing = append(v.Missing, p)
		}
	}
	SortPermissions(v.Missing)
	return v, nil
}

func verificationView(v *Verification) *cards.Verification {
	if v == nil {
		return nil
	}
	out := &cards.Verification{Problem: v.Problem}
	for _, p := range v.Missing {
		out.Missing = append(out.Missing, cards.Permission{Value: p.Value, Type: strings.ToLower(p.Type)})
	}
	return out
}
