package bot

import (
	"context"
	"errors"
	"time"
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
	// TakeFollowUp is Take for a follow-up (the check after an upgrade, the
	// cards of a version just published): it never waits behind what Take
	// booked, only behind other follow-ups, in a share of the budget Take
	// cannot book.
	TakeFollowUp(ctx context.Context, tenantID string, n int) (wait time.Duration, booked bool, err error)
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

// followsUp reports whether a job is a follow-up, which takes its Graph
// calls before the sweep's (Budget.TakeFollowUp): the check after an
// upgrade someone approved, and the cards of a version just published.
func followsUp(reason string) bool { return reason == ReasonVerify || reason == ReasonCatalog }

// WorkerOptions configures RunScans.
type WorkerOptions struct {
	Queue  JobQueue
	Budget Budget // nil: no limit
	// CallsPerScan is what a scan is charged against the budget. Default 2
	// (the installations, then the catalog definitions of their apps); a
	// scan that uses the watcher's catalog read (Options.CatalogReads) is
	// charged one less.
	CallsPerScan int
	// MaxAttempts bounds retries of a job failing for other reasons than
	// throttling (those are retried until they pass); the next sweep
	// catches what is dropped. Default 5.
	MaxAttempts int
	// Observe, if set, is told each job's outcome: "ok", "throttled",
	// "retry", "dropped", plus what it did.
	Observe func(outcome string, r ScanResult)
}

// runScans consumes scan jobs until ctx ends. A job is acknowledged only
// after its work and records are written; a throttled tenant delays the
// job by what Graph's Retry-After asked (10 s when it did not say), or by
// the budget's wait, and never drops it.
func (pr *proactive) runScans(ctx context.Context, o WorkerOptions) error {
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
			pr.log.WarnContext(ctx, "cannot read scan jobs", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		if !ok {
			continue
		}
		outcome, res := pr.runJob(ctx, o, j)
		observe(outcome, res)
	}
	return nil
}

func (pr *proactive) runJob(ctx context.Context, o WorkerOptions, j Job) (string, ScanResult) {
	log := pr.log.With("job", j.ID, "reason", j.Reason, "tenant", j.TenantID)
	if o.Budget != nil && !j.Budgeted {
		calls := o.CallsPerScan
		if pr.requests.reads != nil && sharesCatalogRead(j.Reason) {
			calls = max(calls-1, 1)
		}
		take := o.Budget.Take
		if followsUp(j.Reason) {
			take = o.Budget.TakeFollowUp
		}
		wait, booked, err := take(ctx, j.TenantID, calls)
		if err != nil {
			log.WarnContext(ctx, "graph budget unavailable; the job runs again later", "err", err)
			return "retry", ScanResult{} // not acknowledged: reclaimed later
		}
		if wait > 0 {
			// Off the queue until its turn, so other tenants' jobs behind
			// it on the same stream are not held up.
			j.Budgeted = booked
			if err := o.Queue.Delay(ctx, j, pr.now().Add(wait)); err != nil {
				log.WarnContext(ctx, "cannot delay job", "err", err)
			}
			return "throttled", ScanResult{}
		}
	}
	j.Budgeted = false // a later run (retry, throttled by Graph) takes the budget again
	var res ScanResult
	var err error
	if j.Reason == ReasonVerify {
		err = pr.verifier.verifyUpgrade(ctx, j.ApprovalID)
	} else {
		res, err = pr.scanConversation(ctx, j.ScanJob)
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
		at := pr.now().Add(wait)
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
	if err := o.Queue.Delay(ctx, j, pr.now().Add(backoff)); err != nil {
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
