package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.ApprovalStore = (*Store)(nil)

const approvalVersion = 1

type approvalRecord struct {
	V int `json:"v"`
	bot.Approval
}

// Each approval is one key, so a transition is a WATCH/MULTI on one slot.
func (s *Store) approvalKey(id string) string { return s.opts.Prefix + "approval:{" + id + "}" }
func (s *Store) openKey(k string) string      { return s.opts.Prefix + "open:{" + k + "}" }
func (s *Store) batchKey(id string) string    { return s.opts.Prefix + "batch:{" + id + "}" }
func (s *Store) auditKey(conv string) string  { return s.opts.Prefix + "audit:{" + conv + "}" }

// approvalTTL keeps a decided approval readable (cards, history) for a while
// after it expires.
func (s *Store) approvalTTL(a bot.Approval) time.Duration {
	return max(time.Until(a.ExpiresAt), 0) + s.opts.ApprovalRetention
}

// OpenApproval returns the open approval for the same installation and
// target, or stores a. Replicas racing to open the same one agree through
// SET NX on the open key.
func (s *Store) OpenApproval(ctx context.Context, a bot.Approval) (bot.Approval, bool, error) {
	openKey := s.openKey(a.OpenKey())
	for range 3 {
		id, err := s.rdb.Get(ctx, openKey).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return bot.Approval{}, false, unavailable("read open approval", err)
		}
		if id != "" {
			existing, err := s.Approval(ctx, id)
			if err == nil && (existing.Status == bot.StatusPending || existing.Status == bot.StatusFailed) &&
				time.Now().Before(existing.ExpiresAt) {
				return existing, false, nil
			}
			if err != nil && bot.ErrorCode(err) != bot.CodeNotFound {
				return bot.Approval{}, false, err
			}
			// Decided, expired or gone: a new request replaces it.
			if err := s.rdb.Del(ctx, openKey).Err(); err != nil {
				return bot.Approval{}, false, unavailable("clear open approval", err)
			}
		}
		if err := s.putApproval(ctx, a); err != nil {
			return bot.Approval{}, false, err
		}
		ok, err := s.rdb.SetNX(ctx, openKey, a.ID, time.Until(a.ExpiresAt)).Result()
		if err != nil {
			return bot.Approval{}, false, unavailable("open approval", err)
		}
		if ok {
			return a, true, nil
		}
		// Another replica opened one first: drop ours, use theirs.
		s.rdb.Del(ctx, s.approvalKey(a.ID))
	}
	return bot.Approval{}, false, bot.Errorf(bot.CodeConflict, "state: could not open an approval for %s", a.OpenKey())
}

func (s *Store) putApproval(ctx context.Context, a bot.Approval) error {
	b, err := json.Marshal(approvalRecord{V: approvalVersion, Approval: a})
	if err != nil {
		return fmt.Errorf("state: encode approval: %w", err)
	}
	if err := s.rdb.Set(ctx, s.approvalKey(a.ID), b, s.approvalTTL(a)).Err(); err != nil {
		return unavailable("save approval", err)
	}
	return nil
}

func decodeApproval(id string, b []byte) (bot.Approval, error) {
	var rec approvalRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return bot.Approval{}, fmt.Errorf("state: decode approval %s: %w", id, err)
	}
	if rec.V != approvalVersion {
		return bot.Approval{}, fmt.Errorf("state: approval %s has version %d, not supported", id, rec.V)
	}
	return rec.Approval, nil
}

// Approval returns an approval, or an error with bot.CodeNotFound.
func (s *Store) Approval(ctx context.Context, id string) (bot.Approval, error) {
	b, err := s.rdb.Get(ctx, s.approvalKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return bot.Approval{}, bot.Errorf(bot.CodeNotFound, "state: no approval %q", id)
	}
	if err != nil {
		return bot.Approval{}, unavailable("read approval", err)
	}
	return decodeApproval(id, b)
}

