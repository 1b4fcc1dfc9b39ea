package botframework

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/upgradeapprovals/bot/bot"
)

// Reasons an inbound request is refused; each is a metric label.
const (
	ReasonMissingHeader   = "missing_header"
	ReasonNotBearer       = "not_bearer"
	ReasonMalformed       = "malformed"
	ReasonAlgorithm       = "algorithm"
	ReasonUnknownKey      = "unknown_kid"
	ReasonSignature       = "signature"
	ReasonIssuer          = "issuer"
	ReasonAudience        = "audience"
	ReasonExpired         = "expired"
	ReasonNotYetValid     = "not_yet_valid"
	ReasonEndorsement     = "endorsement"
	ReasonServiceURL      = "service_url"
	ReasonTenant          = "tenant"
	ReasonKeysUnavailable = "keys_unavailable"
	ReasonChannel         = "channel"  // authenticated, but not from Microsoft Teams (403)
	ReasonLoopback        = "loopback" // ServerOptions.LoopbackOnly: another Host, or a web page's Origin (403)
)

// ChannelMSTeams is the only channel whose activities reach the bot.
const ChannelMSTeams = "msteams"

// AuthError is why a request was not authenticated.
type AuthError struct {
	Reason string
	Err    error
}

func (e *AuthError) Error() string {
	if e.Err != nil {
		return "botframework: unauthorized (" + e.Reason + "): " + e.Err.Error()
	}
	return "botframework: unauthorized (" + e.Reason + ")"
}

func (e *AuthError) Unwrap() error { return e.Err }

func authError(reason string, err error) *AuthError { return &AuthError{Reason: reason, Err: err} }

// VerifierOptions configures a Verifier.
type VerifierOptions struct {
	// AppID is the bot's Microsoft App ID: the audience of every token. Required.
	AppID string
	// Issuer is the channel's token issuer (Cloud.Issuer). Required.
	Issuer string
	// OpenIDMetadataURL names the JWKS (Cloud.OpenIDMetadataURL). Required.
	OpenIDMetadataURL string
	// AllowedTenants lists the Entra tenants whose activities are accepted.
	// Empty accepts any tenant.
	AllowedTenants []string
	// HTTPClient fetches the metadata and keys. Default: a client that
	// follows no redirect to a plain http URL.
	HTTPClient *http.Client
	// RefreshInterval is how often keys are fetched again. Default 24 h.
	RefreshInterval time.Duration
	// FetchTimeout bounds one fetch of the metadata and keys together, and so
	// the longest a request waits for keys: well under the 15 s after which
	// Teams gives up. Default 5 s.
	FetchTimeout time.Duration
	// RetryMin and RetryMax bound the backoff of Run after a failed fetch.
	// Defaults 1 s and 5 min.
	RetryMin, RetryMax time.Duration
	// UnknownKeyInterval is the least time between two fetches caused by a
	// token signed with an unknown kid, so garbage tokens cannot hammer the
	// metadata endpoint, and between two fetches caused by requests before
	// any key was loaded. Default 1 min.
	UnknownKeyInterval time.Duration
	// Leeway is the clock skew allowed on exp and nbf. Default 5 min.
	Leeway time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Verifier authenticates requests from the Bot Framework channel: an RS256
// JWT signed with a key from the channel's JWKS whose endorsements include the
// activity's channel, for this bot, from this cloud's issuer, for the
// activity's service URL and an allowed tenant. It is safe for concurrent use.
type Verifier struct {
	opts      VerifierOptions
	keys      *keySet
	parser    *jwt.Parser
	validator *jwt.Validator // the parser's claim checks, for cached tokens
	tokens    *tokenCache
}

// NewVerifier returns a Verifier. Keys are fetched by Run, or on first use.
// The metadata URL must be https (http only on loopback, for tests).
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	if opts.AppID == "" || opts.Issuer == "" || opts.OpenIDMetadataURL == "" {
		return nil, errors.New("botframework: AppID, Issuer and OpenIDMetadataURL are required")
	}
	if err := CheckSecureURL(opts.OpenIDMetadataURL); err != nil {
		return nil, fmt.Errorf("botframework: OpenIDMetadataURL: %w", err)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			return CheckSecureURL(req.URL.String())
		}}
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = 5 * time.Second
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Second
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(5*time.Minute, opts.RetryMin)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 24 * time.Hour
	}
	if opts.UnknownKeyInterval <= 0 {
		opts.UnknownKeyInterval = time.Minute
	}
	if opts.Leeway <= 0 {
		opts.Leeway = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	v := &Verifier{
		opts: opts,
		keys: &keySet{
			metadataURL:  opts.OpenIDMetadataURL,
			client:       opts.HTTPClient,
			maxAge:       opts.RefreshInterval,
			fetchTimeout: opts.FetchTimeout,
			retryMin:     opts.RetryMin,
			retryMax:     opts.RetryMax,
			unknownKID:   rate.NewLimiter(rate.Every(opts.UnknownKeyInterval), 1),
			coldFetch:    rate.NewLimiter(rate.Every(opts.UnknownKeyInterval), 1),
			now:          opts.Now,
			logger:       opts.Logger,
		},
		tokens: newTokenCache(4096),
	}
	claimChecks := []jwt.ParserOption{
		jwt.WithIssuer(opts.Issuer),
		jwt.WithAudience(opts.AppID),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(opts.Leeway),
		jwt.WithTimeFunc(opts.Now),
	}
	v.parser = jwt.NewParser(claimChecks...)
	v.validator = jwt.NewValidator(claimChecks...)
	return v, nil
}

