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
	var claims sync.Map
	var wg sync.WaitGroup
	for i := range 8 {
		s := a.Admins()
		if i%2 == 1 {
			s = b.Admins()
		}
		wg.Go(func() {
			card, ok, err := s.ClaimAdminCard(ctx, adminsTenant, v, time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				granted.Add(1)
				claims.Store("granted", card.Claim)
			}
		})
	}
	wg.Wait()
	if granted.Load() != 1 {
		t.Fatalf("%d replicas may post the card, want 1", granted.Load())
	}
	c, _ := claims.Load("granted")
	claim, _ := c.(string)
	if saved, err := b.Admins().SaveAdminCard(ctx, adminsTenant, v, bot.AdminCard{ActivityID: "act-1", App: "Polls", Drawn: "x", Claim: claim}, false); err != nil || !saved {
		t.Fatalf("saving the posted card: %v, %v", saved, err)
	}
	card, ok, err := a.Admins().ClaimAdminCard(ctx, strings.ToLower(adminsTenant), v, time.Minute)
	if err != nil || ok || card.ActivityID != "act-1" {
		t.Errorf("after the post: card %+v, granted %v, %v; want act-1 to update", card, ok, err)
	}
}

// Two replicas redraw one admins' card at once, each from what it read:
// only the first to record its drawing does; the other is told, so it
// draws again, whichever drawing reached Teams last. A revision, not what
// the card shows, decides: a drawing recorded over one that showed the
// same is still a drawing in between.
func TestAdminCardDrawingIsRecordedOnlyOverWhatWasRead(t *testing.T) {
	a, b := replicas(t)
	ctx := context.Background()
	v := bot.AppVersion{TeamsAppID: "polls", Version: "1.1.0"}
	claimed, ok, err := a.Admins().ClaimAdminCard(ctx, adminsTenant, v, time.Minute)
	if err != nil || !ok || claimed.Claim == "" {
		t.Fatalf("claim: %+v, %v, %v", claimed, ok, err)
	}
	posted := bot.AdminCard{ActivityID: "act-1", App: "Polls", Drawn: "aaaa", Claim: claimed.Claim}
	if saved, err := a.Admins().SaveAdminCard(ctx, adminsTenant, v, posted, false); err != nil || !saved {
		t.Fatalf("the posted card: %v, %v", saved, err)
	}
	if saved, _ := b.Admins().SaveAdminCard(ctx, adminsTenant, v, posted, false); saved {
		t.Error("a second record under the same claim replaced the first")
	}
	read := func(s *state.Store) bot.AdminCard {
		t.Helper()
		card, granted, err := s.Admins().ClaimAdminCard(ctx, adminsTenant, v, time.Minute)
		if err != nil || granted || card.ActivityID != "act-1" {
			t.Fatalf("read the card: %+v, %v, %v", card, granted, err)
		}
		return card
	}
	// Both read the card; a records first, b is told.
	first, second := read(a), read(b)
	first.Drawn, second.Drawn = "bbbb", "aaaa"
	if saved, err := a.Admins().SaveAdminCard(ctx, adminsTenant, v, first, false); err != nil || !saved {
		t.Fatalf("the first redraw: %v, %v", saved, err)
	}
	if saved, err := b.Admins().SaveAdminCard(ctx, adminsTenant, v, second, false); err != nil || saved {
		t.Fatalf("the second redraw, over a card no longer as it read it: saved %v, %v", saved, err)
	}
	if got := read(b); got.Drawn != "bbbb" {
		t.Errorf("the card is recorded as drawn %q, want bbbb", got.Drawn)
	}
	// Drawn the same again, by a: b, which read before, is still told.
	stale, again := read(b), read(a)
	if saved, _ := a.Admins().SaveAdminCard(ctx, adminsTenant, v, again, false); !saved {
		t.Fatal("redrawing the same was refused")
	}
	if saved, _ := b.Admins().SaveAdminCard(ctx, adminsTenant, v, stale, false); saved {
		t.Error("a record over a revision no longer stored was taken, because the card showed the same")
	}
	// A drawer that gives up asks for a redraw over whatever is stored.
	if saved, err := b.Admins().SaveAdminCard(ctx, adminsTenant, v, bot.AdminCard{ActivityID: "act-1", App: "Polls", Rev: -1}, false); err != nil || !saved {
		t.Fatalf("asking for a redraw: %v, %v", saved, err)
	}
	if got := read(a); got.Drawn != "" {
		t.Errorf("drawn %q, want a redraw asked for", got.Drawn)
	}
	// ... and lists the version, so the admins' sync redraws it even if
	// the winner took it off the list as showing nothing waiting.
	if vs, _ := a.Admins().AdminVersions(ctx, adminsTenant); len(vs) != 1 || vs[0] != v {
		t.Errorf("versions %v after a redraw was asked for, want %v", vs, v)
	}
	// Not over a claim: the card is being posted by someone else.
	w := bot.AppVersion{TeamsAppID: "tasks", Version: "2.0.0"}
	if _, ok, _ := a.Admins().ClaimAdminCard(ctx, adminsTenant, w, time.Minute); !ok {
		t.Fatal("claim of another version refused")
	}
	if saved, _ := b.Admins().SaveAdminCard(ctx, adminsTenant, w, bot.AdminCard{ActivityID: "x", Rev: -1}, false); saved {
		t.Error("asking for a redraw replaced a claim in progress")
	}
}

