package state

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.ProactiveStore = (*Proactive)(nil)

// Proactive keeps what the bot needs to act unprompted: the approvals whose
// cards it follows and when each conversation is next due, the log of
// unprompted posts and reminders, and each conversation's quiet mode. Where
// the bot is (Tenants, Conversations, Forget) it reads from the
// conversations' index.
type Proactive struct {
	*conn
	index *Conversations
}

// Forget removes a conversation the bot was removed from, and its
// installation scope (Conversations.Forget).
func (s *Proactive) Forget(ctx context.Context, ref approval.ConversationRef) error {
	return s.index.Forget(ctx, ref)
}

// Tenants lists the tenants the bot is in (Conversations.Tenants).
func (s *Proactive) Tenants(ctx context.Context) ([]string, error) { return s.index.Tenants(ctx) }

// Conversations calls fn for each installation scope of a tenant, as
// Conversations.Conversations does.
func (s *Proactive) Conversations(ctx context.Context, tenantID string, fn func(conversationID string) error) error {
	return s.index.Conversations(ctx, tenantID, fn)
}

// Keys of the proactive side. Each operation touches one key, hash-tagged by
// the conversation, tenant or installation it is about.
func (s *Proactive) followKey(conversationID string) string {
	return s.opts.Prefix + "follow:{" + conversationID + "}"
}
func (s *Proactive) dueKey(tenantID string) string { return s.opts.Prefix + "due:{" + tenantID + "}" }
func (s *Proactive) postedKey(tenantID, installationID, targetID string) string {
	return s.opts.Prefix + "posted:{" + tenantID + "|" + installationID + "}|" + targetID
}
func (s *Proactive) remindedKey(approvalID string) string {
	return s.opts.Prefix + "reminded:{" + approvalID + "}"
}
func (s *Proactive) quietKey(conversationID string) string {
	return s.opts.Prefix + "quiet:{" + conversationID + "}"
}

// Follow records that an open approval's card is to be kept true, and when
// its conversation is next due for a look (a reminder or its expiry).
func (s *Proactive) Follow(ctx context.Context, a approval.Approval, due time.Time) error {
	conv := a.Conversation.ConversationID
	if err := s.rdb.SAdd(ctx, s.followKey(conv), a.ID).Err(); err != nil {
		return unavailable("follow approval", err)
	}
	s.rdb.Expire(ctx, s.followKey(conv), s.opts.ApprovalRetention+time.Until(a.ExpiresAt))
	return s.Due(ctx, a.Conversation.TenantID, conv, due, true)
}

// Unfollow stops following an approval.
func (s *Proactive) Unfollow(ctx context.Context, conversationID, approvalID string) error {
	if err := s.rdb.SRem(ctx, s.followKey(conversationID), approvalID).Err(); err != nil {
		return unavailable("unfollow approval", err)
	}
	return nil
}

// Followed lists the approvals followed in a conversation.
func (s *Proactive) Followed(ctx context.Context, conversationID string) ([]string, error) {
	ids, err := s.rdb.SMembers(ctx, s.followKey(conversationID)).Result()
	if err != nil {
		return nil, unavailable("list followed approvals", err)
	}
	return ids, nil
}

// Due sets when a conversation next needs a look; earlier keeps an earlier
// time already set. A zero time removes it.
func (s *Proactive) Due(ctx context.Context, tenantID, conversationID string, at time.Time, earlier bool) error {
	key := s.dueKey(tenantID)
	var err error
	switch {
	case at.IsZero():
		err = s.rdb.ZRem(ctx, key, conversationID).Err()
	case earlier:
		err = s.rdb.ZAddLT(ctx, key, redis.Z{Score: float64(at.UnixMilli()), Member: conversationID}).Err()
	default:
		err = s.rdb.ZAdd(ctx, key, redis.Z{Score: float64(at.UnixMilli()), Member: conversationID}).Err()
	}
	if err != nil {
		return unavailable("schedule follow-up", err)
	}
	return nil
}

