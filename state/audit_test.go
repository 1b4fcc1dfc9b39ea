package state_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/state"
)

// Every event lands in its tenant's trail, whichever call wrote it; the
// trail reads back in order, page after page, from a point in time; the
// tenants that have one are listed; an outcome is also its conversation's
// history line.
func TestAuditTrailPerTenant(t *testing.T) {
	prefix := fmt.Sprintf("test:trail:%d:", time.Now().UnixNano())
	s, rdb := newStore(t, state.Options{Prefix: prefix})
	ctx := context.Background()
	approvals, trail := s.Approvals(), s.Trail()
	now := time.Now().UTC().Truncate(time.Millisecond)
	full := approval.AuditEvent{At: now, Operation: approval.OpUpgraded, Status: approval.StatusUpgraded, Actor: "Megan",
		ActorID: "obj-megan", TenantID: "t1", ScopeKind: approval.ScopeChat, ScopeID: "19:c@thread.v2", AppID: "app-1",
		App: "Polls", From: "1.0", To: "1.1", Added: []approval.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}},
		Removed: []approval.Permission{{Value: "Owner.Read.Chat", Type: "delegated"}}, ApprovalID: "apr_1", Detail: "ok"}
	if _, err := approvals.RecordOutcome(ctx, "19:c@thread.v2", full); err != nil {
		t.Fatal(err)
	}
	n := state.TrailPage + 5 // more than a page
	for i := range n {
		if err := approvals.AppendAudit(ctx, approval.AuditEvent{At: now, Operation: approval.OpRequested, TenantID: "t1",
			App: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := approvals.AppendAudit(ctx, approval.AuditEvent{At: now, Operation: approval.OpReminded, TenantID: "t2"}); err != nil {
		t.Fatal(err)
	}
	var got []approval.AuditEvent
	if err := trail.Read(ctx, "t1", now.Add(-time.Minute), func(e approval.AuditEvent) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != n+1 || !reflect.DeepEqual(got[0], full) || got[n].App != fmt.Sprint(n-1) || got[1].App != "0" {
		t.Fatalf("trail t1: %d events, first %+v, want %d, the outcome first as written", len(got), got[0], n+1)
	}
	if hist, _ := approvals.Audit(ctx, "19:c@thread.v2", 10); len(hist) != 1 || hist[0].Operation != approval.OpUpgraded {
		t.Errorf("history %+v, want the outcome alone", hist)
	}
	later := 0
	if err := trail.Read(ctx, "t1", time.Now().Add(time.Minute), func(approval.AuditEvent) error { later++; return nil }); err != nil || later != 0 {
		t.Errorf("%d events from a minute ahead (%v), want none", later, err)
	}
	if ts, err := trail.Tenants(ctx); err != nil || !reflect.DeepEqual(ts, []string{"t1", "t2"}) {
		t.Errorf("tenants %v %v", ts, err)
	}
	// An idle trail goes with its retention.
	ttl := rdb.PTTL(ctx, prefix+"trail:{t2}").Val()
	if ttl <= 364*24*time.Hour || ttl > 365*24*time.Hour {
		t.Errorf("trail expires in %v, want 8760h", ttl)
	}
}

// Events older than the retention are trimmed by id as new ones come.
func TestAuditTrailTrimsByAge(t *testing.T) {
	prefix := fmt.Sprintf("test:trim:%d:", time.Now().UnixNano())
	s, rdb := newStore(t, state.Options{Prefix: prefix, AuditRetention: time.Hour})
	ctx := context.Background()
	key := prefix + "trail:{t1}"
	// 500 events two hours old: more than one node of the stream, which
	// is what approximate trimming drops whole.
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	for i := range 500 {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: fmt.Sprintf("%d-%d", old, i+1), Values: []string{"v", "1"}})
	}
	if err := s.Approvals().AppendAudit(ctx, approval.AuditEvent{At: time.Now(), Operation: approval.OpRequested, TenantID: "t1"}); err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(ctx, key).Val(); n >= 101 {
		t.Errorf("the trail keeps %d events, want the old ones trimmed", n)
	}
	var got int
	s.Trail().Read(ctx, "t1", time.Now().Add(-time.Minute), func(approval.AuditEvent) error { got++; return nil })
	if got != 1 {
		t.Errorf("read %d recent events, want 1", got)
	}
}
