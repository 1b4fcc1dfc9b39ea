package state_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/upgradeapprovals/bot/state"
)

// BenchmarkClaim is one Redis round trip on the activity path: claiming an
// activity id for dedupe, on the real Redis at REDIS_URL.
func BenchmarkClaim(b *testing.B) {
	s, _ := newConversations(b, state.Options{})
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		if first, err := s.Claim(ctx, "19:bench@thread.v2|"+strconv.Itoa(i)); err != nil || !first {
			b.Fatalf("claim: %v %v", first, err)
		}
	}
}
