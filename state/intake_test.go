package state_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/state"
)

// handshake tells the commands go-redis sends on a new connection.
func handshake(c redis.Cmder) bool { return c.Name() == "hello" || c.Name() == "client" }

// roundTrips counts what go-redis sends, but for connection handshakes:
// single commands and pipelines.
type roundTrips struct{ single, pipelines atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !handshake(cmd) {
			h.single.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !handshake(cmds[0]) {
			h.pipelines.Add(1)
		}
		return next(ctx, cmds)
	}
}

func TestClaimAndSaveReferenceIsOneRoundTrip(t *testing.T) {
	s, rdb := newStore(t, state.Options{})
	hook := &roundTrips{}
	rdb.AddHook(hook)
	ctx := context.Background()
	ref := bot.ConversationRef{ConversationID: "19:intake@thread.v2", ConversationType: "groupChat",
		ServiceURL: "https://smba.trafficmanager.net/amer/", ChannelID: "msteams", UpdatedAt: time.Now().UTC().Truncate(time.Second)}

	first, err := s.ClaimAndSaveReference(ctx, "19:intake@thread.v2|1", ref)
	if err != nil || !first {
		t.Fatalf("first delivery: %v %v", first, err)
	}
	// A conversation seen for the first time is also written and indexed;
	// every later activity of it (the common case) is one pipeline.
	hook.single.Store(0)
	hook.pipelines.Store(0)
	later := ref
	later.UpdatedAt = ref.UpdatedAt.Add(time.Minute)
	if first, err := s.ClaimAndSaveReference(ctx, "19:intake@thread.v2|2", later); err != nil || !first {
		t.Fatalf("next activity: %v %v", first, err)
	}
	if hook.single.Load() != 0 || hook.pipelines.Load() != 1 {
		t.Errorf("%d commands and %d pipelines, want one pipeline", hook.single.Load(), hook.pipelines.Load())
	}
	again, err := s.ClaimAndSaveReference(ctx, "19:intake@thread.v2|1", ref)
	if err != nil || again {
		t.Errorf("redelivery claimed again: %v %v", again, err)
	}
	// What it wrote is what Claim and Reference see.
	if first, err := s.Claim(ctx, "19:intake@thread.v2|1"); err != nil || first {
		t.Errorf("Claim after ClaimAndSaveReference: %v %v", first, err)
	}
	got, err := s.Reference(ctx, ref.ConversationID)
	if err != nil || got != ref {
		t.Errorf("reference %+v, %v; want %+v", got, err, ref)
	}
}
