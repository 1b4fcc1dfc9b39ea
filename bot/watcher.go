package bot

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

// Lease makes one replica the catalog watcher. Each new holder gets a
// higher fencing token; writes made as the watcher carry it, so a holder
// that lost the lease (paused, partitioned) cannot overwrite a newer one's.
type Lease interface {
	// Acquire takes the lease for holder, or renews it if holder has it,
	// for ttl. ok false: someone else holds it.
	Acquire(ctx context.Context, holder string, ttl time.Duration) (token int64, ok bool, err error)
	// Release gives it up if holder has it.
	Release(ctx context.Context, holder string) error
}

// ErrLeaseLost: a write as the watcher carried a token that no longer holds
// the lease.
var ErrLeaseLost = errors.New("bot: the watcher lease was lost")

// WatchLog is what the watcher remembers between rounds, fenced by the
// lease's token.
type WatchLog interface {
	// SeenCatalog returns, per app, the newest published version the
	// watcher saw in a tenant's catalog; ok false on a tenant's first read.
	SeenCatalog(ctx context.Context, tenantID string) (versions map[string]string, ok bool, err error)
	SaveCatalog(ctx context.Context, token int64, tenantID string, versions map[string]string) error
	LastSweep(ctx context.Context) (time.Time, error)
	SaveSweep(ctx context.Context, token int64, at time.Time) error
}

// OrgCatalog reads a tenant's whole org app catalog.
type OrgCatalog interface {
	// Published lists each app's newest published definition, in one
	// paged read of the catalog with its definitions.
	Published(ctx context.Context, tenantID string) ([]approval.AppDefinition, error)
}

// WatcherOptions configures a Watcher. Zero values take the defaults.
type WatcherOptions struct {
	Lease   Lease
	Log     WatchLog
	Queue   JobQueue
	Catalog OrgCatalog
	Where   ReferenceIndex
	Due     Followups
	// Reads, if set, keeps each catalog read for the scans it queues
	// (Options.CatalogReads).
	Reads CatalogReads
	// Holder names this replica in the lease. Required.
	Holder string
	// ScanInterval is how often each tenant's catalog is read
	// (BOT_SCAN_INTERVAL). Default 15m.
	ScanInterval time.Duration
	// SweepInterval is how often every installation scope the bot is in
	// is scanned (BOT_SWEEP_INTERVAL). Default 24h.
	SweepInterval time.Duration
	// Tick is how often the lease is renewed and follow-ups are looked
	// for. Default ScanInterval/3, at most a minute.
	Tick time.Duration
	// OnLease, if set, is told whether this replica holds the lease.
	OnLease func(held bool)
	Logger  *slog.Logger
	Now     func() time.Time
}

// Watcher runs on every replica; only the lease holder reads catalogs and
// hands out scans.
type Watcher struct {
	o         WatcherOptions
	lastRead  time.Time
	lastToken int64
}

