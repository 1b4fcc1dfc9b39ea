package state

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
)

var (
	_ bot.ConversationStore = (*Conversations)(nil)
	_ bot.ActivityLog       = (*Conversations)(nil)
	_ bot.ReferenceIndex    = (*Conversations)(nil)
)

// Conversations keeps what the bot knows of the conversations it is in:
// their references and the index of installation scopes they make up per
// tenant, the activities already handled in them, and the service URLs
// the Bot Framework vouched for.
type Conversations struct{ *conn }

func (s *Conversations) activityKey(key string) string {
	return s.opts.Prefix + "activity:{" + key + "}"
}

// Claim reports whether the activity key is seen for the first time, and
// claims it for ActivityTTL. SET NX makes it atomic across replicas.
func (s *Conversations) Claim(ctx context.Context, key string) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.activityKey(key), time.Now().UTC().Format(time.RFC3339), s.opts.ActivityTTL).Result()
	if err != nil {
		return false, unavailable("claim activity", err)
	}
	return ok, nil
}

// Release forgets a claim, so the channel's redelivery of a failed activity
// is handled again.
func (s *Conversations) Release(ctx context.Context, key string) error {
	if err := s.rdb.Del(ctx, s.activityKey(key)).Err(); err != nil {
		return unavailable("release activity", err)
	}
	return nil
}

func (s *Conversations) serviceURLKey(conversationID string) string {
	return s.opts.Prefix + "svc:{" + conversationID + "}"
}

// TrustServiceURL records the service URL that arrived on an authenticated
// activity of the conversation, for ReferenceTTL. One key per conversation:
// no single key sits on every request's path.
func (s *Conversations) TrustServiceURL(ctx context.Context, conversationID, serviceURL string) error {
	if err := s.rdb.Set(ctx, s.serviceURLKey(conversationID), serviceURL, s.opts.ReferenceTTL).Err(); err != nil {
		return unavailable("trust service url", err)
	}
	return nil
}

// IsTrustedServiceURL reports whether serviceURL arrived on an authenticated
// activity of the conversation, so the bot's token is never sent anywhere
// else.
func (s *Conversations) IsTrustedServiceURL(ctx context.Context, conversationID, serviceURL string) (bool, error) {
	got, err := s.rdb.Get(ctx, s.serviceURLKey(conversationID)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, unavailable("check service url", err)
	}
	return got == serviceURL, nil
}
