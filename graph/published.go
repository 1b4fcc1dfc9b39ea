package graph

import (
	"context"

	"github.com/microsoftgraph/msgraph-sdk-go/appcatalogs"
	"github.com/microsoftgraph/msgraph-sdk-go/models"

	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.OrgCatalog = (*Client)(nil)

// Published lists each org catalog app's newest published definition, with
// its RSC permissions, in one paged read of the catalog:
// GET /appCatalogs/teamsApps?$filter=distributionMethod eq 'organization'
// &$expand=appDefinitions(…). The catalog watcher calls it per tenant.
func (c *Client) Published(ctx context.Context, tenantID string) ([]bot.AppDefinition, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(tenantID)
	if err != nil {
		return nil, err
	}
	filter := "distributionMethod eq 'organization'"
	first, err := g.AppCatalogs().TeamsApps().Get(ctx, &appcatalogs.TeamsAppsRequestBuilderGetRequestConfiguration{
		QueryParameters: &appcatalogs.TeamsAppsRequestBuilderGetQueryParameters{Filter: &filter, Expand: definitionsExpand},
	})
	var apps []models.TeamsAppable
	if err == nil {
		apps, err = all[models.TeamsAppable](ctx, g, first, models.CreateTeamsAppCollectionResponseFromDiscriminatorValue)
	}
	if err != nil {
		return nil, translate(err, "read the app catalog", catalogPermission)
	}
	var defs []bot.AppDefinition
	for _, app := range apps {
		for _, d := range app.GetAppDefinitions() {
			def := definition(d)
			if def.TeamsAppID == "" {
				def.TeamsAppID = deref(app.GetId())
			}
			defs = append(defs, def)
		}
	}
	out := make([]bot.AppDefinition, 0, len(apps))
	for _, d := range bot.NewestPublished(defs) {
		out = append(out, d)
	}
	return out, nil
}