// DueConversations returns up to n conversations of a tenant due by now and
// pushes each back by retry, so a follow-up that is never done is tried
// again rather than lost, and a due one is not handed out on every tick.
func (s *Proactive) DueConversations(ctx context.Context, tenantID string, now time.Time, retry time.Duration, n int) ([]string, error) {
	ids, err := dueScript.Run(ctx, s.rdb, []string{s.dueKey(tenantID)},
		now.UnixMilli(), now.Add(retry).UnixMilli(), n).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("read due follow-ups", err)
	}
	return ids, nil
}

var dueScript = redis.NewScript(`
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids`)

// ClaimPost claims the right to post the card for one installation and
// target version. It is granted once, ever, unless a claim is abandoned:
// one older than stale that was never marked posted (its replica died
// mid-post) may be taken over.
func (s *Proactive) ClaimPost(ctx context.Context, tenantID, installationID, targetID string, stale time.Duration) (granted, held bool, err error) {
	now := time.Now()
	n, err := claimPostScript.Run(ctx, s.rdb, []string{s.postedKey(tenantID, installationID, targetID)},
		now.UnixMilli(), stale.Milliseconds(), postedRetention.Milliseconds()).Int()
	if err != nil {
		return false, false, unavailable("claim proactive post", err)
	}
	return n == 1, n == 2, nil
}

// postedRetention is how long "posted" is remembered: far longer than any
// catalog version stays current.
const postedRetention = 400 * 24 * time.Hour

var claimPostScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, 2) ~= 'c:' then return 0 end
  if tonumber(ARGV[1]) - tonumber(string.sub(v, 3)) < tonumber(ARGV[2]) then return 2 end
end
redis.call('SET', KEYS[1], 'c:' .. ARGV[1], 'PX', ARGV[3])
return 1`)

// PostDone marks the card for an installation and target as posted (or as
// not to be posted: an approval was already open for it).
func (s *Proactive) PostDone(ctx context.Context, tenantID, installationID, targetID, approvalID string) error {
	if err := s.rdb.Set(ctx, s.postedKey(tenantID, installationID, targetID), "p:"+approvalID, postedRetention).Err(); err != nil {
		return unavailable("mark proactive post", err)
	}
	return nil
}

// ReleasePost gives up a claim whose post failed, so a retry may post.
func (s *Proactive) ReleasePost(ctx context.Context, tenantID, installationID, targetID string) error {
	if err := releasePostScript.Run(ctx, s.rdb, []string{s.postedKey(tenantID, installationID, targetID)}).Err(); err != nil &&
		!errors.Is(err, redis.Nil) {
		return unavailable("release proactive post", err)
	}
	return nil
}

var releasePostScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 2) == 'c:' then redis.call('DEL', KEYS[1]) end
return 0`)

// ClaimReminder reports whether the approval's one reminder is still to be
// sent, and claims it.
func (s *Proactive) ClaimReminder(ctx context.Context, approvalID string, keep time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.remindedKey(approvalID), strconv.FormatInt(time.Now().Unix(), 10), keep).Result()
	if err != nil {
		return false, unavailable("claim reminder", err)
	}
	return ok, nil
}

// ReleaseReminder gives up a reminder claim whose post failed.
func (s *Proactive) ReleaseReminder(ctx context.Context, approvalID string) error {
	if err := s.rdb.Del(ctx, s.remindedKey(approvalID)).Err(); err != nil {
		return unavailable("release reminder", err)
	}
	return nil
}

// SetNotifications turns unprompted posts in a conversation on or off.
func (s *Proactive) SetNotifications(ctx context.Context, conversationID string, on bool) error {
	var err error
	if on {
		err = s.rdb.Del(ctx, s.quietKey(conversationID)).Err()
	} else {
		err = s.rdb.Set(ctx, s.quietKey(conversationID), "off", 0).Err()
	}
	if err != nil {
		return unavailable("set notifications", err)
	}
	return nil
}

// NotificationsOn reports whether unprompted posts are on in a conversation
// (the default).
func (s *Proactive) NotificationsOn(ctx context.Context, conversationID string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.quietKey(conversationID)).Result()
	if err != nil {
		return false, unavailable("read notifications", err)
	}
	return n == 0, nil
}
