package botframework_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/botframework/fakechannel"
)

// metadataGate serves the channel's OpenID metadata, or fails, or hangs, as
// a broken login.botframework.com would.
type metadataGate struct {
	srv      *httptest.Server
	mode     atomic.Value // "ok", "fail", "hang"
	attempts atomic.Int32
	jwksURI  string
}

func newMetadataGate(t *testing.T, ch *fakechannel.Channel) *metadataGate {
	t.Helper()
	g := &metadataGate{jwksURI: strings.Replace(ch.MetadataURL(), "openidconfiguration", "keys", 1)}
	g.mode.Store("ok")
	stop := make(chan struct{})
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.attempts.Add(1)
		switch g.mode.Load() {
		case "fail":
			http.Error(w, "down", http.StatusInternalServerError)
		case "hang":
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"issuer":"https://api.botframework.com","jwks_uri":"` + g.jwksURI + `"}`))
		}
	}))
	t.Cleanup(func() { close(stop); g.srv.Close() })
	return g
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func gatedFixture(t *testing.T, edit func(*botframework.VerifierOptions)) (*fixture, *metadataGate, *botframework.Verifier) {
	t.Helper()
	ch := fakechannel.NewChannel(t, appID)
	ch.ServiceURL = svcURL
	g := newMetadataGate(t, ch)
	vo := botframework.VerifierOptions{AppID: appID, Issuer: ch.Issuer, OpenIDMetadataURL: g.srv.URL + "/v1/.well-known/openidconfiguration",
		AllowedTenants: []string{tenantID}}
	if edit != nil {
		edit(&vo)
	}
	v, err := botframework.NewVerifier(vo)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	f := &fixture{channel: ch, bot: &recorder{}, reg: reg, trust: &memTrust{}}
	if f.handler, err = botframework.NewServer(botframework.ServerOptions{Bot: f.bot, Verifier: v, Trust: f.trust,
		Metrics: botframework.NewMetrics(reg)}); err != nil {
		t.Fatal(err)
	}
	return f, g, v
}

// Teams gives up on a request after about 15 s. A hanging metadata endpoint
// must never hold a request that long: stale keys keep being served, and a
// request that really needs a fetch waits at most FetchTimeout (5 s).
func TestHangingMetadataNeverHoldsARequest(t *testing.T) {
	clk := &clock{now: time.Now()}
	f, g, v := gatedFixture(t, func(o *botframework.VerifierOptions) { o.Now = clk.Now })
	if err := v.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.mode.Store("hang")
	clk.Add(25 * time.Hour) // the keys are now stale
	other := fakechannel.NewKey(t)

	type result struct {
		name string
		code int
		took time.Duration
	}
	results := make(chan result, 8)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := f.channel.Claims()
			c["exp"], c["nbf"] = clk.Now().Add(time.Hour).Unix(), clk.Now().Add(-time.Minute).Unix()
			delete(c, "iat")
			tok, name := f.channel.Sign(t, c), "known kid"
			if i%2 == 1 {
				tok, name = fakechannel.SignRS256(t, other, "rotated-kid", c), "unknown kid"
			}
			start := time.Now()
			w := f.post(t, "Bearer "+tok, activity())
			results <- result{name, w.Code, time.Since(start)}
		}()
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.took > 10*time.Second {
			t.Errorf("%s: answered after %v; Teams gives up after 15 s", r.name, r.took)
		}
		switch r.name {
		case "known kid":
			if r.code != http.StatusOK {
				t.Errorf("known kid with stale keys and a hanging endpoint: status %d, want 200 (last good keys)", r.code)
			}
		default:
			if r.code != http.StatusServiceUnavailable && r.code != http.StatusUnauthorized {
				t.Errorf("unknown kid: status %d, want 503 or 401", r.code)
			}
		}
	}
}

// Before any key was ever loaded a request may wait for one fetch, but not
// past FetchTimeout, and it gets 503 so that Teams delivers it again.
func TestNoKeysAndHangingMetadataAnswers503Quickly(t *testing.T) {
	f, g, _ := gatedFixture(t, nil)
	g.mode.Store("hang")
	start := time.Now()
	w := f.post(t, "Bearer "+f.channel.Token(t), activity())
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("answered after %v; Teams gives up after 15 s", took)
	}
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", w.Code)
	}
	if got := rejections(t, f.reg, botframework.ReasonKeysUnavailable); got != 1 {
		t.Errorf("keys_unavailable rejections %v, want 1", got)
	}
}

// While no key was ever loaded, requests join the fetch in progress or
// start one at most every UnknownKeyInterval: a burst of posts while the
// endpoint is down is not a burst of fetches, and each answers 503.
func TestNoKeysRequestsDoNotHammerTheEndpoint(t *testing.T) {
	f, g, _ := gatedFixture(t, func(o *botframework.VerifierOptions) { o.UnknownKeyInterval = time.Hour })
	g.mode.Store("fail")
	for i := range 20 {
		if w := f.post(t, "Bearer "+f.channel.Token(t), activity()); w.Code != http.StatusServiceUnavailable {
			t.Fatalf("post %d: status %d, want 503", i, w.Code)
		}
	}
	if n := g.attempts.Load(); n != 1 {
		t.Errorf("20 posts before any key loaded made %d fetches, want 1", n)
	}
}

// Run refreshes the keys in the background; when the endpoint fails it backs
// off instead of hammering it, and the last good keys keep verifying.
func TestRunRefreshesWithBackoffAndServesLastGoodKeys(t *testing.T) {
	f, g, v := gatedFixture(t, func(o *botframework.VerifierOptions) {
		o.RefreshInterval = 50 * time.Millisecond
		o.RetryMin, o.RetryMax = 20*time.Millisecond, 200*time.Millisecond
		o.UnknownKeyInterval = time.Hour
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "keys loaded by Run", v.Ready)

	// Failing, Run retries (five attempts come) and backs off: 20 ms doubling
	// makes at least 20+40+80+160 ms between the first and the fifth, where
	// retrying at a fixed pace would take 80.
	g.mode.Store("fail")
	before := g.attempts.Load()
	waitFor(t, "a first failed fetch", func() bool { return g.attempts.Load() > before })
	first := time.Now()
	waitFor(t, "four retries", func() bool { return g.attempts.Load() >= before+5 })
	if took := time.Since(first); took < 300*time.Millisecond {
		t.Errorf("four retries within %s of the first failure: no backoff", took)
	}
	if w := f.post(t, "Bearer "+f.channel.Token(t), activity()); w.Code != http.StatusOK {
		t.Fatalf("with the endpoint failing: status %d, want 200 from the last good keys", w.Code)
	}

	// The endpoint recovers with a rotated key: Run picks it up by itself,
	// without any request asking for the unknown kid.
	f.channel.Rotate(t)
	g.mode.Store("ok")
	waitFor(t, "the rotated key", func() bool {
		a := activity()
		a["id"] = time.Now().String()
		return f.post(t, "Bearer "+f.channel.Token(t), a).Code == http.StatusOK
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSigningKeysOnlyOverHTTPS(t *testing.T) {
	for _, u := range []string{"http://login.botframework.com/v1/.well-known/openidconfiguration", "ftp://x/y", "/relative"} {
		if _, err := botframework.NewVerifier(botframework.VerifierOptions{AppID: appID, Issuer: "https://api.botframework.com",
			OpenIDMetadataURL: u}); err == nil {
			t.Errorf("metadata URL %q accepted", u)
		}
	}
	// Metadata that points the keys at plain http is refused.
	meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://keys.example.com/v1/.well-known/openidconfiguration", http.StatusFound)
			return
		}
		w.Write([]byte(`{"jwks_uri":"http://keys.example.com/v1/.well-known/keys"}`))
	}))
	defer meta.Close()
	for _, path := range []string{"/meta", "/redirect"} {
		v, err := botframework.NewVerifier(botframework.VerifierOptions{AppID: appID, Issuer: "https://api.botframework.com",
			OpenIDMetadataURL: meta.URL + path})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "https") {
			t.Errorf("%s: keys over plain http: err %v, want a refusal naming https", path, err)
		}
	}
}
