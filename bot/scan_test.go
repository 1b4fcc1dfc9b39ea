package bot_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/bot"
)

// oneJobQueue hands out one job and records what became of it.
type oneJobQueue struct {
	mu      sync.Mutex
	job     *bot.Job
	acked   int
	delayed []time.Time
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

func (q *oneJobQueue) Delay(_ context.Context, _ bot.Job, at time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.delayed = append(q.delayed, at)
	return nil
}

func (q *oneJobQueue) state() (int, []time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.acked, append([]time.Time(nil), q.delayed...)
}

// fullBudget says to wait each of waits in turn, then has room.
type fullBudget struct {
	mu    sync.Mutex
	waits []time.Duration
	takes int
}

func (f *fullBudget) Pause(context.Context, string, time.Time) error { return nil }

func (f *fullBudget) Take(context.Context, string, int) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.takes++
	if len(f.waits) == 0 {
		return 0, nil
	}
	w := f.waits[0]
	f.waits = f.waits[1:]
	return w, nil
}

// runOneJob runs scan workers until the job is acknowledged or delayed.
func runOneJob(t *testing.T, budget bot.Budget, budgetWait time.Duration) (*oneJobQueue, []string) {
	t.Helper()
	b := newBot(t, &fakeConnector{}, newMemState())
	q := &oneJobQueue{job: &bot.Job{ID: "0/1-0", ScanJob: bot.ScanJob{TenantID: "t1", ConversationID: "19:a@thread.v2", Reason: "sweep"}}}
	var mu sync.Mutex
	var outcomes []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.RunScans(ctx, bot.WorkerOptions{Queue: q, Budget: budget, BudgetWait: budgetWait, Observe: func(o string, _ bot.ScanResult) {
			mu.Lock()
			outcomes = append(outcomes, o)
			mu.Unlock()
		}})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if acked, delayed := q.state(); acked+len(delayed) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job was neither done nor delayed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return q, outcomes
}

// A worker waits briefly for its tenant's budget holding the job, rather
// than putting every job of a throttled tenant back on the queue each time
// the budget's second is spent.
func TestScanWaitsForTheBudgetHoldingItsJob(t *testing.T) {
	budget := &fullBudget{waits: []time.Duration{200 * time.Millisecond, 200 * time.Millisecond}}
	q, outcomes := runOneJob(t, budget, time.Second)
	acked, delayed := q.state()
	if acked != 1 || len(delayed) != 0 || len(outcomes) != 1 || outcomes[0] != "ok" {
		t.Errorf("acked %d, delayed %v, outcomes %v: want the job run once and acknowledged", acked, delayed, outcomes)
	}
	if budget.takes != 3 {
		t.Errorf("the budget was asked %d times, want 3", budget.takes)
	}
}

// A budget that stays spent longer than BudgetWait puts the job back for
// when it has room, instead of holding a worker.
func TestScanPutsBackAJobWhoseBudgetStaysSpent(t *testing.T) {
	budget := &fullBudget{waits: []time.Duration{600 * time.Millisecond, 600 * time.Millisecond, 600 * time.Millisecond}}
	start := time.Now()
	q, outcomes := runOneJob(t, budget, time.Second)
	acked, delayed := q.state()
	if acked != 0 || len(delayed) != 1 || len(outcomes) != 1 || outcomes[0] != "throttled" {
		t.Fatalf("acked %d, delayed %v, outcomes %v: want the job delayed once", acked, delayed, outcomes)
	}
	// One wait in place (600 ms), then put back 600 ms on.
	if due := delayed[0].Sub(start); due < 1200*time.Millisecond || due > 1200*time.Millisecond+time.Since(start) {
		t.Errorf("the job is due %s after it was taken, want about 1.2s", due)
	}
}
