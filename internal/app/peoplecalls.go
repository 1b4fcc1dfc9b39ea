package app

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/state"
)

// peopleCallsEvery is how often the Graph calls people's commands made are
// added to their tenants' budgets.
const peopleCallsEvery = 200 * time.Millisecond

// peopleCalls counts the Graph requests people's commands and clicks make,
// per tenant, and adds them to the tenants' budgets every
// peopleCallsEvery, one Redis call per tenant: they go ahead of background
// work (whose next bookings wait behind them) and never wait themselves,
// and nothing on a person's request path waits for Redis. A count lost
// with its process only lets background work spend a moment's calls early.
type peopleCalls struct {
	budget *state.Budget
	log    *slog.Logger

	mu     sync.Mutex
	counts map[string]int
}

func newPeopleCalls(budget *state.Budget, logger *slog.Logger) *peopleCalls {
	return &peopleCalls{budget: budget, log: logger, counts: map[string]int{}}
}

// count is graph.Options.OnRequest: a request as tenantID, counted when a
// person's command made it (a background job booked its calls before it
// ran).
func (p *peopleCalls) count(ctx context.Context, tenantID string) {
	if !bot.ForAPerson(ctx) {
		return
	}
	p.mu.Lock()
	p.counts[tenantID]++
	p.mu.Unlock()
}

// run adds the counts to the budgets every interval until ctx ends, then
// once more.
func (p *peopleCalls) run(ctx context.Context) {
	tick := time.NewTicker(peopleCallsEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			p.flush(fctx)
			cancel()
			return
		case <-tick.C:
			p.flush(ctx)
		}
	}
}

func (p *peopleCalls) flush(ctx context.Context) {
	p.mu.Lock()
	counts := p.counts
	if len(counts) == 0 {
		p.mu.Unlock()
		return
	}
	p.counts = map[string]int{}
	p.mu.Unlock()
	for tenant, n := range counts {
		if err := p.budget.Spend(ctx, tenant, n); err != nil {
			p.log.DebugContext(ctx, "cannot count people's Graph calls in the tenant's budget", "tenant", tenant, "calls", n, "err", err)
		}
	}
}
