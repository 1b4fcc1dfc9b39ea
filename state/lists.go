package state

import (
	"cmp"
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

// ApprovalLists keeps what names approvals besides their records: the
// batches "approve all" acts on, the messages listing each batch (kept true
// as the approvals change) and each conversation's history.
type ApprovalLists struct{ *conn }

func (s *ApprovalLists) batchKey(id string) string { return s.opts.Prefix + "batch:{" + id + "}" }

// batchListsKey holds the messages listing a batch; it shares the batch
// key's {hash tag}, so a script can read the batch's expiry.
func (s *ApprovalLists) batchListsKey(id string) string {
	return s.opts.Prefix + "batchlists:{" + id + "}"
}

// listedKey holds the batches an approval is listed in, with its tag.
func (s *ApprovalLists) listedKey(approvalID string) string {
	return s.opts.Prefix + "listed:{" + slotTag(approvalID) + "}:" + approvalID
}
func (s *ApprovalLists) auditKey(conv string) string { return s.opts.Prefix + "audit:{" + conv + "}" }

// Bounds on what keeps lists true: the messages listing one batch, and the
// batches one approval is listed in (each check lists it anew; the newest
// lists are the ones people look at).
const (
	maxBatchLists = 20
	maxListedIn   = 20
)

// listVersion versions a recorded list message.
const listVersion = 1

type listRecord struct {
	V int `json:"v"`
	approval.PostedCard
}

// SaveBatch stores approval ids under a new batch id, and the batch under
// each approval. The writes go in one pipeline, not a transaction: the
// approvals' keys are in other slots, and a batch nobody lists under an
// approval is only not refreshed when that approval changes.
func (s *ApprovalLists) SaveBatch(ctx context.Context, ids []string) (string, error) {
	id := "bat_" + approval.NewToken()
	b, _ := json.Marshal(ids)
	// Microseconds (exact in a float64 score): two batches of one approval
	// saved within a millisecond, as two checks at once can be, still sort
	// newest first. Scores of earlier releases, in milliseconds, sort as
	// older than any of these, as they are.
	now := float64(time.Now().UnixMicro())
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.batchKey(id), b, s.opts.ApprovalRetention)
		for _, a := range ids {
			k := s.listedKey(a)
			p.ZAdd(ctx, k, redis.Z{Score: now, Member: id})
			p.ZRemRangeByRank(ctx, k, 0, -maxListedIn-1)
			p.PExpire(ctx, k, s.opts.ApprovalRetention)
		}
		return nil
	})
	if err != nil {
		return "", unavailable("save batch", err)
	}
	return id, nil
}

// Batch returns a batch and the messages listing it.
func (s *ApprovalLists) Batch(ctx context.Context, id string) (approval.Batch, error) {
	var get *redis.StringCmd
	var lists *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, s.batchKey(id))
		lists = p.HVals(ctx, s.batchListsKey(id))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return approval.Batch{}, unavailable("read batch", err)
	}
	b, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		return approval.Batch{}, bot.Errorf(bot.CodeNotFound, "state: no batch %q", id)
	}
	if err != nil {
		return approval.Batch{}, unavailable("read batch", err)
	}
	out := approval.Batch{ID: id}
	if err := json.Unmarshal(b, &out.Approvals); err != nil {
		return approval.Batch{}, fmt.Errorf("state: decode batch: %w", err)
	}
	raw, err := lists.Result()
	if err != nil {
		return approval.Batch{}, unavailable("read batch lists", err)
	}
	for _, r := range raw {
		var rec listRecord
		if err := json.Unmarshal([]byte(r), &rec); err != nil || rec.V != listVersion {
			continue // a list we cannot read is one we cannot update, not a broken batch
		}
		out.Lists = append(out.Lists, rec.PostedCard)
	}
	// HVALS has no order of its own.
	slices.SortFunc(out.Lists, func(a, b approval.PostedCard) int { return strings.Compare(a.ActivityID, b.ActivityID) })
	return out, nil
}

// recordListScript adds a list message (ARGV[1] its activity id, ARGV[2]
// its record) to KEYS[1] unless the batch (KEYS[2]) is gone or already has
// ARGV[3] lists, and lets it expire with the batch.
var recordListScript = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[2])
if ttl == -2 then
  return -1
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
`)

// RecordList remembers a message listing the batch.
func (s *ApprovalLists) RecordList(ctx context.Context, batchID string, list approval.PostedCard) error {
	b, err := json.Marshal(listRecord{V: listVersion, PostedCard: list})
	if err != nil {
		return fmt.Errorf("state: encode list: %w", err)
	}
	n, err := recordListScript.Run(ctx, s.rdb, []string{s.batchListsKey(batchID), s.batchKey(batchID)},
		list.ActivityID, b, maxBatchLists).Int()
	if err != nil {
		return unavailable("record list", err)
	}
	if n < 0 {
		return bot.Errorf(bot.CodeNotFound, "state: no batch %q", batchID)
	}
	return nil
}

// ListedIn returns the batches an approval is listed in, newest first.
func (s *ApprovalLists) ListedIn(ctx context.Context, approvalID string) ([]string, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.listedKey(approvalID), 0, -1).Result()
	if err != nil {
		return nil, unavailable("read listed batches", err)
	}
	return ids, nil
}

// auditLength is how many events a conversation's history keeps.
const auditLength = 50

// RecordOutcome records an event, keeping the newest auditLength, and reads
// the batches e.ApprovalID is listed in, in one pipeline (the keys are in
// different slots; go-redis splits a pipeline on a Redis Cluster).
func (s *ApprovalLists) RecordOutcome(ctx context.Context, conversationID string, e approval.AuditEvent) ([]string, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("state: encode audit event: %w", err)
	}
	var trailed *redis.StringCmd
	var appended *redis.Cmd
	var listed *redis.StringSliceCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		// The tenant's trail and the conversation's history get the same
		// event.
		var err error
		if trailed, err = s.appendTrail(ctx, p, e); err != nil {
			return err
		}
		// A script, so that the push, trim and expiry stay one step.
		appended = appendAuditScript.Eval(ctx, p, []string{s.auditKey(conversationID)}, b, auditLength-1,
			s.opts.AuditRetention.Milliseconds())
		if e.ApprovalID != "" {
			listed = p.ZRevRange(ctx, s.listedKey(e.ApprovalID), 0, -1)
		}
		return nil
	})
	if trailed == nil {
		return nil, err // it did not encode
	}
	if err := cmp.Or(trailed.Err(), appended.Err()); err != nil {
		return nil, unavailable("append audit", err)
	}
	if err != nil {
		return nil, unavailable("read listed batches", err)
	}
	if listed == nil {
		return nil, nil
	}
	return listed.Val(), nil
}

// appendAuditScript pushes ARGV[1] onto the list KEYS[1], keeps its
// elements 0..ARGV[2], and lets it expire in ARGV[3] ms (0: never).
var appendAuditScript = redis.NewScript(`
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, ARGV[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
`)

// Audit returns up to n events, newest first.
func (s *ApprovalLists) Audit(ctx context.Context, conversationID string, n int) ([]approval.AuditEvent, error) {
	if n <= 0 {
		return nil, nil // LRANGE 0 -1 would be the whole history
	}
	raw, err := s.rdb.LRange(ctx, s.auditKey(conversationID), 0, int64(n-1)).Result()
	if err != nil {
		return nil, unavailable("read audit", err)
	}
	return decodeEach[approval.AuditEvent](raw, "audit event")
}
