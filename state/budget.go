package state

import (
	"context"
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

func (b *Budget) key(tenantID string, second int64) string {
	return b.s.opts.Prefix + "budget:{" + tenantID + "}:" + strconv.FormatInt(second, 10)
}

// Take spends n calls of this second's budget, or says how long to wait for
// the next second.
func (b *Budget) Take(ctx context.Context, tenantID string, n int) (time.Duration, error) {
	now := time.Now()
	spent, err := takeScript.Run(ctx, b.s.rdb, []string{b.key(tenantID, now.Unix())}, n).Int()
	if err != nil {
		return 0, unavailable("graph budget", err)
	}
	if spent <= b.perSecond || n > b.perSecond && spent == n {
		return 0, nil
	}
	return time.Until(now.Truncate(time.Second).Add(time.Second)) + time.Millisecond, nil
}

var takeScript = redis.NewScript(`
local spent = redis.call('INCRBY', KEYS[1], ARGV[1])
if spent == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], 2000) end
return spent`)
