package state

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

var (
	_ bot.ApprovalStore = (*Approvals)(nil)
	_ bot.Claims        = (*ApprovalRecords)(nil)
)

// Approvals is bot.ApprovalStore on Redis: the approval records and the
// lists and history that name them.
type Approvals struct {
	*ApprovalRecords
	*ApprovalLists
}

// ApprovalRecords keeps the approvals themselves and their upgrade claims:
// opening one once per open key, changing one only by compare-and-set, and
// the index of claims the reaper reads.
type ApprovalRecords struct{ *conn }

const approvalVersion = 1

type approvalRecord struct {
	V int `json:"v"`
	approval.Approval
}

// Keys. An approval, its open key and its claim lease share one {hash tag}
// (derived from the open key and carried in the approval id), so opening
// and claiming are single-slot scripts and transactions on a Redis Cluster.
func (s *ApprovalRecords) approvalKey(id string) string {
	return s.opts.Prefix + "approval:{" + slotTag(id) + "}:" + id
}
func (s *ApprovalRecords) claimKey(id string) string {
	return s.opts.Prefix + "claim:{" + slotTag(id) + "}:" + id
}
func (s *ApprovalRecords) openKey(k approval.OpenKey) string {
	return s.opts.Prefix + "open:{" + openTag(k) + "}:" + k.String()
}

// claimIndexShards spread the index of upgrading approvals over several
// keys (slots), read only by the reaper.
const claimIndexShards = 8

func (s *ApprovalRecords) claimIndexKey(shard int) string {
	return s.opts.Prefix + "claims:{" + strconv.Itoa(shard) + "}"
}
func (s *ApprovalRecords) claimIndexOf(id string) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	return s.claimIndexKey(int(h.Sum32() % claimIndexShards))
}

// Approval ids are "apr_" + an 8-hex-digit slot tag + 24 random hex digits.
const tagLen = 8

func openTag(k approval.OpenKey) string {
	sum := sha256.Sum256([]byte(k.String()))
	return hex.EncodeToString(sum[:])[:tagLen]
}

func newApprovalID(k approval.OpenKey) string {
	return "apr_" + openTag(k) + approval.NewToken()
}

func slotTag(id string) string {
	if len(id) == 4+tagLen+24 && strings.HasPrefix(id, "apr_") {
		return id[4 : 4+tagLen]
	}
	return id
}

// approvalTTL keeps a decided approval readable (cards, history) for a while
// after it expires.
func (s *ApprovalRecords) approvalTTL(a approval.Approval) time.Duration {
	return s.openTTL(a) + s.opts.ApprovalRetention
}

// openTTL is how long an approval's open key lasts: as long as the domain
// says the approval stays the open one.
func (s *ApprovalRecords) openTTL(a approval.Approval) time.Duration {
	return a.OpenFor(time.Now())
}

// keepOpenScript makes the open key KEYS[1] last ARGV[2] ms if it still
// names the approval ARGV[1].
var keepOpenScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// keepOpen makes an approval's open key last as long as the approval stays
// open after a write that skipped it or moved its expiry (a snooze).
func (s *ApprovalRecords) keepOpen(ctx context.Context, a approval.Approval) error {
	if err := keepOpenScript.Run(ctx, s.rdb, []string{s.openKey(a.OpenKey())}, a.ID, max(s.openTTL(a).Milliseconds(), 1)).Err(); err != nil {
		return unavailable("keep open key", err)
	}
	return nil
}

// openScript returns the approval open under KEYS[1] if its status is one
// of the open statuses it is given (approval.OpenStatuses), and otherwise
// (or when it is gone) stores the new one (KEYS[2]) and points the open key
// at it. One script: replicas racing to open the same key agree, and
// nothing can slip between read and write.
// ARGV: new id, new record, approval ttl ms, open ttl ms, approval key
// prefix, then the open statuses.
var openScript = redis.NewScript(`
local id = redis.call('GET', KEYS[1])
if id then
  local rec = redis.call('GET', ARGV[5] .. id)
  if rec then
    local ok, a = pcall(cjson.decode, rec)
    if ok then
      for i = 6, #ARGV do
        if a.status == ARGV[i] then
          return {0, rec}
        end
      end
    end
  end
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
return {1, ARGV[2]}
`)

