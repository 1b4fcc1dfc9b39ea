package state_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/state"
)

// Of checks racing in one conversation on several replicas, one claims the
// window; the others learn when it began. The window ends with its TTL, a
// failed check gives it back, and another conversation has its own.
func TestCheckWindowIsClaimedOnceAcrossReplicas(t *testing.T) {
	prefix := fmt.Sprintf("test:checks:%d:", time.Now().UnixNano())
	s, rdb := newStore(t, state.Options{Prefix: prefix})
	ctx := context.Background()
	const conv = "19:abc@thread.v2"
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	claimed := make(chan time.Time, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, since, err := s.ClaimCheck(ctx, conv, at.Add(time.Duration(i)*time.Millisecond), time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				claimed <- since
			}
		}()
	}
	wg.Wait()
	close(claimed)
	var winners []time.Time
	for w := range claimed {
		winners = append(winners, w)
	}
	if len(winners) != 1 {
		t.Fatalf("%d checks claimed the window", len(winners))
	}
	if ok, since, err := s.ClaimCheck(ctx, conv, at.Add(time.Second), time.Minute); ok || err != nil || !since.Equal(winners[0]) {
		t.Errorf("a repeat: claimed %v since %v (%v), want refused since %v", ok, since, err, winners[0])
	}
	keys, _ := rdb.Keys(ctx, prefix+"*").Result()
	if len(keys) != 1 || keys[0] != prefix+"check:{"+conv+"}" {
		t.Fatalf("keys %q", keys)
	}
	if ttl := rdb.PTTL(ctx, keys[0]).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("the window's TTL is %v", ttl)
	}
	if ok, _, _ := s.ClaimCheck(ctx, "19:other@thread.v2", at, time.Minute); !ok {
		t.Error("another conversation's check was refused")
	}
	// Releasing someone else's window changes nothing; one's own frees it.
	if err := s.ReleaseCheck(ctx, conv, at.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := s.ClaimCheck(ctx, conv, at.Add(2*time.Second), time.Minute); ok {
		t.Error("a release with another claim's time freed the window")
	}
	if err := s.ReleaseCheck(ctx, conv, winners[0]); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := s.ClaimCheck(ctx, conv, at.Add(3*time.Second), time.Minute); !ok {
		t.Error("a released window was not free")
	}
}