// NewWatcher returns a Watcher.
func NewWatcher(o WatcherOptions) (*Watcher, error) {
	if o.Lease == nil || o.Log == nil || o.Queue == nil || o.Catalog == nil || o.Where == nil || o.Due == nil || o.Holder == "" {
		return nil, errors.New("bot: Watcher needs Lease, Log, Queue, Catalog, Where, Due and Holder")
	}
	if o.ScanInterval <= 0 {
		o.ScanInterval = 15 * time.Minute
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 24 * time.Hour
	}
	if o.Tick <= 0 {
		o.Tick = min(o.ScanInterval/3, time.Minute)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OnLease == nil {
		o.OnLease = func(bool) {}
	}
	return &Watcher{o: o}, nil
}

// Run watches until ctx ends, then gives the lease up so another replica
// takes over at once.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.o.Tick)
	defer t.Stop()
	for {
		if err := w.round(ctx); err != nil && ctx.Err() == nil {
			w.o.Logger.WarnContext(ctx, "catalog watcher round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			w.o.OnLease(false)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			return w.o.Lease.Release(rctx, w.o.Holder)
		case <-t.C:
		}
	}
}

// round renews (or takes) the lease and, as the holder, does what is due.
func (w *Watcher) round(ctx context.Context) error {
	token, ok, err := w.o.Lease.Acquire(ctx, w.o.Holder, 3*w.o.Tick)
	if err != nil {
		w.o.OnLease(false)
		return err
	}
	w.o.OnLease(ok)
	if !ok {
		w.lastToken = 0
		return nil
	}
	if token != w.lastToken {
		// A new term: read the catalogs now rather than trusting when a
		// previous holder read them last.
		w.lastToken, w.lastRead = token, time.Time{}
		w.o.Logger.InfoContext(ctx, "this replica is now the catalog watcher", "token", token)
	}
	now := w.o.Now()
	tenants, err := w.o.Where.Tenants(ctx)
	if err != nil {
		return err
	}
	last, err := w.o.Log.LastSweep(ctx)
	if err != nil {
		return err
	}
	sweep := now.Sub(last) >= w.o.SweepInterval
	readCatalogs := sweep || now.Sub(w.lastRead) >= w.o.ScanInterval
	if sweep {
		// Each tenant's catalog is read before its sweep is queued, so its
		// scans share this read (Reads) rather than each reading it again.
		for _, tenant := range tenants {
			defs, err := w.readCatalog(ctx, token, tenant)
			if err := w.enqueueAll(ctx, tenant, ReasonSweep); err != nil {
				return err
			}
			if err == nil {
				w.recordCatalog(ctx, token, tenant, defs, true)
			}
		}
		if err := w.o.Log.SaveSweep(ctx, token, now); err != nil {
			return err
		}
	}
	for _, tenant := range tenants {
		if readCatalogs && !sweep {
			if defs, err := w.readCatalog(ctx, token, tenant); err == nil {
				w.recordCatalog(ctx, token, tenant, defs, false)
			}
		}
		due, err := w.o.Due.DueConversations(ctx, tenant, now, w.o.ScanInterval, 1000)
		if err != nil {
			return err
		}
		for _, conv := range due {
			if err := w.o.Queue.Enqueue(ctx, ScanJob{TenantID: tenant, ConversationID: conv, Reason: ReasonFollowup}); err != nil {
				return err
			}
		}
	}
	if readCatalogs {
		w.lastRead = now
	}
	return nil
}

// readCatalog reads a tenant's catalog and keeps the read for the scans
// queued after it (Reads): a scan that finds none fresh enough reads the
// catalog itself.
func (w *Watcher) readCatalog(ctx context.Context, token int64, tenant string) ([]approval.AppDefinition, error) {
	at := w.o.Now()
	defs, err := w.o.Catalog.Published(ctx, tenant)
	if err != nil {
		w.o.Logger.WarnContext(ctx, "cannot read a tenant's catalog", "tenant", tenant, "err", err)
		return nil, err
	}
	if w.o.Reads != nil {
		if err := w.o.Reads.SaveCatalogRead(ctx, token, tenant, CatalogRead{At: at, Definitions: defs}); err != nil {
			w.o.Logger.WarnContext(ctx, "cannot keep the catalog read for the scans", "tenant", tenant, "err", err)
		}
	}
	return defs, nil
}

// recordCatalog records what a catalog read saw and, when an app has a
// newer published version than last seen, scans every installation scope
// of the tenant (unless its sweep was just queued).
func (w *Watcher) recordCatalog(ctx context.Context, token int64, tenant string, defs []approval.AppDefinition, swept bool) {
	if err := w.watchCatalog(ctx, token, tenant, defs, swept); err != nil {
		w.o.Logger.WarnContext(ctx, "cannot record a tenant's catalog", "tenant", tenant, "err", err)
	}
}

func (w *Watcher) watchCatalog(ctx context.Context, token int64, tenant string, defs []approval.AppDefinition, swept bool) error {
	seen, known, err := w.o.Log.SeenCatalog(ctx, tenant)
	if err != nil {
		return err
	}
	now := make(map[string]string, len(defs))
	var newer []string
	for _, d := range defs {
		now[d.TeamsAppID] = d.Version
		if old, ok := seen[d.TeamsAppID]; known && (!ok || approval.CompareVersions(d.Version, old) > 0) {
			newer = append(newer, d.DisplayName+" "+d.Version)
		}
	}
	// A tenant's first read scans it too: a version published between the
	// install's own check and this read would otherwise wait for a sweep.
	if (len(newer) > 0 || !known) && !swept {
		w.o.Logger.InfoContext(ctx, "new catalog versions; scanning the tenant", "tenant", tenant, "apps", newer, "first_read", !known)
		if err := w.enqueueAll(ctx, tenant, ReasonCatalog); err != nil {
			return err
		}
	}
	return w.o.Log.SaveCatalog(ctx, token, tenant, now)
}

func (w *Watcher) enqueueAll(ctx context.Context, tenant, reason string) error {
	return w.o.Where.Conversations(ctx, tenant, func(conv string) error {
		return w.o.Queue.Enqueue(ctx, ScanJob{TenantID: tenant, ConversationID: conv, Reason: reason})
	})
}
