package bot

import (
	"context"
	"slices"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

// Why a scan job runs (ScanJob.Reason).
const (
	ReasonSweep    = "sweep"    // every installation scope, every SweepInterval
	ReasonCatalog  = "catalog"  // the catalog published a newer version
	ReasonFollowup = "followup" // a reminder or an expiry is due
)

// CatalogRead is the watcher's read of a tenant's org app catalog: each
// app's newest published definition, and when it was read.
type CatalogRead struct {
	At          time.Time                `json:"at"`
	Definitions []approval.AppDefinition `json:"definitions"`
}

// CatalogReads shares the watcher's read of each tenant's catalog with the
// scans it queues: a sweep reads the catalog once per tenant, not once per
// installation scope, and spends the tenant's Graph budget on installations.
type CatalogReads interface {
	// SaveCatalogRead keeps r as the tenant's latest read, unless one made
	// under a newer watcher lease token is kept already.
	SaveCatalogRead(ctx context.Context, token int64, tenantID string, r CatalogRead) error
	// CatalogRead returns the tenant's latest read; ok false when none.
	CatalogRead(ctx context.Context, tenantID string) (r CatalogRead, ok bool, err error)
}

// sharesCatalogRead reports whether a scan job may use the watcher's read
// of the catalog: the jobs the watcher queued right after reading it. A
// follow-up, "check", a click and the bot being added read it afresh.
func sharesCatalogRead(reason string) bool { return reason == ReasonSweep || reason == ReasonCatalog }

// behindShared is behind for a job the watcher queued: the installed apps
// of the org catalog are looked up in the watcher's read, when one no older
// than CatalogMaxAge is kept; the others (store, sideloaded apps: the
// watcher reads the org catalog only) are read as behind reads them.
func (rq *requests) behindShared(ctx context.Context, scope approval.Scope, installed []approval.Installation) ([]approval.PendingUpgrade, error) {
	if rq.reads == nil {
		return rq.behind(ctx, scope, installed)
	}
	read, ok, err := rq.reads.CatalogRead(ctx, scope.TenantID)
	if err != nil {
		rq.log.WarnContext(ctx, "cannot read the watcher's catalog read; reading the catalog", "tenant", scope.TenantID, "err", err)
	}
	if err != nil || !ok || rq.now().Sub(read.At) > rq.readMaxAge {
		return rq.behind(ctx, scope, installed)
	}
	var others []string
	for _, in := range installed {
		if in.TeamsAppID != "" && in.DistributionMethod != "organization" && !slices.Contains(others, in.TeamsAppID) {
			others = append(others, in.TeamsAppID)
		}
	}
	defs := read.Definitions
	if len(others) > 0 {
		more, err := rq.catalog.Definitions(ctx, scope.TenantID, others)
		if err != nil {
			return nil, err
		}
		defs = append(slices.Clip(defs), more...)
	}
	return approval.Behind(installed, defs), nil
}
