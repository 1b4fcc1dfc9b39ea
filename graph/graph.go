// Package graph answers the bot's questions to Microsoft Graph, app-only:
// which Teams apps are installed where, what the tenant catalog publishes,
// how their resource-specific consent (RSC) permissions differ, who owns a
// chat or team, and it performs the upgrade. Every call goes through
// msgraph-sdk-go's typed request builders and its middleware (retry with
// Retry-After, redirects, compression).
package graph

import (
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
)

// BaseURLs are Graph's v1.0 endpoints per BOT_CLOUD.
var BaseURLs = map[string]string{
	"public":   "https://graph.microsoft.com/v1.0",
	"usgov":    "https://graph.microsoft.us/v1.0",
	"usgovdod": "https://dod-graph.microsoft.us/v1.0",
	"china":    "https://microsoftgraph.chinacloudapi.cn/v1.0",
}

// Options configures a Client. Zero values take the documented defaults.
type Options struct {
	// BaseURL is Graph's v1.0 root. Default BaseURLs["public"].
	BaseURL string
	// Credential returns the app's credential for a tenant: Graph is asked
	// as the tenant the chat or team lives in. Required.
	Credential func(tenantID string) (azcore.TokenCredential, error)
	// HomeTenantID is used for scopes that carry no tenant.
	HomeTenantID string
	// Transport carries the HTTP requests under the SDK's middleware.
	// Default http.DefaultTransport.
	Transport http.RoundTripper
	// Timeout bounds one Graph call including retries. Default 60 s.
	Timeout time.Duration
	// MaxRetries bounds the SDK's retries on 429, 503 and 504. Default 3.
	MaxRetries int
	// CatalogTTL is how long a catalog definition is cached for cards. The
	// upgrade itself always reads the catalog afresh. Default 5 min.
	CatalogTTL time.Duration
	// Registerer, if set, gets upgradebot_graph_request_duration_seconds.
	Registerer prometheus.Registerer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Client is a Microsoft Graph client for the bot. It is safe for concurrent use.
type Client struct {
	opts    Options
	scope   string
	hosts   []string
	http    *http.Client
	catalog *catalogCache

	mu      sync.Mutex
	tenants map[string]*msgraph.GraphServiceClient
}

// New returns a Client.
func New(opts Options) (*Client, error) {
	if opts.Credential == nil {
		return nil, errors.New("graph: Options.Credential is required")
	}
	if opts.BaseURL == "" {
		opts.BaseURL = BaseURLs["public"]
	}
	u, err := url.Parse(opts.BaseURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("graph: base URL %q: want an absolute URL", opts.BaseURL)
	}
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Minute
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 3
	}
	if opts.CatalogTTL <= 0 {
		opts.CatalogTTL = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
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
			ShouldRetry: func(time.Duration, int, *http.Request, *http.Response) bool {
				return true
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
		catalog: newCatalogCache(opts.CatalogTTL, opts.Now),
		tenants: map[string]*msgraph.GraphServiceClient{},
	}, nil
}

// sdk returns the Graph client that acts in tenantID.
func (c *Client) sdk(tenantID string) (*msgraph.GraphServiceClient, error) {
	if tenantID == "" {
		tenantID = c.opts.HomeTenantID
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if g, ok := c.tenants[tenantID]; ok {
		return g, nil
	}
	cred, err := c.opts.Credential(tenantID)
	if err != nil {
		return nil, fmt.Errorf("graph: credential for tenant %q: %w", tenantID, err)
	}
	auth, err := kauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, []string{c.scope}, c.hosts)
	if err != nil {
		return nil, fmt.Errorf("graph: auth provider: %w", err)
	}
	adapter, err := msgraph.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, nil, nil, c.http)
	if err != nil {
		return nil, fmt.Errorf("graph: request adapter: %w", err)
	}
	adapter.SetBaseUrl(c.opts.BaseURL)
	g := msgraph.NewGraphServiceClient(adapter)
	c.tenants[tenantID] = g
	return g, nil
}

// metricsTransport times every HTTP exchange with Graph, retries included.
type metricsTransport struct {
	next http.RoundTripper
	hist *prometheus.HistogramVec
}

func newMetricsTransport(reg prometheus.Registerer, next http.RoundTripper) *metricsTransport {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "upgradebot_graph_request_duration_seconds",
		Help:    "Microsoft Graph HTTP requests, by method and status (0: no response).",
		Buckets: prometheus.DefBuckets,
	}, []string{"method", "status"})
	reg.MustRegister(h)
	return &metricsTransport{next: next, hist: h}
}

func (t *metricsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	t.hist.WithLabelValues(r.Method, strconv.Itoa(status)).Observe(time.Since(start).Seconds())
	return resp, err
}

// withTimeout bounds one logical Graph call.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.opts.Timeout)
}