// Load fetches the signing keys now, waiting at most FetchTimeout.
func (v *Verifier) Load(ctx context.Context) error { return v.keys.refresh(ctx) }

// Run keeps the signing keys fresh until ctx ends: it loads them, refreshes
// them every RefreshInterval and, when a fetch fails, retries with backoff
// while requests are verified with the last good keys.
func (v *Verifier) Run(ctx context.Context) { v.keys.run(ctx) }

// Ready reports whether signing keys are loaded.
func (v *Verifier) Ready() bool { return v.keys.loaded() }

// Claims are the claims of a channel token the bot reads.
type Claims struct {
	jwt.RegisteredClaims
	ServiceURL string `json:"serviceurl"`

	endorsements []string
}

// VerifyToken checks the Authorization header's token: algorithm, signature,
// issuer, audience and lifetime. The activity-bound checks are in
// VerifyActivity, once the body is decoded.
func (v *Verifier) VerifyToken(ctx context.Context, authorization string) (*Claims, error) {
	if authorization == "" {
		return nil, authError(ReasonMissingHeader, nil)
	}
	scheme, raw, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return nil, authError(ReasonNotBearer, nil)
	}
	raw = strings.TrimSpace(raw)
	sum := sha256.Sum256([]byte(raw))
	if claims, ok := v.cached(sum); ok {
		return claims, nil
	}
	claims := &Claims{}
	var kid string
	var key any
	_, err := v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		// Only RS256: this also refuses "none" and an HS256 token "signed"
		// with the public key.
		if t.Method.Alg() != jwt.SigningMethodRS256.Alg() {
			return nil, authError(ReasonAlgorithm, fmt.Errorf("alg %q", t.Method.Alg()))
		}
		kid, _ = t.Header["kid"].(string)
		k, err := v.keys.lookup(ctx, kid)
		if err != nil {
			return nil, err
		}
		claims.endorsements = k.endorsements
		key = k.key
		return k.key, nil
	})
	if err != nil {
		return nil, classify(err)
	}
	v.tokens.put(sum, verifiedToken{claims: *claims, kid: kid, key: key})
	return claims, nil
}

// cached returns the claims of a token verified before, checked again
// against the clock, issuer and audience, as long as its signing key is
// still served, fresh and unchanged; the endorsements are the key's now.
// Anything else goes through the full check, which also names the failure.
func (v *Verifier) cached(sum [sha256.Size]byte) (*Claims, bool) {
	t, ok := v.tokens.get(sum)
	if !ok || !v.keys.fresh() {
		return nil, false
	}
	k, ok := v.keys.get(t.kid)
	// The same key object: a refetch of the keys parses new ones, and a
	// token's next use after that is verified in full again.
	if !ok || k.key != t.key {
		return nil, false
	}
	claims := t.claims
	claims.endorsements = k.endorsements
	if v.validator.Validate(&claims) != nil {
		return nil, false
	}
	return &claims, true
}

