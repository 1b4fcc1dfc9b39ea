package graph_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/graph"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
	"github.com/upgradeapprovals/bot/internal/fakeentra"
)

// afterEffect serves the fake tenant but, for the next n upgrade POSTs,
// lets the upgrade happen and then answers status: a gateway that lost
// Graph's 204.
type afterEffect struct {
	next   http.Handler
	mu     sync.Mutex
	n      int
	status int
}

func (a *afterEffect) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	fail := r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/upgrade") && a.n > 0
	if fail {
		a.n--
	}
	a.mu.Unlock()
	if !fail {
		a.next.ServeHTTP(w, r)
		return
	}
	a.next.ServeHTTP(httptest.NewRecorder(), r)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	w.Write([]byte(`{"error":{"code":"ServiceUnavailable","message":"upstream"}}`))
}

func posts(tn *fakegraph.Tenant) int {
	n := 0
	for _, c := range tn.Calls() {
		if c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/upgrade") {
			n++
		}
	}
	return n
}

func pendingPolls(t *testing.T, e *env) approval.PendingUpgrade {
	t.Helper()
	seedPolls(e.tenant)
	e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", []fakegraph.Permission{chatRead, settings})
	u := pending(t, e.client, chat())
	e.tenant.ResetCalls()
	return u
}

func upgrade(c *graph.Client, u approval.PendingUpgrade) error {
	return c.Upgrade(context.Background(), u.Installation, u.Target.Permissions)
}

func TestUpgradePostIsNeverRetriedOn5xx(t *testing.T) {
	for _, status := range []int{502, 503, 504} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			e := newEnv(t)
			u := pendingPolls(t, e)
			e.tenant.Fail(fakegraph.Fault{Method: http.MethodPost, Path: "/upgrade", Status: status, Code: "ServiceUnavailable",
				RetryAfter: "0", Times: 3})
			err := upgrade(e.client, u)
			// Unknown whether it took: the caller reads the installation
			// back rather than posting again.
			if !errors.Is(err, bot.ErrUnavailable) || !errors.Is(err, bot.ErrUpgradeUncertain) {
				t.Fatalf("err %v, want unavailable and uncertain", err)
			}
			if n := posts(e.tenant); n != 1 {
				t.Errorf("%d upgrade POSTs after a %d, want exactly 1", n, status)
			}
		})
	}
}

func TestUpgradeThatTookDespite503IsNotSentAgain(t *testing.T) {
	e := &env{tenant: fakegraph.New(), aad: fakeentra.New(t)}
	ae := &afterEffect{next: e.tenant, n: 1, status: http.StatusServiceUnavailable}
	e.srv = httptest.NewServer(ae)
	t.Cleanup(e.srv.Close)
	e.tenant.BaseURL = e.srv.URL
	e.client = newClient(t, e)
	u := pendingPolls(t, e)
	if err := upgrade(e.client, u); !errors.Is(err, bot.ErrUpgradeUncertain) {
		t.Fatalf("a 503 answered %v, want uncertain", err)
	}
	if n := posts(e.tenant); n != 1 {
		t.Errorf("%d upgrade POSTs, want 1", n)
	}
	// Reading it back tells: it took.
	in, err := e.client.Installation(context.Background(), chat(), u.Installation.ID)
	if err != nil || in.Definition.Version != "1.1.0" {
		t.Errorf("read back: %s %v", in.Definition.Version, err)
	}
}

func TestUpgradeRefusedByGraphIsCertain(t *testing.T) {
	e := newEnv(t)
	u := pendingPolls(t, e)
	e.tenant.Fail(fakegraph.Fault{Method: http.MethodPost, Path: "/upgrade", Status: 403, Code: "Forbidden", Message: "Missing scope permissions on the request."})
	if err := upgrade(e.client, u); !errors.Is(err, bot.ErrForbidden) || errors.Is(err, bot.ErrUpgradeUncertain) {
		t.Errorf("403: %v, want forbidden and certain", err)
	}
}

func TestUpgradeThrottleStormIsRetriedHonouringRetryAfter(t *testing.T) {
	e := newEnv(t)
	u := pendingPolls(t, e)
	e.tenant.Fail(fakegraph.Fault{Method: http.MethodPost, Path: "/upgrade", Status: 429, Code: "TooManyRequests", RetryAfter: "1", Times: 2})
	start := time.Now()
	if err := upgrade(e.client, u); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("retried after %s, want Retry-After honoured (2 × 1 s)", took)
	}
	if n := posts(e.tenant); n != 3 {
		t.Errorf("%d POSTs, want 3 (429, 429, 204)", n)
	}
}

func TestUpgradeIsRetriedWhenTheConnectionIsRefused(t *testing.T) {
	e := newEnv(t)
	u := pendingPolls(t, e)
	// Graph's address refuses connections for a moment (a restarting
	// gateway): the POST never arrived, so sending it again is safe.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there: connection refused
	c := newClient(t, e, func(o *graph.Options) { o.Transport = &refuseFirst{dead: dead, n: 2} })
	if err := upgrade(c, u); err != nil {
		t.Fatalf("upgrade after refused connections: %v", err)
	}
	if n := posts(e.tenant); n != 1 {
		t.Errorf("%d POSTs reached Graph, want 1", n)
	}
}

// refuseFirst sends the first n upgrade POSTs to an address where nothing
// listens, the rest on.
type refuseFirst struct {
	mu   sync.Mutex
	dead string
	n    int
}

func (r *refuseFirst) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	refuse := req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/upgrade") && r.n > 0
	if refuse {
		r.n--
	}
	r.mu.Unlock()
	if refuse {
		req = req.Clone(req.Context())
		req.URL.Host = r.dead
	}
	return http.DefaultTransport.RoundTrip(req)
}
