package graph

import (
	"context"
	"net/url"

	"github.com/microsoftgraph/msgraph-sdk-go/chats"
	"github.com/microsoftgraph/msgraph-sdk-go/teams"

	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.Installations = (*Client)(nil)

// PendingUpgrades lists the installations in scope whose installed
// definition is older than the catalog's newest published one, with the RSC
// permissions the upgrade adds, removes and keeps. With a warm catalog cache
// this costs one Graph read plus one per pending upgrade.
func (c *Client) PendingUpgrades(ctx context.Context, scope bot.Scope) ([]bot.PendingUpgrade, error) {
	installed, err := c.Installations(ctx, scope)
	if err != nil {
		return nil, err
	}
	var pending []bot.PendingUpgrade
	for _, in := range installed {
		if in.TeamsAppID == "" {
			continue
		}
		target, err := c.CatalogDefinition(ctx, scope.TenantID, in.TeamsAppID)
		if bot.ErrorCode(err) == bot.CodeNotFound {
			continue // not in the catalog (any more): nothing to upgrade to
		}
		if err != nil {
			return nil, err
		}
		if bot.CompareVersions(in.Definition.Version, target.Version) >= 0 {
			continue
		}
		consented, err := c.ConsentedPermissions(ctx, scope, in.ID)
		if err != nil {
			return nil, err
		}
		in.Consented = consented
		pending = append(pending, bot.PendingUpgrade{
			Installation: in,
			Target:       target,
			Diff:         bot.DiffPermissions(consented, target.Permissions),
		})
	}
	return pending, nil
}

// Upgrade moves the installation to the catalog's current published
// definition. Graph's upgrade takes no version: it always moves to the
// catalog's current definition, so the catalog is read afresh (never from
// the cache) and the upgrade is refused with bot.CodeConflict if that is no
// longer the definition the approver saw, or if the installation already
// runs it. The consented set is exactly the target's RSC set.
func (c *Client) Upgrade(ctx context.Context, u bot.PendingUpgrade) error {
	scope, in := u.Installation.Scope, u.Installation
	current, err := c.catalogDefinition(ctx, scope.TenantID, in.TeamsAppID)
	if err != nil {
		return err
	}
	c.catalog.put(scope.TenantID, in.TeamsAppID, current)
	if current.ID != u.Target.ID || bot.CompareVersions(current.Version, u.Target.Version) != 0 ||
		!bot.SamePermissions(current.Permissions, u.Target.Permissions) {
		return &bot.Error{Code: bot.CodeConflict, Message: "graph: the catalog now publishes version " + current.Version +
			" of " + in.DisplayName + ", not the approved " + u.Target.Version, Err: bot.ErrSuperseded}
	}
	// Never upgrade twice: a redelivered approval, or another approver
	// first, finds the installation already there.
	now, err := c.installation(ctx, scope, in.ID, nil, []string{"teamsAppDefinition"})
	if err != nil {
		return translate(err, "read "+in.DisplayName+" in "+scopeWords(scope.Kind), installationPermission(scope.Kind))
	}
	if d := now.GetTeamsAppDefinition(); d != nil && bot.CompareVersions(deref(d.GetVersion()), u.Target.Version) >= 0 {
		return &bot.Error{Code: bot.CodeConflict, Message: "graph: " + in.DisplayName + " already runs version " +
			deref(d.GetVersion()), Err: bot.ErrAlreadyUpgraded}
	}

	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return err
	}
	consent, err := consentSet(u.Target.Permissions)
	if err != nil {
		return err
	}
	// Without RSC the body carries no consentedPermissionSet.
	body := chats.NewItemInstalledAppsItemUpgradePostRequestBody()
	if len(u.Target.Permissions) > 0 {
		body.SetConsentedPermissionSet(consent)
	}
	switch scope.Kind {
	case bot.ScopeChat:
		err = g.Chats().ByChatId(scope.ID).InstalledApps().ByTeamsAppInstallationId(in.ID).Upgrade().Post(ctx, body, nil)
	case bot.ScopeTeam:
		tb := teams.NewItemInstalledAppsItemUpgradePostRequestBody()
		if len(u.Target.Permissions) > 0 {
			tb.SetConsentedPermissionSet(consent)
		}
		err = g.Teams().ByTeamId(scope.ID).InstalledApps().ByTeamsAppInstallationId(in.ID).Upgrade().Post(ctx, tb, nil)
	case bot.ScopeUser:
		// Graph v1.0 has POST /users/{id}/teamwork/installedApps/{id}/upgrade
		// but msgraph-sdk-go has no builder for it. The chat builder posts
		// the same action with the same body shape, so it is aimed at the
		// user's URL; the SDK's auth, retry and error mapping still apply.
		raw := c.opts.BaseURL + "/users/" + url.PathEscape(scope.ID) + "/teamwork/installedApps/" + url.PathEscape(in.ID) + "/upgrade"
		err = chats.NewItemInstalledAppsItemUpgradeRequestBuilder(raw, g.GetAdapter()).Post(ctx, body, nil)
	default:
		return bot.Errorf(bot.CodeInvalid, "graph: unknown scope kind %q", scope.Kind)
	}
	return translate(err, "upgrade "+in.DisplayName+" in "+scopeWords(scope.Kind), installationPermission(scope.Kind))
}