func classify(err error) *AuthError {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae
	}
	reason := ReasonMalformed
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		reason = ReasonSignature
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		reason = ReasonIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		reason = ReasonAudience
	case errors.Is(err, jwt.ErrTokenExpired):
		reason = ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		reason = ReasonNotYetValid
	}
	return authError(reason, err)
}

// VerifyActivity checks what binds the token to the activity it came with.
func (v *Verifier) VerifyActivity(c *Claims, a *bot.Activity) error {
	// A key is endorsed for the channels it may sign for; a key for one
	// channel must not vouch for another.
	if !slices.Contains(c.endorsements, a.ChannelID) {
		return authError(ReasonEndorsement, fmt.Errorf("key not endorsed for channel %q", a.ChannelID))
	}
	// The token names the connector the activity must be answered through;
	// without this check a stolen token could point the bot's replies (and
	// its bearer token) at any URL.
	if c.ServiceURL == "" || c.ServiceURL != a.ServiceURL {
		return authError(ReasonServiceURL, errors.New("serviceurl claim does not match the activity"))
	}
	if len(v.opts.AllowedTenants) > 0 {
		tid := a.TenantID()
		if !slices.ContainsFunc(v.opts.AllowedTenants, func(t string) bool { return strings.EqualFold(t, tid) }) {
			return authError(ReasonTenant, fmt.Errorf("tenant %q is not allowed", tid))
		}
	}
	return nil
}

// keySet caches the channel's signing keys. It is owned here rather than left
// to keyfunc/jwkset because those drop the non-standard "endorsements"
// member of each key, which the channel check needs; jwkset still parses the
// keys themselves.
//
// Requests never wait on a fetch longer than fetchTimeout, and only when
// they cannot be answered otherwise (no keys yet, or an unknown kid): stale
// keys keep being served while Run refreshes them in the background.
type keySet struct {
	metadataURL  string
	client       *http.Client
	maxAge       time.Duration
	fetchTimeout time.Duration
	retryMin     time.Duration
	retryMax     time.Duration
	unknownKID   *rate.Limiter
	coldFetch    *rate.Limiter // fetches by requests before any key loaded
	now          func() time.Time
	logger       *slog.Logger

	flightMu sync.Mutex
	flight   *fetchCall // the fetch in progress, shared by everyone who needs it

	mu       sync.RWMutex
	keys     map[string]signingKey
	loadedAt time.Time
}

type fetchCall struct {
	done chan struct{}
	err  error
}

type signingKey struct {
	key          any
	endorsements []string
}

func (ks *keySet) loaded() bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return len(ks.keys) > 0
}

func (ks *keySet) fresh() bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return !ks.loadedAt.IsZero() && ks.now().Sub(ks.loadedAt) < ks.maxAge
}

func (ks *keySet) get(kid string) (signingKey, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	k, ok := ks.keys[kid]
	return k, ok
}

func (ks *keySet) lookup(ctx context.Context, kid string) (signingKey, error) {
	if !ks.loaded() {
		// Nothing to serve yet (the background load has not succeeded):
		// this request may wait for one bounded fetch, joining the one in
		// progress, or starting one no more often than coldFetch allows:
		// Run owns the backoff, and a flood of requests while the endpoint
		// is down must not become a flood of fetches.
		c := ks.coldFetchCall()
		if c == nil {
			return signingKey{}, authError(ReasonKeysUnavailable, errors.New("the signing keys are not loaded yet"))
		}
		select {
		case <-c.done:
		case <-ctx.Done():
		}
		if !ks.loaded() {
			err := ctx.Err()
			if err == nil {
				err = c.err
			}
			return signingKey{}, authError(ReasonKeysUnavailable, err)
		}
	} else if !ks.fresh() {
		// Stale: serve the last good keys and refresh behind the request.
		ks.start()
	}
	k, ok := ks.get(kid)
	if !ok && ks.unknownKID.Allow() {
		// Keys rotate: an unknown kid may be a new key.
		if err := ks.refresh(ctx); err != nil {
			return signingKey{}, authError(ReasonKeysUnavailable, err)
		}
		k, ok = ks.get(kid)
	}
	if !ok {
		return signingKey{}, authError(ReasonUnknownKey, fmt.Errorf("kid %q", kid))
	}
	return k, nil
}

