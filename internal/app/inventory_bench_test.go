package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	botcards "github.com/upgradeapprovals/bot/cards"
	"github.com/upgradeapprovals/bot/state"
)

// seedInventory records n installations behind the catalog, one per scope
// (8 in 10 chats, the rest teams and personal scopes), of 40 apps, each with
// a request in one of the statuses the inventory counts.
func seedInventory(tb testing.TB, n int) (*state.Store, *tripCounter) {
	tb.Helper()
	rdb, closeFn, err := state.Connect(context.Background(), redisURL(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	prefix := fmt.Sprintf("test:inventory:%d:", time.Now().UnixNano())
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		closeFn()
	})
	store := state.New(rdb, state.Options{Prefix: prefix})
	ad := store.Admins()
	ctx := context.Background()
	statuses := []approval.Status{approval.StatusPending, approval.StatusNeedsAdmin, approval.StatusFailed, approval.StatusExpired}
	created := time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)
	for i := range n {
		kind := approval.ScopeChat
		switch i % 10 {
		case 8:
			kind = approval.ScopeTeam
		case 9:
			kind = approval.ScopeUser
		}
		app := i % 40
		inst := fmt.Sprintf("inst-%05d", i)
		it := bot.InventoryItem{InstallationID: inst, TeamsAppID: fmt.Sprintf("app-%02d", app), App: fmt.Sprintf("Contoso App %02d", app),
			Version: fmt.Sprintf("1.%d.0", i%3), CatalogVersion: "2.0.0"}
		if err := ad.SaveScope(ctx, testTenant, bot.InventoryScope{Kind: kind, ID: fmt.Sprintf("19:%05d@thread.v2", i), Seen: created,
			Items: []bot.InventoryItem{it}}); err != nil {
			tb.Fatal(err)
		}
		if err := ad.NoteRequest(ctx, testTenant, bot.RequestNote{InstallationID: inst, ApprovalID: "apr_" + inst, TeamsAppID: it.TeamsAppID,
			Target: "2.0.0", Status: statuses[i%len(statuses)], Created: created.Add(time.Duration(i) * time.Second), At: created}); err != nil {
			tb.Fatal(err)
		}
	}
	trips := &tripCounter{}
	rdb.AddHook(trips)
	return store, trips
}

// BenchmarkInventory is "inventory" over 10,000 installations: the read
// from Redis, the summary by app and the card, as the admins' chat gets it.
func BenchmarkInventory(b *testing.B) {
	store, trips := seedInventory(b, 10000)
	c, err := botcards.New()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var size int
	trips.n.Store(0)
	b.ResetTimer()
	for b.Loop() {
		d, err := store.Admins().Inventory(ctx, testTenant)
		if err != nil {
			b.Fatal(err)
		}
		raw, err := json.Marshal(c.Inventory(d.Summary("en-US", 10)))
		if err != nil {
			b.Fatal(err)
		}
		size = len(raw)
	}
	b.ReportMetric(float64(trips.n.Load())/float64(b.N), "roundtrips/op")
	b.ReportMetric(float64(size), "card-bytes")
}

// The inventory card of 10,000 installations in 40 apps stays one short
// message, read in one Redis round trip; the export lists every one.
func TestInventoryOfTenThousandInstallations(t *testing.T) {
	store, trips := seedInventory(t, 10000)
	c, err := botcards.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	trips.n.Store(0)
	d, err := store.Admins().Inventory(ctx, testTenant)
	if err != nil {
		t.Fatal(err)
	}
	if n := trips.n.Load(); n != 1 {
		t.Errorf("the inventory took %d Redis round trips, want 1", n)
	}
	inv := d.Summary("en-US", 10)
	if inv.Installations != 10000 || len(inv.Apps) != 10 || inv.More != 30 || inv.Scopes.Teams != 1000 || inv.Scopes.Personal != 1000 {
		t.Errorf("summary: %d installations, %d apps shown and %d more, scopes %+v", inv.Installations, len(inv.Apps), inv.More, inv.Scopes)
	}
	if a := inv.Apps[0]; a.Open+a.NeedsAdmin+a.Failed+a.Expired != a.Scopes.Total() || a.OldestWaiting.IsZero() {
		t.Errorf("app %s: requests %d open, %d need an admin, %d failed, %d expired of %d", a.Name, a.Open, a.NeedsAdmin, a.Failed, a.Expired, a.Scopes.Total())
	}
	raw, _ := json.Marshal(c.Inventory(inv))
	if len(raw) > 20000 {
		t.Errorf("the inventory card is %d bytes; Teams refuses a message over about 28 KB", len(raw))
	}
	var out bytes.Buffer
	if err := exportInventory(ctx, store, testTenant, "csv", &out); err != nil {
		t.Fatal(err)
	}
	if lines := bytes.Count(out.Bytes(), []byte("\n")); lines != 10001 {
		t.Errorf("the export has %d lines, want a header and 10000 rows", lines)
	}
}
