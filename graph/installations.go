package graph

import (
	"context"
	"strings"

	"github.com/microsoft/kiota-abstractions-go/serialization"
	msgraph "github.com/microsoftgraph/msgraph-sdk-go"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/microsoftgraph/msgraph-sdk-go/chats"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/teams"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/upgradeapprovals/bot/bot"
)

// installationPermission names the application permission that reads,
// upgrades and consents for installations in a scope. The plain
// ReadWrite(Self)For… permissions cannot consent RSC, so they are not enough.
func installationPermission(k bot.ScopeKind) string {
	switch k {
	case bot.ScopeTeam:
		return "TeamsAppInstallation.ReadWriteAndConsentForTeam.All"
	case bot.ScopeUser:
		return "TeamsAppInstallation.ReadWriteAndConsentForUser.All"
	}
	return "TeamsAppInstallation.ReadWriteAndConsentForChat.All"
}

func scopeWords(k bot.ScopeKind) string {
	switch k {
	case bot.ScopeTeam:
		return "team"
	case bot.ScopeUser:
		return "personal scope"
	}
	return "chat"
}

// all reads every page of a collection, following @odata.nextLink with
// msgraph-sdk-go-core's page iterator. first is the first page; next builds
// the following ones.
func all[T any](ctx context.Context, g *msgraph.GraphServiceClient, first any, next serialization.ParsableFactory) ([]T, error) {
	it, err := msgraphcore.NewPageIterator[T](first, g.GetAdapter(), next)
	if err != nil {
		return nil, err
	}
	var items []T
	err = it.Iterate(ctx, func(v T) bool {
		items = append(items, v)
		return true
	})
	return items, err
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
func (c *Client) Installed(ctx context.Context, scope bot.Scope) ([]bot.Installation, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return nil, err
	}
	var items []models.TeamsAppInstallationable
	switch scope.Kind {
	case bot.ScopeChat:
		var first models.TeamsAppInstallationCollectionResponseable
		first, err = g.Chats().ByChatId(scope.ID).InstalledApps().Get(ctx, &chats.ItemInstalledAppsRequestBuilderGetRequestConfiguration{
			QueryParameters: &chats.ItemInstalledAppsRequestBuilderGetQueryParameters{Expand: installationExpand, Select: installationSelect},
		})
		if err == nil {
			items, err = all[models.TeamsAppInstallationable](ctx, g, first, models.CreateTeamsAppInstallationCollectionResponseFromDiscriminatorValue)
		}
	case bot.ScopeTeam:
		var first models.TeamsAppInstallationCollectionResponseable
		first, err = g.Teams().ByTeamId(scope.ID).InstalledApps().Get(ctx, &teams.ItemInstalledAppsRequestBuilderGetRequestConfiguration{
			QueryParameters: &teams.ItemInstalledAppsRequestBuilderGetQueryParameters{Expand: installationExpand, Select: installationSelect},
		})
		if err == nil {
			items, err = all[models.TeamsAppInstallationable](ctx, g, first, models.CreateTeamsAppInstallationCollectionResponseFromDiscriminatorValue)
		}
	case bot.ScopeUser:
		var first models.UserScopeTeamsAppInstallationCollectionResponseable
		first, err = g.Users().ByUserId(scope.ID).Teamwork().InstalledApps().Get(ctx, &users.ItemTeamworkInstalledAppsRequestBuilderGetRequestConfiguration{
			QueryParameters: &users.ItemTeamworkInstalledAppsRequestBuilderGetQueryParameters{Expand: installationExpand, Select: installationSelect},
		})
		if err == nil {
			items, err = all[models.TeamsAppInstallationable](ctx, g, first, models.CreateUserScopeTeamsAppInstallationCollectionResponseFromDiscriminatorValue)
		}
	default:
		return nil, bot.Errorf(bot.CodeInvalid, "graph: unknown scope kind %q", scope.Kind)
	}
	if err != nil {
		return nil, translate(err, "list apps in "+scopeWords(scope.Kind), installationPermission(scope.Kind))
	}
	out := make([]bot.Installation, 0, len(items))
	for _, it := range items {
		out = append(out, toInstallation(scope, it))
	}
	return out, nil
}

