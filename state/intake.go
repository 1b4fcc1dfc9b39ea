package state

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.ReferenceClaimer = (*Store)(nil)

// ClaimAndSaveReference is Claim and SaveReference in one pipelined round
// trip, as every activity needs both: the claim and a read of the stored
// reference, which is written (a second trip) only when new or changed.
// The reference is saved even when the activity turns out to be a
// redelivery: it is the same conversation's.
func (s *Store) ClaimAndSaveReference(ctx context.Context, key string, ref bot.ConversationRef) (bool, error) {
	var claim *redis.BoolCmd
	var stored *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		claim = p.SetNX(ctx, s.activityKey(key), time.Now().UTC().Format(time.RFC3339), s.opts.ActivityTTL)
		stored = p.Get(ctx, s.referenceKey(ref.ConversationID))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, unavailable("claim activity and save reference", err)
	}
	if err := claim.Err(); err != nil {
		return false, unavailable("claim activity", err)
	}
	old, rerr := stored.Bytes()
	if err := s.saveChangedReference(ctx, ref, old, rerr); err != nil {
		return false, err
	}
	return claim.Val(), nil
}
