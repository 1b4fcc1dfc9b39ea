package state_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/internal/logtest"
	"github.com/upgradeapprovals/bot/state"
)

// The wiring hands the conversations to the Bot Framework adapter as its
// ServiceURLTrust, which checks that at compile time there.
var (
	_ bot.ConversationStore = (*state.Conversations)(nil)
	_ bot.ActivityLog       = (*state.Conversations)(nil)
)

// redisURL is the real Redis the tests use: REDIS_URL, or the local one.
func redisURL() string {
	if testRedis != "" {
		return testRedis
	}
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// newStore returns a Store on real Redis under a prefix of its own, removed
// when the test ends.
func newStore(t testing.TB, opts state.Options) (*state.Store, redis.UniversalClient) {
	t.Helper()
	rdb, closeFn, err := state.Connect(context.Background(), redisURL(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("these tests need Redis at %s (set REDIS_URL): %v", redisURL(), err)
	}
	if opts.Prefix == "" {
		opts.Prefix = fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())
	}
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, opts.Prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		closeFn()
	})
	return state.New(rdb, opts), rdb
}

// newApprovals is newStore's approvals.
func newApprovals(t testing.TB, opts state.Options) (*state.Approvals, redis.UniversalClient) {
	t.Helper()
	s, rdb := newStore(t, opts)
	return s.Approvals(), rdb
}

// newConversations is newStore's conversations.
func newConversations(t testing.TB, opts state.Options) (*state.Conversations, redis.UniversalClient) {
	t.Helper()
	s, rdb := newStore(t, opts)
	return s.Conversations(), rdb
}

func TestReferenceRoundTripAndSurvivesNewClient(t *testing.T) {
	prefix := fmt.Sprintf("test:ref:%d:", time.Now().UnixNano())
	s, _ := newConversations(t, state.Options{Prefix: prefix})
	ctx := context.Background()
	ref := approval.ConversationRef{
		ConversationID: "19:abc@thread.v2", ConversationType: "groupChat", ServiceURL: "https://smba.trafficmanager.net/amer/",
		ChannelID: "msteams", TenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47", BotID: "28:app",
		Scope: &approval.Scope{Kind: approval.ScopeChat, ID: "19:abc@thread.v2"}, UpdatedAt: time.Now().UTC().Truncate(time.Second),
	}
	if err := s.SaveReference(ctx, ref); err != nil {
		t.Fatal(err)
	}
	// A second process (a restart, another replica) reads it back.
	s2, rdb := newConversations(t, state.Options{Prefix: prefix})
	got, err := s2.Reference(ctx, ref.ConversationID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ServiceURL != ref.ServiceURL || *got.Scope != *ref.Scope || !got.UpdatedAt.Equal(ref.UpdatedAt) {
		t.Errorf("got %+v, want %+v", got, ref)
	}
	ttl := rdb.TTL(ctx, prefix+"ref:{19:abc@thread.v2}").Val()
	if ttl < 89*24*time.Hour {
		t.Errorf("reference TTL %v, want about 90 days", ttl)
	}
	if _, err := s2.Reference(ctx, "19:unknown@thread.v2"); !errors.Is(err, bot.ErrNotFound) {
		t.Errorf("unknown conversation: %v, want not_found", err)
	}
}

func TestReferenceOfUnknownVersionIsRefused(t *testing.T) {
	prefix := fmt.Sprintf("test:ver:%d:", time.Now().UnixNano())
	s, rdb := newConversations(t, state.Options{Prefix: prefix})
	ctx := context.Background()
	rdb.Set(ctx, prefix+"ref:{c}", `{"v":99,"conversationId":"c"}`, 0)
	if _, err := s.Reference(ctx, "c"); err == nil {
		t.Error("a reference written by an unknown version was read as if it were ours")
	}
}

// replicas returns two Stores with clients of their own on the same keys,
// as two bot replicas have.
func replicas(t *testing.T) (*state.Store, *state.Store) {
	t.Helper()
	prefix := fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())
	a, _ := newStore(t, state.Options{Prefix: prefix})
	b, _ := newStore(t, state.Options{Prefix: prefix})
	return a, b
}

// approvalReplicas is replicas' approvals.
func approvalReplicas(t *testing.T) (*state.Approvals, *state.Approvals) {
	t.Helper()
	a, b := replicas(t)
	return a.Approvals(), b.Approvals()
}

// conversationReplicas is replicas' conversations.
func conversationReplicas(t *testing.T) (*state.Conversations, *state.Conversations) {
	t.Helper()
	a, b := replicas(t)
	return a.Conversations(), b.Conversations()
}

func TestClaimIsOncePerActivityAcrossReplicas(t *testing.T) {
	a, b := conversationReplicas(t)
	ctx := context.Background()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.Claim(ctx, "19:abc|1700000000001")
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d replicas won the claim, want 1", wins.Load())
	}
	if err := a.Release(ctx, "19:abc|1700000000001"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Claim(ctx, "19:abc|1700000000001"); !ok {
		t.Error("a released activity cannot be claimed again")
	}
}