// Transition changes an approval atomically: WATCH the key, check the
// status, write in MULTI; a concurrent writer makes it retry.
func (s *Store) Transition(ctx context.Context, id string, from []bot.ApprovalStatus, change func(*bot.Approval)) (bot.Approval, error) {
	key := s.approvalKey(id)
	var result bot.Approval
	var conflict bool
	txf := func(tx *redis.Tx) error {
		b, err := tx.Get(ctx, key).Bytes()
		if errors.Is(err, redis.Nil) {
			return bot.Errorf(bot.CodeNotFound, "state: no approval %q", id)
		}
		if err != nil {
			return unavailable("read approval", err)
		}
		a, err := decodeApproval(id, b)
		if err != nil {
			return &bot.Error{Code: bot.CodeInternal, Message: err.Error(), Err: err}
		}
		result, conflict = a, !slices.Contains(from, a.Status)
		if conflict {
			return nil
		}
		change(&a)
		nb, err := json.Marshal(approvalRecord{V: approvalVersion, Approval: a})
		if err != nil {
			return &bot.Error{Code: bot.CodeInternal, Message: "state: encode approval", Err: err}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, nb, s.approvalTTL(a))
			return nil
		})
		if err == nil {
			result = a
		}
		return err
	}
	for range 10 {
		err := s.rdb.Watch(ctx, txf, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		var be *bot.Error
		if errors.As(err, &be) {
			return bot.Approval{}, err
		}
		if err != nil { // the connection, from WATCH or EXEC
			return bot.Approval{}, unavailable("transition approval", err)
		}
		if conflict {
			return result, &bot.Error{Code: bot.CodeConflict, Message: fmt.Sprintf("state: approval %s is %s", id, result.Status)}
		}
		return result, nil
	}
	return bot.Approval{}, bot.Errorf(bot.CodeConflict, "state: approval %s keeps changing", id)
}

// SaveBatch stores approval ids under a new batch id.
func (s *Store) SaveBatch(ctx context.Context, ids []string) (string, error) {
	id := "bat_" + bot.NewApprovalID()[4:]
	b, _ := json.Marshal(ids)
	if err := s.rdb.Set(ctx, s.batchKey(id), b, s.opts.ApprovalRetention).Err(); err != nil {
		return "", unavailable("save batch", err)
	}
	return id, nil
}

// Batch returns the approval ids of a batch.
func (s *Store) Batch(ctx context.Context, id string) ([]string, error) {
	b, err := s.rdb.Get(ctx, s.batchKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, bot.Errorf(bot.CodeNotFound, "state: no batch %q", id)
	}
	if err != nil {
		return nil, unavailable("read batch", err)
	}
	var ids []string
	if err := json.Unmarshal(b, &ids); err != nil {
		return nil, fmt.Errorf("state: decode batch: %w", err)
	}
	return ids, nil
}

// auditLength is how many events a conversation's history keeps.
const auditLength = 50

// AppendAudit records an event, keeping the newest auditLength.
func (s *Store) AppendAudit(ctx context.Context, conversationID string, e bot.AuditEvent) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("state: encode audit event: %w", err)
	}
	key := s.auditKey(conversationID)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, key, b)
		p.LTrim(ctx, key, 0, auditLength-1)
		p.Expire(ctx, key, s.opts.AuditRetention)
		return nil
	})
	if err != nil {
		return unavailable("append audit", err)
	}
	return nil
}

// Audit returns up to n events, newest first.
func (s *Store) Audit(ctx context.Context, conversationID string, n int) ([]bot.AuditEvent, error) {
	raw, err := s.rdb.LRange(ctx, s.auditKey(conversationID), 0, int64(n-1)).Result()
	if err != nil {
		return nil, unavailable("read audit", err)
	}
	out := make([]bot.AuditEvent, 0, len(raw))
	for _, r := range raw {
		var e bot.AuditEvent
		if err := json.Unmarshal([]byte(r), &e); err != nil {
			return nil, fmt.Errorf("state: decode audit event: %w", err)
		}
		out = append(out, e)
	}
	return out, nil
}
