package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/graph"
	"github.com/upgradeapprovals/bot/state"
)

// deps are the seams tests use; zero values mean production behaviour.
type deps struct {
	listener net.Listener // default: listen on cfg.addr()
	// opsListener serves the probes and /metrics when OPS_PORT is set;
	// default: listen on cfg.opsAddr().
	opsListener net.Listener
	// azureTransport carries Entra ID token requests (a test trusts its
	// fake authority's certificate here).
	azureTransport *http.Client
	// sandbox, set only by the sandbox command, is the one seam for its
	// fake tenant: the Graph credential for every tenant (even without an
	// app id), and a handler in front of the bot that adopts each new
	// conversation into that tenant. Nil in production.
	sandbox *sandbox
	// tune adjusts the bot's options (fault tests shorten its waits), and
	// reaperInterval the reaper's; zero: production values.
	tune           func(*bot.Options)
	reaperInterval time.Duration
	// graph, when set, replaces the Graph client built from cfg: replicas
	// in one test process share one, as msgraph-sdk-go keeps process-wide
	// state that separate clients would race on.
	graph *graph.Client
	// reclaimAfter is how long a scan job may stay unacknowledged before
	// another replica takes it over; default 1 minute.
	reclaimAfter time.Duration
	// graphBudget is each tenant's Graph calls a second for background
	// scans; default graphCallsPerSecond (the sweep benchmark lifts it to
	// measure the bot's own cost).
	graphBudget int
	// noBackground starts neither the catalog watcher nor the scan
	// workers, so a test can count the Graph requests of one command alone.
	noBackground bool
	// readTimeout replaces the HTTP server's readTimeout (a test cuts a
	// slow client off sooner).
	readTimeout time.Duration
	// catalogRead, when set, is told each time the catalog watcher has
	// read a tenant's catalog and queued the scans the read calls for: a
	// test waits for the watcher's rounds rather than for the clock.
	catalogRead func(tenantID string)
	// built, when set, is given the bot this process built (a test drives
	// what another part of the bot would call on it).
	built func(*bot.Bot)
	// adminsInterval is how often the admins' conversation is brought up
	// to date (cards not yet posted, the digest); default adminsInterval.
	adminsInterval time.Duration
	// redisHook, when set, sees every command the bot sends to Redis (a
	// test counts the round trips of one activity).
	redisHook redis.Hook
}

// newLogger returns the process's JSON logger and routes go-redis's own log
// lines through it (go-redis keeps its logger in a global: only main sets it).
func newLogger(w io.Writer) *slog.Logger {
	logger := slog.New(slog.NewJSONHandler(w, nil))
	redis.SetLogger(state.RedisLogger{Logger: logger})
	return logger
}

