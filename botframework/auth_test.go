package botframework_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/botframework/fakechannel"
)

const (
	appID    = "00000000-0000-0000-0000-0000000000b0"
	tenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	svcURL   = "https://smba.trafficmanager.net/amer/"
)

// recorder is an ActivityHandler that remembers what it was given.
type recorder struct {
	mu   sync.Mutex
	got  []*bot.Activity
	resp *bot.InvokeResponse
}

func (r *recorder) Handle(ctx context.Context, a *bot.Activity) (*bot.InvokeResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, a)
	return r.resp, nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// memTrust is an in-memory ServiceURLTrust.
type memTrust struct {
	mu   sync.Mutex
	urls map[string]bool
}

func (m *memTrust) TrustServiceURL(ctx context.Context, conversationID, u string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.urls == nil {
		m.urls = map[string]bool{}
	}
	m.urls[u] = true
	return nil
}

func (m *memTrust) IsTrustedServiceURL(ctx context.Context, conversationID, u string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.urls[u], nil
}

type fixture struct {
	channel *fakechannel.Channel
	handler http.Handler
	bot     *recorder
	reg     *prometheus.Registry
	trust   *memTrust
	// warnings holds what the server logged at WARN and above.
	warnings *bytes.Buffer
}

func newFixture(t *testing.T, opts ...func(*botframework.VerifierOptions)) *fixture {
	t.Helper()
	return newFixtureOf(t, newChannel(t), opts...)
}

func newChannel(t *testing.T) *fakechannel.Channel {
	t.Helper()
	ch := fakechannel.NewChannel(t, appID)
	ch.ServiceURL = svcURL
	return ch
}

