package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/state"
)

// The scans of a round read the watcher's catalog read of that round; a
// watcher that lost its lease cannot put back an older read over its
// successor's.
func TestCatalogReadIsKeptPerTenantAndFencedByToken(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	w, ctx := s.Watch(), context.Background()
	const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	if _, ok, err := w.CatalogRead(ctx, tenant); err != nil || ok {
		t.Fatalf("before any read: ok %v, err %v; want none", ok, err)
	}
	at := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	newer := bot.CatalogRead{At: at, Definitions: []approval.AppDefinition{{ID: "ZGVmMg==", TeamsAppID: "polls", Version: "1.1.0",
		Permissions: []approval.Permission{{Value: "ChatMessage.Read.Chat", Type: "Application"}}}}}
	if err := w.SaveCatalogRead(ctx, 7, tenant, newer); err != nil {
		t.Fatal(err)
	}
	older := bot.CatalogRead{At: at.Add(time.Minute), Definitions: []approval.AppDefinition{{ID: "ZGVmMQ==", TeamsAppID: "polls", Version: "1.0.0"}}}
	if err := w.SaveCatalogRead(ctx, 6, tenant, older); !errors.Is(err, bot.ErrLeaseLost) {
		t.Errorf("a read under an older token: %v, want ErrLeaseLost", err)
	}
	got, ok, err := w.CatalogRead(ctx, tenant)
	if err != nil || !ok || !got.At.Equal(at) || len(got.Definitions) != 1 || got.Definitions[0].Version != "1.1.0" ||
		len(got.Definitions[0].Permissions) != 1 {
		t.Errorf("kept %+v (ok %v, err %v), want the read under token 7", got, ok, err)
	}
	if _, ok, _ := w.CatalogRead(ctx, "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"); ok {
		t.Error("another tenant sees this tenant's read")
	}
}