// OpenApproval returns the approval open under a.OpenKey(), or stores a
// under a new id.
func (s *ApprovalRecords) OpenApproval(ctx context.Context, a approval.Approval) (approval.Approval, bool, error) {
	k := a.OpenKey()
	a.ID = newApprovalID(k)
	b, err := json.Marshal(approvalRecord{V: approvalVersion, Approval: a})
	if err != nil {
		return approval.Approval{}, false, fmt.Errorf("state: encode approval: %w", err)
	}
	openTTL := s.openTTL(a)
	if openTTL <= 0 {
		return approval.Approval{}, false, bot.Errorf(bot.CodeInvalid, "state: approval for %s expires before it opens", k)
	}
	args := []any{a.ID, b, s.approvalTTL(a).Milliseconds(), openTTL.Milliseconds(), s.opts.Prefix + "approval:{" + openTag(k) + "}:"}
	for _, st := range approval.OpenStatuses() {
		args = append(args, string(st))
	}
	res, err := openScript.Run(ctx, s.rdb, []string{s.openKey(k), s.approvalKey(a.ID)}, args...).Slice()
	if err != nil {
		return approval.Approval{}, false, unavailable("open approval", err)
	}
	created, _ := res[0].(int64)
	rec, _ := res[1].(string)
	stored, err := decodeApproval(a.ID, []byte(rec))
	if err != nil {
		return approval.Approval{}, false, err
	}
	return stored, created == 1, nil
}

// boundWaits keeps a Redis that hangs (frozen, partitioned) from holding a
// request past Teams' patience: every command gives up within about 3 s
// (one retry included), so the bot answers 503 and Teams redelivers later.
func boundWaits(o *redis.UniversalOptions) {
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 1500*time.Millisecond, 1500*time.Millisecond, 1500*time.Millisecond
	o.PoolTimeout = 2 * time.Second
	o.MaxRetries = 1
}

func decodeApproval(id string, b []byte) (approval.Approval, error) {
	var rec approvalRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return approval.Approval{}, fmt.Errorf("state: decode approval %s: %w", id, err)
	}
	if rec.V != approvalVersion {
		return approval.Approval{}, fmt.Errorf("state: approval %s has version %d, not supported", id, rec.V)
	}
	return rec.Approval, nil
}

// Approval returns an approval, or an error with bot.CodeNotFound.
func (s *ApprovalRecords) Approval(ctx context.Context, id string) (approval.Approval, error) {
	b, err := s.rdb.Get(ctx, s.approvalKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return approval.Approval{}, bot.Errorf(bot.CodeNotFound, "state: no approval %q", id)
	}
	if err != nil {
		return approval.Approval{}, unavailable("read approval", err)
	}
	return decodeApproval(id, b)
}

// Transition changes an approval atomically: it reads the record, checks
// the status and writes with a compare-and-set script (see update); a
// concurrent writer makes it read again.
func (s *ApprovalRecords) Transition(ctx context.Context, id string, from []approval.Status, change func(*approval.Approval)) (approval.Approval, error) {
	return s.update(ctx, id, nil, nil, func(a *approval.Approval, _ bool) (lease, error) {
		if !slices.Contains(from, a.Status) {
			return lease{}, errConflict
		}
		change(a)
		return lease{}, nil
	})
}

// ClaimUpgrade records who's approval and claims the approval for an
// upgrade once its quorum is met (approval.Approval.Approve), in one
// compare-and-set: of two approvers racing for the last approval, one
// meets the quorum and claims, the other is refused.
func (s *ApprovalRecords) ClaimUpgrade(ctx context.Context, id string, who approval.Person, at time.Time, ttl time.Duration) (approval.Approval, error) {
	// Indexed first, in the read's round trip: a replica that dies right
	// after claiming leaves a claim the reaper can find. A stale index entry
	// is harmless.
	return s.update(ctx, id, nil, s.indexClaim(ctx, id, ttl), func(a *approval.Approval, _ bool) (lease, error) {
		voted, vote := a.Approve(who, at, approval.NewToken())
		switch vote {
		case approval.VoteRefused:
			return lease{}, errConflict
		case approval.VoteClaimed:
			*a = voted
			return lease{set: a.ClaimToken, ttl: ttl}, nil
		}
		*a = voted // counted (written), or repeated (nothing to write)
		return lease{}, nil
	})
}