// Installation reads one installation afresh with its app, installed
// definition and consented RSC permissions.
func (c *Client) Installation(ctx context.Context, scope bot.Scope, id string) (bot.Installation, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return bot.Installation{}, err
	}
	var it models.TeamsAppInstallationable
	switch scope.Kind {
	case bot.ScopeChat:
		it, err = g.Chats().ByChatId(scope.ID).InstalledApps().ByTeamsAppInstallationId(id).Get(ctx,
			&chats.ItemInstalledAppsTeamsAppInstallationItemRequestBuilderGetRequestConfiguration{
				QueryParameters: &chats.ItemInstalledAppsTeamsAppInstallationItemRequestBuilderGetQueryParameters{Select: installationSelect, Expand: installationExpand},
			})
	case bot.ScopeTeam:
		it, err = g.Teams().ByTeamId(scope.ID).InstalledApps().ByTeamsAppInstallationId(id).Get(ctx,
			&teams.ItemInstalledAppsTeamsAppInstallationItemRequestBuilderGetRequestConfiguration{
				QueryParameters: &teams.ItemInstalledAppsTeamsAppInstallationItemRequestBuilderGetQueryParameters{Select: installationSelect, Expand: installationExpand},
			})
	case bot.ScopeUser:
		it, err = g.Users().ByUserId(scope.ID).Teamwork().InstalledApps().ByUserScopeTeamsAppInstallationId(id).Get(ctx,
			&users.ItemTeamworkInstalledAppsUserScopeTeamsAppInstallationItemRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.ItemTeamworkInstalledAppsUserScopeTeamsAppInstallationItemRequestBuilderGetQueryParameters{Select: installationSelect, Expand: installationExpand},
			})
	default:
		return bot.Installation{}, bot.Errorf(bot.CodeInvalid, "graph: unknown scope kind %q", scope.Kind)
	}
	if err != nil {
		return bot.Installation{}, translate(err, "read an app in "+scopeWords(scope.Kind), installationPermission(scope.Kind))
	}
	return toInstallation(scope, it), nil
}

func toInstallation(scope bot.Scope, it models.TeamsAppInstallationable) bot.Installation {
	in := bot.Installation{ID: deref(it.GetId()), Scope: scope}
	if app := it.GetTeamsApp(); app != nil {
		in.TeamsAppID = deref(app.GetId())
		in.DisplayName = deref(app.GetDisplayName())
		if m := app.GetDistributionMethod(); m != nil {
			in.DistributionMethod = m.String()
		}
	}
	if d := it.GetTeamsAppDefinition(); d != nil {
		in.Definition = definition(d)
		if in.TeamsAppID == "" {
			in.TeamsAppID = in.Definition.TeamsAppID
		}
		if in.DisplayName == "" {
			in.DisplayName = in.Definition.DisplayName
		}
	}
	in.Consented = permissions(it.GetConsentedPermissionSet())
	return in
}

func definition(d models.TeamsAppDefinitionable) bot.AppDefinition {
	def := bot.AppDefinition{
		ID:               deref(d.GetId()),
		TeamsAppID:       deref(d.GetTeamsAppId()),
		DisplayName:      deref(d.GetDisplayName()),
		Version:          deref(d.GetVersion()),
		ShortDescription: deref(d.GetShortDescription()),
	}
	if s := d.GetPublishingState(); s != nil {
		def.PublishingState = s.String()
	}
	if a := d.GetAuthorization(); a != nil {
		def.Permissions = permissions(a.GetRequiredPermissionSet())
	}
	return def
}

// permissions reads an RSC permission set; a null set (apps without RSC) is
// empty.
func permissions(set models.TeamsAppPermissionSetable) []bot.Permission {
	if set == nil {
		return nil
	}
	var out []bot.Permission
	for _, p := range set.GetResourceSpecificPermissions() {
		perm := bot.Permission{Value: deref(p.GetPermissionValue())}
		if t := p.GetPermissionType(); t != nil {
			perm.Type = strings.ToLower(t.String())
		}
		out = append(out, perm)
	}
	return out
}

// consentSet is the body's consentedPermissionSet for perms.
func consentSet(perms []bot.Permission) (models.TeamsAppPermissionSetable, error) {
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
