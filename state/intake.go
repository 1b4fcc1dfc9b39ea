package state

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.ReferenceClaimer = (*Store)(nil)

// ClaimAndSaveReference is Claim and SaveReference in one pipelined round
// trip, as every activity needs both. The reference is saved even when the
// activity turns out to be a redelivery: it is the same conversation's.
func (s *Store) ClaimAndSaveReference(ctx context.Context, key string, ref bot.ConversationRef) (bool, error) {
	b, err := json.Marshal(referenceRecord{V: referenceVersion, ConversationRef: ref})
	if err != nil {
		return false, fmt.Errorf("state: encode reference: %w", err)
	}
	var claim *redis.BoolCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		claim = p.SetNX(ctx, s.activityKey(key), time.Now().UTC().Format(time.RFC3339), s.opts.ActivityTTL)
		p.Set(ctx, s.referenceKey(ref.ConversationID), b, s.opts.ReferenceTTL)
		return nil
	})
	if err != nil {
		return false, unavailable("claim activity and save reference", err)
	}
	return claim.Val(), nil
}
