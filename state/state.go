// Package state keeps the bot's state in Redis: conversation references,
// activity claims (dedupe), the service URLs the Bot Framework vouched for,
// approvals and each conversation's history.
// Every replica shares it, so nothing that matters lives in process memory.
package state

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
)

// Options configures a Store. Zero values take the documented defaults.
type Options struct {
	// Prefix starts every key. Default "upgradebot:".
	Prefix string
	// ActivityTTL is how long a handled activity id is remembered. Teams
	// redelivers within minutes; default 24h.
	ActivityTTL time.Duration
	// ReferenceTTL is how long an unused conversation reference is kept.
	// Default 90 days; every activity renews it.
	ReferenceTTL time.Duration
	// ApprovalRetention is how long an approval stays readable after it
	// expires, so late clicks get a clear answer. Default 30 days.
	ApprovalRetention time.Duration
	// AuditRetention is how long each tenant's audit trail keeps an event
	// (it is trimmed by age as it grows), and how long an idle
	// conversation's history is kept. Default 8760h (365 days).
	AuditRetention time.Duration
}

// Store is the bot's state on Redis. What it keeps is split by what it is
// about, each part a value of its own that the wiring hands to the bot:
// Approvals, Conversations and Proactive, and the Queue, Watch and Budget of
// the background work.
type Store struct {
	*conn
	approvals     *Approvals
	conversations *Conversations
	proactive     *Proactive
}

// conn is what every part of a Store shares: one client and one set of
// options, the key prefix among them.
type conn struct {
	rdb  redis.UniversalClient
	opts Options
}

// decodeEach decodes each JSON record of a list that Redis returned; what
// names one record in the error.
func decodeEach[T any](raw []string, what string) ([]T, error) {
	out := make([]T, 0, len(raw))
	for _, r := range raw {
		var v T
		if err := json.Unmarshal([]byte(r), &v); err != nil {
			return nil, fmt.Errorf("state: decode %s: %w", what, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// New returns a Store on rdb. It does not take ownership of rdb.
func New(rdb redis.UniversalClient, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = "upgradebot:"
	}
	if opts.ActivityTTL <= 0 {
		opts.ActivityTTL = 24 * time.Hour
	}
	if opts.ReferenceTTL <= 0 {
		opts.ReferenceTTL = 90 * 24 * time.Hour
	}
	if opts.ApprovalRetention <= 0 {
		opts.ApprovalRetention = 30 * 24 * time.Hour
	}
	if opts.AuditRetention <= 0 {
		opts.AuditRetention = 365 * 24 * time.Hour
	}
	c := &conn{rdb: rdb, opts: opts}
	conversations := &Conversations{conn: c}
	return &Store{
		conn:          c,
		approvals:     &Approvals{ApprovalRecords: &ApprovalRecords{conn: c}, ApprovalLists: &ApprovalLists{conn: c}},
		conversations: conversations,
		proactive:     &Proactive{conn: c, index: conversations},
	}
}

// Approvals returns the approvals, their claims, batches, lists and
// history: bot.ApprovalStore.
func (s *Store) Approvals() *Approvals { return s.approvals }

// Conversations returns the conversation references and the index of
// where the bot is, the activity claims and the trusted service URLs:
// bot.ConversationStore and bot.ActivityLog.
func (s *Store) Conversations() *Conversations { return s.conversations }

// Proactive returns what the bot keeps to act unprompted:
// bot.ProactiveStore.
func (s *Store) Proactive() *Proactive { return s.proactive }

// Connect opens the Redis named by rawURL (see ParseURL). An empty URL
// starts an embedded in-process Redis: fine for a laptop, but nothing
// survives a restart and replicas cannot share it, so it says so loudly.
// The returned close function releases the client and any embedded server.
func Connect(ctx context.Context, rawURL string, logger *slog.Logger) (redis.UniversalClient, func() error, error) {
	if rawURL == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return nil, nil, fmt.Errorf("state: start embedded redis: %w", err)
		}
		// miniredis counts TTLs down only when told to; without this no key
		// would ever expire in local runs.
		mr.ClockTTL(true)
		logger.Warn("REDIS_URL is not set: using an embedded in-process Redis; " +
			"approvals and conversation references are LOST on restart and NOT shared between replicas")
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{mr.Addr()}})
		return rdb, func() error { err := rdb.Close(); mr.Close(); return err }, nil
	}
	opts, err := ParseURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	boundWaits(opts)
	smallBuffers(opts)
	rdb := redis.NewUniversalClient(opts)
	return rdb, rdb.Close, nil
}

// smallBuffers sizes each connection's buffers for what the bot exchanges
// with Redis — keys, and records of a few KiB — instead of go-redis's
// defaults (32 KiB each way per pooled connection, 128 KiB each way on the
// pipeline pool's), which hold several MiB for pools that mostly idle. A
// larger reply is still read whole, in more reads.
func smallBuffers(o *redis.UniversalOptions) {
	if o.ReadBufferSize == 0 {
		o.ReadBufferSize = 8 << 10
	}
	if o.WriteBufferSize == 0 {
		o.WriteBufferSize = 8 << 10
	}
	if o.PipelineReadBufferSize == 0 {
		o.PipelineReadBufferSize = 16 << 10
	}
	if o.PipelineWriteBufferSize == 0 {
		o.PipelineWriteBufferSize = 16 << 10
	}
}

// Ready checks what requests need: every activity claims a key of its own,
// spread over all the slots, so on a Redis Cluster every master must answer,
// not just whichever node a PING lands on.
func (s *Store) Ready(ctx context.Context) error {
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if err := m.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("master %s: %w", m.Options().Addr, err)
			}
			return nil
		})
		if err != nil {
			return unavailable("ready", err)
		}
		return nil
	}
	return s.Ping(ctx)
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

func unavailable(op string, err error) error {
	return &bot.Error{Code: bot.CodeUnavailable, Message: "state: " + op + ": redis unavailable", Err: err}
}
