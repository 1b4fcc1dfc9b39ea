package main

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
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/bot/botframework"
	"github.com/upgradeapprovals/bot/graph"
	"github.com/upgradeapprovals/bot/state"
)

// deps are the seams tests use; zero values mean production behaviour.
type deps struct {
	listener net.Listener // default: listen on cfg.addr()
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
}

// newLogger returns the process's JSON logger and routes go-redis's own log
// lines through it (go-redis keeps its logger in a global: only main sets it).
func newLogger(w io.Writer) *slog.Logger {
	logger := slog.New(slog.NewJSONHandler(w, nil))
	redis.SetLogger(state.RedisLogger{Logger: logger})
	return logger
}

// shutdownGrace bounds how long in-flight requests may take after SIGTERM.
const shutdownGrace = 10 * time.Second

// reaperInterval is how often the reaper looks for interrupted upgrades.
const reaperInterval = 15 * time.Second

func serve(ctx context.Context, cfg config, logger *slog.Logger, d deps) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	gin.SetMode(gin.ReleaseMode)

	rdb, closeRedis, err := state.Connect(ctx, cfg.RedisURL, logger)
	if err != nil {
		return err
	}
	defer closeRedis()
	store := state.New(rdb, state.Options{Prefix: cfg.RedisPrefix})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := botframework.NewMetrics(reg)

	var verifier *botframework.Verifier
	var cred azcore.TokenCredential
	if cfg.AppID == "" {
		logger.Warn("AUTHENTICATION IS OFF: MicrosoftAppId is empty, so requests are not verified and replies carry no token; " +
			"listening on loopback only. Never run like this behind a tunnel or in production.")
	} else {
		verifier, err = botframework.NewVerifier(botframework.VerifierOptions{
			AppID:             cfg.AppID,
			Issuer:            cfg.Cloud.Issuer,
			OpenIDMetadataURL: cfg.OpenIDMetadataURL,
			AllowedTenants:    cfg.AllowedTenants,
			Logger:            logger,
		})
		if err != nil {
			return err
		}
		// /readyz says not ready until the first load succeeds.
		go verifier.Run(ctx)
		if cred, err = newCredentials(cfg, d.azureTransport).connector(); err != nil {
			return err
		}
	}
	if len(cfg.AllowedTenants) == 0 {
		logger.Warn("BOT_ALLOWED_TENANTS is empty: activities from any tenant are accepted")
	}

	// Graph needs the app's identity; without it "check" explains that.
	var installations bot.Installations
	var catalog bot.Catalog
	var directory bot.Directory
	var orgCatalog bot.OrgCatalog
	var grants bot.GrantChecker
	if g := d.graph; g != nil {
		installations, catalog, directory, orgCatalog, grants = g, g, g, g, g
	} else if cfg.AppID != "" || d.sandbox != nil {
		creds := newCredentials(cfg, d.azureTransport)
		g, err := graph.New(graph.Options{
			BaseURL: cfg.GraphBaseURL, HomeTenantID: cfg.AppTenantID, Registerer: reg, Logger: logger,
			Credential: func(tenant string) (azcore.TokenCredential, error) {
				if d.sandbox != nil {
					return d.sandbox.credential(), nil
				}
				if cfg.AppType != appTypeMultiTenant || tenant == "" {
					tenant = cfg.AppTenantID
				}
				return creds.forTenant(tenant)
			},
		})
		if err != nil {
			return err
		}
		installations, catalog, directory, orgCatalog, grants = g, g, g, g, g
	}

	trust := botframework.NewServiceURLs(botframework.ServiceURLOptions{Hosts: cfg.Cloud.ServiceURLHosts, Records: store})
	connector, err := botframework.NewConnector(botframework.ConnectorOptions{
		Credential: cred, Scope: cfg.Cloud.TokenScope, Trust: trust, Metrics: metrics, Logger: logger,
	})
	if err != nil {
		return err
	}
	replica := replicaName()
	queue, err := store.Queue(state.QueueOptions{Consumer: replica, ReclaimAfter: d.reclaimAfter})
	if err != nil {
		return err
	}
	bopts := bot.Options{
		Connector: connector, Conversations: store, Activities: store, Approvals: store,
		Installations: installations, Catalog: catalog, Directory: directory, Approvers: cfg.Approvers, Logger: logger,
		Proactive: store, ProactiveOff: !cfg.Proactive,
		RemindAfter: cfg.RemindAfter, ApprovalTTL: cfg.ApprovalTTL, FollowEvery: cfg.ScanInterval, ClaimStale: 2 * d.reclaimAfter,
		Jobs: queue, Grants: grants,
	}
	if d.tune != nil {
		d.tune(&bopts)
	}
	b, err := bot.New(bopts)
	if err != nil {
		return err
	}
	// One replica at a time reconciles upgrades whose replica died mid-call.
	reaperDone := make(chan struct{})
	every := reaperInterval
	if d.reaperInterval > 0 {
		every = d.reaperInterval
	}
	go func() { defer close(reaperDone); b.RunReaper(ctx, store, every) }()
	defer func() { <-reaperDone }()
	stopBackground, err := background(ctx, cfg, b, store, queue, replica, orgCatalog, cmp.Or(d.graphBudget, graphCallsPerSecond), reg, logger)
	if err != nil {
		return err
	}
	defer stopBackground()

	var activities botframework.ActivityHandler = b
	if d.sandbox != nil {
		activities = d.sandbox.handler(b)
	}
	handler, err := botframework.NewServer(botframework.ServerOptions{
		Bot: activities, Verifier: verifier, Trust: trust, Ready: store.Ready, Gatherer: reg, Metrics: metrics, Logger: logger,
	})
	if err != nil {
		return err
	}

	ln := d.listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.addr()); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String(), "cloud", cfg.Cloud.Name, "app_type", cfg.AppType,
		"redis", cfg.RedisURL != "", "auth", verifier != nil)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing in-flight requests", "grace", shutdownGrace.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	// Upgrades outlive their invokes; let them record their outcome before
	// Redis closes.
	dctx, dcancel := context.WithTimeout(context.Background(), b.DrainTimeout())
	defer dcancel()
	if err := b.Drain(dctx); err != nil {
		logger.Warn("shutdown: upgrades still running are left to the reaper", "err", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// healthcheck is the container's HEALTHCHECK: the image has no shell or curl.
func healthcheck(ctx context.Context, getenv func(string) string, stderr io.Writer) int {
	port := getenv("PORT")
	if port == "" {
		port = "3978"
	}
	if _, err := strconv.Atoi(port); err != nil {
		fmt.Fprintf(stderr, "healthcheck: PORT %q is not a number\n", port)
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
