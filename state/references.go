package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

// Values carry a version so a rolling upgrade can read what the previous
// release wrote.
const referenceVersion = 1

type referenceRecord struct {
	V int `json:"v"`
	approval.ConversationRef
}

// Keys that one operation touches share a {hash tag} so they live in one
// Redis Cluster slot.
//
// A channel's threads ("…;messageid=…") share the channel's reference:
// every thread has the channel's connector, tenant and team, and only the
// conversation id differs. Earlier releases stored one per thread, and
// those are still read (Reference) and indexed (adoptLegacy).
func (s *Conversations) referenceKey(conversationID string) string {
	return s.opts.Prefix + "ref:{" + conversationID + "}"
}

// scopesKey maps each installation scope of a tenant the bot is in (a
// chat, a team, a user's personal scope) to the conversation its unprompted
// cards go to: for a team, the channel the bot was last talked to in. A
// scan reads its scope from Graph, so a sweep of this index reads each
// scope once, however many channels and threads the bot was talked to in.
// It shares the where set's hash tag: one script moves an entry over.
// Sweeps read it; activities read each scope's homeKey instead.
func (s *Conversations) scopesKey(tenantID string) string {
	return s.opts.Prefix + "scopes:{" + tenantID + "}"
}

func scopeField(sc approval.Scope) string { return string(sc.Kind) + "|" + strings.ToLower(sc.ID) }

// homeKey holds the same as a scope's entry in scopesKey: the conversation
// its unprompted cards go to. Every activity reads it, to see whether it
// moved (a team talked to in another channel), so it is a key of the
// scope's own, on a slot of its own: the tenant's index, on the path of
// every activity of the tenant (all of them, for a single-tenant bot),
// would be one hot key. The index is written only when the home moves.
func (s *Conversations) homeKey(tenantID string, sc approval.Scope) string {
	return s.opts.Prefix + "home:{" + tenantID + "|" + scopeField(sc) + "}"
}

// whereKey is the set of conversations of a tenant whose installation
// scope is not known (a channel activity without its team's Entra group),
// and, from earlier releases, of every conversation and thread the bot was
// in, until adoptLegacy moves each under its scope.
func (s *Conversations) whereKey(tenantID string) string {
	return s.opts.Prefix + "where:{" + tenantID + "}"
}

// tenantsKey lists the tenants the bot is in. It is written only when a
// tenant's first conversation appears and read by the catalog watcher,
// never on a request's path.
func (s *Conversations) tenantsKey() string { return s.opts.Prefix + "tenants" }

// referenceRefresh is how old a stored reference may get before an activity
// rewrites it although nothing changed, to keep its TTL alive.
const referenceRefresh = 24 * time.Hour

// SaveReference stores the conversation reference when it is new or changed
// (or a day old, to renew its TTL), and indexes it under its tenant. Most
// activities change nothing, and then cost one round trip. A thread's
// reference is stored as its channel's.
func (s *Conversations) SaveReference(ctx context.Context, ref approval.ConversationRef) error {
	ref = ref.TopLevel()
	var r storedReads
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { // each read's error is looked at on its own
		r = s.readStored(ctx, p, ref)
		return nil
	})
	return s.saveChangedReference(ctx, ref, r)
}

// storedReads is what deciding to write a reference needs: the stored
// reference, and the conversation its installation scope's cards go to.
type storedReads struct{ ref, home *redis.StringCmd }

// readStored queues the reads of storedReads for ref (a top-level one).
func (s *Conversations) readStored(ctx context.Context, p redis.Pipeliner, ref approval.ConversationRef) storedReads {
	r := storedReads{ref: p.Get(ctx, s.referenceKey(ref.ConversationID))}
	if ref.TenantID != "" && ref.Scope != nil {
		r.home = p.Get(ctx, s.homeKey(ref.TenantID, *ref.Scope))
	}
	return r
}

