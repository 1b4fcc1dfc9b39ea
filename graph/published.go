package graph

import (
	"context"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.OrgCatalog = (*Client)(nil)

// Published lists each org catalog app's newest published definition, with
// its RSC permissions, in one paged read of the catalog:
// GET /appCatalogs/teamsApps?$filter=distributionMethod eq 'organization'
// &$expand=appDefinitions(…). The catalog watcher calls it per tenant.
func (c *Client) Published(ctx context.Context, tenantID string) ([]approval.AppDefinition, error) {
	defs, err := c.catalogDefinitions(ctx, tenantID, "distributionMethod eq 'organization'")
	if err != nil {
		return nil, err
	}
	out := make([]approval.AppDefinition, 0, len(defs))
	for _, d := range approval.NewestPublished(defs) {
		out = append(out, d)
	}
	return out, nil
}
