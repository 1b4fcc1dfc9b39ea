package graph

import (
	"context"
	"strings"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/chats"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/teams"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

// installationPermission names the application permission that reads,
// upgrades and consents for installations in a scope. The plain
// ReadWrite(Self)For… permissions cannot consent RSC, so they are not enough.
func installationPermission(k approval.ScopeKind) string {
	switch k {
	case approval.ScopeTeam:
		return "TeamsAppInstallation.ReadWriteAndConsentForTeam.All"
	case approval.ScopeUser:
		return "TeamsAppInstallation.ReadWriteAndConsentForUser.All"
	}
	return "TeamsAppInstallation.ReadWriteAndConsentForChat.All"
}

func scopeWords(k approval.ScopeKind) string {
	switch k {
	case approval.ScopeTeam:
		return "team"
	case approval.ScopeUser:
		return "personal scope"
	}
	return "chat"
}

var (
	// The installed definition and the app come through $expand; the
	// consented RSC set appears only when selected. Graph returns expanded
	// properties whatever $select says, so one request reads all three.
	installationExpand = []string{"teamsApp", "teamsAppDefinition"}
	installationSelect = []string{"id", "consentedPermissionSet"}
)

// Installed lists the apps installed in scope with their app, installed
// definition and consented RSC permissions: one request (and one per extra
// page) however many apps there are.
func (c *Client) Installed(ctx context.Context, scope approval.Scope) ([]approval.Installation, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return nil, err
	}
	var ri *abstractions.RequestInformation
	switch scope.Kind {
	case approval.ScopeChat:
		ri, err = g.Chats().ByChatId(scope.ID).InstalledApps().ToGetRequestInformation(ctx, &chats.ItemInstalledAppsRequestBuilderGetRequestConfiguration{
			QueryParameters: &chats.ItemInstalledAppsRequestBuilderGetQueryParameters{Expand: installationExpand, Select: installationSelect},
		})
	case approval.ScopeTeam:
		ri, err = g.Teams().ByTeamId(scope.ID).InstalledApps().ToGetRequestInformation(ctx, &teams.ItemInstalledAppsRequestBuilderGetRequestConfiguration{
			QueryParameters: &teams.ItemInstalledAppsRequestBuilderGetQueryParameters{Expand: installationExpand, Select: installationSelect},
		})
	case approval.ScopeUser:
		ri, err = g.Users().ByUserId(scope.ID).Teamwork().InstalledApps().ToGetRequestInformation(ctx, &users.ItemTeamworkInstalledAppsRequestBuilderGetRequestConfiguration{
			QueryParameters: &users.ItemTeamworkInstalledAppsRequestBuilderGetQueryParameters{Expand: installationExpand, Select: installationSelect},
		})
	default:
		return nil, bot.Errorf(bot.CodeInvalid, "graph: unknown scope kind %q", scope.Kind)
	}
	var items []installationJSON
	if err == nil {
		items, err = list[installationJSON](ctx, g, ri)
	}
	if err != nil {
		return nil, translate(err, "list apps in "+scopeWords(scope.Kind), installationPermission(scope.Kind))
	}
	out := make([]approval.Installation, 0, len(items))
	for _, it := range items {
		out = append(out, toInstallation(scope, it))
	}
	return out, nil
}

// Installation reads one installation afresh with its app, installed
// definition and consented RSC permissions.
func (c *Client) Installation(ctx context.Context, scope approval.Scope, id string) (approval.Installation, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return approval.Installation{}, err
	}
	var ri *abstractions.RequestInformation
	switch scope.Kind {
	case approval.ScopeChat:
		ri, err = g.Chats().ByChatId(scope.ID).InstalledApps().ByTeamsAppInstallationId(id).ToGetRequestInformation(ctx,
			&chats.ItemInstalledAppsTeamsAppInstallationItemRequestBuilderGetRequestConfiguration{
				QueryParameters: &chats.ItemInstalledAppsTeamsAppInstallationItemRequestBuilderGetQueryParameters{Select: installationSelect, Expand: installationExpand},
			})
	case approval.ScopeTeam:
		ri, err = g.Teams().ByTeamId(scope.ID).InstalledApps().ByTeamsAppInstallationId(id).ToGetRequestInformation(ctx,
			&teams.ItemInstalledAppsTeamsAppInstallationItemRequestBuilderGetRequestConfiguration{
				QueryParameters: &teams.ItemInstalledAppsTeamsAppInstallationItemRequestBuilderGetQueryParameters{Select: installationSelect, Expand: installationExpand},
			})
	case approval.ScopeUser:
		ri, err = g.Users().ByUserId(scope.ID).Teamwork().InstalledApps().ByUserScopeTeamsAppInstallationId(id).ToGetRequestInformation(ctx,
			&users.ItemTeamworkInstalledAppsUserScopeTeamsAppInstallationItemRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.ItemTeamworkInstalledAppsUserScopeTeamsAppInstallationItemRequestBuilderGetQueryParameters{Select: installationSelect, Expand: installationExpand},
			})
	default:
		return approval.Installation{}, bot.Errorf(bot.CodeInvalid, "graph: unknown scope kind %q", scope.Kind)
	}
	var it installationJSON
	if err == nil {
		err = getJSON(ctx, g, ri, &it)
	}
	if err != nil {
		return approval.Installation{}, translate(err, "read an app in "+scopeWords(scope.Kind), installationPermission(scope.Kind))
	}
	return toInstallation(scope, it), nil
}

// consentSet is the body's consentedPermissionSet for perms.
func consentSet(perms []approval.Permission) (models.TeamsAppPermissionSetable, error) {
	set := models.NewTeamsAppPermissionSet()
	rsc := make([]models.TeamsAppResourceSpecificPermissionable, 0, len(perms))
	for _, p := range perms {
		t, err := models.ParseTeamsAppResourceSpecificPermissionType(strings.ToLower(p.Type))
		if err != nil || t == nil {
			return nil, bot.Errorf(bot.CodeInvalid, "graph: permission %s has unknown type %q", p.Value, p.Type)
		}
		r := models.NewTeamsAppResourceSpecificPermission()
		r.SetPermissionValue(ptr(p.Value))
		r.SetPermissionType(t.(*models.TeamsAppResourceSpecificPermissionType))
		rsc = append(rsc, r)
	}
	set.SetResourceSpecificPermissions(rsc)
	return set, nil
}

func ptr[T any](v T) *T { return &v }
