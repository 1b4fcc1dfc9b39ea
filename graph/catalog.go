package graph

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/microsoftgraph/msgraph-sdk-go/appcatalogs"

	"github.com/upgradeapprovals/bot/bot"
)

const catalogPermission = "AppCatalog.Read.All"

// CatalogDefinition returns the app's newest published definition in the
// tenant catalog, with the RSC permissions it requires, or an error with
// bot.CodeNotFound when the catalog has no published version of it.
func (c *Client) CatalogDefinition(ctx context.Context, tenantID, teamsAppID string) (bot.AppDefinition, error) {
	if d, ok := c.catalog.get(tenantID, teamsAppID); ok {
		return d, nil
	}
	d, err := c.catalogDefinition(ctx, tenantID, teamsAppID)
	if err != nil {
		return bot.AppDefinition{}, err
	}
	c.catalog.put(tenantID, teamsAppID, d)
	return d, nil
}

// catalogDefinition asks Graph, bypassing the cache.
func (c *Client) catalogDefinition(ctx context.Context, tenantID, teamsAppID string) (bot.AppDefinition, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(tenantID)
	if err != nil {
		return bot.AppDefinition{}, err
	}
	// OData string literals double their quotes.
	filter := fmt.Sprintf("id eq '%s'", strings.ReplaceAll(teamsAppID, "'", "''"))
	resp, err := g.AppCatalogs().TeamsApps().Get(ctx, &appcatalogs.TeamsAppsRequestBuilderGetRequestConfiguration{
		QueryParameters: &appcatalogs.TeamsAppsRequestBuilderGetQueryParameters{
			Filter: &filter,
			// Graph returns a definition's authorization (its RSC set)
			// only when selected.
			Expand: []string{"appDefinitions($select=id,teamsAppId,displayName,version,publishingState,shortDescription,authorization)"},
		},
	})
	if err != nil {
		return bot.AppDefinition{}, translate(err, "read the app catalog", catalogPermission)
	}
	var best *bot.AppDefinition
	for _, app := range resp.GetValue() {
		for _, d := range app.GetAppDefinitions() {
			def := definition(d)
			if def.TeamsAppID == "" {
				def.TeamsAppID = deref(app.GetId())
			}
			// An org app can list submitted and rejected definitions beside
			// the published one; only a published one is an upgrade target.
			if def.PublishingState != "published" {
				continue
			}
			if best == nil || bot.CompareVersions(def.Version, best.Version) > 0 {
				best = &def
			}
		}
	}
	if best == nil {
		return bot.AppDefinition{}, bot.Errorf(bot.CodeNotFound, "graph: the catalog has no published version of app %s", teamsAppID)
	}
	return *best, nil
}

// catalogCache keeps catalog definitions for a few minutes so that showing a
// card costs few Graph reads. It is per process on purpose: a stale entry
// only delays a card, and the upgrade never trusts it.
type catalogCache struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]catalogEntry
}

type catalogEntry struct {
	def     bot.AppDefinition
	expires time.Time
}

func newCatalogCache(ttl time.Duration, now func() time.Time) *catalogCache {
	return &catalogCache{ttl: ttl, now: now, entries: map[string]catalogEntry{}}
}

func (cc *catalogCache) get(tenantID, appID string) (bot.AppDefinition, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	e, ok := cc.entries[tenantID+"|"+appID]
	if !ok || !cc.now().Before(e.expires) {
		return bot.AppDefinition{}, false
	}
	return e.def, true
}

func (cc *catalogCache) put(tenantID, appID string, d bot.AppDefinition) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	now := cc.now()
	for k, e := range cc.entries { // keep the map from growing without bound
		if !now.Before(e.expires) {
			delete(cc.entries, k)
		}
	}
	cc.entries[tenantID+"|"+appID] = catalogEntry{def: d, expires: now.Add(cc.ttl)}
}
