package state

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.ReferenceClaimer = (*Conversations)(nil)

// ClaimAndSaveReference is Claim and SaveReference in one pipelined round
// trip, as every activity needs both: the claim and the reads that say
// whether the reference is new or changed, when it is written (a second
// trip). The reference is saved even when the activity turns out to be a
// redelivery: it is the same conversation's.
func (s *Conversations) ClaimAndSaveReference(ctx context.Context, key string, ref approval.ConversationRef) (bool, error) {
	ref = ref.TopLevel() // as SaveReference: a thread's is its channel's
	var claim *redis.BoolCmd
	var stored storedReads
	// Each command's error is looked at on its own (saveChangedReference):
	// the tenant's index may live on a Redis Cluster master that is down.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		claim = p.SetNX(ctx, s.activityKey(key), time.Now().UTC().Format(time.RFC3339), s.opts.ActivityTTL)
		stored = s.readStored(ctx, p, ref)
		return nil
	})
	if err := claim.Err(); err != nil {
		return false, unavailable("claim activity", err)
	}
	if err := s.saveChangedReference(ctx, ref, stored); err != nil {
		return false, err
	}
	return claim.Val(), nil
}
