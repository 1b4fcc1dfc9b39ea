package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.CatalogReads = (*Watch)(nil)

// catalogReadKeep is how long a tenant's catalog read is kept: scans use
// it only while it is fresh (minutes); the key just must not outlive a
// tenant the bot left by much.
const catalogReadKeep = 24 * time.Hour

// catalogReadKey is one tenant's latest catalog read, under the tenant's
// hash tag: every scan of a sweep reads it, so it is not on the watcher's
// slot, and its write is fenced by the token it carries rather than by the
// lease (another slot).
func (s *Watch) catalogReadKey(tenantID string) string {
	return s.s.opts.Prefix + "catalog-read:{" + tenantID + "}"
}

// SaveCatalogRead keeps a tenant's catalog read unless one made under a
// newer token is kept: a watcher that lost its lease cannot replace its
// successor's read with an older one.
func (s *Watch) SaveCatalogRead(ctx context.Context, token int64, tenantID string, r bot.CatalogRead) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("state: encode catalog read: %w", err)
	}
	ok, err := saveCatalogReadScript.Run(ctx, s.s.rdb, []string{s.catalogReadKey(tenantID)}, token, b,
		catalogReadKeep.Milliseconds()).Int()
	if err != nil {
		return unavailable("save catalog read", err)
	}
	if ok != 1 {
		return fmt.Errorf("state: catalog read under token %d: %w", token, bot.ErrLeaseLost)
	}
	return nil
}

// The value is "token|json", so the script compares tokens without
// decoding JSON.
var saveCatalogReadScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and tonumber(string.sub(v, 1, string.find(v, '|', 1, true) - 1)) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1`)

// CatalogRead returns a tenant's latest catalog read.
func (s *Watch) CatalogRead(ctx context.Context, tenantID string) (bot.CatalogRead, bool, error) {
	v, err := s.s.rdb.Get(ctx, s.catalogReadKey(tenantID)).Result()
	if errors.Is(err, redis.Nil) {
		return bot.CatalogRead{}, false, nil
	}
	if err != nil {
		return bot.CatalogRead{}, false, unavailable("read catalog read", err)
	}
	_, body, ok := strings.Cut(v, "|")
	var r bot.CatalogRead
	if !ok || json.Unmarshal([]byte(body), &r) != nil {
		return bot.CatalogRead{}, false, fmt.Errorf("state: decode catalog read of tenant %s", tenantID)
	}
	return r, true, nil
}
