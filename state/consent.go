package state

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.ConsentCache = (*Store)(nil)

// consentKey holds a tenant's consent facts as last read from Graph, until
// its TTL (the scan interval) ends; hash-tagged by tenant.
func (s *Store) consentKey(tenantID string) string {
	return s.opts.Prefix + "consent:{" + strings.ToLower(tenantID) + "}"
}

// consentRecord is the stored value, versioned.
type consentRecord struct {
	V     int                   `json:"v"`
	Facts approval.ConsentFacts `json:"facts"`
}

// CachedConsent returns the tenant's facts while they are kept.
func (s *Store) CachedConsent(ctx context.Context, tenantID string) (approval.ConsentFacts, bool, error) {
	raw, err := s.rdb.Get(ctx, s.consentKey(tenantID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return approval.ConsentFacts{}, false, nil
	}
	if err != nil {
		return approval.ConsentFacts{}, false, unavailable("read a tenant's consent policy", err)
	}
	var r consentRecord
	if err := json.Unmarshal(raw, &r); err != nil || r.V != 1 {
		return approval.ConsentFacts{}, false, nil // unreadable: read the policy again
	}
	return r.Facts, true, nil
}

// CacheConsent keeps the tenant's facts for ttl.
func (s *Store) CacheConsent(ctx context.Context, tenantID string, f approval.ConsentFacts, ttl time.Duration) error {
	raw, err := json.Marshal(consentRecord{V: 1, Facts: f})
	if err != nil {
		return err
	}
	if err := s.rdb.Set(ctx, s.consentKey(tenantID), raw, ttl).Err(); err != nil {
		return unavailable("keep a tenant's consent policy", err)
	}
	return nil
}

// ForgetConsent drops the tenant's facts.
func (s *Store) ForgetConsent(ctx context.Context, tenantID string) error {
	if err := s.rdb.Del(ctx, s.consentKey(tenantID)).Err(); err != nil {
		return unavailable("forget a tenant's consent policy", err)
	}
	return nil
}
