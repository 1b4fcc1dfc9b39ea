package state

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.Budget = (*Budget)(nil)

// Budget is a per-tenant rate limit on Graph calls shared by every replica:
// a fixed one-second window per tenant in Redis.
type Budget struct {
	s *Store
	// perSecond is the tenant's calls per second.
	perSecond int
}

// Budget returns a limit of perSecond Graph calls per tenant. Teams allows
// about 30 reads a second per app and tenant, and 4 per chat or team;
// background scans should leave room for people's own commands.
func (s *Store) Budget(perSecond int) *Budget {
	return &Budget{s: s, perSecond: max(perSecond, 1)}
}

// A tenant's second windows and its pause share a hash tag: Take reads
// both in one script.
func (b *Budget) key(tenantID string, second int64) string {
	return b.s.opts.Prefix + "budget:{" + tenantID + "}:" + strconv.FormatInt(second, 10)
}
func (b *Budget) pauseKey(tenantID string) string {
	return b.s.opts.Prefix + "budget-pause:{" + tenantID + "}"
}

// Take spends n calls of this second's budget, or says how long to wait:
// for the next second, or for a pause to end.
func (b *Budget) Take(ctx context.Context, tenantID string, n int) (time.Duration, error) {
	now := time.Now()
	spent, err := takeScript.Run(ctx, b.s.rdb, []string{b.key(tenantID, now.Unix()), b.pauseKey(tenantID)}, n).Int64()
	if err != nil {
		return 0, unavailable("graph budget", err)
	}
	if spent < 0 { // paused: -spent milliseconds left
		return time.Duration(-spent) * time.Millisecond, nil
	}
	if spent <= int64(b.perSecond) || n > b.perSecond && spent == int64(n) {
		return 0, nil
	}
	return time.Until(now.Truncate(time.Second).Add(time.Second)) + time.Millisecond, nil
}

var takeScript = redis.NewScript(`
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return -paused end
local spent = redis.call('INCRBY', KEYS[1], ARGV[1])
if spent == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], 2000) end
return spent`)

// Pause spends none of a tenant's budget until until, for every replica
// (Graph throttled the tenant and said when to come back). An earlier end
// than a pause already set does not shorten it.
func (b *Budget) Pause(ctx context.Context, tenantID string, until time.Time) error {
	ms := time.Until(until).Milliseconds()
	if ms <= 0 {
		return nil
	}
	if err := pauseScript.Run(ctx, b.s.rdb, []string{b.pauseKey(tenantID)}, ms).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("pause graph budget", err)
	}
	return nil
}

var pauseScript = redis.NewScript(`
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1`)
