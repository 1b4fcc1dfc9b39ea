package bot

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

// ScanJob asks for one conversation to be looked at (ScanConversation).
type ScanJob struct {
	TenantID       string `json:"tenantId"`
	ConversationID string `json:"conversationId"`
	// Reason is why: "catalog" (a new version was published), "sweep",
	// "followup" (a reminder or an expiry is due).
	Reason string `json:"reason"`
	// ApprovalID names the approval a "verify" job checks.
	ApprovalID string `json:"approvalId,omitempty"`
	// Attempt counts failed runs, for backoff.
	Attempt int `json:"attempt,omitempty"`
	// Budgeted: the job's Graph calls were booked from its tenant's budget
	// for the moment it was put off to.
	Budgeted bool `json:"budgeted,omitempty"`
}

// Job is a ScanJob handed to one consumer.
type Job struct {
	ID string
	ScanJob
}

// JobQueue holds scan jobs for every replica to share. A job handed out and
// never acknowledged (its replica died) is handed out again.
type JobQueue interface {
	Enqueue(ctx context.Context, j ScanJob) error
	// Next waits briefly for a job; it returns ok false when none came.
	Next(ctx context.Context) (j Job, ok bool, err error)
	// Ack marks a job done.
	Ack(ctx context.Context, j Job) error
	// Delay acknowledges this run and has the job run again at at.
	Delay(ctx context.Context, j Job, at time.Time) error
}

// Budget is a per-tenant Graph rate limit shared by every replica.
type Budget interface {
	// Take spends n calls of a tenant's budget now (wait 0), or books them
	// for later and says how long until then (booked true): the job is put
	// off to that moment and runs without taking again, so a throttled
	// tenant's jobs each come round once more, in order, at the budget's
	// pace. A paused tenant's budget books nothing (booked false).
	Take(ctx context.Context, tenantID string, n int) (wait time.Duration, booked bool, err error)
	// Pause lets no call of a tenant's budget through until until: Graph
	// throttled the tenant and said when to come back.
	Pause(ctx context.Context, tenantID string, until time.Time) error
}

// Throttled is implemented by errors of a throttled call (HTTP 429): the
// wait it asked for (0 when it did not say).
type Throttled interface {
	Throttled() (retryAfter time.Duration, ok bool)
}

// throttledWait is how long a throttled job waits when Graph did not say.
const throttledWait = 10 * time.Second

// retryAfter finds a throttling answer in err's chain.
func retryAfter(err error) (time.Duration, bool) {
	var t Throttled
	if errors.As(err, &t) {
		return t.Throttled()
	}
	return 0, false
}

// WorkerOptions configures RunScans.
type WorkerOptions struct {
	Queue  JobQueue
	Budget Budget // nil: no limit
	// CallsPerScan is what a scan is charged against the budget. Default 2
	// (the installations and, for pending ones, their consent).
	CallsPerScan int
	// MaxAttempts bounds retries of a job failing for other reasons than
	// throttling (those are retried until they pass); the next sweep
	// catches what is dropped. Default 5.
	MaxAttempts int
	// Observe, if set, is told each job's outcome: "ok", "throttled",
	// "retry", "dropped", plus what it did.
	Observe func(outcome string, r ScanResult)
}