// A replica whose stale claim was taken over cannot release the claim of
// the replica that took it, nor record its card over it.
func TestAdminCardClaimTakenOverStaysTheTakersClaim(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	v := bot.AppVersion{TeamsAppID: "polls", Version: "1.1.0"}
	old, _, _ := s.Admins().ClaimAdminCard(ctx, adminsTenant, v, time.Minute)
	taker, ok, _ := s.Admins().ClaimAdminCard(ctx, adminsTenant, v, 0)
	if !ok || taker.Claim == old.Claim {
		t.Fatalf("the stale claim was not taken over: %+v", taker)
	}
	if err := s.Admins().ReleaseAdminCard(ctx, adminsTenant, v, old.Claim, false); err != nil {
		t.Fatal(err)
	}
	if saved, _ := s.Admins().SaveAdminCard(ctx, adminsTenant, v, bot.AdminCard{ActivityID: "old", Drawn: "x", Claim: old.Claim}, false); saved {
		t.Error("the replica whose claim was taken over recorded its card")
	}
	if saved, _ := s.Admins().SaveAdminCard(ctx, adminsTenant, v, bot.AdminCard{ActivityID: "new", Drawn: "x", Claim: taker.Claim}, false); !saved {
		t.Error("the taker's card was not recorded: its claim was released by the other")
	}
}

// Done (nothing waiting) takes a version off the list only if nothing
// waits under it by then: a request added meanwhile keeps it listed.
func TestAdminVersionStaysListedWhenARequestArrivesAsItsCardIsDone(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ad, ctx := s.Admins(), context.Background()
	v := bot.AppVersion{TeamsAppID: "polls", Version: "1.1.0"}
	if _, err := ad.SetNeedsAdmin(ctx, adminsTenant, v, bot.NeedsAdminEntry{ApprovalID: "apr_1"}, true); err != nil {
		t.Fatal(err)
	}
	// The drawer read nothing waiting; apr_1 arrived since.
	posting, _, _ := ad.ClaimAdminCard(ctx, adminsTenant, v, time.Minute)
	if saved, err := ad.SaveAdminCard(ctx, adminsTenant, v, bot.AdminCard{ActivityID: "act", Drawn: "none", Claim: posting.Claim}, true); err != nil || !saved {
		t.Fatalf("saving the card: %v, %v", saved, err)
	}
	if vs, _ := ad.AdminVersions(ctx, adminsTenant); len(vs) != 1 {
		t.Errorf("versions %v: the version with a request waiting was taken off", vs)
	}
	claim, _, _ := ad.ClaimAdminCard(ctx, adminsTenant, bot.AppVersion{TeamsAppID: "tasks", Version: "2.0.0"}, time.Minute)
	if _, err := ad.SetNeedsAdmin(ctx, adminsTenant, bot.AppVersion{TeamsAppID: "tasks", Version: "2.0.0"}, bot.NeedsAdminEntry{ApprovalID: "apr_2"}, true); err != nil {
		t.Fatal(err)
	}
	if err := ad.ReleaseAdminCard(ctx, adminsTenant, bot.AppVersion{TeamsAppID: "tasks", Version: "2.0.0"}, claim.Claim, true); err != nil {
		t.Fatal(err)
	}
	if vs, _ := ad.AdminVersions(ctx, adminsTenant); len(vs) != 2 {
		t.Errorf("versions %v: a released claim took off a version with a request waiting", vs)
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
	claim, _, _ := ad.ClaimAdminCard(ctx, adminsTenant, v, time.Minute)
	if saved, err := ad.SaveAdminCard(ctx, adminsTenant, v, bot.AdminCard{ActivityID: "act", Drawn: "d0", Claim: claim.Claim}, true); err != nil || !saved {
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

// What scans write for a tenant's admins, and its cards, last
// ReferenceTTL after they were last written: a tenant the bot no longer
// scans leaves them behind no longer.
func TestAdminsKeysOfAnIdleTenantExpire(t *testing.T) {
	prefix := fmt.Sprintf("test:admins-ttl:%d:", time.Now().UnixNano())
	s, rdb := newStore(t, state.Options{Prefix: prefix, ReferenceTTL: time.Hour})
	ad, ctx := s.Admins(), context.Background()
	v := bot.AppVersion{TeamsAppID: "polls", Version: "1.1.0"}
	claim, ok, err := ad.ClaimAdminCard(ctx, adminsTenant, v, time.Minute)
	if err != nil || !ok {
		t.Fatalf("claim: %v, %v", ok, err)
	}
	if ttl := rdb.PTTL(ctx, prefix+"admincard:{"+strings.ToLower(adminsTenant)+"}:polls|1.1.0").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("a claim is kept %s, want up to ReferenceTTL (1h)", ttl)
	}
	if saved, err := ad.SaveAdminCard(ctx, adminsTenant, v, bot.AdminCard{ActivityID: "act", Drawn: "d1", Claim: claim.Claim}, false); err != nil || !saved {
		t.Fatalf("save: %v, %v", saved, err)
	}
	if err := ad.SaveScope(ctx, adminsTenant, bot.InventoryScope{Kind: approval.ScopeChat, ID: "19:a@thread.v2",
		Items: []bot.InventoryItem{{InstallationID: "i1", TeamsAppID: "polls"}}}); err != nil {
		t.Fatal(err)
	}
	if err := ad.NoteRequest(ctx, adminsTenant, bot.RequestNote{InstallationID: "i1", ApprovalID: "apr_1"}); err != nil {
		t.Fatal(err)
	}
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) != 3 {
		t.Fatalf("keys %v (%v), want the card, the inventory and the request notes", keys, err)
	}
	for _, k := range keys {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("%s is kept %s, want up to ReferenceTTL (1h)", k, ttl)
		}
	}
}

