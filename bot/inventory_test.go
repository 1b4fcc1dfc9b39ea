package bot

import (
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

// The inventory counts each installation's request only when it is for
// the catalog version the installation is behind.
func TestInventorySummaryCountsRequestsForTheCatalogVersion(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)
	d := InventoryData{
		Scopes: []InventoryScope{
			{Kind: approval.ScopeChat, ID: "19:a@thread.v2", Items: []InventoryItem{{InstallationID: "i1", TeamsAppID: "polls", App: "Polls", Version: "1.0.0", CatalogVersion: "1.1.0"}}},
			{Kind: approval.ScopeTeam, ID: "team", Items: []InventoryItem{
				{InstallationID: "i2", TeamsAppID: "polls", App: "Polls", Version: "0.9", CatalogVersion: "1.1.0"},
				{InstallationID: "i3", TeamsAppID: "tasks", App: "Tasks", Version: "3.0", CatalogVersion: "3.1"}}},
			{Kind: approval.ScopeUser, ID: "user", Items: []InventoryItem{{InstallationID: "i4", TeamsAppID: "polls", App: "Polls", Version: "1.0.0", CatalogVersion: "1.1.0"}}},
		},
		Requests: map[string]RequestNote{
			"i1": {Target: "1.1.0", Status: approval.StatusNeedsAdmin, Created: t0},
			"i2": {Target: "1.0.0", Status: approval.StatusExpired, Created: t0.Add(-time.Hour)}, // an older version's
			"i3": {Target: "3.1", Status: approval.StatusFailed, Created: t0.Add(time.Hour)},
			"i4": {Target: "1.1.0", Status: approval.StatusPending, Created: t0.Add(2 * time.Hour)},
		},
	}
	inv := d.Summary("en-US", 1)
	if inv.Installations != 4 || len(inv.Apps) != 1 || inv.More != 1 || inv.Scopes.Chats != 1 || inv.Scopes.Teams != 2 || inv.Scopes.Personal != 1 {
		t.Fatalf("summary %+v", inv)
	}
	polls := inv.Apps[0]
	if polls.Name != "Polls" || polls.CatalogVersion != "1.1.0" || polls.NeedsAdmin != 1 || polls.Open != 1 || polls.Expired != 0 ||
		!polls.OldestWaiting.Equal(t0) || len(polls.Installed) != 2 || polls.Installed[0].Version != "1.0.0" || polls.Installed[0].Count != 2 {
		t.Errorf("Polls: %+v", polls)
	}
	if rows := d.Rows(); len(rows) != 4 || rows[0].App != "Polls" || rows[3].App != "Tasks" || rows[3].RequestStatus != approval.StatusFailed {
		t.Errorf("rows %+v", rows)
	}
}

func TestDigestCountsWhatChangedSinceTheLastOne(t *testing.T) {
	last := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	d := InventoryData{Requests: map[string]RequestNote{
		"i1": {Status: approval.StatusUpgraded, At: last.Add(time.Hour)},
		"i2": {Status: approval.StatusUpgraded, At: last.Add(-time.Hour)}, // the last digest's
		"i3": {Status: approval.StatusNeedsAdmin, Created: last.Add(-48 * time.Hour), At: last.Add(-time.Hour)},
		"i4": {Status: approval.StatusExpired, At: last.Add(time.Minute)},
	}}
	v, changed := digestOf(d, "en-US", last)
	if !changed || v.Upgraded != 1 || v.Expired != 1 || v.Waiting != 1 || v.NeedsAdmin != 1 || !v.OldestWaiting.Equal(last.Add(-48*time.Hour)) {
		t.Errorf("digest %+v, changed %v", v, changed)
	}
	if _, changed := digestOf(d, "en-US", last.Add(2*time.Hour)); changed {
		t.Error("nothing changed since, yet a digest is due")
	}
}