// The HTTP server's limits. A client gets readTimeout to send its whole
// request: Teams sends an activity at once, so only a slow or hostile
// client needs more, and it would hold a connection and a goroutine.
// writeTimeout runs from the end of the request's headers to the end of the
// answer: the longest legitimate answer is a card action's, InvokeWait (8 s)
// after the approver check's Graph reads, and Teams stops waiting after
// about 15 s; a message's replies go out through the connector, not in the
// answer, so a slow Graph delays only its 200.
const (
	readTimeout       = 30 * time.Second
	readHeaderTimeout = 10 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// shutdownGrace bounds how long in-flight requests may take after SIGTERM.
const shutdownGrace = 10 * time.Second

// upgradeDrain is what the bot's DrainTimeout comes to with serve's options:
// one upgrade's 60 s timeout and its records (a test compares).
const upgradeDrain = 75 * time.Second

// opsShutdownGrace bounds the ops port's last probe or scrape once the
// bot has drained: they answer in milliseconds.
const opsShutdownGrace = 2 * time.Second

// StopTimeout bounds how long the bot takes to stop after SIGTERM: in-flight
// requests, then upgrades already sent to Graph recording their outcome,
// then the ops port. A deployment's grace period must be longer.
func StopTimeout() time.Duration { return shutdownGrace + upgradeDrain + opsShutdownGrace }

// reaperInterval is how often the reaper looks for interrupted upgrades.
const reaperInterval = 15 * time.Second

// adminsInterval is how often the replica holding the admins' lease posts
// the admins' cards it could not post yet and sends the digest when due.
const adminsInterval = time.Minute

func serve(ctx context.Context, cfg config, logger *slog.Logger, d deps) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	gin.SetMode(gin.ReleaseMode)

	rdb, closeRedis, err := state.Connect(ctx, cfg.RedisURL, logger)
	if err != nil {
		return err
	}
	defer closeRedis()
	if d.redisHook != nil {
		rdb.AddHook(d.redisHook)
	}
	store := state.New(rdb, state.Options{Prefix: cfg.RedisPrefix, AuditRetention: cfg.AuditRetention})
	reg := newRegistry()
	metrics := botframework.NewMetrics(reg)

	creds := newCredentials(cfg, d.azureTransport)
	verifier, err := startVerifier(ctx, cfg, logger)
	if err != nil {
		return err
	}
	budget := tenantBudget(store, cmp.Or(d.graphBudget, graphCallsPerSecond))
	people := newPeopleCalls(budget, logger)
	peopleCtx, stopPeople := context.WithCancel(context.WithoutCancel(ctx))
	peopleDone := make(chan struct{})
	go func() { defer close(peopleDone); people.run(peopleCtx) }()
	defer func() { stopPeople(); <-peopleDone }() // before Redis closes: the last counts are written
	g, err := newGraph(cfg, creds, d, people.count, reg, logger)
	if err != nil {
		return err
	}
	trust := botframework.NewServiceURLs(botframework.ServiceURLOptions{Hosts: cfg.Cloud.ServiceURLHosts, Records: store.Conversations()})
	connector, err := newConnector(cfg, creds, trust, metrics, logger)
	if err != nil {
		return err
	}
	replica := replicaName()
	queue, err := store.Queue(state.QueueOptions{Consumer: replica, ReclaimAfter: d.reclaimAfter})
	if err != nil {
		return err
	}
	b, err := newBot(cfg, d, connector, store, queue, g, logger)
	if err != nil {
		return err
	}
	if d.built != nil {
		d.built(b)
	}
	if !d.noBackground {
		// Once, beside the start: a missing permission is named in the log
		// before the first chat needs it.
		checked := make(chan struct{})
		go func() { defer close(checked); logMissingPermissions(ctx, cfg, creds, logger) }()
		defer func() { <-checked }()
	}
	stopWork, err := startWork(ctx, cfg, d, b, store, queue, budget, replica, g, reg, logger)
	if err != nil {
		return err
	}
	defer stopWork()

	var activities botframework.ActivityHandler = b
	if d.sandbox != nil {
		activities = d.sandbox.handler(b)
	}
	handler, err := botframework.NewServer(botframework.ServerOptions{
		Bot: activities, Verifier: verifier, LoopbackOnly: verifier == nil,
		Trust: trust, Ready: store.Ready, Gatherer: reg, Metrics: metrics, Logger: logger,
	})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadTimeout:       cmp.Or(d.readTimeout, readTimeout),
		ReadHeaderTimeout: min(readHeaderTimeout, cmp.Or(d.readTimeout, readTimeout)),
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	return listenAndServe(ctx, cfg, d, srv, b, logger, verifier != nil)
}

// newRegistry is the process's Prometheus registry, with Go and process
// metrics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// startVerifier checks inbound tokens against the cloud's signing keys,
// which it loads (and reloads, retrying) in the background: /readyz says not
// ready until the first load succeeds. Nil without an app id.
func startVerifier(ctx context.Context, cfg config, logger *slog.Logger) (*botframework.Verifier, error) {
	if len(cfg.AllowedTenants) == 0 {
		logger.Warn("BOT_ALLOWED_TENANTS is empty: activities from any tenant are accepted")
	}
	if cfg.AppID == "" {
		logger.Warn("AUTHENTICATION IS OFF: MicrosoftAppId is empty, so requests are not verified and replies carry no token; " +
			"listening on loopback only. Never run like this behind a tunnel or in production.")
		return nil, nil
	}
	v, err := botframework.NewVerifier(botframework.VerifierOptions{
		AppID:             cfg.AppID,
		Issuer:            cfg.Cloud.Issuer,
		OpenIDMetadataURL: cfg.OpenIDMetadataURL,
		AllowedTenants:    cfg.AllowedTenants,
		Logger:            logger,
	})
	if err != nil {
		return nil, err
	}
	go v.Run(ctx)
	return v, nil
}

