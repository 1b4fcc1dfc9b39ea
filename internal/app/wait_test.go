package app

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/state"
)

// eventually polls cond until it holds, and fails the test after d.
// Anything in state is shown with the failure.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool, state ...*string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			for _, s := range state {
				what += " (last seen: " + *s + ")"
			}
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// catalogReads counts the catalog reads the watchers of a harness's
// replicas record (deps.catalogRead).
type catalogReads struct {
	mu sync.Mutex
	n  int
}

func (c *catalogReads) note(string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
}

func (c *catalogReads) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// awaitCatalogReads waits until the watchers have recorded n catalog reads
// in all since the harness was made.
func (h *harness) awaitCatalogReads(t *testing.T, n int) {
	t.Helper()
	eventually(t, 20*time.Second, "the catalog watcher's reads", func() bool { return h.reads.count() >= n })
}

// watcherRounds waits until the watcher has recorded k more catalog reads
// (k ≥ 2: reads are one at a time, so the last began after this call and
// the rounds before it queued their follow-ups), then until every scan job
// is done: whatever those rounds would post or update has reached the
// connector. Tests that use it read one tenant's catalog every scan
// interval.
func (h *harness) watcherRounds(t *testing.T, k int) {
	t.Helper()
	h.awaitCatalogReads(t, h.reads.count()+k)
	h.scansDone(t)
}

// scansDone waits until no scan job is waiting, running or delayed: jobs
// leave the queue only once their posts and records are written.
func (h *harness) scansDone(t *testing.T) {
	t.Helper()
	q, err := storeOf(t, h).Queue(state.QueueOptions{Consumer: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	var last string
	eventually(t, 20*time.Second, "every scan job done", func() bool {
		st, err := q.Stats(context.Background())
		last = fmt.Sprintf("%d jobs, err %v", st.Length, err)
		return err == nil && st.Length == 0
	}, &last)
}