// saveChangedReference writes ref (a top-level one) unless what was read
// already says the same: the same reference, and its scope's cards going
// to it. A team's cards go to the channel the bot was last talked to in.
func (s *Conversations) saveChangedReference(ctx context.Context, ref approval.ConversationRef, r storedReads) error {
	stored, readErr := r.ref.Bytes()
	if readErr != nil && !errors.Is(readErr, redis.Nil) {
		return unavailable("read reference", readErr)
	}
	// An index that cannot be read (its Redis Cluster master down) is
	// left as it is, like one that cannot be written (below).
	moved := r.home != nil && (r.home.Err() == nil || errors.Is(r.home.Err(), redis.Nil)) && r.home.Val() != ref.ConversationID
	var old approval.ConversationRef
	if readErr == nil {
		var rec referenceRecord
		if json.Unmarshal(stored, &rec) == nil && rec.V == referenceVersion {
			old = rec.ConversationRef
			if !moved && sameReference(old, ref) && ref.UpdatedAt.Sub(old.UpdatedAt) < referenceRefresh {
				return nil
			}
		}
	}
	// The tenant's index lives on another slot than the reference: if it
	// cannot be written (a Redis Cluster master down), the activity still
	// goes on, and a later one writes both.
	if ref.TenantID != "" {
		if old.TenantID != "" && old.TenantID != ref.TenantID {
			s.unindex(ctx, old)
		}
		if !s.index(ctx, ref) {
			return nil
		}
	}
	b, err := json.Marshal(referenceRecord{V: referenceVersion, ConversationRef: ref})
	if err != nil {
		return fmt.Errorf("state: encode reference: %w", err)
	}
	if err := s.rdb.Set(ctx, s.referenceKey(ref.ConversationID), b, s.opts.ReferenceTTL).Err(); err != nil {
		return unavailable("save reference", err)
	}
	return nil
}

// index records ref under its tenant: its installation scope now points at
// it, or, without a scope, it joins the where set. It reports whether Redis took it all.
func (s *Conversations) index(ctx context.Context, ref approval.ConversationRef) bool {
	var added int64
	var err error
	if ref.Scope != nil {
		added, err = s.rdb.HSet(ctx, s.scopesKey(ref.TenantID), scopeField(*ref.Scope), ref.ConversationID).Result()
		if err == nil {
			// With the reference's lifetime: renewed as the reference is.
			// If it cannot be written, the next activity finds the home
			// moved and writes both again.
			s.rdb.Set(ctx, s.homeKey(ref.TenantID, *ref.Scope), ref.ConversationID, s.opts.ReferenceTTL)
		}
	} else {
		added, err = s.rdb.SAdd(ctx, s.whereKey(ref.TenantID), ref.ConversationID).Result()
	}
	if err != nil {
		return false
	}
	if added > 0 && s.rdb.SAdd(ctx, s.tenantsKey(), ref.TenantID).Err() != nil {
		s.unindex(ctx, ref)
		return false
	}
	return true
}

// unindex takes ref out of its tenant's index, leaving its scope's entry
// alone if that points at another conversation by now.
func (s *Conversations) unindex(ctx context.Context, ref approval.ConversationRef) {
	s.rdb.SRem(ctx, s.whereKey(ref.TenantID), ref.ConversationID)
	if ref.Scope != nil {
		unindexScript.Run(ctx, s.rdb, []string{s.scopesKey(ref.TenantID)}, scopeField(*ref.Scope), ref.ConversationID)
		unhomeScript.Run(ctx, s.rdb, []string{s.homeKey(ref.TenantID, *ref.Scope)}, ref.ConversationID)
	}
}

var unindexScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`)

var unhomeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`)

// sameReference compares everything but the time it was seen. Every
// activity asks, so it compares fields rather than encodings; a field added
// to the reference that is not comparable stops the build here.
func sameReference(a, b approval.ConversationRef) bool {
	sa, sb := a.Scope, b.Scope
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	a.Scope, b.Scope = nil, nil
	return a == b && (sa == nil) == (sb == nil) && (sa == nil || *sa == *sb)
}

