package graph

import (
	"context"
	"strings"

	"github.com/microsoftgraph/msgraph-sdk-go/appcatalogs"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.Catalog = (*Client)(nil)

const catalogPermission = "AppCatalog.Read.All"

// Graph returns a definition's authorization (its RSC set) only when
// selected.
var definitionsExpand = []string{"appDefinitions($select=id,teamsAppId,displayName,version,publishingState,shortDescription,authorization)"}

// Definitions returns every definition of the given catalog apps, with the
// RSC permissions each requires, in one request (and one per extra page):
// $filter=id in ('a','b',…). It never caches: a version published a moment
// ago shows on the next call.
func (c *Client) Definitions(ctx context.Context, tenantID string, teamsAppIDs []string) ([]approval.AppDefinition, error) {
	if len(teamsAppIDs) == 0 {
		return nil, nil
	}
	return c.catalogDefinitions(ctx, tenantID, idIn(teamsAppIDs))
}

// catalogDefinitions reads every definition of the catalog apps filter
// selects, paged, each with the app's id.
func (c *Client) catalogDefinitions(ctx context.Context, tenantID, filter string) ([]approval.AppDefinition, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(tenantID)
	if err != nil {
		return nil, err
	}
	ri, err := g.AppCatalogs().TeamsApps().ToGetRequestInformation(ctx, &appcatalogs.TeamsAppsRequestBuilderGetRequestConfiguration{
		QueryParameters: &appcatalogs.TeamsAppsRequestBuilderGetQueryParameters{Filter: &filter, Expand: definitionsExpand},
	})
	var apps []catalogAppJSON
	if err == nil {
		apps, err = list[catalogAppJSON](ctx, g, ri)
	}
	if err != nil {
		return nil, translate(err, "read the app catalog", catalogPermission)
	}
	var defs []approval.AppDefinition
	for _, app := range apps {
		for _, d := range app.AppDefinitions {
			def := definition(d)
			if def.TeamsAppID == "" {
				def.TeamsAppID = app.ID
			}
			defs = append(defs, def)
		}
	}
	return defs, nil
}

// idIn is the OData filter id in ('a','b'); string literals double their
// quotes.
func idIn(ids []string) string {
	var b strings.Builder
	b.WriteString("id in (")
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("'" + strings.ReplaceAll(id, "'", "''") + "'")
	}
	b.WriteByte(')')
	return b.String()
}
