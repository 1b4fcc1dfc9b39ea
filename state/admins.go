package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.AdminStore = (*Admins)(nil)

// Admins keeps what the admins' conversation shows, per tenant: the
// requests waiting for an admin by app version and the card showing each,
// the inventory of installations behind the catalog, and when the last
// digest went out. Every key of a tenant shares its hash tag, so the
// inventory is read in one round trip, on a Redis Cluster too. Each key is
// kept Options.ReferenceTTL after it was last written, as a conversation
// reference is: a tenant that stopped using the bot leaves nothing behind.
type Admins struct{ *conn }

// Admins returns what the admins' conversation needs kept: bot.AdminStore.
func (s *Store) Admins() *Admins { return &Admins{conn: s.conn} }

func (s *Admins) tag(tenantID string) string { return "{" + strings.ToLower(tenantID) + "}" }
func (s *Admins) needsAdminKey(tenantID string, v bot.AppVersion) string {
	return s.opts.Prefix + "needsadmin:" + s.tag(tenantID) + ":" + v.TeamsAppID + "|" + v.Version
}
func (s *Admins) versionsKey(tenantID string) string {
	return s.opts.Prefix + "needsadmin-versions:" + s.tag(tenantID)
}
func (s *Admins) cardKey(tenantID string, v bot.AppVersion) string {
	return s.opts.Prefix + "admincard:" + s.tag(tenantID) + ":" + v.TeamsAppID + "|" + v.Version
}
func (s *Admins) inventoryKey(tenantID string) string {
	return s.opts.Prefix + "inventory:" + s.tag(tenantID)
}
func (s *Admins) requestsKey(tenantID string) string {
	return s.opts.Prefix + "inventory-requests:" + s.tag(tenantID)
}
func (s *Admins) asksKey(tenantID string) string {
	return s.opts.Prefix + "admin-asks:" + s.tag(tenantID)
}
func (s *Admins) digestKey(tenantID string) string {
	return s.opts.Prefix + "digest:" + s.tag(tenantID)
}

func versionMember(v bot.AppVersion) string { return v.TeamsAppID + "|" + v.Version }

// SetNeedsAdmin records or drops a request waiting for an admin under its
// app version.
func (s *Admins) SetNeedsAdmin(ctx context.Context, tenantID string, v bot.AppVersion, e bot.NeedsAdminEntry, add bool) (bool, error) {
	key := s.needsAdminKey(tenantID, v)
	if !add {
		n, err := s.rdb.HDel(ctx, key, e.ApprovalID).Result()
		if err != nil {
			return false, unavailable("drop a request needing an admin", err)
		}
		return n > 0, nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("state: encode needs-admin entry: %w", err)
	}
	var added *redis.IntCmd
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		added = p.HSet(ctx, key, e.ApprovalID, b)
		p.SAdd(ctx, s.versionsKey(tenantID), versionMember(v))
		return nil
	})
	if err != nil {
		return false, unavailable("record a request needing an admin", err)
	}
	return added.Val() > 0, nil
}

// NeedsAdmin lists the requests waiting for an admin under v.
func (s *Admins) NeedsAdmin(ctx context.Context, tenantID string, v bot.AppVersion) ([]bot.NeedsAdminEntry, error) {
	vals, err := s.rdb.HVals(ctx, s.needsAdminKey(tenantID, v)).Result()
	if err != nil {
		return nil, unavailable("read requests needing an admin", err)
	}
	return decodeEach[bot.NeedsAdminEntry](vals, "needs-admin entry")
}

// AdminVersions lists the app versions with requests waiting for an admin,
// or whose card still shows some.
func (s *Admins) AdminVersions(ctx context.Context, tenantID string) ([]bot.AppVersion, error) {
	ms, err := s.rdb.SMembers(ctx, s.versionsKey(tenantID)).Result()
	if err != nil {
		return nil, unavailable("read app versions needing an admin", err)
	}
	out := make([]bot.AppVersion, 0, len(ms))
	for _, m := range ms {
		app, ver, _ := strings.Cut(m, "|")
		out = append(out, bot.AppVersion{TeamsAppID: app, Version: ver})
	}
	return out, nil
}

