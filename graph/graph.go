// Package graph reads and writes Microsoft Graph for the bot, app-only:
// which Teams apps are installed where with their consented resource-specific
// consent (RSC) permissions, the tenant catalog's definitions of given apps,
// who is in a chat or team, and the upgrade action. It decides nothing (what
// is behind, whether to upgrade: package bot does); it translates Graph's
// errors into bot's. Every call goes through msgraph-sdk-go's typed request
// builders and its middleware (retry with Retry-After, redirects).
package graph

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	kauth "github.com/microsoft/kiota-authentication-azure-go"
	khttp "github.com/microsoft/kiota-http-go"
	msgraph "github.com/microsoftgraph/msgraph-sdk-go"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upgradeapprovals/bot/bot"
)

// DefaultBaseURL is Graph v1.0 in the public cloud; the national clouds'
// are in botframework.Cloud.GraphBaseURL.
const DefaultBaseURL = "https://graph.microsoft.com/v1.0"

// Options configures a Client. Zero values take the documented defaults.
type Options struct {
	// BaseURL is Graph's v1.0 root. Default DefaultBaseURL.
	BaseURL string
	// Credential returns the app's credential for a tenant: Graph is asked
	// as the tenant the chat or team lives in. Required.
	Credential func(tenantID string) (azcore.TokenCredential, error)
	// HomeTenantID is used for scopes that carry no tenant.
	HomeTenantID string
	// SingleTenant asks Graph as HomeTenantID whatever the scope's tenant:
	// a SingleTenant (or managed identity) app exists in its own tenant
	// only. Otherwise (a MultiTenant app) Graph is asked as the tenant the
	// chat or team lives in, where the app was consented.
	SingleTenant bool
	// Transport carries the HTTP requests under the SDK's middleware.
	// Default: http.DefaultTransport's settings, keeping up to 64 idle
	// connections to Graph for reuse.
	Transport http.RoundTripper
	// Timeout bounds one Graph call including retries. Default 60 s.
	Timeout time.Duration
	// MaxRetries bounds the SDK's retries on 429, 503 and 504. Default 3.
	MaxRetries int
	// MaxRetryWait bounds how long one call waits in process for retries
	// that Graph's Retry-After asks for. A longer wait is the caller's: the
	// call fails with a throttled *APIError carrying Graph's Retry-After
	// (bot.Throttled), so a background job is delayed instead of holding a
	// worker, and nothing outlasts Timeout while asleep. Default 10 s.
	MaxRetryWait time.Duration
	// IdleAfter releases a tenant's Graph client (and its token cache) once
	// nothing asked Graph as that tenant for this long: a MultiTenant bot
	// removed from a tenant would otherwise keep it for good. Default 24 h.
	IdleAfter time.Duration
	// Released, if set, is told each tenant whose client was released, so
	// the credential it was given can be released too.
	Released func(tenantID string)
	// Now is the clock idleness is measured by. Default time.Now.
	Now func() time.Time
	// OnRequest, if set, is told of each request (each page) before it is
	// sent, with the tenant Graph is asked as: the bot counts people's
	// calls in the tenant's budget.
	OnRequest func(ctx context.Context, tenantID string)
	// Registerer, if set, gets upgradebot_graph_request_duration_seconds.
	Registerer prometheus.Registerer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Client is a Microsoft Graph client for the bot. It is safe for concurrent use.
type Client struct {
	opts  Options
	scope string
	hosts []string
	http  *http.Client

	mu      sync.Mutex
	tenants map[string]*tenantClient
	swept   time.Time // when idle tenants were last looked for
}

// tenantClient is the Graph client acting in one tenant, and when it was
// last asked for.
type tenantClient struct {
	sdk  *msgraph.GraphServiceClient
	used time.Time
}

// New returns a Client.
func New(opts Options) (*Client, error) {
	if opts.Credential == nil {
		return nil, errors.New("graph: Options.Credential is required")
	}
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(opts.BaseURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("graph: base URL %q: want an absolute URL", opts.BaseURL)
	}
	if opts.Transport == nil {
		opts.Transport = defaultTransport()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Minute
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 3
	}
	if opts.MaxRetryWait <= 0 {
		opts.MaxRetryWait = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.IdleAfter <= 0 {
		opts.IdleAfter = 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}

	var transport http.RoundTripper = opts.Transport
	if opts.Registerer != nil {
		transport = newMetricsTransport(opts.Registerer, transport)
	}
	middlewares, err := khttp.GetDefaultMiddlewaresWithOptions(
		&khttp.RetryHandlerOptions{
			MaxRetries: opts.MaxRetries,
			// waited is what the retries so far slept; kiota sleeps next
			// what Retry-After says (without one, its own backoff).
			ShouldRetry: func(waited time.Duration, _ int, _ *http.Request, resp *http.Response) bool {
				return waited+retryAfter(resp.Header, time.Now()) <= opts.MaxRetryWait
			},
		},
		// Request compression is off: the compression handler marks the
		// shared request "Content-Encoding: gzip", and when the retry
		// handler resends a POST after a 429 the body goes out uncompressed
		// under that header, which Graph cannot read. Bodies here are tiny.
		khttp.NewCompressionOptionsReference(false),
	)
	if err != nil {
		return nil, fmt.Errorf("graph: middleware: %w", err)
	}
	// Graph's own handlers (telemetry, /me rewriting) go first, as
	// msgraph-sdk-go-core orders them, then kiota's with our retry options.
	coreOpts := msgraph.GetDefaultClientOptions()
	all := append([]khttp.Middleware{
		msgraphcore.NewGraphTelemetryHandler(&coreOpts),
		khttp.NewUrlReplaceHandler(true, msgraphcore.ReplacementPairs),
	}, middlewares...)

	return &Client{
		opts: opts,
		// The token audience is Graph's host in this cloud, e.g.
		// https://graph.microsoft.us/.default.
		scope: u.Scheme + "://" + u.Host + "/.default",
		// Kiota attaches the bearer token only to hosts it is told about.
		hosts: []string{u.Host, u.Hostname()},
		http: &http.Client{
			Transport: khttp.NewCustomTransportWithParentTransport(transport, all...),
			Timeout:   opts.Timeout,
		},
		tenants: map[string]*tenantClient{},
	}, nil
}

// defaultTransport is http.DefaultTransport's configuration with more idle
// connections kept per host: the standard library keeps 2, so a check's
// concurrent reads (and concurrent checks) would close the rest after each
// response and open, and over HTTP/1.1 handshake, new ones for the next.
func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 128
	t.MaxIdleConnsPerHost = 64
	return t
}

// sdk returns the Graph client that acts in tenantID.
func (c *Client) sdk(tenantID string) (*msgraph.GraphServiceClient, error) {
	if tenantID == "" || c.opts.SingleTenant {
		tenantID = c.opts.HomeTenantID
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	c.releaseIdle(now)
	if tc, ok := c.tenants[tenantID]; ok {
		tc.used = now
		return tc.sdk, nil
	}
	cred, err := c.opts.Credential(tenantID)
	if err != nil {
		return nil, fmt.Errorf("graph: credential for tenant %q: %w", tenantID, err)
	}
	cred = tokenSource{cred: cred, tenant: tenantID, logger: c.opts.Logger}
	auth, err := kauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, []string{c.scope}, c.hosts)
	if err != nil {
		return nil, fmt.Errorf("graph: auth provider: %w", err)
	}
	hc := c.http
	if c.opts.OnRequest != nil {
		hc = &http.Client{Transport: tenantRequests{next: c.http.Transport, tenant: tenantID, on: c.opts.OnRequest}, Timeout: c.http.Timeout}
	}
	adapter, err := msgraph.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, nil, nil, hc)
	if err != nil {
		return nil, fmt.Errorf("graph: request adapter: %w", err)
	}
	adapter.SetBaseUrl(c.opts.BaseURL)
	newClientMu.Lock()
	g := msgraph.NewGraphServiceClient(adapter)
	newClientMu.Unlock()
	c.tenants[tenantID] = &tenantClient{sdk: g, used: now}
	return g, nil
}