// graphClient is everything the bot asks Microsoft Graph.
type graphClient interface {
	bot.Installations
	bot.Catalog
	bot.Directory
	bot.OrgCatalog
	bot.GrantChecker
	bot.ConsentPolicies
}

// newGraph is Microsoft Graph, as the app. Nil without an app identity:
// "check" then says Graph is not configured.
// onRequest, if set, is told of each Graph request (peopleCalls.count).
func newGraph(cfg config, creds *credentials, d deps, onRequest func(context.Context, string), reg prometheus.Registerer,
	logger *slog.Logger) (graphClient, error) {
	if d.graph != nil {
		return d.graph, nil
	}
	if cfg.AppID == "" && d.sandbox == nil {
		return nil, nil
	}
	credential := creds.forTenant
	if d.sandbox != nil {
		credential = func(string) (azcore.TokenCredential, error) { return d.sandbox.credential(), nil }
	}
	g, err := graph.New(graph.Options{
		BaseURL: cfg.GraphBaseURL, HomeTenantID: cfg.AppTenantID, SingleTenant: cfg.AppType != appTypeMultiTenant,
		Credential: credential, Released: creds.release, Registerer: reg, Logger: logger,
		OnRequest: onRequest,
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// newConnector writes to Teams as the bot; without an app id its replies
// carry no token (the Agents Playground takes them).
func newConnector(cfg config, creds *credentials, trust botframework.ServiceURLTrust, metrics *botframework.Metrics,
	logger *slog.Logger) (*botframework.Connector, error) {
	var cred azcore.TokenCredential
	if cfg.AppID != "" {
		var err error
		if cred, err = creds.connector(); err != nil {
			return nil, err
		}
	}
	return botframework.NewConnector(botframework.ConnectorOptions{
		Credential: cred, Scope: cfg.Cloud.TokenScope, Trust: trust, Metrics: metrics, Logger: logger,
	})
}

func newBot(cfg config, d deps, connector bot.Connector, store *state.Store, queue *state.Queue, g graphClient,
	logger *slog.Logger) (*bot.Bot, error) {
	opts := bot.Options{
		Connector: connector, Conversations: store.Conversations(), Activities: store.Conversations(),
		Approvals: store.Approvals(), Approvers: cfg.Approvers, Logger: logger,
		Proactive: store.Proactive(), ProactiveOff: !cfg.Proactive, CheckWindow: cfg.CheckWindow,
		RemindAfter: cfg.RemindAfter, ApprovalQuorum: cfg.ApprovalQuorum, Snooze: cfg.Snooze, ApprovalTTL: cfg.ApprovalTTL, UpgradeGrace: cfg.UpgradeGrace, FollowEvery: cfg.ScanInterval, ClaimStale: 2 * d.reclaimAfter,
		Jobs: queue, CatalogReads: store.Watch(), CatalogMaxAge: cfg.ScanInterval,
		AdminConversation: cfg.AdminConversation, AdminStore: store.Admins(), Admins: cfg.Admins, DigestEvery: cfg.DigestInterval,
	}
	if g != nil {
		opts.Installations, opts.Catalog, opts.Directory, opts.Grants = g, g, g, g
		// Each tenant's consent policy is read at most once a scan interval.
		opts.Consent, opts.ConsentCache, opts.ConsentMaxAge = g, store, cfg.ScanInterval
	}
	if cfg.CheckWindow > 0 {
		opts.Checks = store
	}
	if d.tune != nil {
		d.tune(&opts)
	}
	return bot.New(opts)
}

// startWork starts what runs besides requests: the reaper (one replica at
// a time reconciles upgrades whose replica died mid-call) and the
// proactive work. The returned function stops them and waits.
func startWork(ctx context.Context, cfg config, d deps, b *bot.Bot, store *state.Store, queue *state.Queue, budget *state.Budget,
	replica string, g graphClient, reg prometheus.Registerer, logger *slog.Logger) (func(), error) {
	var catalog bot.OrgCatalog
	if g != nil {
		catalog = g
	}
	ctx, cancel := context.WithCancel(ctx)
	stopBackground := func() {}
	if !d.noBackground {
		var err error
		stopBackground, err = background(ctx, cfg, b, store, queue, replica, catalog, budget,
			d.catalogRead, reg, logger)
		if err != nil {
			cancel()
			return nil, err
		}
	}
	every := reaperInterval
	if d.reaperInterval > 0 {
		every = d.reaperInterval
	}
	reaperDone := make(chan struct{})
	go func() { defer close(reaperDone); b.RunReaper(ctx, store, every) }()
	adminsDone := make(chan struct{})
	go func() {
		defer close(adminsDone)
		b.RunAdmins(ctx, store, replica, cmp.Or(d.adminsInterval, adminsInterval))
	}()
	return func() { cancel(); stopBackground(); <-reaperDone; <-adminsDone }, nil
}

// listenAndServe serves handler until ctx ends, then shuts down: in-flight
// requests get shutdownGrace, and upgrades that outlive their invokes get
// to record their outcome before Redis closes. With OPS_PORT a second
// server answers the probes and /metrics there, and keeps answering
// /healthz until the upgrades are recorded.
func listenAndServe(ctx context.Context, cfg config, d deps, srv *http.Server, b *bot.Bot,
	logger *slog.Logger, auth bool) error {
	ln := d.listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.addr()); err != nil {
			return err
		}
	}
	var ops *http.Server
	var opsLn net.Listener
	var draining atomic.Bool
	if cfg.OpsPort != 0 {
		if opsLn = d.opsListener; opsLn == nil {
			var err error
			if opsLn, err = net.Listen("tcp", cfg.opsAddr()); err != nil {
				ln.Close()
				return err
			}
		}
		ops = &http.Server{
			Handler:           portHandler{next: srv.Handler, ops: true, draining: &draining},
			ReadTimeout:       srv.ReadTimeout,
			ReadHeaderTimeout: srv.ReadHeaderTimeout,
			WriteTimeout:      srv.WriteTimeout,
			IdleTimeout:       srv.IdleTimeout,
			MaxHeaderBytes:    srv.MaxHeaderBytes,
		}
		srv.Handler = portHandler{next: srv.Handler, draining: &draining}
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	attrs := []any{"addr", ln.Addr().String()}
	if ops != nil {
		go func() { errc <- ops.Serve(opsLn) }()
		attrs = append(attrs, "ops_addr", opsLn.Addr().String())
	}
	logger.Info("listening", append(attrs, "cloud", cfg.Cloud.Name, "app_type", cfg.AppType,
		"redis", cfg.RedisURL != "", "auth", auth)...)

	select {
	case err := <-errc:
		srv.Close()
		if ops != nil {
			ops.Close()
		}
		return err
	case <-ctx.Done():
	}
	draining.Store(true)
	logger.Info("shutting down: finishing in-flight requests", "grace", shutdownGrace.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), b.DrainTimeout())
	defer dcancel()
	if err := b.Drain(dctx); err != nil {
		logger.Warn("shutdown: upgrades still running are left to the reaper", "err", err)
	}
	servers := 1
	if ops != nil {
		servers = 2
		octx, ocancel := context.WithTimeout(context.Background(), opsShutdownGrace)
		defer ocancel()
		if err := ops.Shutdown(octx); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	for range servers {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return nil
}

// healthcheck is the container's HEALTHCHECK: the image has no shell or curl.
func healthcheck(ctx context.Context, getenv func(string) string, stderr io.Writer) int {
	// /healthz is on OPS_PORT when that is set.
	name, port := "OPS_PORT", strings.TrimSpace(getenv("OPS_PORT"))
	if port == "" {
		name, port = "PORT", strings.TrimSpace(getenv("PORT"))
	}
	if port == "" {
		port = "3978"
	}
	if _, err := strconv.Atoi(port); err != nil {
		fmt.Fprintf(stderr, "healthcheck: %s %q is not a number\n", name, port)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/healthz", nil)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "healthcheck: /healthz answered", resp.Status)
		return 1
	}
	return 0
}