// newFixtureOf is a fixture whose verifier trusts channel ch.
func newFixtureOf(t *testing.T, ch *fakechannel.Channel, opts ...func(*botframework.VerifierOptions)) *fixture {
	t.Helper()
	vo := botframework.VerifierOptions{
		AppID: appID, Issuer: ch.Issuer, OpenIDMetadataURL: ch.MetadataURL(), AllowedTenants: []string{tenantID},
	}
	for _, o := range opts {
		o(&vo)
	}
	v, err := botframework.NewVerifier(vo)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	f := &fixture{channel: ch, bot: &recorder{}, reg: reg, trust: &memTrust{}, warnings: &bytes.Buffer{}}
	f.handler, err = botframework.NewServer(botframework.ServerOptions{
		Bot: f.bot, Verifier: v, Trust: f.trust, Metrics: botframework.NewMetrics(reg), Gatherer: reg,
		Logger: slog.New(slog.NewTextHandler(f.warnings, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func activity() map[string]any {
	return map[string]any{
		"type":         "message",
		"id":           "1700000000000",
		"channelId":    "msteams",
		"serviceUrl":   svcURL,
		"text":         "help",
		"from":         map[string]any{"id": "29:user", "aadObjectId": "11111111-1111-1111-1111-111111111111"},
		"recipient":    map[string]any{"id": "28:" + appID, "name": "Upgrade Approvals"},
		"conversation": map[string]any{"id": "19:abc@thread.v2", "conversationType": "groupChat", "tenantId": tenantID},
		"channelData":  map[string]any{"tenant": map[string]any{"id": tenantID}},
	}
}

func (f *fixture) post(t *testing.T, authorization string, body any) *httptest.ResponseRecorder {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/api/messages", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, req)
	return w
}

func TestValidTokenIsAccepted(t *testing.T) {
	f := newFixture(t)
	w := f.post(t, "Bearer "+f.channel.Token(t), activity())
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", w.Code)
	}
	if f.bot.count() != 1 {
		t.Fatalf("bot got %d activities, want 1", f.bot.count())
	}
	if ok, _ := f.trust.IsTrustedServiceURL(context.Background(), "19:abc@thread.v2", svcURL); !ok {
		t.Error("the service URL of an authenticated activity is not trusted")
	}
}

func TestRejections(t *testing.T) {
	otherKey := fakechannel.NewKey(t)
	cases := []struct {
		name   string
		reason string
		auth   func(f *fixture) string
		edit   func(a map[string]any)
		setup  func(f *fixture)
	}{
		{name: "no header", reason: botframework.ReasonMissingHeader, auth: func(f *fixture) string { return "" }},
		{name: "not bearer", reason: botframework.ReasonNotBearer, auth: func(f *fixture) string {
			return "Basic " + f.channel.Token(t)
		}},
		{name: "bad signature", reason: botframework.ReasonSignature, auth: func(f *fixture) string {
			tok := f.channel.Token(t)
			parts := strings.Split(tok, ".")
			forged := fakechannel.SignRS256(t, otherKey, "x", f.channel.Claims())
			return "Bearer " + parts[0] + "." + parts[1] + "." + strings.Split(forged, ".")[2]
		}},
		{name: "alg none", reason: botframework.ReasonAlgorithm, auth: func(f *fixture) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodNone, f.channel.Claims())
			s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
			if err != nil {
				t.Fatal(err)
			}
			return "Bearer " + s
		}},
		{name: "HS256 with the public key", reason: botframework.ReasonAlgorithm, auth: func(f *fixture) string {
			// The classic confusion attack: HMAC keyed with the RSA public key.
			pubDER := []byte("-----BEGIN PUBLIC KEY-----")
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, f.channel.Claims())
			tok.Header["kid"] = "any"
			s, err := tok.SignedString(pubDER)
			if err != nil {
				t.Fatal(err)
			}
			return "Bearer " + s
		}},
		{name: "wrong issuer", reason: botframework.ReasonIssuer, auth: func(f *fixture) string {
			c := f.channel.Claims()
			c["iss"] = "https://sts.windows.net/evil/"
			return "Bearer " + f.channel.Sign(t, c)
		}},
		{name: "wrong audience", reason: botframework.ReasonAudience, auth: func(f *fixture) string {
			c := f.channel.Claims()
			c["aud"] = "00000000-0000-0000-0000-00000000dead"
			return "Bearer " + f.channel.Sign(t, c)
		}},
		{name: "expired beyond skew", reason: botframework.ReasonExpired, auth: func(f *fixture) string {
			c := f.channel.Claims()
			c["exp"] = time.Now().Add(-6 * time.Minute).Unix()
			return "Bearer " + f.channel.Sign(t, c)
		}},
		{name: "no exp", reason: botframework.ReasonMalformed, auth: func(f *fixture) string {
			c := f.channel.Claims()
			delete(c, "exp")
			return "Bearer " + f.channel.Sign(t, c)
		}},
		{name: "nbf beyond skew", reason: botframework.ReasonNotYetValid, auth: func(f *fixture) string {
			c := f.channel.Claims()
			c["nbf"] = time.Now().Add(6 * time.Minute).Unix()
			return "Bearer " + f.channel.Sign(t, c)
		}},
		{name: "unknown kid after refresh", reason: botframework.ReasonUnknownKey, auth: func(f *fixture) string {
			return "Bearer " + fakechannel.SignRS256(t, otherKey, "kid-nobody-has", f.channel.Claims())
		}},
		{name: "endorsement lacks the channel", reason: botframework.ReasonEndorsement,
			setup: func(f *fixture) { f.channel.Endorse("skype", "webchat") },
			auth:  func(f *fixture) string { return "Bearer " + f.channel.Token(t) }},
		{name: "serviceurl claim mismatch", reason: botframework.ReasonServiceURL,
			auth: func(f *fixture) string { return "Bearer " + f.channel.Token(t) },
			edit: func(a map[string]any) { a["serviceUrl"] = "https://attacker.example/" }},
		{name: "no serviceurl claim", reason: botframework.ReasonServiceURL, auth: func(f *fixture) string {
			c := f.channel.Claims()
			delete(c, "serviceurl")
			return "Bearer " + f.channel.Sign(t, c)
		}},
		{name: "tenant not allowed", reason: botframework.ReasonTenant,
			auth: func(f *fixture) string { return "Bearer " + f.channel.Token(t) },
			edit: func(a map[string]any) {
				a["conversation"].(map[string]any)["tenantId"] = "99999999-9999-9999-9999-999999999999"
			}},
		{name: "tenant only in channelData, not allowed", reason: botframework.ReasonTenant,
			auth: func(f *fixture) string { return "Bearer " + f.channel.Token(t) },
			edit: func(a map[string]any) {
				delete(a["conversation"].(map[string]any), "tenantId")
				a["channelData"] = map[string]any{"tenant": map[string]any{"id": "99999999-9999-9999-9999-999999999999"}}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			a := activity()
			if tc.edit != nil {
				tc.edit(a)
			}
			w := f.post(t, tc.auth(f), a)
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", w.Code)
			}
			if w.Body.Len() != 0 {
				t.Errorf("401 body %q, want empty", w.Body.String())
			}
			if f.bot.count() != 0 {
				t.Error("the bot handled an unauthenticated activity")
			}
			if got := rejections(t, f.reg, tc.reason); got != 1 {
				t.Errorf("auth rejection metric for %q = %v, want 1", tc.reason, got)
			}
			if ok, _ := f.trust.IsTrustedServiceURL(context.Background(), "19:abc@thread.v2", a["serviceUrl"].(string)); ok {
				t.Error("a rejected activity's service URL became trusted")
			}
		})
	}
}