// An admins' card key holds one of: "claim:<ms>:<token>", a replica
// posting the card since <ms>; "<rev>|<card JSON>", the card as drawn
// <rev> times; or, as an earlier release wrote them, "claim:<ms>" and the
// bare JSON (revision 0). adminCardLua reads them.
const adminCardLua = `
local function rev(cur)
  if not cur or string.sub(cur, 1, 6) == 'claim:' then
    return nil
  end
  local bar = string.find(cur, '|', 1, true)
  if string.sub(cur, 1, 1) == '{' or not bar then
    return 0
  end
  return tonumber(string.sub(cur, 1, bar - 1))
end
-- done: with nothing waiting under the version (KEYS[3]), take it off the
-- versions set KEYS[2]; a request added meanwhile keeps it there.
local function done(member)
  if redis.call('HLEN', KEYS[3]) == 0 then
    redis.call('SREM', KEYS[2], member)
  end
end
`

// claimAdminCardScript returns {0, stored} when the card is posted, {1,
// claim} when it grants the claim (none, or one older than ARGV[2] ms at
// ARGV[1]), {0, ""} when someone else's claim is in progress. A claim is
// kept ARGV[4] ms, as the card is.
var claimAdminCardScript = redis.NewScript(adminCardLua + `
local cur = redis.call('GET', KEYS[1])
if cur then
  if rev(cur) then
    return {0, cur}
  end
  local since = tonumber(string.match(cur, '^claim:(%d+)'))
  if since and tonumber(ARGV[1]) - since < tonumber(ARGV[2]) then
    return {0, ''}
  end
end
local claim = 'claim:' .. ARGV[1] .. ':' .. ARGV[3]
redis.call('SET', KEYS[1], claim, 'PX', ARGV[4])
return {1, claim}
`)

// ClaimAdminCard returns the card posted for v, or grants posting it once.
func (s *Admins) ClaimAdminCard(ctx context.Context, tenantID string, v bot.AppVersion, stale time.Duration) (bot.AdminCard, bool, error) {
	res, err := claimAdminCardScript.Run(ctx, s.rdb, []string{s.cardKey(tenantID, v)},
		time.Now().UnixMilli(), stale.Milliseconds(), approval.NewToken(), s.opts.ReferenceTTL.Milliseconds()).Slice()
	if err != nil {
		return bot.AdminCard{}, false, unavailable("claim the admins' card", err)
	}
	granted, _ := res[0].(int64)
	raw, _ := res[1].(string)
	if granted == 1 {
		return bot.AdminCard{Claim: raw}, true, nil
	}
	if raw == "" {
		return bot.AdminCard{}, false, nil
	}
	var card bot.AdminCard
	js := raw
	if r, rest, ok := strings.Cut(raw, "|"); ok && !strings.HasPrefix(raw, "{") {
		n, err := strconv.ParseInt(r, 10, 64)
		if err != nil {
			return card, false, fmt.Errorf("state: decode the admins' card revision: %w", err)
		}
		card.Rev, js = n, rest
	}
	if err := json.Unmarshal([]byte(js), &card); err != nil {
		return card, false, fmt.Errorf("state: decode the admins' card: %w", err)
	}
	return card, false, nil
}

