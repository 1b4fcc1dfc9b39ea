package graph

import (
	"context"
	"net/url"

	"github.com/microsoftgraph/msgraph-sdk-go/chats"
	"github.com/microsoftgraph/msgraph-sdk-go/teams"

	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.Installations = (*Client)(nil)

// Upgrade posts Graph's upgrade action for the installation, consenting to
// exactly consent. The action takes no version: Graph moves the
// installation to the catalog's current definition, so the caller decides
// beforehand that this is the approved one (bot.MayUpgrade). An app without
// RSC gets a body without consentedPermissionSet.
func (c *Client) Upgrade(ctx context.Context, in bot.Installation, consent []bot.Permission) error {
	scope := in.Scope
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return err
	}
	set, err := consentSet(consent)
	if err != nil {
		return err
	}
	body := chats.NewItemInstalledAppsItemUpgradePostRequestBody()
	if len(consent) > 0 {
		body.SetConsentedPermissionSet(set)
	}
	switch scope.Kind {
	case bot.ScopeChat:
		err = g.Chats().ByChatId(scope.ID).InstalledApps().ByTeamsAppInstallationId(in.ID).Upgrade().Post(ctx, body, nil)
	case bot.ScopeTeam:
		tb := teams.NewItemInstalledAppsItemUpgradePostRequestBody()
		if len(consent) > 0 {
			tb.SetConsentedPermissionSet(set)
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
