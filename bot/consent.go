package bot

import (
	"context"

	"github.com/upgradeapprovals/bot/approval"
)

// ConsentPolicies reads what a tenant lets its chat and team owners consent
// to (its authorization policy and RSC pre-approval policies).
type ConsentPolicies interface {
	ConsentFacts(ctx context.Context, tenantID string) (approval.ConsentFacts, error)
}