// coldFetchCall is the fetch a request that found no keys may wait for: the
// one in progress, or a new one if coldFetch allows. Deciding under flightMu
// matters: a request that saw no keys must not be refused because another
// one was allowed a fetch but has not started it yet, or has just finished
// it (an ended fetch is returned then). Nil: answer 503 at once.
func (ks *keySet) coldFetchCall() *fetchCall {
	ks.flightMu.Lock()
	defer ks.flightMu.Unlock()
	switch {
	case ks.flight != nil:
		return ks.flight
	case ks.loaded(): // keys are stored before a fetch leaves flight
		c := &fetchCall{done: make(chan struct{})}
		close(c.done)
		return c
	case ks.coldFetch.Allow():
		return ks.startLocked()
	}
	return nil
}

// start begins a fetch unless one is in progress, and returns it. The fetch
// runs detached from any request, bounded by fetchTimeout, so a caller that
// gives up does not cancel it for the others.
func (ks *keySet) start() *fetchCall {
	ks.flightMu.Lock()
	defer ks.flightMu.Unlock()
	return ks.startLocked()
}

func (ks *keySet) startLocked() *fetchCall {
	if ks.flight != nil {
		return ks.flight
	}
	c := &fetchCall{done: make(chan struct{})}
	ks.flight = c
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), ks.fetchTimeout)
		defer cancel()
		c.err = ks.fetch(ctx)
		ks.flightMu.Lock()
		ks.flight = nil
		ks.flightMu.Unlock()
		close(c.done)
	}()
	return c
}

// refresh fetches the keys, joining a fetch in progress, and waits for it
// no longer than ctx allows.
func (ks *keySet) refresh(ctx context.Context) error {
	c := ks.start()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run keeps the keys fresh until ctx ends: it fetches them now, then every
// maxAge; after a failure it retries with exponential backoff and jitter
// (retryMin doubling up to retryMax) while the last good keys keep serving.
func (ks *keySet) run(ctx context.Context) {
	backoff := ks.retryMin
	for {
		var wait time.Duration
		if err := ks.refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = backoff + rand.N(backoff/2+1)
			backoff = min(2*backoff, ks.retryMax)
			ks.logger.WarnContext(ctx, "cannot fetch the Bot Framework signing keys; serving the last good ones",
				"err", err, "keys_loaded", ks.loaded(), "retry_in", wait.String())
		} else {
			backoff = ks.retryMin
			wait = ks.maxAge
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (ks *keySet) fetch(ctx context.Context) error {
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := ks.getJSON(ctx, ks.metadataURL, &meta); err != nil {
		return fmt.Errorf("openid metadata: %w", err)
	}
	if meta.JWKSURI == "" {
		return errors.New("openid metadata has no jwks_uri")
	}
	if err := CheckSecureURL(meta.JWKSURI); err != nil {
		return fmt.Errorf("openid metadata: jwks_uri: %w", err)
	}
	var raw json.RawMessage
	if err := ks.getJSON(ctx, meta.JWKSURI, &raw); err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	keys, err := parseJWKS(raw)
	if err != nil {
		return err
	}
	ks.mu.Lock()
	ks.keys = keys
	ks.loadedAt = ks.now()
	ks.mu.Unlock()
	return nil
}

func (ks *keySet) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := ks.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

// CheckSecureURL accepts an absolute https URL, or http on a loopback host
// (local fakes in tests). Signing keys and tokens fetched over plain http
// could be swapped by anyone on the path.
func CheckSecureURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if IsLoopback(u.Hostname()) {
			return nil
		}
	}
	return fmt.Errorf("%q is not an https URL", raw)
}

func parseJWKS(raw []byte) (map[string]signingKey, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	var extra struct {
		Keys []struct {
			Endorsements []string `json:"endorsements"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &extra); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	keys := make(map[string]signingKey, len(set.Keys))
	for i, m := range set.Keys {
		if m.KTY != jwkset.KtyRSA || m.KID == "" {
			continue
		}
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			continue // one bad key must not take down the others
		}
		pub, ok := jwk.Key().(*rsa.PublicKey)
		if !ok {
			continue
		}
		keys[m.KID] = signingKey{key: pub, endorsements: extra.Keys[i].Endorsements}
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks: no usable RSA signing key")
	}
	return keys, nil
}