// RunScans consumes scan jobs until ctx ends. A job is acknowledged only
// after its work and records are written; a throttled tenant delays the
// job by what Graph's Retry-After asked (10 s when it did not say), or by
// the budget's wait, and never drops it.
func (b *Bot) RunScans(ctx context.Context, o WorkerOptions) error {
	if o.Queue == nil {
		return errors.New("bot: RunScans needs a Queue")
	}
	if o.CallsPerScan <= 0 {
		o.CallsPerScan = 2
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	observe := o.Observe
	if observe == nil {
		observe = func(string, ScanResult) {}
	}
	for ctx.Err() == nil {
		j, ok, err := o.Queue.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			b.opts.Logger.WarnContext(ctx, "cannot read scan jobs", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		if !ok {
			continue
		}
		outcome, res := b.runJob(ctx, o, j)
		observe(outcome, res)
	}
	return nil
}

func (b *Bot) runJob(ctx context.Context, o WorkerOptions, j Job) (string, ScanResult) {
	log := b.opts.Logger.With("job", j.ID, "reason", j.Reason, "tenant", j.TenantID)
	if o.Budget != nil && !j.Budgeted {
		wait, booked, err := o.Budget.Take(ctx, j.TenantID, o.CallsPerScan)
		if err != nil {
			log.WarnContext(ctx, "graph budget unavailable; the job runs again later", "err", err)
			return "retry", ScanResult{} // not acknowledged: reclaimed later
		}
		if wait > 0 {
			// Off the queue until its turn, so other tenants' jobs behind
			// it on the same stream are not held up.
			j.Budgeted = booked
			if err := o.Queue.Delay(ctx, j, b.opts.Now().Add(wait)); err != nil {
				log.WarnContext(ctx, "cannot delay job", "err", err)
			}
			return "throttled", ScanResult{}
		}
	}
	j.Budgeted = false // a later run (retry, throttled by Graph) takes the budget again
	var res ScanResult
	var err error
	if j.Reason == ReasonVerify {
		err = b.VerifyUpgrade(ctx, j.ApprovalID)
	} else {
		res, err = b.ScanConversation(ctx, j.ScanJob)
	}
	if err == nil {
		if err := o.Queue.Ack(ctx, j); err != nil {
			log.WarnContext(ctx, "cannot acknowledge job; it may run again (harmless)", "err", err)
		}
		return "ok", res
	}
	if ctx.Err() != nil {
		return "retry", res // shutting down: another replica reclaims it
	}
	if wait, ok := retryAfter(err); ok {
		if wait <= 0 {
			wait = throttledWait
		}
		at := b.opts.Now().Add(wait)
		log.InfoContext(ctx, "graph throttled the tenant; job delayed and the tenant's scans paused", "retry_after", wait.String())
		// The tenant's other scans wait too, rather than each asking Graph
		// only to be told the same.
		if o.Budget != nil {
			if err := o.Budget.Pause(ctx, j.TenantID, at); err != nil {
				log.WarnContext(ctx, "cannot pause the tenant's graph budget", "err", err)
			}
		}
		if err := o.Queue.Delay(ctx, j, at); err != nil {
			log.WarnContext(ctx, "cannot delay job", "err", err)
		}
		return "throttled", res
	}
	j.Attempt++
	if j.Attempt >= o.MaxAttempts {
		log.WarnContext(ctx, "scan failed; giving up until the next sweep", "attempts", j.Attempt, "err", err)
		if err := o.Queue.Ack(ctx, j); err != nil {
			log.WarnContext(ctx, "cannot acknowledge job", "err", err)
		}
		return "dropped", res
	}
	backoff := time.Duration(1<<j.Attempt) * 5 * time.Second // 10 s, 20 s, 40 s, 80 s
	log.WarnContext(ctx, "scan failed; retrying", "attempt", j.Attempt, "in", backoff.String(), "err", err)
	if err := o.Queue.Delay(ctx, j, b.opts.Now().Add(backoff)); err != nil {
		log.WarnContext(ctx, "cannot delay job", "err", err)
	}
	return "retry", res
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

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
	if now.Sub(last) >= w.o.SweepInterval {
		for _, tenant := range tenants {
			if err := w.enqueueAll(ctx, tenant, "sweep"); err != nil {
				return err
			}
		}
		if err := w.o.Log.SaveSweep(ctx, token, now); err != nil {
			return err
		}
		w.lastRead = time.Time{} // the sweep covers it; still record the catalog below
	}
	readCatalogs := now.Sub(w.lastRead) >= w.o.ScanInterval
	for _, tenant := range tenants {
		if readCatalogs {
			if err := w.watchCatalog(ctx, token, tenant, now.Sub(last) >= w.o.SweepInterval); err != nil {
				w.o.Logger.WarnContext(ctx, "cannot read a tenant's catalog", "tenant", tenant, "err", err)
			}
		}
		due, err := w.o.Due.DueConversations(ctx, tenant, now, w.o.ScanInterval, 1000)
		if err != nil {
			return err
		}
		for _, conv := range due {
			if err := w.o.Queue.Enqueue(ctx, ScanJob{TenantID: tenant, ConversationID: conv, Reason: "followup"}); err != nil {
				return err
			}
		}
	}
	if readCatalogs {
		w.lastRead = now
	}
	return nil
}

// watchCatalog reads a tenant's catalog and, when an app has a newer
// published version than last seen, scans every installation scope there.
func (w *Watcher) watchCatalog(ctx context.Context, token int64, tenant string, swept bool) error {
	defs, err := w.o.Catalog.Published(ctx, tenant)
	if err != nil {
		return err
	}
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
		if err := w.enqueueAll(ctx, tenant, "catalog"); err != nil {
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
