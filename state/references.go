package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
)

// Values carry a version so a rolling upgrade can read what the previous
// release wrote.
const referenceVersion = 1

type referenceRecord struct {
	V int `json:"v"`
	bot.ConversationRef
}

// Keys that one operation touches share a {hash tag} so they live in one
// Redis Cluster slot.
func (s *Store) referenceKey(conversationID string) string {
	return s.opts.Prefix + "ref:{" + conversationID + "}"
}

// whereKey is the set of conversations the bot is in, one per tenant, so no
// key is shared by every tenant's traffic and a sweep reads one tenant.
func (s *Store) whereKey(tenantID string) string { return s.opts.Prefix + "where:{" + tenantID + "}" }

// tenantsKey lists the tenants that have a where set. It is written only
// when a tenant's first conversation appears and read by the catalog
// watcher, never on a request's path.
func (s *Store) tenantsKey() string { return s.opts.Prefix + "tenants" }

// referenceRefresh is how old a stored reference may get before an activity
// rewrites it although nothing changed, to keep its TTL alive.
const referenceRefresh = 24 * time.Hour

// SaveReference stores the conversation reference when it is new or changed
// (or a day old, to renew its TTL), and indexes it under its tenant. Most
// activities change nothing, and then cost one read.
func (s *Store) SaveReference(ctx context.Context, ref bot.ConversationRef) error {
	old, err := s.rdb.Get(ctx, s.referenceKey(ref.ConversationID)).Bytes()
	return s.saveChangedReference(ctx, ref, old, err)
}

// saveChangedReference writes ref unless stored (the value read, with its
// read error) already says the same.
func (s *Store) saveChangedReference(ctx context.Context, ref bot.ConversationRef, stored []byte, readErr error) error {
	if readErr != nil && !errors.Is(readErr, redis.Nil) {
		return unavailable("read reference", readErr)
	}
	var old bot.ConversationRef
	if readErr == nil {
		var rec referenceRecord
		if json.Unmarshal(stored, &rec) == nil && rec.V == referenceVersion {
			old = rec.ConversationRef
			if sameReference(old, ref) && ref.UpdatedAt.Sub(old.UpdatedAt) < referenceRefresh {
				return nil
			}
		}
	}
	// The tenant's index lives on another slot than the reference: if it
	// cannot be written (a Redis Cluster master down), the activity still
	// goes on, and a later one writes both.
	if ref.TenantID != "" {
		if old.TenantID != "" && old.TenantID != ref.TenantID {
			s.rdb.SRem(ctx, s.whereKey(old.TenantID), ref.ConversationID)
		}
		added, err := s.rdb.SAdd(ctx, s.whereKey(ref.TenantID), ref.ConversationID).Result()
		if err != nil {
			return nil
		}
		if added > 0 && s.rdb.SAdd(ctx, s.tenantsKey(), ref.TenantID).Err() != nil {
			s.rdb.SRem(ctx, s.whereKey(ref.TenantID), ref.ConversationID)
			return nil
		}
	}
	b, err := json.Marshal(referenceRecord{V: referenceVersion, ConversationRef: ref})
	if err != nil {
		return fmt.Errorf("state: encode reference: %w", err)
	}
	if err := s.rdb.Set(ctx, s.referenceKey(ref.ConversationID), b, s.opts.ReferenceTTL).Err(); err != nil {
		return unavailable("save reference", err)
	}
	return nil
}

// sameReference compares everything but the time it was seen.
func sameReference(a, b bot.ConversationRef) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// Reference returns the stored reference of a conversation, or an error with
// bot.CodeNotFound.
func (s *Store) Reference(ctx context.Context, conversationID string) (bot.ConversationRef, error) {
	b, err := s.rdb.Get(ctx, s.referenceKey(conversationID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return bot.ConversationRef{}, bot.Errorf(bot.CodeNotFound, "state: no conversation reference for %q", conversationID)
	}
	if err != nil {
		return bot.ConversationRef{}, unavailable("read reference", err)
	}
	var rec referenceRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return bot.ConversationRef{}, fmt.Errorf("state: decode reference: %w", err)
	}
	if rec.V != referenceVersion {
		return bot.ConversationRef{}, fmt.Errorf("state: reference version %d is not supported", rec.V)
	}
	return rec.ConversationRef, nil
}

// Forget removes a conversation the bot was removed from: its reference and
// its place in the tenant's index.
func (s *Store) Forget(ctx context.Context, ref bot.ConversationRef) error {
	if ref.TenantID != "" {
		if err := s.rdb.SRem(ctx, s.whereKey(ref.TenantID), ref.ConversationID).Err(); err != nil {
			return unavailable("unindex reference", err)
		}
	}
	if err := s.rdb.Del(ctx, s.referenceKey(ref.ConversationID)).Err(); err != nil {
		return unavailable("forget reference", err)
	}
	return nil
}

// Tenants lists the tenants the bot is in.
func (s *Store) Tenants(ctx context.Context) ([]string, error) {
	ts, err := s.rdb.SMembers(ctx, s.tenantsKey()).Result()
	if err != nil {
		return nil, unavailable("list tenants", err)
	}
	return ts, nil
}

// Conversations calls fn with the id of every conversation the bot is in in
// a tenant, a page at a time (SSCAN), so a tenant with many conversations is
// never read in one reply. A conversation may be seen twice.
func (s *Store) Conversations(ctx context.Context, tenantID string, fn func(conversationID string) error) error {
	var cursor uint64
	for {
		ids, next, err := s.rdb.SScan(ctx, s.whereKey(tenantID), cursor, "", 500).Result()
		if err != nil {
			return unavailable("list conversations", err)
		}
		for _, id := range ids {
			if err := fn(id); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}
