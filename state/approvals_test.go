package state_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/state"
)

func approval() bot.Approval {
	now := time.Now().UTC()
	return bot.Approval{
		ID: bot.NewApprovalID(), Status: bot.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		Conversation: bot.ConversationRef{ConversationID: "19:abc@thread.v2"},
		Upgrade: bot.PendingUpgrade{
			Installation: bot.Installation{ID: "inst", DisplayName: "Polls", Definition: bot.AppDefinition{Version: "1.0.0"}},
			Target:       bot.AppDefinition{ID: "def-1.1.0", Version: "1.1.0"},
		},
	}
}

func TestOpenApprovalIsOncePerInstallationAndTarget(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	first, created, err := s.OpenApproval(ctx, approval())
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	again, created, err := s.OpenApproval(ctx, approval())
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("second check opened %s (created %v), want the open %s", again.ID, created, first.ID)
	}
	// A different target is a different request.
	other := approval()
	other.Upgrade.Target.ID = "def-1.2.0"
	if o, created, _ := s.OpenApproval(ctx, other); !created || o.ID == first.ID {
		t.Error("a new catalog version reused the old request")
	}
	// Once decided, a new check opens a new request.
	if _, err := s.Transition(ctx, first.ID, []bot.ApprovalStatus{bot.StatusPending}, func(a *bot.Approval) { a.Status = bot.StatusRejected }); err != nil {
		t.Fatal(err)
	}
	if n, created, _ := s.OpenApproval(ctx, approval()); !created || n.ID == first.ID {
		t.Error("a rejected request was reopened instead of replaced")
	}
}

func TestOnlyOneClaimWins(t *testing.T) {
	a, b := replicas(t)
	ctx := context.Background()
	ap, _, err := a.OpenApproval(ctx, approval())
	if err != nil {
		t.Fatal(err)
	}
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Transition(ctx, ap.ID, []bot.ApprovalStatus{bot.StatusPending}, func(x *bot.Approval) {
				x.Status = bot.StatusUpgrading
				x.DecidedBy = &bot.Person{Name: fmt.Sprint(i)}
			})
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, bot.ErrConflict):
				conflicts.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != 15 {
		t.Fatalf("%d claims won and %d conflicted, want 1 and 15", wins.Load(), conflicts.Load())
	}
	got, err := b.Approval(ctx, ap.ID)
	if err != nil || got.Status != bot.StatusUpgrading || got.DecidedBy == nil {
		t.Errorf("after the race: %+v %v", got, err)
	}
}

func TestTransitionOfUnknownApproval(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	_, err := s.Transition(context.Background(), "apr_none", []bot.ApprovalStatus{bot.StatusPending}, func(*bot.Approval) {})
	if !errors.Is(err, bot.ErrNotFound) {
		t.Errorf("err %v, want not_found", err)
	}
	if _, err := s.Approval(context.Background(), "apr_none"); !errors.Is(err, bot.ErrNotFound) {
		t.Errorf("err %v, want not_found", err)
	}
}

func TestBatchAndAudit(t *testing.T) {
	s, _ := newStore(t, state.Options{})
	ctx := context.Background()
	id, err := s.SaveBatch(ctx, []string{"apr_1", "apr_2"})
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := s.Batch(ctx, id); err != nil || len(ids) != 2 || ids[1] != "apr_2" {
		t.Errorf("batch %v %v", ids, err)
	}
	for i := range 60 {
		if err := s.AppendAudit(ctx, "19:abc@thread.v2", bot.AuditEvent{App: fmt.Sprint(i), Status: bot.StatusUpgraded}); err != nil {
			t.Fatal(err)
		}
	}
	events, err := s.Audit(ctx, "19:abc@thread.v2", 10)
	if err != nil || len(events) != 10 || events[0].App != "59" {
		t.Fatalf("audit %+v %v, want the newest first", events, err)
	}
	all, _ := s.Audit(ctx, "19:abc@thread.v2", 100)
	if len(all) != 50 {
		t.Errorf("history keeps %d events, want 50", len(all))
	}
}
