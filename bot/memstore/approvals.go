package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

// The bounds the Redis store keeps.
const (
	maxBatchLists = 20 // messages listing one batch
	maxListedIn   = 20 // batches one approval is listed in
)

// ApprovalRecords keeps approvals, their claims and batches (the Redis
// store's approval records), with an audit trail beside them, and can be
// made to fail as Redis does.
type ApprovalRecords struct {
	*Trails

	mu        sync.Mutex
	approvals map[string]approval.Approval
	open      map[approval.OpenKey]string
	batches   map[string][]string
	lists     map[string][]approval.PostedCard // by batch
	listedIn  map[string][]string              // batch ids by approval, newest first
	leases    map[string]time.Time             // claim leases by approval id
	failWrite error
	lose      int
	crash     *crash
}

func newApprovalRecords() *ApprovalRecords {
	return &ApprovalRecords{Trails: newTrails(), approvals: map[string]approval.Approval{},
		open: map[approval.OpenKey]string{}, batches: map[string][]string{},
		lists: map[string][]approval.PostedCard{}, listedIn: map[string][]string{}, leases: map[string]time.Time{}}
}

// crash is a Redis death to come: after more changes, one lands unanswered
// and every change after it fails with err.
type crash struct {
	after int
	err   error
}

// FailWrites makes every change to an approval (transitions and claims)
// fail with err, as when Redis is down, until FailWrites(nil).
func (s *ApprovalRecords) FailWrites(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failWrite = err
}

// LoseAnswers makes the next n changes to an approval take effect but
// answer CodeUnavailable, as when Redis's reply is lost.
func (s *ApprovalRecords) LoseAnswers(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lose = n
}

// Crash makes the change after the next after ones take effect but answer
// err, and every change from then on fail with err until FailWrites(nil):
// Redis dying between writing a change and answering it.
func (s *ApprovalRecords) Crash(after int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crash = &crash{after: after, err: err}
}

// ExpireClaims makes every claim's lease run out now, as if its replica
// died.
func (s *ApprovalRecords) ExpireClaims() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.leases {
		s.leases[id] = time.Now().Add(-time.Second)
	}
}

// Approvals returns every approval stored, in no particular order.
func (s *ApprovalRecords) Approvals() []approval.Approval {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]approval.Approval, 0, len(s.approvals))
	for _, a := range s.approvals {
		out = append(out, clone(a))
	}
	return out
}

// Put stores a record as it is, replacing the one with its id: a record
// as an earlier release wrote it, say.
func (s *ApprovalRecords) Put(a approval.Approval) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.approvals[a.ID] = clone(a)
}

// Batches returns the id of every batch saved, in no particular order.
func (s *ApprovalRecords) Batches() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.batches))
	for id := range s.batches {
		out = append(out, id)
	}
	return out
}

// OpenApproval implements bot.ApprovalStore.
func (s *ApprovalRecords) OpenApproval(_ context.Context, a approval.Approval) (approval.Approval, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := a.OpenKey()
	if id, ok := s.open[k]; ok {
		if e := s.approvals[id]; e.Status.Open() {
			return clone(e), false, nil
		}
	}
	a.ID = "apr_" + approval.NewToken()
	s.approvals[a.ID], s.open[k] = clone(a), a.ID
	return clone(a), true, nil
}

// update changes an approval with f, which may refuse (its error returned
// with the approval as it is).
func (s *ApprovalRecords) update(id string, f func(a *approval.Approval) error) (approval.Approval, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failWrite != nil {
		return approval.Approval{}, s.failWrite
	}
	a, ok := s.approvals[id]
	if !ok {
		return a, bot.Errorf(bot.CodeNotFound, "memstore: no approval %q", id)
	}
	a = clone(a)
	if err := f(&a); err != nil {
		return clone(s.approvals[id]), err
	}
	s.approvals[id] = clone(a)
	if c := s.crash; c != nil {
		if c.after--; c.after < 0 {
			s.crash, s.failWrite = nil, c.err
			return approval.Approval{}, c.err
		}
	}
	if s.lose > 0 {
		s.lose--
		return approval.Approval{}, bot.Errorf(bot.CodeUnavailable, "memstore: answer lost")
	}
	return a, nil
}

// Approval implements bot.ApprovalStore.
func (s *ApprovalRecords) Approval(_ context.Context, id string) (approval.Approval, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.approvals[id]
	if !ok {
		return a, bot.Errorf(bot.CodeNotFound, "memstore: no approval %q", id)
	}
	return clone(a), nil
}

// Transition implements bot.ApprovalStore.
func (s *ApprovalRecords) Transition(_ context.Context, id string, from []approval.Status, change func(*approval.Approval)) (approval.Approval, error) {
	return s.update(id, func(a *approval.Approval) error {
		if !slices.Contains(from, a.Status) {
			return conflict(a)
		}
		change(a)
		return nil
	})
}

