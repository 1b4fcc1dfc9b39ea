package state_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/state"
)

const adminsTenant = "8F1C2D3E-0000-4000-8000-00000000000A"

// The admins' card of an app version is granted to one replica of many,
// and once recorded every later claim returns it to update in place.
func TestAdminCardIsPostedOnceAcrossReplicas(t *testing.T) {
	a, b := replicas(t)
	ctx := context.Background()
	v := bot.AppVersion{TeamsAppID: "polls", Version: "1.1.0"}
	var granted atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		s := a.Admins()
		if i%2 == 1 {
			s = b.Admins()
		}
		wg.Go(func() {
			_, ok, err := s.ClaimAdminCard(ctx, adminsTenant, v, time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				granted.Add(1)
			}
		})
	}
	wg.Wait()
	if granted.Load() != 1 {
		t.Fatalf("%d replicas may post the card, want 1", granted.Load())
	}
	if saved, err := b.Admins().SaveAdminCard(ctx, adminsTenant, v, bot.AdminCard{ActivityID: "act-1", App: "Polls", Drawn: "x"}, "", false); err != nil || !saved {
		t.Fatalf("saving the posted card: %v, %v", saved, err)
	}
	card, ok, err := a.Admins().ClaimAdminCard(ctx, strings.ToLower(adminsTenant), v, time.Minute)
	if err != nil || ok || card.ActivityID != "act-1" {
		t.Errorf("after the post: card %+v, granted %v, %v; want act-1 to update", card, ok, err)
	}
}

// Two replicas redraw one admins' card at once, each from what it read:
// only the first to record its drawing does; the other is told, so it
// draws again from the requests as they are now, whichever drawing reached
// Teams last.
func TestAdminCardDrawingIsRecordedOnlyOverWhatWasRead(t *testing.T) {
	a, b := replicas(t)
	ctx := context.Background()
	v := bot.AppVersion{TeamsAppID: "polls", Version: "1.1.0"}
	if _, ok, err := a.Admins().ClaimAdminCard(ctx, adminsTenant, v, time.Minute); err != nil || !ok {
		t.Fatalf("claim: %v, %v", ok, err)
	}
	posted := bot.AdminCard{ActivityID: "act-1", App: "Polls", Drawn: "aaaa"}
	if saved, err := a.Admins().SaveAdminCard(ctx, adminsTenant, v, posted, "", false); err != nil || !saved {
		t.Fatalf("the posted card: %v, %v", saved, err)
	}
	if saved, _ := b.Admins().SaveAdminCard(ctx, adminsTenant, v, posted, "", false); saved {
		t.Error("a second post's record replaced the first")
	}
	// Both read the card drawn as aaaa; a records bbbb first.
	first, second := posted, posted
	first.Drawn, second.Drawn = "bbbb", "cccc"
	if saved, err := a.Admins().SaveAdminCard(ctx, adminsTenant, v, first, "aaaa", false); err != nil || !saved {
		t.Fatalf("the first redraw: %v, %v", saved, err)
	}
	if saved, err := b.Admins().SaveAdminCard(ctx, adminsTenant, v, second, "aaaa", true); err != nil || saved {
		t.Fatalf("the second redraw, over a card no longer as it read it: saved %v, %v", saved, err)
	}
	card, _, _ := b.Admins().ClaimAdminCard(ctx, adminsTenant, v, time.Minute)
	if card.Drawn != "bbbb" {
		t.Errorf("the card is recorded as drawn %q, want bbbb", card.Drawn)
	}
	if saved, err := b.Admins().SaveAdminCard(ctx, adminsTenant, v, second, "bbbb", false); err != nil || !saved {
		t.Errorf("drawing again over what is stored now: %v, %v", saved, err)
	}
}

// A claim whose replica died mid-post is taken over once it is stale.
func TestAdminCardClaimOfADeadReplicaIsTakenOver(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	v := bot.AppVersion{TeamsAppID: "polls", Version: "1.1.0"}
	if _, ok, _ := s.Admins().ClaimAdminCard(ctx, adminsTenant, v, time.Minute); !ok {
		t.Fatal("the first claim was refused")
	}
	if _, ok, _ := s.Admins().ClaimAdminCard(ctx, adminsTenant, v, time.Minute); ok {
		t.Error("a claim in progress was granted again")
	}
	if _, ok, _ := s.Admins().ClaimAdminCard(ctx, adminsTenant, v, 0); !ok {
		t.Error("a stale claim was not taken over")
	}
}

func TestNeedsAdminIndexCountsEachRequestOnce(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	ad := s.Admins()
	v := bot.AppVersion{TeamsAppID: "polls", Version: "1.1.0"}
	e := bot.NeedsAdminEntry{ApprovalID: "apr_1", App: "Polls", Kind: approval.ScopeChat,
		Permissions: []approval.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}}
	for i, want := range []bool{true, false} {
		if changed, err := ad.SetNeedsAdmin(ctx, adminsTenant, v, e, true); err != nil || changed != want {
			t.Errorf("add #%d: changed %v, %v; want %v", i+1, changed, err, want)
		}
	}
	got, err := ad.NeedsAdmin(ctx, adminsTenant, v)
	if err != nil || len(got) != 1 || got[0].Permissions[0].Value != "ChatMessage.Read.Chat" {
		t.Errorf("waiting: %+v, %v", got, err)
	}
	if vs, _ := ad.AdminVersions(ctx, adminsTenant); len(vs) != 1 || vs[0] != v {
		t.Errorf("versions %v, want %v", vs, v)
	}
	if changed, _ := ad.SetNeedsAdmin(ctx, adminsTenant, v, e, false); !changed {
		t.Error("dropping the request changed nothing")
	}
	// The version stays listed until its card shows nothing waiting.
	if saved, err := ad.SaveAdminCard(ctx, adminsTenant, v, bot.AdminCard{ActivityID: "act", Drawn: "d0"}, "", true); err != nil || !saved {
		t.Fatalf("saving the card: %v, %v", saved, err)
	}
	if vs, _ := ad.AdminVersions(ctx, adminsTenant); len(vs) != 0 {
		t.Errorf("versions after the card was drawn done: %v", vs)
	}
}

