package graph

import (
	"context"
	"strings"

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

// page is one page of a Graph collection.
type page[T any] interface {
	GetValue() []T
	GetOdataNextLink() *string
}

// collect follows @odata.nextLink until the last page.
func collect[T any, P page[T]](get func(nextLink string) (P, error)) ([]T, error) {
	var all []T
	next := ""
	for {
		p, err := get(next)
		if err != nil {
			return nil, err
		}
		all = append(all, p.GetValue()...)
		link := p.GetOdataNextLink()
		if link == nil || *link == "" {
			return all, nil
		}
		next = *link
	}
}

var (
	installationExpand = []string{"teamsApp", "teamsAppDefinition"}
	// consentedPermissionSet appears only when selected.
	consentSelect = []string{"id", "consentedPermissionSet"}
)

// Installations lists the apps installed in scope, with their app and
// installed definition.
func (c *Client) Installations(ctx context.Context, scope bot.Scope) ([]bot.Installation, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return nil, err
	}
	op := "list apps in " + scopeWords(scope.Kind)
	var items []models.TeamsAppInstallationable
	switch scope.Kind {
	case bot.ScopeChat:
		b := g.Chats().ByChatId(scope.ID).InstalledApps()
		items, err = collect(func(next string) (models.TeamsAppInstallationCollectionResponseable, error) {
			if next != "" {
				return b.WithUrl(next).Get(ctx, nil)
			}
			return b.Get(ctx, &chats.ItemInstalledAppsRequestBuilderGetRequestConfiguration{
				QueryParameters: &chats.ItemInstalledAppsRequestBuilderGetQueryParameters{Expand: installationExpand},
			})
		})
	case bot.ScopeTeam:
		b := g.Teams().ByTeamId(scope.ID).InstalledApps()
		items, err = collect(func(next string) (models.TeamsAppInstallationCollectionResponseable, error) {
			if next != "" {
				return b.WithUrl(next).Get(ctx, nil)
			}
			return b.Get(ctx, &teams.ItemInstalledAppsRequestBuilderGetRequestConfiguration{
				QueryParameters: &teams.ItemInstalledAppsRequestBuilderGetQueryParameters{Expand: installationExpand},
			})
		})
	case bot.ScopeUser:
		b := g.Users().ByUserId(scope.ID).Teamwork().InstalledApps()
		var us []models.UserScopeTeamsAppInstallationable
		us, err = collect(func(next string) (models.UserScopeTeamsAppInstallationCollectionResponseable, error) {
			if next != "" {
				return b.WithUrl(next).Get(ctx, nil)
			}
			return b.Get(ctx, &users.ItemTeamworkInstalledAppsRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.ItemTeamworkInstalledAppsRequestBuilderGetQueryParameters{Expand: installationExpand},
			})
		})
		for _, u := range us {
			items = append(items, u)
		}
	default:
		return nil, bot.Errorf(bot.CodeInvalid, "graph: unknown scope kind %q", scope.Kind)
	}
	if err != nil {
		return nil, translate(err, op, installationPermission(scope.Kind))
	}
	out := make([]bot.Installation, 0, len(items))
	for _, it := range items {
		out = append(out, toInstallation(scope, it))
	}
	return out, nil
}

// ConsentedPermissions returns the RSC permissions the installation has
// consented to. Graph returns them only through $select.
func (c *Client) ConsentedPermissions(ctx context.Context, scope bot.Scope, installationID string) ([]bot.Permission, error) {
	it, err := c.installation(ctx, scope, installationID, consentSelect, nil)
	if err != nil {
		return nil, translate(err, "read consented permissions in "+scopeWords(scope.Kind), installationPermission(scope.Kind))
	}
	return permissions(it.GetConsentedPermissionSet()), nil
}

// installation reads one installation with the given $select and $expand.
func (c *Client) installation(ctx context.Context, scope bot.Scope, id string, sel, expand []string) (models.TeamsAppInstallationable, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return nil, err
	}
	switch scope.Kind {
	case bot.ScopeChat:
		return g.Chats().ByChatId(scope.ID).InstalledApps().ByTeamsAppInstallationId(id).Get(ctx,
			&chats.ItemInstalledAppsTeamsAppInstallationItemRequestBuilderGetRequestConfiguration{
				QueryParameters: &chats.ItemInstalledAppsTeamsAppInstallationItemRequestBuilderGetQueryParameters{Select: sel, Expand: expand},
			})
	case bot.ScopeTeam:
		return g.Teams().ByTeamId(scope.ID).InstalledApps().ByTeamsAppInstallationId(id).Get(ctx,
			&teams.ItemInstalledAppsTeamsAppInstallationItemRequestBuilderGetRequestConfiguration{
				QueryParameters: &teams.ItemInstalledAppsTeamsAppInstallationItemRequestBuilderGetQueryParameters{Select: sel, Expand: expand},
			})
	case bot.ScopeUser:
		return g.Users().ByUserId(scope.ID).Teamwork().InstalledApps().ByUserScopeTeamsAppInstallationId(id).Get(ctx,
			&users.ItemTeamworkInstalledAppsUserScopeTeamsAppInstallationItemRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.ItemTeamworkInstalledAppsUserScopeTeamsAppInstallationItemRequestBuilderGetQueryParameters{Select: sel, Expand: expand},
			})
	}
	return nil, bot.Errorf(bot.CodeInvalid, "graph: unknown scope kind %q", scope.Kind)
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