// ClaimUpgrade implements bot.Claims.
func (s *ApprovalRecords) ClaimUpgrade(_ context.Context, id string, who approval.Person, at time.Time, lease time.Duration) (approval.Approval, error) {
	return s.update(id, func(a *approval.Approval) error {
		c, vote := a.Approve(who, at, approval.NewToken())
		if vote == approval.VoteRefused {
			return conflict(a)
		}
		*a = c
		if vote == approval.VoteClaimed {
			s.leases[id] = time.Now().Add(lease)
		}
		return nil
	})
}

// TakeOverClaim implements bot.Claims.
func (s *ApprovalRecords) TakeOverClaim(_ context.Context, id string, lease time.Duration) (approval.Approval, error) {
	return s.update(id, func(a *approval.Approval) error {
		if !a.Claimed() || s.leased(id) {
			return conflict(a)
		}
		a.ClaimToken = approval.NewToken()
		s.leases[id] = time.Now().Add(lease)
		return nil
	})
}

// leased reports whether the claim lease of approval id still runs.
func (s *ApprovalRecords) leased(id string) bool {
	until, ok := s.leases[id]
	return ok && time.Now().Before(until)
}

// Amend implements bot.Claims.
func (s *ApprovalRecords) Amend(_ context.Context, held approval.Approval, change func(*approval.Approval)) (approval.Approval, error) {
	return s.update(held.ID, func(a *approval.Approval) error {
		if !a.HeldBy(held.ClaimToken) {
			return conflict(a)
		}
		change(a)
		return nil
	})
}

// HoldClaim implements bot.Claims.
func (s *ApprovalRecords) HoldClaim(_ context.Context, id, token string, lease time.Duration) (approval.Approval, error) {
	return s.update(id, func(a *approval.Approval) error {
		if !a.HeldBy(token) {
			return conflict(a)
		}
		s.leases[id] = time.Now().Add(lease)
		return nil
	})
}

// Settle implements bot.Claims.
func (s *ApprovalRecords) Settle(_ context.Context, held approval.Approval, change func(*approval.Approval)) (approval.Approval, error) {
	return s.update(held.ID, func(a *approval.Approval) error {
		if !a.HeldBy(held.ClaimToken) {
			return conflict(a)
		}
		change(a)
		a.ClaimToken = ""
		delete(s.leases, held.ID)
		return nil
	})
}

// ExpiredClaims implements bot.Claims.
func (s *ApprovalRecords) ExpiredClaims(_ context.Context, n int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id := range s.leases {
		if len(ids) >= n {
			break
		}
		if !s.leased(id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// SaveBatch implements bot.ApprovalStore. Batch ids count up from bat_0,
// so that a test can name a batch before it is saved.
func (s *ApprovalRecords) SaveBatch(_ context.Context, ids []string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := fmt.Sprint("bat_", len(s.batches))
	s.batches[id] = slices.Clone(ids)
	for _, a := range ids {
		listed := slices.Insert(s.listedIn[a], 0, id)
		s.listedIn[a] = listed[:min(len(listed), maxListedIn)]
	}
	return id, nil
}

// Batch implements bot.ApprovalStore.
func (s *ApprovalRecords) Batch(_ context.Context, id string) (approval.Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, ok := s.batches[id]
	if !ok {
		return approval.Batch{}, bot.Errorf(bot.CodeNotFound, "memstore: no batch %q", id)
	}
	return approval.Batch{ID: id, Approvals: slices.Clone(ids), Lists: clone(s.lists[id])}, nil
}

// RecordList implements bot.ApprovalStore. Lists are kept in the order of
// their activity ids, as the Redis store returns them.
func (s *ApprovalRecords) RecordList(_ context.Context, id string, l approval.PostedCard) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.batches[id]; !ok {
		return bot.Errorf(bot.CodeNotFound, "memstore: no batch %q", id)
	}
	lists := s.lists[id]
	i, found := slices.BinarySearchFunc(lists, l.ActivityID, func(c approval.PostedCard, activityID string) int {
		return strings.Compare(c.ActivityID, activityID)
	})
	switch {
	case found:
		lists[i] = clone(l)
	case len(lists) < maxBatchLists:
		s.lists[id] = slices.Insert(lists, i, clone(l))
	}
	return nil
}

// ListedIn implements bot.ApprovalStore.
func (s *ApprovalRecords) ListedIn(_ context.Context, approvalID string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.listedIn[approvalID]), nil
}

func conflict(a *approval.Approval) error {
	return bot.Errorf(bot.CodeConflict, "memstore: approval %s is %s", a.ID, a.Status)
}

// RecordOutcome implements bot.ApprovalStore.
func (s *ApprovalRecords) RecordOutcome(_ context.Context, conversationID string, e approval.AuditEvent) ([]string, error) {
	if err := s.Trails.record(conversationID, e); err != nil || e.ApprovalID == "" {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.listedIn[e.ApprovalID]), nil
}
