package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/state"
)

// scanWorkers is how many scan jobs one replica runs at once.
const scanWorkers = 4

// graphCallsPerSecond is each tenant's Graph budget for background scans,
// across replicas (a scan is charged two calls, one when it uses the
// watcher's catalog read, as a sweep's do: ten scopes a second): well under
// Teams' 30 reads a second per app and tenant, leaving room for people's own
// commands.
const graphCallsPerSecond = 10

// followUpShare is the part of each tenant's Graph budget reserved for
// follow-ups, a fifth (two calls a second): the check after an upgrade and
// the cards of a version just published never wait behind a sweep's
// bookings, which may reach half an hour ahead in a large tenant.
const followUpShare = 5

// tenantBudget is each tenant's Graph budget across replicas, perSecond
// calls with followUpShare of them reserved for follow-ups: background
// jobs book from it, people's commands spend it (newGraph).
func tenantBudget(store *state.Store, perSecond int) *state.Budget {
	return store.BudgetWithFollowUps(perSecond, max(perSecond/followUpShare, 1))
}

// background runs what the bot does unprompted: the catalog watcher (on the
// replica that holds the lease) and scan workers (on every replica). The
// returned function stops them and waits. catalogRead, if set, is told of
// each catalog read the watcher records.
func background(ctx context.Context, cfg config, b *bot.Bot, store *state.Store, queue *state.Queue, holder string,
	catalog bot.OrgCatalog, budget *state.Budget, catalogRead func(tenantID string), reg prometheus.Registerer,
	logger *slog.Logger) (func(), error) {
	m := newProactiveMetrics(reg, queue, logger)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range scanWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = b.RunScans(ctx, bot.WorkerOptions{Queue: queue, Budget: budget, Observe: m.observe})
		}()
	}
	if catalog != nil {
		watch := store.Watch()
		var log bot.WatchLog = watch
		if catalogRead != nil {
			log = notedWatchLog{WatchLog: watch, noted: catalogRead}
		}
		w, err := bot.NewWatcher(bot.WatcherOptions{
			Lease: watch, Log: log, Reads: watch, Queue: queue, Catalog: catalog, Where: store.Proactive(), Due: store.Proactive(), Holder: holder,
			ScanInterval: cfg.ScanInterval, SweepInterval: cfg.SweepInterval, OnLease: m.lease, Logger: logger,
		})
		if err != nil {
			cancel()
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(ctx); err != nil {
				logger.Warn("catalog watcher stopped", "err", err)
			}
		}()
	}
	logger.Info("proactive work started", "replica", holder, "workers", scanWorkers, "watcher", catalog != nil,
		"scan_interval", cfg.ScanInterval.String(), "sweep_interval", cfg.SweepInterval.String(), "posts", cfg.Proactive)
	return func() { cancel(); wg.Wait() }, nil
}

// notedWatchLog tells noted of each catalog read the watcher records: the
// read is recorded after the scans it calls for are queued, so whoever
// waits for it knows the watcher has acted on the catalog it read.
type notedWatchLog struct {
	bot.WatchLog
	noted func(tenantID string)
}

func (l notedWatchLog) SaveCatalog(ctx context.Context, token int64, tenantID string, versions map[string]string) error {
	if err := l.WatchLog.SaveCatalog(ctx, token, tenantID, versions); err != nil {
		return err
	}
	l.noted(tenantID)
	return nil
}

// replicaName names this process in the consumer group and the lease.
func replicaName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), approval.NewToken())
}

type proactiveMetrics struct {
	scans *prometheus.CounterVec
	cards *prometheus.CounterVec
	held  prometheus.Gauge
}

func newProactiveMetrics(reg prometheus.Registerer, q *state.Queue, logger *slog.Logger) *proactiveMetrics {
	m := &proactiveMetrics{
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "upgradebot_scans_total",
			Help: "Conversation scans run by this replica, by outcome (ok, throttled, retry, dropped)."}, []string{"outcome"}),
		cards: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "upgradebot_proactive_cards_total",
			Help: "Unprompted posts and card updates, by kind (approval, reminder, update)."}, []string{"kind"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "upgradebot_watcher_lease_held",
			Help: "1 when this replica holds the catalog watcher lease."}),
	}
	stats := func() state.QueueStats {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := q.Stats(ctx)
		if err != nil {
			logger.Warn("cannot read scan queue stats", "err", err)
		}
		return st
	}
	reg.MustRegister(m.scans, m.cards, m.held,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "upgradebot_scan_queue_length",
			Help: "Scan jobs waiting, running or delayed, across replicas."}, func() float64 { return float64(stats().Length) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "upgradebot_scan_queue_oldest_job_age_seconds",
			Help: "Age of the oldest scan job not yet done."}, func() float64 { return stats().OldestAge.Seconds() }),
	)
	return m
}

func (m *proactiveMetrics) observe(outcome string, r bot.ScanResult) {
	m.scans.WithLabelValues(outcome).Inc()
	m.cards.WithLabelValues("approval").Add(float64(r.Posted))
	m.cards.WithLabelValues("reminder").Add(float64(r.Reminded))
	m.cards.WithLabelValues("update").Add(float64(r.Updated))
}

func (m *proactiveMetrics) lease(held bool) {
	if held {
		m.held.Set(1)
	} else {
		m.held.Set(0)
	}
}
