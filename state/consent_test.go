package state_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/state"
)

// A tenant's consent facts are kept under one key per tenant with the TTL
// given, read back as they were stored, and forgotten on demand.
func TestConsentFactsAreKeptPerTenantForTheirTTL(t *testing.T) {
	prefix := fmt.Sprintf("test:consent:%d:", time.Now().UnixNano())
	s, rdb := newStore(t, state.Options{Prefix: prefix})
	ctx := context.Background()
	const tenant = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"
	if _, ok, err := s.CachedConsent(ctx, tenant); ok || err != nil {
		t.Fatalf("before any read: ok %v, %v", ok, err)
	}
	f := approval.ConsentFacts{Read: true, GrantPolicies: []string{"ManagePermissionGrantsForOwnedResource.microsoft-pre-approval-apps-for-chat"},
		PreApprovalRead: true, PreApprovedScopes: []string{"group"}}
	if err := s.CacheConsent(ctx, tenant, f, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.CachedConsent(ctx, "72f988bf-86f1-41af-91ab-2d7cd011db47")
	if !ok || err != nil || !reflect.DeepEqual(got, f) {
		t.Errorf("read back %+v %v %v, want %+v", got, ok, err, f)
	}
	keys, _ := rdb.Keys(ctx, prefix+"*").Result()
	if len(keys) != 1 || keys[0] != prefix+"consent:{72f988bf-86f1-41af-91ab-2d7cd011db47}" {
		t.Fatalf("keys %q", keys)
	}
	if ttl := rdb.PTTL(ctx, keys[0]).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("TTL %v", ttl)
	}
	if _, ok, _ := s.CachedConsent(ctx, "another-tenant"); ok {
		t.Error("another tenant shares the facts")
	}
	if err := s.ForgetConsent(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.CachedConsent(ctx, tenant); ok {
		t.Error("kept after ForgetConsent")
	}
}
