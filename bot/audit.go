package bot

import (
	"context"

	"github.com/upgradeapprovals/bot/approval"
)

// auditRetry is how long an audit event's write is retried while Redis is
// unavailable: the event is retried like the other records, then logged
// as lost, never dropped silently; it never fails the click or the turn
// it is part of.
const auditRetry = recordRetry

// audit appends the event e to its tenant's audit trail.
func (pl *plumbing) audit(ctx context.Context, trail AuditTrail, e approval.AuditEvent) {
	err := retryStore(ctx, auditRetry, func(ctx context.Context) error { return trail.AppendAudit(ctx, e) })
	if err != nil {
		pl.log.ErrorContext(ctx, "cannot record an audit event; it is missing from the audit trail",
			"operation", e.Operation, "approval", e.ApprovalID, "tenant", e.TenantID, "err", err)
	}
}