// TakeOverClaim takes an upgrading approval whose lease expired.
// Its index entry stays listed until the takeover succeeds, when it moves
// to the new lease's end.
func (s *ApprovalRecords) TakeOverClaim(ctx context.Context, id string, ttl time.Duration) (approval.Approval, error) {
	a, err := s.update(ctx, id, nil, nil, func(a *approval.Approval, leased bool) (lease, error) {
		if !a.Claimed() || leased {
			return lease{}, errConflict
		}
		a.ClaimToken = approval.NewToken()
		return lease{set: a.ClaimToken, ttl: ttl}, nil
	})
	switch {
	case err == nil:
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { s.indexClaim(ctx, id, ttl)(p); return nil }); err != nil {
			return approval.Approval{}, unavailable("index claim", err)
		}
	case errors.Is(err, bot.ErrNotFound) || (errors.Is(err, bot.ErrConflict) && !a.Claimed()):
		s.unindexClaim(ctx, id) // settled or gone: nothing left to reap
	}
	return a, err
}

// Amend changes an upgrading approval held by held.ClaimToken, keeping the
// claim. It writes against held first: one round trip while nobody else
// changed the approval since.
func (s *ApprovalRecords) Amend(ctx context.Context, held approval.Approval, change func(*approval.Approval)) (approval.Approval, error) {
	token := held.ClaimToken
	return s.update(ctx, held.ID, &held, nil, func(a *approval.Approval, _ bool) (lease, error) {
		if !a.HeldBy(token) {
			return lease{}, errConflict
		}
		change(a)
		return lease{}, nil
	})
}

// HoldClaim keeps the claim named by token for ttl from now.
func (s *ApprovalRecords) HoldClaim(ctx context.Context, id, token string, ttl time.Duration) (approval.Approval, error) {
	// Indexed first, as when claiming: the index must never end before the lease.
	return s.update(ctx, id, nil, s.indexClaim(ctx, id, ttl), func(a *approval.Approval, _ bool) (lease, error) {
		if !a.HeldBy(token) {
			return lease{}, errConflict
		}
		return lease{set: token, ttl: ttl}, nil
	})
}

// Settle records the outcome of the claim held.ClaimToken names, written
// against held first, as Amend does.
func (s *ApprovalRecords) Settle(ctx context.Context, held approval.Approval, change func(*approval.Approval)) (approval.Approval, error) {
	id, token := held.ID, held.ClaimToken
	a, err := s.update(ctx, id, &held, nil, func(a *approval.Approval, _ bool) (lease, error) {
		if !a.HeldBy(token) {
			return lease{}, errConflict
		}
		change(a)
		a.ClaimToken = ""
		return lease{clear: true}, nil
	})
	if err == nil {
		s.unindexClaim(ctx, id)
	}
	return a, err
}

// ExpiredClaims lists upgrading approvals whose lease has expired (and a few
// stale index entries, which TakeOverClaim clears).
func (s *ApprovalRecords) ExpiredClaims(ctx context.Context, n int) ([]string, error) {
	var ids []string
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	for shard := range claimIndexShards {
		got, err := s.rdb.ZRangeByScore(ctx, s.claimIndexKey(shard), &redis.ZRangeBy{Min: "-inf", Max: now, Count: int64(n)}).Result()
		if err != nil {
			return nil, unavailable("list expired claims", err)
		}
		ids = append(ids, got...)
	}
	return ids[:min(n, len(ids))], nil
}