// rejections reads upgradebot_auth_rejections_total{reason} from the registry.
func rejections(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "upgradebot_auth_rejections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestRotatedKeyIsPickedUpWithoutRestart(t *testing.T) {
	f := newFixture(t)
	if w := f.post(t, "Bearer "+f.channel.Token(t), activity()); w.Code != http.StatusOK {
		t.Fatalf("before rotation: status %d", w.Code)
	}
	fetches := f.channel.KeyFetches()
	f.channel.Rotate(t)
	a := activity()
	a["id"] = "second"
	if w := f.post(t, "Bearer "+f.channel.Token(t), a); w.Code != http.StatusOK {
		t.Fatalf("after rotation: status %d, want 200", w.Code)
	}
	if f.channel.KeyFetches() != fetches+1 {
		t.Errorf("keys fetched %d more times, want 1", f.channel.KeyFetches()-fetches)
	}
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	f := newFixture(t, func(o *botframework.VerifierOptions) { o.UnknownKeyInterval = time.Hour })
	key := fakechannel.NewKey(t)
	for i := 0; i < 5; i++ {
		tok := fakechannel.SignRS256(t, key, "unknown", f.channel.Claims())
		if w := f.post(t, "Bearer "+tok, activity()); w.Code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", w.Code)
		}
	}
	// One initial load and one refresh for the unknown kid; the other four
	// garbage tokens must not reach the metadata endpoint.
	if got := f.channel.KeyFetches(); got != 2 {
		t.Errorf("keys fetched %d times, want 2", got)
	}
}

// Stale keys keep verifying while one refresh runs behind the request; the
// refreshed keys are fresh again, so later requests fetch nothing.
func TestKeysRefreshAfterRefreshInterval(t *testing.T) {
	ch := newChannel(t) // outside the bubble: its server waits on the network
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		f := newFixtureOf(t, ch, func(o *botframework.VerifierOptions) {
			o.Now = clock
			o.UnknownKeyInterval = time.Hour
			o.HTTPClient = &http.Client{Transport: handlerTransport{ch.Handler()}}
		})
		f.post(t, "Bearer "+f.channel.Token(t), activity())
		mu.Lock()
		now = now.Add(25 * time.Hour)
		mu.Unlock()
		// Tokens minted "now" for the fake clock.
		token := func() string {
			c := f.channel.Claims()
			c["exp"] = clock().Add(time.Hour).Unix()
			c["nbf"] = clock().Add(-time.Minute).Unix()
			delete(c, "iat")
			return f.channel.Sign(t, c)
		}
		for i := range 3 {
			a := activity()
			a["id"] = fmt.Sprint("later-", i)
			if w := f.post(t, "Bearer "+token(), a); w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
			synctest.Wait() // whatever the request started has finished
			if got := f.channel.KeyFetches(); got != 2 {
				t.Fatalf("after request %d 25 h later: keys fetched %d times, want 2", i+1, got)
			}
		}
	})
}

// handlerTransport answers HTTP requests from a handler, in process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	return w.Result(), nil
}

func TestConcurrentRequestsFetchStaleKeysOnce(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := activity()
			a["id"] = fmt.Sprint(i)
			if w := f.post(t, "Bearer "+f.channel.Token(t), a); w.Code != http.StatusOK {
				t.Errorf("status %d", w.Code)
			}
		}()
	}
	wg.Wait()
	if got := f.channel.KeyFetches(); got != 1 {
		t.Errorf("8 concurrent first requests fetched the keys %d times, want 1", got)
	}
}

// Posts without a token are internet noise (counted by the metric) and stay
// out of the warnings; a token that fails a check is a warning, as it often
// means a misconfigured app id, tenant or cloud.
func TestAnonymousPostsAreNotWarnings(t *testing.T) {
	f := newFixture(t)
	for _, auth := range []string{"", "Basic dXNlcjpwYXNz", "Bearer not-a-jwt"} {
		if w := f.post(t, auth, activity()); w.Code != http.StatusUnauthorized {
			t.Fatalf("%q: status %d", auth, w.Code)
		}
	}
	if f.warnings.Len() != 0 {
		t.Errorf("anonymous posts logged warnings:\n%s", f.warnings)
	}
	c := f.channel.Claims()
	c["aud"] = "00000000-0000-0000-0000-00000000dead"
	if w := f.post(t, "Bearer "+f.channel.Sign(t, c), activity()); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong audience: status %d", w.Code)
	}
	if !strings.Contains(f.warnings.String(), "level=WARN") || !strings.Contains(f.warnings.String(), "reason=audience") {
		t.Errorf("a token for another app was not a warning: %q", f.warnings)
	}
}