// saveAdminCardScript writes the card JSON ARGV[3] at KEYS[1], at the next
// revision, if KEYS[1] still holds the claim ARGV[1] (ARGV[1] not ""), or
// the card at revision ARGV[2]; ARGV[2] "-1" writes over whatever card is
// there (not over a claim) and lists the version ARGV[5] again, so the
// admins' sync redraws it. With ARGV[4] "1" it is done (see done) with
// ARGV[5]. The card is kept ARGV[6] ms. It returns 1 when written.
var saveAdminCardScript = redis.NewScript(adminCardLua + `
local cur = redis.call('GET', KEYS[1])
local r = rev(cur) or 0
if ARGV[2] == '-1' then
  if not rev(cur) then
    return 0
  end
  redis.call('SADD', KEYS[2], ARGV[5])
elseif ARGV[1] ~= '' then
  if cur ~= ARGV[1] then
    return 0
  end
elseif rev(cur) ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], (r + 1) .. '|' .. ARGV[3], 'PX', ARGV[6])
if ARGV[4] == '1' then
  done(ARGV[5])
end
return 1
`)

// SaveAdminCard records the admins' card of v as drawn, if the card stored
// is still the one card.Claim or card.Rev names.
func (s *Admins) SaveAdminCard(ctx context.Context, tenantID string, v bot.AppVersion, card bot.AdminCard, done bool) (bool, error) {
	b, err := json.Marshal(card)
	if err != nil {
		return false, fmt.Errorf("state: encode the admins' card: %w", err)
	}
	saved, err := saveAdminCardScript.Run(ctx, s.rdb, s.adminCardKeys(tenantID, v),
		card.Claim, card.Rev, b, flag(done), versionMember(v), s.opts.ReferenceTTL.Milliseconds()).Int()
	if err != nil {
		return false, unavailable("record the admins' card", err)
	}
	return saved == 1, nil
}

// releaseAdminCardScript deletes KEYS[1] if it still holds the claim
// ARGV[1]; with ARGV[2] "1" it is done (see done) with ARGV[3].
var releaseAdminCardScript = redis.NewScript(adminCardLua + `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if ARGV[2] == '1' then
  done(ARGV[3])
end
return 1
`)

// ReleaseAdminCard gives back a claim that posted nothing, if it is still
// the one held.
func (s *Admins) ReleaseAdminCard(ctx context.Context, tenantID string, v bot.AppVersion, claim string, done bool) error {
	if err := releaseAdminCardScript.Run(ctx, s.rdb, s.adminCardKeys(tenantID, v), claim, flag(done), versionMember(v)).Err(); err != nil {
		return unavailable("release the admins' card", err)
	}
	return nil
}

// adminCardKeys are the keys the card scripts touch, on one slot: the
// card, the versions set and the version's requests waiting.
func (s *Admins) adminCardKeys(tenantID string, v bot.AppVersion) []string {
	return []string{s.cardKey(tenantID, v), s.versionsKey(tenantID), s.needsAdminKey(tenantID, v)}
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// SaveScope replaces what is kept of one scope's installations behind the
// catalog; none forgets the scope.
func (s *Admins) SaveScope(ctx context.Context, tenantID string, sc bot.InventoryScope) error {
	key, field := s.inventoryKey(tenantID), string(sc.Kind)+":"+sc.ID
	var b []byte
	if len(sc.Items) > 0 {
		var err error
		if b, err = json.Marshal(sc); err != nil {
			return fmt.Errorf("state: encode inventory scope: %w", err)
		}
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if b == nil {
			p.HDel(ctx, key, field)
		} else {
			p.HSet(ctx, key, field, b)
		}
		p.PExpire(ctx, key, s.opts.ReferenceTTL)
		return nil
	})
	if err != nil {
		return unavailable("record inventory scope", err)
	}
	return nil
}

// NoteRequest records how an installation's request stands.
func (s *Admins) NoteRequest(ctx context.Context, tenantID string, r bot.RequestNote) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("state: encode request note: %w", err)
	}
	key := s.requestsKey(tenantID)
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, r.InstallationID, b)
		p.PExpire(ctx, key, s.opts.ReferenceTTL)
		return nil
	}); err != nil {
		return unavailable("record request note", err)
	}
	return nil
}