// indexClaim lists a claim lasting ttl from now for the reaper, in p.
func (s *ApprovalRecords) indexClaim(ctx context.Context, id string, ttl time.Duration) func(redis.Pipeliner) {
	return func(p redis.Pipeliner) {
		p.ZAdd(ctx, s.claimIndexOf(id), redis.Z{Score: float64(time.Now().Add(ttl).UnixMilli()), Member: id})
	}
}

func (s *ApprovalRecords) unindexClaim(ctx context.Context, id string) {
	s.rdb.ZRem(ctx, s.claimIndexOf(id), id) // best effort: the reaper skips what is not upgrading
}

// lease is what an update does to the approval's claim lease.
type lease struct {
	set   string // a new token to hold for ttl
	ttl   time.Duration
	clear bool
}

var errConflict = errors.New("state: conflict")

// update reads the approval and whether its claim lease is held, lets decide
// change it, and writes both with casScript only if neither changed since
// the read: a concurrent writer makes it start again from a fresh read.
// That is two round trips: the read and the write.
// decide returning errConflict leaves everything as it is and returns the
// approval with CodeConflict. alongside, if set, adds commands to the read's
// pipeline: they reach Redis before anything is written.
//
// A claim holder's own changes (Amend, Settle) start from held, the
// approval as the holder last had it, with its lease held: the first
// attempt decides on held and writes with no read, and the compare-and-set
// refuses it unless held is exactly what is stored. Their decisions never
// depend on the lease, only on the record.
func (s *ApprovalRecords) update(ctx context.Context, id string, held *approval.Approval, alongside func(redis.Pipeliner),
	decide func(a *approval.Approval, leased bool) (lease, error)) (approval.Approval, error) {
	key, claim := s.approvalKey(id), s.claimKey(id)
	for range 10 {
		if held != nil {
			hint := *held
			held = nil
			b, err := json.Marshal(approvalRecord{V: approvalVersion, Approval: hint})
			if err != nil {
				return approval.Approval{}, &bot.Error{Code: bot.CodeInternal, Message: "state: encode approval", Err: err}
			}
			a := hint
			l, err := decide(&a, true)
			if err != nil {
				continue // decided on the store's copy below, which may differ
			}
			wrote, err := s.compareAndSet(ctx, key, claim, b, 1, a, l, false) // a claim's holder: no skip, no snooze
			if err != nil {
				return approval.Approval{}, err
			}
			if wrote {
				return a, nil
			}
			continue
		}
		var get *redis.StringCmd
		var exists *redis.IntCmd
		cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			if alongside != nil {
				alongside(p)
			}
			get = p.Get(ctx, key)
			exists = p.Exists(ctx, claim)
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return approval.Approval{}, unavailable("read approval", err)
		}
		for _, c := range cmds { // a reply error of what went alongside
			if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
				return approval.Approval{}, unavailable("read approval", e)
			}
		}
		b, err := get.Bytes()
		if errors.Is(err, redis.Nil) {
			return approval.Approval{}, bot.Errorf(bot.CodeNotFound, "state: no approval %q", id)
		}
		if err != nil {
			return approval.Approval{}, unavailable("read approval", err)
		}
		a, err := decodeApproval(id, b)
		if err != nil {
			return approval.Approval{}, &bot.Error{Code: bot.CodeInternal, Message: err.Error(), Err: err}
		}
		leased, err := exists.Result()
		if err != nil {
			return approval.Approval{}, unavailable("read claim", err)
		}
		result := a
		l, err := decide(&a, leased == 1)
		if errors.Is(err, errConflict) {
			return result, &bot.Error{Code: bot.CodeConflict, Message: fmt.Sprintf("state: approval %s is %s", id, result.Status)}
		}
		if err != nil {
			return approval.Approval{}, err
		}
		nb, err := json.Marshal(approvalRecord{V: approvalVersion, Approval: a})
		if err != nil {
			return approval.Approval{}, &bot.Error{Code: bot.CodeInternal, Message: "state: encode approval", Err: err}
		}
		if l == (lease{}) && bytes.Equal(nb, b) {
			// Nothing changed (a card already recorded, a list already
			// full): no write, so nothing to lose to a concurrent writer.
			return result, nil
		}
		// How long the approval stays open changed (a skip, a snooze): the
		// open key must last as long, or a new request would follow it.
		// In the same script as the record when both are on one slot (every
		// id since slot tags), so no failure can leave one without the
		// other; else in a second step.
		now := time.Now()
		openChanged := a.OpenFor(now) != result.OpenFor(now)
		together := openChanged && slotTag(id) == openTag(a.OpenKey())
		wrote, err := s.compareAndSet(ctx, key, claim, b, leased, a, l, together)
		if err != nil {
			return approval.Approval{}, err
		}
		if wrote && openChanged && !together {
			if err := s.keepOpen(ctx, a); err != nil {
				return approval.Approval{}, err
			}
		}
		if wrote {
			return a, nil
		}
	}
	return approval.Approval{}, bot.Errorf(bot.CodeConflict, "state: approval %s keeps changing", id)
}