// A card an earlier release recorded (its JSON alone, no revision) is read
// and redrawn as revision 0.
func TestAdminCardRecordedByAnEarlierReleaseIsRedrawn(t *testing.T) {
	prefix := fmt.Sprintf("test:admins-legacy:%d:", time.Now().UnixNano())
	s, rdb := newStore(t, state.Options{Prefix: prefix})
	ad, ctx := s.Admins(), context.Background()
	v := bot.AppVersion{TeamsAppID: "polls", Version: "1.1.0"}
	key := prefix + "admincard:{" + strings.ToLower(adminsTenant) + "}:polls|1.1.0"
	if err := rdb.Set(ctx, key, `{"activityId":"act-0","name":"Polls","drawn":"old"}`, 0).Err(); err != nil {
		t.Fatal(err)
	}
	card, granted, err := ad.ClaimAdminCard(ctx, adminsTenant, v, time.Minute)
	if err != nil || granted || card.ActivityID != "act-0" || card.Drawn != "old" || card.Rev != 0 {
		t.Fatalf("read %+v, granted %v, %v", card, granted, err)
	}
	card.Drawn = "new"
	if saved, err := ad.SaveAdminCard(ctx, adminsTenant, v, card, false); err != nil || !saved {
		t.Fatalf("redraw: %v, %v", saved, err)
	}
	if card, _, _ := ad.ClaimAdminCard(ctx, adminsTenant, v, time.Minute); card.Drawn != "new" || card.Rev != 1 {
		t.Errorf("after the redraw: %+v", card)
	}
}

// The asks of an admin not yet posted are listed one per ask, with when
// each was noted: dropping one person's leaves another's on the same
// request.
func TestPendingAsksAreListedOnePerAsk(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ad, ctx := s.Admins(), context.Background()
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	for i, asker := range []string{"adele", "megan"} {
		if err := ad.NoteAsk(ctx, adminsTenant, "apr_1", asker, at.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	// Read at 9:00, noted again (asked again) since: the new note stays.
	if err := ad.NoteAsk(ctx, adminsTenant, "apr_1", "adele", at.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := ad.DropAsk(ctx, adminsTenant, "apr_1", "adele", at); err != nil {
		t.Fatal(err)
	}
	if noted, _ := ad.Asks(ctx, adminsTenant); len(noted) != 2 {
		t.Errorf("a note read before it was made again was dropped: %+v", noted)
	}
	if err := ad.DropAsk(ctx, adminsTenant, "apr_1", "adele", at.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	noted, err := ad.Asks(ctx, adminsTenant)
	if err != nil || len(noted) != 1 || noted[0] != (bot.NotedAsk{ApprovalID: "apr_1", Asker: "megan", At: at.Add(time.Minute)}) {
		t.Errorf("noted %+v (%v)", noted, err)
	}
}