// releaseIdle drops the clients of tenants nobody asked Graph as for
// IdleAfter, looking at most once per 1/24 of it. A call still running on
// a released client finishes on it; the next one builds a new client.
// Called with c.mu held.
func (c *Client) releaseIdle(now time.Time) {
	if now.Sub(c.swept) < c.opts.IdleAfter/24 {
		return
	}
	c.swept = now
	for id, tc := range c.tenants {
		if now.Sub(tc.used) < c.opts.IdleAfter {
			continue
		}
		delete(c.tenants, id)
		c.opts.Logger.Debug("released an idle tenant's Graph client", "tenant", id)
		if c.opts.Released != nil {
			c.opts.Released(id)
		}
	}
}

// tenantRequests tells Options.OnRequest of each request sent as tenant.
type tenantRequests struct {
	next   http.RoundTripper
	tenant string
	on     func(ctx context.Context, tenantID string)
}

func (t tenantRequests) RoundTrip(r *http.Request) (*http.Response, error) {
	t.on(r.Context(), t.tenant)
	return t.next.RoundTrip(r)
}

// newClientMu serialises msgraph.NewGraphServiceClient, which writes
// process-wide serializer registries: two Clients (replicas in one test
// process) creating tenant clients at once race there.
var newClientMu sync.Mutex

// metricsTransport times every HTTP exchange with Graph, retries included,
// and counts them per command (bot.WithCommand), so that a request budget
// per command can be watched.
type metricsTransport struct {
	next  http.RoundTripper
	hist  *prometheus.HistogramVec
	count *prometheus.CounterVec
}

func newMetricsTransport(reg prometheus.Registerer, next http.RoundTripper) *metricsTransport {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "upgradebot_graph_request_duration_seconds",
		Help:    "Microsoft Graph HTTP requests, by method and status (0: no response).",
		Buckets: prometheus.DefBuckets,
	}, []string{"method", "status"})
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "upgradebot_graph_requests_total",
		Help: "Microsoft Graph HTTP requests, retries included, by the command that caused them (check, approve, …; none: untagged).",
	}, []string{"command"})
	reg.MustRegister(h, c)
	return &metricsTransport{next: next, hist: h, count: c}
}

func (t *metricsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	t.hist.WithLabelValues(r.Method, strconv.Itoa(status)).Observe(time.Since(start).Seconds())
	t.count.WithLabelValues(cmp.Or(bot.CommandFrom(r.Context()), "none")).Inc()
	return resp, err
}

// withTimeout bounds one logical Graph call.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.opts.Timeout)
}
