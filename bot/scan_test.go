package bot_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/bot/memstore"
)

// oneJobQueue hands out one job and records what became of it; with
// requeue, a delayed job is handed out again at once (as if due).
type oneJobQueue struct {
	mu      sync.Mutex
	job     *bot.Job
	requeue bool
	acked   int
	delayed []bot.ScanJob
	dueAt   []time.Time
}

func (q *oneJobQueue) Enqueue(context.Context, bot.ScanJob) error { return nil }

func (q *oneJobQueue) Next(ctx context.Context) (bot.Job, bool, error) {
	q.mu.Lock()
	j := q.job
	q.job = nil
	q.mu.Unlock()
	if j == nil {
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
		return bot.Job{}, false, nil
	}
	return *j, true, nil
}

func (q *oneJobQueue) Ack(context.Context, bot.Job) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.acked++
	return nil
}

func (q *oneJobQueue) Delay(_ context.Context, j bot.Job, at time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.delayed = append(q.delayed, j.ScanJob)
	q.dueAt = append(q.dueAt, at)
	if q.requeue {
		q.job = &j
	}
	return nil
}

func (q *oneJobQueue) state() (int, []bot.ScanJob, []time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.acked, append([]bot.ScanJob(nil), q.delayed...), append([]time.Time(nil), q.dueAt...)
}

// scriptedBudget answers Take with each of answers in turn, then has room.
type scriptedBudget struct {
	mu      sync.Mutex
	answers []budgetAnswer
	takes   int
}

type budgetAnswer struct {
	wait   time.Duration
	booked bool
}

func (f *scriptedBudget) Pause(context.Context, string, time.Time) error { return nil }

// TakeFollowUp answers as Take: these tests are about one lane.
func (f *scriptedBudget) TakeFollowUp(ctx context.Context, tenantID string, n int) (time.Duration, bool, error) {
	return f.Take(ctx, tenantID, n)
}

func (f *scriptedBudget) Take(context.Context, string, int) (time.Duration, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.takes++
	if len(f.answers) == 0 {
		return 0, false, nil
	}
	a := f.answers[0]
	f.answers = f.answers[1:]
	return a.wait, a.booked, nil
}

// runOneJob runs scan workers until done says so.
func runOneJob(t *testing.T, q *oneJobQueue, budget bot.Budget, done func() bool) []string {
	t.Helper()
	b := newBot(t, &fakeConnector{}, memstore.New())
	var mu sync.Mutex
	var outcomes []string
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = b.RunScans(ctx, bot.WorkerOptions{Queue: q, Budget: budget, Observe: func(o string, _ bot.ScanResult) {
			mu.Lock()
			outcomes = append(outcomes, o)
			mu.Unlock()
		}})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the job")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-stopped
	mu.Lock()
	defer mu.Unlock()
	return outcomes
}

func newJob() *bot.Job {
	return &bot.Job{ID: "0/1-0", ScanJob: bot.ScanJob{TenantID: "t1", ConversationID: "19:a@thread.v2", Reason: "sweep"}}
}

// A tenant whose budget is spent has the job's calls booked for later: the
// job leaves the queue until then and, back, runs without taking the budget
// again (a second Take would book it further off, round after round).
func TestThrottledJobIsBookedAndRunsOnceAtItsTurn(t *testing.T) {
	budget := &scriptedBudget{answers: []budgetAnswer{{300 * time.Millisecond, true}, {time.Minute, true}}}
	q := &oneJobQueue{job: newJob(), requeue: true}
	start := time.Now()
	outcomes := runOneJob(t, q, budget, func() bool { acked, _, _ := q.state(); return acked > 0 })
	acked, delayed, dueAt := q.state()
	if acked != 1 || len(delayed) != 1 || !delayed[0].Budgeted || fmt.Sprint(outcomes) != "[throttled ok]" {
		t.Fatalf("acked %d, delayed %+v, outcomes %v: want put off once, booked, then run", acked, delayed, outcomes)
	}
	if due := dueAt[0].Sub(start); due < 300*time.Millisecond || due > 300*time.Millisecond+time.Since(start) {
		t.Errorf("put off by %s, want the 300ms the budget booked", due)
	}
	if budget.takes != 1 {
		t.Errorf("the budget was taken %d times, want once", budget.takes)
	}
}

// A paused tenant (Graph said Retry-After) books nothing: the job is put off
// to the pause's end and takes the budget when it comes back.
func TestPausedTenantsJobIsPutOffUnbooked(t *testing.T) {
	budget := &scriptedBudget{answers: []budgetAnswer{{2 * time.Minute, false}}}
	q := &oneJobQueue{job: newJob()}
	start := time.Now()
	outcomes := runOneJob(t, q, budget, func() bool { _, delayed, _ := q.state(); return len(delayed) > 0 })
	acked, delayed, dueAt := q.state()
	if acked != 0 || len(delayed) != 1 || delayed[0].Budgeted || fmt.Sprint(outcomes) != "[throttled]" {
		t.Fatalf("acked %d, delayed %+v, outcomes %v: want put off once, not booked", acked, delayed, outcomes)
	}
	if due := dueAt[0].Sub(start); due < 2*time.Minute || due > 2*time.Minute+time.Since(start) {
		t.Errorf("put off by %s, want the pause's 2m", due)
	}
}