// Reference returns the stored reference of a conversation, or an error with
// bot.CodeNotFound. A thread's is its channel's (with the thread's id), or,
// when the channel has none, one an earlier release stored for the thread.
func (s *Conversations) Reference(ctx context.Context, conversationID string) (approval.ConversationRef, error) {
	ids := referenceIDs(conversationID)
	cmds := make([]*redis.StringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Get(ctx, s.referenceKey(id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return approval.ConversationRef{}, unavailable("read reference", err)
	}
	for _, c := range cmds {
		ref, found, err := decodeReference(c)
		if err != nil || found {
			ref.ConversationID = conversationID
			return ref, err
		}
	}
	return approval.ConversationRef{}, bot.Errorf(bot.CodeNotFound, "state: no conversation reference for %q", conversationID)
}

// decodeReference reads the reference a GET returned; found false when
// there was none.
func decodeReference(c *redis.StringCmd) (approval.ConversationRef, bool, error) {
	b, err := c.Bytes()
	if errors.Is(err, redis.Nil) {
		return approval.ConversationRef{}, false, nil
	}
	if err != nil {
		return approval.ConversationRef{}, false, unavailable("read reference", err)
	}
	var rec referenceRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return approval.ConversationRef{}, false, fmt.Errorf("state: decode reference: %w", err)
	}
	if rec.V != referenceVersion {
		return approval.ConversationRef{}, false, fmt.Errorf("state: reference version %d is not supported", rec.V)
	}
	return rec.ConversationRef, true, nil
}

// Forget removes a conversation the bot was removed from: its reference and
// its installation scope's place in the tenant's index.
func (s *Conversations) Forget(ctx context.Context, ref approval.ConversationRef) error {
	if ref.TenantID != "" {
		// Conversations an earlier release indexed one by one (the other
		// threads and channels of a team) move under their scope first, so
		// that none is left behind to bring the scope back.
		if err := s.adoptLegacy(ctx, ref.TenantID, nil); err != nil {
			return err
		}
		if err := s.rdb.SRem(ctx, s.whereKey(ref.TenantID), ref.ConversationID).Err(); err != nil {
			return unavailable("unindex reference", err)
		}
		if ref.Scope != nil {
			if err := s.rdb.HDel(ctx, s.scopesKey(ref.TenantID), scopeField(*ref.Scope)).Err(); err != nil {
				return unavailable("unindex reference", err)
			}
			if err := s.rdb.Del(ctx, s.homeKey(ref.TenantID, *ref.Scope)).Err(); err != nil {
				return unavailable("unindex reference", err)
			}
		}
	}
	for _, id := range referenceIDs(ref.ConversationID) {
		if err := s.rdb.Del(ctx, s.referenceKey(id)).Err(); err != nil {
			return unavailable("forget reference", err)
		}
	}
	if ref.TenantID != "" {
		return s.leaveIfEmpty(ctx, ref.TenantID)
	}
	return nil
}

// leaveIfEmpty takes a tenant with no installation scope and no
// conversation left out of the tenant set, so that the catalog watcher and
// sweeps stop reading Graph for it. The set lives on another slot than the
// tenant's index, so nothing makes the two one step: it looks again after
// removing, and puts the tenant back if a conversation was indexed
// meanwhile. An index that adds one after that look adds the tenant itself
// (index adds it after its own entry), so no interleaving loses a tenant
// that has a conversation.
func (s *Conversations) leaveIfEmpty(ctx context.Context, tenantID string) error {
	empty := func() (bool, error) {
		var scopes, where *redis.IntCmd
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			scopes, where = p.HLen(ctx, s.scopesKey(tenantID)), p.SCard(ctx, s.whereKey(tenantID))
			return nil
		})
		if err != nil {
			return false, unavailable("count a tenant's conversations", err)
		}
		return scopes.Val() == 0 && where.Val() == 0, nil
	}
	if ok, err := empty(); err != nil || !ok {
		return err
	}
	if err := s.rdb.SRem(ctx, s.tenantsKey(), tenantID).Err(); err != nil {
		return unavailable("leave tenant", err)
	}
	if ok, err := empty(); err != nil || ok {
		return err
	}
	if err := s.rdb.SAdd(ctx, s.tenantsKey(), tenantID).Err(); err != nil {
		return unavailable("keep tenant", err)
	}
	return nil
}

// referenceIDs are the conversations whose stored reference is a
// conversation's: its channel's, then for a thread its own (from an
// earlier release).
func referenceIDs(conversationID string) []string {
	ids := []string{approval.BaseConversation(conversationID)}
	if ids[0] != conversationID {
		ids = append(ids, conversationID)
	}
	return ids
}

// Tenants lists the tenants the bot is in.
func (s *Conversations) Tenants(ctx context.Context) ([]string, error) {
	ts, err := s.rdb.SMembers(ctx, s.tenantsKey()).Result()
	if err != nil {
		return nil, unavailable("list tenants", err)
	}
	return ts, nil
}