func TestInventoryReplacesAScopeAndForgetsItWhenNothingIsBehind(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	ad := s.Admins()
	save := func(items ...bot.InventoryItem) {
		t.Helper()
		if err := ad.SaveScope(ctx, adminsTenant, bot.InventoryScope{Kind: approval.ScopeChat, ID: "19:a@thread.v2", Items: items}); err != nil {
			t.Fatal(err)
		}
	}
	save(bot.InventoryItem{InstallationID: "i1", TeamsAppID: "polls", Version: "1.0.0", CatalogVersion: "1.1.0"},
		bot.InventoryItem{InstallationID: "i2", TeamsAppID: "tasks", Version: "3.0", CatalogVersion: "3.1"})
	save(bot.InventoryItem{InstallationID: "i1", TeamsAppID: "polls", Version: "1.0.0", CatalogVersion: "1.1.0"})
	if err := ad.NoteRequest(ctx, adminsTenant, bot.RequestNote{InstallationID: "i1", ApprovalID: "apr_1", Target: "1.1.0",
		Status: approval.StatusNeedsAdmin}); err != nil {
		t.Fatal(err)
	}
	d, err := ad.Inventory(ctx, adminsTenant)
	if err != nil || len(d.Rows()) != 1 || d.Rows()[0].RequestStatus != approval.StatusNeedsAdmin {
		t.Fatalf("inventory rows %+v, %v; want i1 needing an admin", d.Rows(), err)
	}
	save()
	if d, _ := ad.Inventory(ctx, adminsTenant); len(d.Scopes) != 0 {
		t.Errorf("a scope with nothing behind is still listed: %+v", d.Scopes)
	}
}

func TestDigestIsClaimedOncePerInterval(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	ad := s.Admins()
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	if ok, err := ad.ClaimDigest(ctx, adminsTenant, time.Time{}, start); err != nil || !ok {
		t.Fatalf("first claim: %v, %v", ok, err)
	}
	next := start.Add(168 * time.Hour)
	if ok, _ := ad.ClaimDigest(ctx, adminsTenant, time.Time{}, next); ok {
		t.Error("a replica that read no digest yet claimed it after another did")
	}
	if ok, _ := ad.ClaimDigest(ctx, adminsTenant, start, next); !ok {
		t.Error("the next digest was refused")
	}
	if ok, _ := ad.ClaimDigest(ctx, adminsTenant, start, next); ok {
		t.Error("the same digest was claimed twice")
	}
	if last, err := ad.LastDigest(ctx, adminsTenant); err != nil || !last.Equal(next) {
		t.Errorf("last digest %s, %v; want %s", last, err, next)
	}
}

// Everything kept for a tenant's admins lasts ReferenceTTL after it was
// last written: a tenant that stops using the bot leaves nothing behind.
func TestAdminsKeysOfAnIdleTenantExpire(t *testing.T) {
	prefix := fmt.Sprintf("test:admins-ttl:%d:", time.Now().UnixNano())
	s, rdb := newStore(t, state.Options{Prefix: prefix, ReferenceTTL: time.Hour})
	ad, ctx := s.Admins(), context.Background()
	v := bot.AppVersion{TeamsAppID: "polls", Version: "1.1.0"}
	if _, err := ad.SetNeedsAdmin(ctx, adminsTenant, v, bot.NeedsAdminEntry{ApprovalID: "apr_1", App: "Polls"}, true); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := ad.ClaimAdminCard(ctx, adminsTenant, v, time.Minute); err != nil || !ok {
		t.Fatalf("claim: %v, %v", ok, err)
	}
	if saved, err := ad.SaveAdminCard(ctx, adminsTenant, v, bot.AdminCard{ActivityID: "act", Drawn: "d1"}, "", false); err != nil || !saved {
		t.Fatalf("save: %v, %v", saved, err)
	}
	if err := ad.SaveScope(ctx, adminsTenant, bot.InventoryScope{Kind: approval.ScopeChat, ID: "19:a@thread.v2",
		Items: []bot.InventoryItem{{InstallationID: "i1", TeamsAppID: "polls"}}}); err != nil {
		t.Fatal(err)
	}
	if err := ad.NoteRequest(ctx, adminsTenant, bot.RequestNote{InstallationID: "i1", ApprovalID: "apr_1"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := ad.ClaimDigest(ctx, adminsTenant, time.Time{}, time.Now()); err != nil || !ok {
		t.Fatalf("digest: %v, %v", ok, err)
	}
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) != 6 {
		t.Fatalf("keys %v (%v), want the tenant's six", keys, err)
	}
	for _, k := range keys {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("%s is kept %s, want up to ReferenceTTL (1h)", k, ttl)
		}
	}
}
