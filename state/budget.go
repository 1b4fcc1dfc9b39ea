package state

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.Budget = (*Budget)(nil)

// Budget is a per-tenant rate limit on Graph calls shared by every replica:
// a generic cell rate (GCRA) in Redis, one key per tenant holding when its
// next call is due, which lets a second's worth of calls through at once and
// books calls beyond that for later, in order.
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

// A tenant's schedule and its pause share a hash tag: Take reads both in
// one script.
func (b *Budget) key(tenantID string) string { return b.s.opts.Prefix + "budget:{" + tenantID + "}" }
func (b *Budget) pauseKey(tenantID string) string {
	return b.s.opts.Prefix + "budget-pause:{" + tenantID + "}"
}

// Take spends n calls of a tenant's budget now, or books them for the
// first moment they fit after every call booked before and says how long
// until then (booked true). While the tenant is paused it books nothing
// and says how long the pause lasts.
func (b *Budget) Take(ctx context.Context, tenantID string, n int) (time.Duration, bool, error) {
	interval := 1000.0 / float64(b.perSecond) // ms per call
	res, err := takeScript.Run(ctx, b.s.rdb, []string{b.key(tenantID), b.pauseKey(tenantID)},
		time.Now().UnixMilli(), int64(float64(n)*interval), 1000).Int64Slice()
	if err != nil || len(res) != 2 {
		return 0, false, unavailable("graph budget", err)
	}
	return time.Duration(res[0]) * time.Millisecond, res[1] == 1, nil
}

// takeScript: KEYS[1] holds when the tenant's next call is due (ms), KEYS[2]
// its pause; ARGV: now (ms), the calls' cost (ms), the burst (ms). Returns
// {wait ms, booked}.
var takeScript = redis.NewScript(`
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {paused, 0} end
local now, cost, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local due = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now) + cost
redis.call('SET', KEYS[1], due, 'PX', due - now + burst)
local wait = due - burst - now
if wait <= 0 then return {0, 0} end
return {wait, 1}`)

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
