package bot

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"

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

// pendingUpgrades is what is installed in scope and behind the catalog:
// the installations, then the catalog definitions of exactly those apps —
// two reads however many apps there are ("check" makes the same two).
func (b *Bot) pendingUpgrades(ctx context.Context, scope approval.Scope) ([]approval.PendingUpgrade, error) {
	installed, err := b.opts.Installations.Installed(ctx, scope)
	if err != nil {
		return nil, err
	}
	return b.behind(ctx, scope, installed)
}

// behind reads the catalog definitions of the installed apps and returns
// the installations behind them.
func (b *Bot) behind(ctx context.Context, scope approval.Scope, installed []approval.Installation) ([]approval.PendingUpgrade, error) {
	ids := make([]string, 0, len(installed))
	for _, in := range installed {
		if in.TeamsAppID != "" && !slices.Contains(ids, in.TeamsAppID) {
			ids = append(ids, in.TeamsAppID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	defs, err := b.opts.Catalog.Definitions(ctx, scope.TenantID, ids)
	if err != nil {
		return nil, err
	}
	return approval.Behind(installed, defs), nil
}

// upgrade performs an approved upgrade after reading, at once, the catalog
// and the installation as they are now: see mayUpgrade.
func (b *Bot) upgrade(ctx context.Context, u approval.PendingUpgrade) error {
	in := u.Installation
	var (
		wg     sync.WaitGroup
		defs   []approval.AppDefinition
		defErr error
	)
	wg.Go(func() { defs, defErr = b.opts.Catalog.Definitions(ctx, in.Scope.TenantID, []string{in.TeamsAppID}) })
	now, err := b.opts.Installations.Installation(ctx, in.Scope, in.ID)
	wg.Wait()
	if err = cmp.Or(err, defErr); err != nil {
		return err
	}
	if err := mayUpgrade(u, defs, now); err != nil {
		return err
	}
	return b.opts.Installations.Upgrade(ctx, in, u.Target.Permissions)
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

// Directory answers who may approve: members and their roles, and group
// membership for an explicit approver group.
type Directory interface {
	// Members lists the members of a chat or team scope.
	Members(ctx context.Context, scope approval.Scope) ([]approval.Member, error)
	// Membership returns the member entries of one user (an Entra object
	// id) in a chat or team scope: none when they are not a member. It
	// asks Graph for that user, not for a whole team.
	Membership(ctx context.Context, scope approval.Scope, userID string) ([]approval.Member, error)
	// InGroup reports whether the user is a member, directly or through
	// nested groups, of the Entra group.
	InGroup(ctx context.Context, tenantID, groupID, userID string) (bool, error)
}