// Inventory reads a tenant's inventory in one round trip.
func (s *Admins) Inventory(ctx context.Context, tenantID string) (bot.InventoryData, error) {
	var scopes, reqs *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		scopes = p.HGetAll(ctx, s.inventoryKey(tenantID))
		reqs = p.HGetAll(ctx, s.requestsKey(tenantID))
		return nil
	})
	if err != nil {
		return bot.InventoryData{}, unavailable("read inventory", err)
	}
	d := bot.InventoryData{Requests: make(map[string]bot.RequestNote, len(reqs.Val()))}
	if d.Scopes, err = decodeEach[bot.InventoryScope](slices.Collect(maps.Values(scopes.Val())), "inventory scope"); err != nil {
		return d, err
	}
	for inst, raw := range reqs.Val() {
		var r bot.RequestNote
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return d, fmt.Errorf("state: decode request note: %w", err)
		}
		d.Requests[inst] = r
	}
	return d, nil
}

// LastDigest is when the last digest went out.
func (s *Admins) LastDigest(ctx context.Context, tenantID string) (time.Time, error) {
	v, err := s.rdb.Get(ctx, s.digestKey(tenantID)).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, unavailable("read last digest", err)
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("state: decode last digest: %w", err)
	}
	return time.UnixMilli(ms).UTC(), nil
}

var claimDigestScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1]) or '0'
if cur ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`)

// ClaimDigest moves the last digest from prev to at if it still is prev.
func (s *Admins) ClaimDigest(ctx context.Context, tenantID string, prev, at time.Time) (bool, error) {
	p := int64(0)
	if !prev.IsZero() {
		p = prev.UnixMilli()
	}
	n, err := claimDigestScript.Run(ctx, s.rdb, []string{s.digestKey(tenantID)}, strconv.FormatInt(p, 10),
		strconv.FormatInt(at.UnixMilli(), 10)).Int()
	if err != nil {
		return false, unavailable("claim the digest", err)
	}
	return n == 1, nil
}

// NoteAsk lists an ask of an admin not yet posted: a member of the
// tenant's sorted set, "<approval id>|<asker>", scored by when it was
// noted.
func (s *Admins) NoteAsk(ctx context.Context, tenantID, approvalID, asker string, at time.Time) error {
	err := s.rdb.ZAdd(ctx, s.asksKey(tenantID), redis.Z{Score: float64(at.UnixMilli()), Member: approvalID + "|" + asker}).Err()
	if err != nil {
		return unavailable("note an ask of an admin", err)
	}
	return nil
}

// Asks lists the asks of an admin noted, oldest first.
func (s *Admins) Asks(ctx context.Context, tenantID string) ([]bot.NotedAsk, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, s.asksKey(tenantID), 0, -1).Result()
	if err != nil {
		return nil, unavailable("read the asks of an admin", err)
	}
	out := make([]bot.NotedAsk, 0, len(zs))
	for _, z := range zs {
		m, _ := z.Member.(string)
		id, asker, ok := strings.Cut(m, "|")
		if !ok {
			continue
		}
		out = append(out, bot.NotedAsk{ApprovalID: id, Asker: asker, At: time.UnixMilli(int64(z.Score)).UTC()})
	}
	return out, nil
}

// dropAskScript removes the member ARGV[1] of KEYS[1] if its score is
// ARGV[2], or whatever it is when ARGV[2] is "".
var dropAskScript = redis.NewScript(`
if ARGV[2] == '' or redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
`)

// DropAsk takes an ask off the list if it was noted at notedAt (zero:
// whenever).
func (s *Admins) DropAsk(ctx context.Context, tenantID, approvalID, asker string, notedAt time.Time) error {
	at := ""
	if !notedAt.IsZero() {
		at = strconv.FormatInt(notedAt.UnixMilli(), 10)
	}
	if err := dropAskScript.Run(ctx, s.rdb, []string{s.asksKey(tenantID)}, approvalID+"|"+asker, at).Err(); err != nil {
		return unavailable("drop an ask of an admin", err)
	}
	return nil
}
