package graph

import (
	"context"
	"strings"

	abstractions "github.com/microsoft/kiota-abstractions-go"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.GrantChecker = (*Client)(nil)

// grantsPermission names an application permission that reads the RSC
// grants in force in a scope, as Microsoft's reference for each
// permissionGrants list names them (the user's also accepts the
// …AndConsentForUser.All one the bot holds anyway).
func grantsPermission(k approval.ScopeKind) string {
	switch k {
	case approval.ScopeTeam:
		return "TeamsAppInstallation.ReadForTeam.All"
	case approval.ScopeUser:
		return "TeamsAppInstallation.ReadWriteAndConsentForUser.All"
	}
	return "TeamsAppInstallation.ReadForChat.All"
}

// PermissionGrants lists the resource-specific permissions granted in a
// chat, team or user's personal scope (GET …/permissionGrants): what apps
// there can actually do, whatever they were consented.
func (c *Client) PermissionGrants(ctx context.Context, scope approval.Scope) ([]approval.Grant, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return nil, err
	}
	var ri *abstractions.RequestInformation
	switch scope.Kind {
	case approval.ScopeChat:
		ri, err = g.Chats().ByChatId(scope.ID).PermissionGrants().ToGetRequestInformation(ctx, nil)
	case approval.ScopeTeam:
		ri, err = g.Teams().ByTeamId(scope.ID).PermissionGrants().ToGetRequestInformation(ctx, nil)
	case approval.ScopeUser:
		ri, err = g.Users().ByUserId(scope.ID).PermissionGrants().ToGetRequestInformation(ctx, nil)
	default:
		return nil, bot.Errorf(bot.CodeInvalid, "graph: unknown scope kind %q", scope.Kind)
	}
	var items []grantJSON
	if err == nil {
		items, err = list[grantJSON](ctx, g, ri)
	}
	if err != nil {
		return nil, translate(err, "read the permissions granted in "+scopeWords(scope.Kind), grantsPermission(scope.Kind))
	}
	out := make([]approval.Grant, 0, len(items))
	for _, it := range items {
		out = append(out, approval.Grant{
			ClientID: it.ClientID, ClientAppID: it.ClientAppID,
			Permission: approval.Permission{Value: it.Permission, Type: strings.ToLower(it.PermissionType)},
		})
	}
	return out, nil
}