// compareAndSet writes a and lease l if the approval is still was, and
// its lease held (leased 1) or not (0) as it was.
// With keepOpen, the approval's open key (on the same slot) is made to last
// as long as the approval stays open, if it still names it.
func (s *ApprovalRecords) compareAndSet(ctx context.Context, key, claim string, was []byte, leased int64, a approval.Approval, l lease,
	keepOpen bool) (bool, error) {
	nb, err := json.Marshal(approvalRecord{V: approvalVersion, Approval: a})
	if err != nil {
		return false, &bot.Error{Code: bot.CodeInternal, Message: "state: encode approval", Err: err}
	}
	op := ""
	switch {
	case l.set != "":
		op = "set"
	case l.clear:
		op = "clear"
	}
	sum := sha1.Sum(was)
	keys, openMs := []string{key, claim}, int64(0)
	if keepOpen {
		keys, openMs = append(keys, s.openKey(a.OpenKey())), max(s.openTTL(a).Milliseconds(), 1)
	}
	wrote, err := casScript.Run(ctx, s.rdb, keys, hex.EncodeToString(sum[:]), leased,
		nb, s.approvalTTL(a).Milliseconds(), op, l.set, max(l.ttl.Milliseconds(), 1), openMs, a.ID).Int()
	if err != nil {
		return false, unavailable("update approval", err)
	}
	return wrote == 1, nil
}

// casScript writes an approval (KEYS[1]) and its claim lease (KEYS[2]) only
// if the record is still the one read (ARGV[1], its SHA-1) and the lease is
// still held or not as read (ARGV[2]): a compare-and-set in one round trip.
// ARGV: sha1, leased 0/1, new record, record ttl ms (0: none), lease op
// ("set", "clear" or ""), lease token, lease ttl ms, then the open key's
// ttl ms (0: leave it) and the approval id: KEYS[3], the approval's open
// key, is made to last that long if it still names the approval, in the
// same step as the record. Returns 1 if written.
// A record already exactly the new one (and changed since the read) is this
// very write run again: go-redis sends a script whose answer was lost (a
// dropped connection, a read timeout) once more, and that run must report
// the write done, not someone else's, or a claim would be left to the
// reaper and an outcome never published.
var casScript = redis.NewScript(`
local function keepOpen()
  if KEYS[3] and tonumber(ARGV[8]) > 0 and redis.call('GET', KEYS[3]) == ARGV[9] then
    redis.call('PEXPIRE', KEYS[3], ARGV[8])
  end
end
local cur = redis.call('GET', KEYS[1])
if not cur then
  return 0
end
if redis.sha1hex(cur) ~= ARGV[1] then
  if cur == ARGV[3] then
    keepOpen()
    return 1
  end
  return 0
end
if redis.call('EXISTS', KEYS[2]) ~= tonumber(ARGV[2]) then
  return 0
end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
if ARGV[5] == 'set' then
  redis.call('SET', KEYS[2], ARGV[6], 'PX', ARGV[7])
elseif ARGV[5] == 'clear' then
  redis.call('DEL', KEYS[2])
end
keepOpen()
return 1
`)
