package state

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.CheckWindows = (*Store)(nil)

// checkKey holds when the conversation's last check began reading Graph,
// for as long as its answer stands; its own hash tag, so conversations
// spread over a Redis Cluster.
func (s *Store) checkKey(conversationID string) string {
	return s.opts.Prefix + "check:{" + conversationID + "}"
}

// ClaimCheck claims a conversation's check window with SET NX: of checks
// racing on several replicas one reads Graph. A window held is read back to
// say when it began.
func (s *Store) ClaimCheck(ctx context.Context, conversationID string, at time.Time, window time.Duration) (bool, time.Time, error) {
	key := s.checkKey(conversationID)
	ok, err := s.rdb.SetNX(ctx, key, at.UTC().Format(time.RFC3339Nano), window).Result()
	if err != nil {
		return false, time.Time{}, unavailable("claim a check", err)
	}
	if ok {
		return true, at, nil
	}
	v, err := s.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return s.ClaimCheck(ctx, conversationID, at, window) // it ran out in between
	}
	if err != nil {
		return false, time.Time{}, unavailable("read a check", err)
	}
	since, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		since = at // unreadable: the window began just now, as far as anyone can say
	}
	return false, since, nil
}

// ReleaseCheck deletes the window if it is still the one claimed at at.
func (s *Store) ReleaseCheck(ctx context.Context, conversationID string, at time.Time) error {
	err := unhomeScript.Run(ctx, s.rdb, []string{s.checkKey(conversationID)}, at.UTC().Format(time.RFC3339Nano)).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("release a check", err)
	}
	return nil
}