// Conversations calls fn once for each installation scope of a tenant with
// the conversation its unprompted cards go to, and for each conversation
// whose scope is not known, a page at a time (HSCAN, SSCAN), so a tenant
// with many is never read in one reply. One may be seen twice. A scope
// whose conversation's reference is gone (its TTL ran out: nobody talked
// there for that long, as with a meeting's chat) is dropped from the index
// rather than scanned, sweep after sweep, for nothing.
func (s *Conversations) Conversations(ctx context.Context, tenantID string, fn func(conversationID string) error) error {
	if err := s.adoptLegacy(ctx, tenantID, fn); err != nil {
		return err
	}
	key := s.scopesKey(tenantID)
	var cursor uint64
	for {
		kv, next, err := s.rdb.HScan(ctx, key, cursor, "", 500).Result()
		if err != nil {
			return unavailable("list conversations", err)
		}
		gone := s.goneReferences(ctx, kv)
		for i := 1; i < len(kv); i += 2 {
			if gone[i/2] {
				// Only while it still points there: a reference saved
				// meanwhile indexes its scope again anyway.
				unindexScript.Run(ctx, s.rdb, []string{key}, kv[i-1], kv[i])
				continue
			}
			if err := fn(kv[i]); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			// A tenant whose scopes were all gone leaves nothing to sweep.
			return s.leaveIfEmpty(ctx, tenantID)
		}
	}
}

// goneReferences reports, for each conversation of an HSCAN page (field,
// conversation, …), whether none of its references exists. One EXISTS per
// key, pipelined: the keys are in different Redis Cluster slots. A read
// that fails counts as present.
func (s *Conversations) goneReferences(ctx context.Context, kv []string) []bool {
	cmds := make([][]*redis.IntCmd, len(kv)/2)
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { // each EXISTS is looked at on its own
		for i := 1; i < len(kv); i += 2 {
			for _, id := range referenceIDs(kv[i]) {
				cmds[i/2] = append(cmds[i/2], p.Exists(ctx, s.referenceKey(id)))
			}
		}
		return nil
	})
	gone := make([]bool, len(cmds))
	for i, c := range cmds {
		gone[i] = !slices.ContainsFunc(c, func(c *redis.IntCmd) bool { return c.Err() != nil || c.Val() > 0 })
	}
	return gone
}

// adoptLegacy moves each conversation of the tenant's where set whose
// reference names its installation scope under that scope (unless the
// scope has a conversation already), and drops those whose reference is
// gone. Earlier releases indexed every conversation and channel thread
// there; this release only those without a scope, which stay, and are
// passed to scopeless if set. No reference is touched: a moved thread
// still finds its own (Reference).
func (s *Conversations) adoptLegacy(ctx context.Context, tenantID string, scopeless func(conversationID string) error) error {
	where := s.whereKey(tenantID)
	var cursor uint64
	for {
		ids, next, err := s.rdb.SScan(ctx, where, cursor, "", 500).Result()
		if err != nil {
			return unavailable("list conversations", err)
		}
		refs := make([]*redis.StringCmd, len(ids))
		if len(ids) > 0 {
			_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i, id := range ids {
					refs[i] = p.Get(ctx, s.referenceKey(id))
				}
				return nil
			})
			if err != nil && !errors.Is(err, redis.Nil) {
				return unavailable("read references", err)
			}
		}
		var keep []string
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				ref, found, err := decodeReference(refs[i])
				switch {
				case err != nil || (found && ref.Scope == nil):
					keep = append(keep, id) // its scan says what is wrong
				case found:
					adoptScript.Eval(ctx, p, []string{where, s.scopesKey(tenantID)}, id, scopeField(*ref.Scope))
				default:
					adoptScript.Eval(ctx, p, []string{where, s.scopesKey(tenantID)}, id, "")
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return unavailable("adopt conversations", err)
		}
		for _, id := range keep {
			if scopeless != nil {
				if err := scopeless(id); err != nil {
					return err
				}
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// adoptScript moves a conversation from the where set (KEYS[1]) under its
// scope (KEYS[2]), or only drops it when its reference is gone (no scope
// given); a conversation no longer in the set (forgotten meanwhile) brings
// nothing back.
var adoptScript = redis.NewScript(`
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and ARGV[2] ~= '' then
  redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1])
end
return 0`)
