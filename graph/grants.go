package graph

import (
	"context"
	"strings"

	"github.com/microsoftgraph/msgraph-sdk-go/models"

	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.GrantChecker = (*Client)(nil)

// grantsPermission names an application permission that reads the RSC
// grants in force in a scope, as Microsoft's reference for each
// permissionGrants list names them (the user's also accepts the
// …AndConsentForUser.All one the bot holds anyway).
func grantsPermission(k bot.ScopeKind) string {
	switch k {
	case bot.ScopeTeam:
		return "TeamsAppInstallation.ReadForTeam.All"
	case bot.ScopeUser:
		return "TeamsAppInstallation.ReadWriteAndConsentForUser.All"
	}
	return "TeamsAppInstallation.ReadForChat.All"
}

// PermissionGrants lists the resource-specific permissions granted in a
// chat, team or user's personal scope (GET …/permissionGrants): what apps
// there can actually do, whatever they were consented.
func (c *Client) PermissionGrants(ctx context.Context, scope bot.Scope) ([]bot.Grant, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return nil, err
	}
	var first models.ResourceSpecificPermissionGrantCollectionResponseable
	switch scope.Kind {
	case bot.ScopeChat:
		first, err = g.Chats().ByChatId(scope.ID).PermissionGrants().Get(ctx, nil)
	case bot.ScopeTeam:
		first, err = g.Teams().ByTeamId(scope.ID).PermissionGrants().Get(ctx, nil)
	case bot.ScopeUser:
		first, err = g.Users().ByUserId(scope.ID).PermissionGrants().Get(ctx, nil)
	default:
		return nil, bot.Errorf(bot.CodeInvalid, "graph: unknown scope kind %q", scope.Kind)
	}
	var items []models.ResourceSpecificPermissionGrantable
	if err == nil {
		items, err = all[models.ResourceSpecificPermissionGrantable](ctx, g, first,
			models.CreateResourceSpecificPermissionGrantCollectionResponseFromDiscriminatorValue)
	}
	if err != nil {
		return nil, translate(err, "read the permissions granted in "+scopeWords(scope.Kind), grantsPermission(scope.Kind))
	}
	out := make([]bot.Grant, 0, len(items))
	for _, it := range items {
		out = append(out, bot.Grant{
			ClientID: deref(it.GetClientId()), ClientAppID: deref(it.GetClientAppId()),
			Permission: bot.Permission{Value: deref(it.GetPermission()), Type: strings.ToLower(deref(it.GetPermissionType()))},
		})
	}
	return out, nil
}
