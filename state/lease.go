package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
)

var (
	_ bot.Lease    = (*Watch)(nil)
	_ bot.WatchLog = (*Watch)(nil)
	_ bot.Leases   = (*Store)(nil)
)

// HoldLease takes or renews the lease name for holder: a singleton for
// background work across replicas.
func (s *Store) HoldLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	ok, err := holdLeaseScript.Run(ctx, s.rdb, []string{s.opts.Prefix + "lease:{" + name + "}"}, holder, ttl.Milliseconds()).Bool()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, unavailable("hold lease", err)
	}
	return ok, nil
}

var holdLeaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

// Watch is the catalog watcher's lease and memory.
type Watch struct{ s *Store }

// Watch returns the watcher's lease and memory on this store's Redis.
func (s *Store) Watch() *Watch { return &Watch{s: s} }

// The watcher's lease, its token counter and what it remembers share one
// hash tag, so fenced writes are one script on one slot. Only the lease
// holder touches them, a few times a minute.
func (s *Watch) leaseKey() string      { return s.s.opts.Prefix + "lease:{watcher}" }
func (s *Watch) leaseTokenKey() string { return s.s.opts.Prefix + "lease-token:{watcher}" }
func (s *Watch) watchKey() string      { return s.s.opts.Prefix + "watch:{watcher}" }

// Acquire takes the watcher lease for holder, or renews it if holder has
// it. A new holder gets the next fencing token.
func (s *Watch) Acquire(ctx context.Context, holder string, ttl time.Duration) (int64, bool, error) {
	token, err := acquireScript.Run(ctx, s.s.rdb, []string{s.leaseKey(), s.leaseTokenKey()}, holder, ttl.Milliseconds()).Int64()
	if err != nil {
		return 0, false, unavailable("acquire lease", err)
	}
	return token, token > 0, nil
}

// The lease's value is "token|holder".
var acquireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  local sep = string.find(v, '|', 1, true)
  if string.sub(v, sep + 1) ~= ARGV[1] then return 0 end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(string.sub(v, 1, sep - 1))
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. '|' .. ARGV[1], 'PX', ARGV[2])
return token`)

// Release gives the lease up if holder has it.
func (s *Watch) Release(ctx context.Context, holder string) error {
	if err := releaseScript.Run(ctx, s.s.rdb, []string{s.leaseKey()}, holder).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("release lease", err)
	}
	return nil
}

var releaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, string.find(v, '|', 1, true) + 1) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`)

// fencedSet sets a field of the watcher's memory only while token still
// holds the lease.
var fencedSet = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, string.find(v, '|', 1, true) - 1) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1`)

func (s *Watch) fenced(ctx context.Context, token int64, field, value string) error {
	ok, err := fencedSet.Run(ctx, s.s.rdb, []string{s.leaseKey(), s.watchKey()}, token, field, value).Int()
	if err != nil {
		return unavailable("save watcher state", err)
	}
	if ok != 1 {
		return fmt.Errorf("state: token %d: %w", token, bot.ErrLeaseLost)
	}
	return nil
}

// SeenCatalog returns the catalog versions the watcher last saw in a tenant.
func (s *Watch) SeenCatalog(ctx context.Context, tenantID string) (map[string]string, bool, error) {
	v, err := s.s.rdb.HGet(ctx, s.watchKey(), "catalog|"+tenantID).Result()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, unavailable("read seen catalog", err)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return nil, false, fmt.Errorf("state: decode seen catalog: %w", err)
	}
	return m, true, nil
}

// SaveCatalog records the versions seen, if token still holds the lease.
func (s *Watch) SaveCatalog(ctx context.Context, token int64, tenantID string, versions map[string]string) error {
	b, _ := json.Marshal(versions)
	return s.fenced(ctx, token, "catalog|"+tenantID, string(b))
}

// LastSweep is when every installation scope was last scanned (zero: never).
func (s *Watch) LastSweep(ctx context.Context) (time.Time, error) {
	v, err := s.s.rdb.HGet(ctx, s.watchKey(), "sweep").Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, unavailable("read last sweep", err)
	}
	ms, _ := strconv.ParseInt(v, 10, 64)
	return time.UnixMilli(ms), nil
}

// SaveSweep records a sweep, if token still holds the lease.
func (s *Watch) SaveSweep(ctx context.Context, token int64, at time.Time) error {
	return s.fenced(ctx, token, "sweep", strconv.FormatInt(at.UnixMilli(), 10))
}