func TestClaimExpires(t *testing.T) {
	s, _ := newConversations(t, state.Options{ActivityTTL: 50 * time.Millisecond})
	ctx := context.Background()
	if ok, err := s.Claim(ctx, "k"); !ok || err != nil {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	if ok, _ := s.Claim(ctx, "k"); ok {
		t.Fatal("a claimed activity was claimed again within its TTL")
	}
	eventually(t, "the claim's 50 ms TTL to end", func() bool { ok, _ := s.Claim(ctx, "k"); return ok })
}

// A service URL is trusted for the conversation it arrived in, under that
// conversation's own key (its own Cluster slot), for ReferenceTTL.
func TestServiceURLTrustIsPerConversation(t *testing.T) {
	prefix := fmt.Sprintf("test:svc:%d:", time.Now().UnixNano())
	s, rdb := newConversations(t, state.Options{Prefix: prefix, ReferenceTTL: time.Hour})
	ctx := context.Background()
	const u = "https://connector.contoso.example/amer/"
	if ok, _ := s.IsTrustedServiceURL(ctx, "19:a@thread.v2", u); ok {
		t.Error("trusted before any activity")
	}
	if err := s.TrustServiceURL(ctx, "19:a@thread.v2", u); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.IsTrustedServiceURL(ctx, "19:a@thread.v2", u); !ok {
		t.Error("not trusted after an authenticated activity")
	}
	if ok, _ := s.IsTrustedServiceURL(ctx, "19:b@thread.v2", u); ok {
		t.Error("trusted for a conversation it never arrived in")
	}
	if ok, _ := s.IsTrustedServiceURL(ctx, "19:a@thread.v2", "https://evil.example/"); ok {
		t.Error("another URL trusted for the conversation")
	}
	keys, _ := rdb.Keys(ctx, prefix+"*").Result()
	var found bool
	for _, k := range keys {
		if strings.Contains(k, "svc:{19:a@thread.v2}") {
			found = true
			if ttl := rdb.TTL(ctx, k).Val(); ttl <= 0 || ttl > time.Hour {
				t.Errorf("%s TTL %v, want ReferenceTTL", k, ttl)
			}
		}
	}
	if !found {
		t.Errorf("no per-conversation key among %v", keys)
	}
}

func TestRedisDownIsUnavailable(t *testing.T) {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	s := state.New(rdb, state.Options{})
	if _, err := s.Conversations().Claim(context.Background(), "k"); !errors.Is(err, bot.ErrUnavailable) {
		t.Errorf("err %v, want unavailable", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, bot.ErrUnavailable) {
		t.Errorf("ping err %v, want unavailable", err)
	}
}

func TestEmbeddedRedisWhenURLUnset(t *testing.T) {
	var logs logtest.Buffer
	rdb, closeFn, err := state.Connect(context.Background(), "", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	s := state.New(rdb, state.Options{}).Conversations()
	if ok, err := s.Claim(context.Background(), "k"); !ok || err != nil {
		t.Fatalf("claim on embedded redis: %v %v", ok, err)
	}
	if !strings.Contains(logs.String(), "LOST on restart") {
		t.Errorf("no loud warning about the embedded Redis: %q", logs.String())
	}
}

func TestConnectRejectsBadURL(t *testing.T) {
	_, _, err := state.Connect(context.Background(), "http://localhost:6379", slog.Default())
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Errorf("err %v, want one naming REDIS_URL", err)
	}
}

func TestParseURL(t *testing.T) {
	o, err := state.ParseURL("rediss://:s3cret@cache.contoso.net:6380/2")
	if err != nil || o.IsClusterMode || len(o.Addrs) != 1 || o.Addrs[0] != "cache.contoso.net:6380" || o.DB != 2 ||
		o.Password != "s3cret" || o.TLSConfig == nil {
		t.Errorf("single node: %+v %v", o, err)
	}
	o, err = state.ParseURL("rediss://:s3cret@cache.contoso.net:6380?cluster=true")
	if err != nil || !o.IsClusterMode || len(o.Addrs) != 1 || o.TLSConfig == nil || o.Password != "s3cret" {
		t.Errorf("cluster endpoint: %+v %v", o, err)
	}
	o, err = state.ParseURL("redis://h1:6379?addr=h2:6379&addr=h3:6379")
	if err != nil || !o.IsClusterMode || len(o.Addrs) != 3 {
		t.Errorf("cluster seeds: %+v %v", o, err)
	}
	for _, bad := range []string{"http://localhost:6379", "redis://h1:6379?cluster=true&dial_timeout=x"} {
		if _, err := state.ParseURL(bad); err == nil {
			t.Errorf("%s was accepted", bad)
		}
	}
}

// The embedded Redis of local runs must expire keys like a real one, or
// claims, locks and approvals would live forever there.
func TestEmbeddedRedisExpiresKeys(t *testing.T) {
	rdb, closeFn, err := state.Connect(context.Background(), "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 200*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a key set with a 200 ms TTL to expire", func() bool {
		n, err := rdb.Exists(ctx, "k").Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
}
