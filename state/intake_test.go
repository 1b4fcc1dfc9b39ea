package state_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/state"
)

// handshake tells the commands go-redis sends on a new connection.
func handshake(c redis.Cmder) bool { return c.Name() == "hello" || c.Name() == "client" }

// roundTrips counts what go-redis sends, but for connection handshakes:
// single commands and pipelines, and keeps every argument sent (take).
type roundTrips struct {
	single, pipelines atomic.Int64

	mu   sync.Mutex
	args []string
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !handshake(cmd) {
			h.single.Add(1)
			h.record(cmd)
		}
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !handshake(cmds[0]) {
			h.pipelines.Add(1)
			h.record(cmds...)
		}
		return next(ctx, cmds)
	}
}

func (h *roundTrips) record(cmds ...redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range cmds {
		for _, a := range c.Args() {
			h.args = append(h.args, fmt.Sprint(a))
		}
	}
}

// take returns the arguments sent since the last take.
func (h *roundTrips) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.args
	h.args = nil
	return out
}

func TestClaimAndSaveReferenceIsOneRoundTrip(t *testing.T) {
	s, rdb := newConversations(t, state.Options{})
	hook := &roundTrips{}
	rdb.AddHook(hook)
	ctx := context.Background()
	ref := approval.ConversationRef{ConversationID: "19:intake@thread.v2", ConversationType: "groupChat",
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

// Every activity asks where its installation scope's cards go, but reads
// no key of its whole tenant to learn it: for a single-tenant bot that key
// would be on every request's path. The tenant's index is written only
// when the answer changes: a team talked to in another channel.
func TestActivitiesReadNoTenantWideKey(t *testing.T) {
	s, rdb := newConversations(t, state.Options{})
	seen := &roundTrips{}
	rdb.AddHook(seen)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	team := &approval.Scope{Kind: approval.ScopeTeam, ID: "00000000-0000-0000-0000-0000000000aa", TenantID: tenant}
	in := func(channel string, n int) {
		t.Helper()
		ref := approval.ConversationRef{ConversationID: channel, ConversationType: "channel", ServiceURL: "https://smba.trafficmanager.net/amer/",
			ChannelID: "msteams", TenantID: tenant, BotID: "28:app", Scope: team, UpdatedAt: now.Add(time.Duration(n) * time.Minute)}
		if _, err := s.ClaimAndSaveReference(ctx, fmt.Sprintf("%s|%d", channel, n), ref); err != nil {
			t.Fatal(err)
		}
	}
	tenantWide := func(args []string) []string {
		var out []string
		for _, a := range args {
			if strings.Contains(a, "scopes:{") || strings.Contains(a, "where:{") || strings.HasSuffix(a, "tenants") {
				out = append(out, a)
			}
		}
		return out
	}
	home := func() []string {
		t.Helper()
		var ids []string
		if err := s.Conversations(ctx, tenant, func(id string) error { ids = append(ids, id); return nil }); err != nil {
			t.Fatal(err)
		}
		return ids
	}

	in("19:general@thread.tacv2", 1) // first seen: written and indexed
	seen.take()
	in("19:general@thread.tacv2", 2)
	in("19:general@thread.tacv2;messageid=1700000000001", 3)
	if keys := tenantWide(seen.take()); len(keys) != 0 {
		t.Errorf("activities of a known channel touched %v", keys)
	}
	in("19:planning@thread.tacv2", 4)
	if got := home(); len(got) != 1 || got[0] != "19:planning@thread.tacv2" {
		t.Errorf("the team's cards go to %v, want the channel last talked to in", got)
	}
	seen.take()
	in("19:planning@thread.tacv2", 5)
	if keys := tenantWide(seen.take()); len(keys) != 0 {
		t.Errorf("an activity where the team's home already is touched %v", keys)
	}
	in("19:general@thread.tacv2", 6)
	if got := home(); len(got) != 1 || got[0] != "19:general@thread.tacv2" {
		t.Errorf("the team's cards go to %v after talk in General again", got)
	}
}
