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
	// followUps of perSecond are reserved for TakeFollowUp: Take books
	// the rest.
	followUps int
}

// Budget returns a limit of perSecond Graph calls per tenant. Teams allows
// about 30 reads a second per app and tenant, and 4 per chat or team;
// background scans should leave room for people's own commands.
func (s *Store) Budget(perSecond int) *Budget {
	return s.BudgetWithFollowUps(perSecond, 0)
}

// BudgetWithFollowUps is Budget with followUps calls a second of the
// perSecond reserved for follow-ups (TakeFollowUp): Take books only the
// rest, so a follow-up never waits behind a sweep's bookings, and the two
// together stay within perSecond.
func (s *Store) BudgetWithFollowUps(perSecond, followUps int) *Budget {
	perSecond = max(perSecond, 1)
	return &Budget{s: s, perSecond: perSecond, followUps: min(max(followUps, 0), perSecond-1)}
}

// A tenant's schedule and its pause share a hash tag: Take reads both in
// one script.
func (b *Budget) key(tenantID string) string { return b.s.opts.Prefix + "budget:{" + tenantID + "}" }
func (b *Budget) pauseKey(tenantID string) string {
	return b.s.opts.Prefix + "budget-pause:{" + tenantID + "}"
}
func (b *Budget) followUpKey(tenantID string) string {
	return b.s.opts.Prefix + "budget-followup:{" + tenantID + "}"
}

// cost is what n calls take of a schedule of perSecond calls, in ms.
func cost(n, perSecond int) int64 { return int64(float64(n) * 1000.0 / float64(perSecond)) }

// Take spends n calls of a tenant's budget now, or books them for the
// first moment they fit after every call booked before and says how long
// until then (booked true). While the tenant is paused it books nothing
// and says how long the pause lasts.
func (b *Budget) Take(ctx context.Context, tenantID string, n int) (time.Duration, bool, error) {
	res, err := takeScript.Run(ctx, b.s.rdb, []string{b.key(tenantID), b.pauseKey(tenantID)},
		time.Now().UnixMilli(), cost(n, b.perSecond-b.followUps), 1000).Int64Slice()
	if err != nil || len(res) != 2 {
		return 0, false, unavailable("graph budget", err)
	}
	return time.Duration(res[0]) * time.Millisecond, res[1] == 1, nil
}

// TakeFollowUp spends n calls now from what Take has not booked, when they
// fit; otherwise it books them from the share reserved for follow-ups,
// after the follow-ups booked before only. Without a reserved share it is
// Take.
func (b *Budget) TakeFollowUp(ctx context.Context, tenantID string, n int) (time.Duration, bool, error) {
	if b.followUps == 0 {
		return b.Take(ctx, tenantID, n)
	}
	res, err := takeFollowUpScript.Run(ctx, b.s.rdb, []string{b.key(tenantID), b.pauseKey(tenantID), b.followUpKey(tenantID)},
		time.Now().UnixMilli(), cost(n, b.perSecond-b.followUps), cost(n, b.followUps), 1000).Int64Slice()
	if err != nil || len(res) != 2 {
		return 0, false, unavailable("graph budget", err)
	}
	return time.Duration(res[0]) * time.Millisecond, res[1] == 1, nil
}

// takeFollowUpScript: KEYS as takeScript's, and KEYS[3] when the reserved
// share's next call is due; ARGV: now, the calls' cost on the shared
// schedule and on the reserved one (ms), the burst (ms). Returns {wait ms,
// booked}.
var takeFollowUpScript = redis.NewScript(`
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {paused, 0} end
local now, burst = tonumber(ARGV[1]), tonumber(ARGV[4])
local due = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now) + tonumber(ARGV[2])
if due - burst - now <= 0 then
  redis.call('SET', KEYS[1], due, 'PX', due - now + burst)
  return {0, 0}
end
due = math.max(tonumber(redis.call('GET', KEYS[3]) or 0), now) + tonumber(ARGV[3])
redis.call('SET', KEYS[3], due, 'PX', due - now + burst)
local wait = due - burst - now
if wait <= 0 then return {0, 0} end
return {wait, 1}`)

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

// Spend counts n calls a person's command or click made (or is about to
// make) as the tenant's, now: they never wait, even while the tenant is
// paused (a person is waiting for the answer), but the calls Take books
// after them wait their turn. So background work yields to people instead
// of the two together exceeding Graph's limits.
func (b *Budget) Spend(ctx context.Context, tenantID string, n int) error {
	err := spendScript.Run(ctx, b.s.rdb, []string{b.key(tenantID)},
		time.Now().UnixMilli(), cost(n, b.perSecond-b.followUps), 1000, maxSpentAhead.Milliseconds()).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("graph budget", err)
	}
	return nil
}

// maxSpentAhead bounds how far people's calls can push a tenant's schedule:
// someone clicking without end costs background work at most a minute.
const maxSpentAhead = time.Minute

// spendScript: KEYS[1] as takeScript's; ARGV: now (ms), the calls' cost
// (ms), the burst (ms), maxSpentAhead (ms). The schedule moves on by the
// cost, as Take's does, at most to maxSpentAhead from now; nothing waits.
var spendScript = redis.NewScript(`
local now, cost, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local due = math.min(math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now) + cost, now + tonumber(ARGV[4]))
redis.call('SET', KEYS[1], due, 'PX', due - now + burst)
return 1`)

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
