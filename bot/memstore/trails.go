package memstore

import (
	"context"
	"slices"
	"sync"

	"github.com/upgradeapprovals/bot/approval"
)

// auditLength is how many lines of one conversation's history the Redis
// store keeps.
const auditLength = 50

// Trails keeps each tenant's audit trail and each conversation's history.
type Trails struct {
	mu        sync.Mutex
	trails    map[string][]approval.AuditEvent // by tenant, oldest first
	history   map[string][]approval.AuditEvent // by conversation, newest first
	failAudit error
}

func newTrails() *Trails {
	return &Trails{trails: map[string][]approval.AuditEvent{}, history: map[string][]approval.AuditEvent{}}
}

// FailAudit makes every write to the audit trail (AppendAudit and
// RecordOutcome) fail with err, until FailAudit(nil).
func (s *Trails) FailAudit(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAudit = err
}

// AppendAudit implements bot.AuditTrail.
func (s *Trails) AppendAudit(_ context.Context, e approval.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failAudit != nil {
		return s.failAudit
	}
	s.trails[e.TenantID] = append(s.trails[e.TenantID], clone(e))
	return nil
}

// Trail returns the audit trail of a tenant, oldest first.
func (s *Trails) Trail(tenantID string) []approval.AuditEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.trails[tenantID])
}

// Audit implements bot.ApprovalStore.
func (s *Trails) Audit(_ context.Context, conversationID string, n int) ([]approval.AuditEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.history[conversationID]
	return slices.Clone(h[:max(0, min(n, len(h)))]), nil
}

// record appends e to its tenant's trail and, as a history line, to a
// conversation's history.
func (s *Trails) record(conversationID string, e approval.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failAudit != nil {
		return s.failAudit
	}
	s.trails[e.TenantID] = append(s.trails[e.TenantID], clone(e))
	h := slices.Insert(s.history[conversationID], 0, clone(e))
	s.history[conversationID] = h[:min(len(h), auditLength)]
	return nil
}
