package fakechannel

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"sync"
	"testing"
	"time"
)

// Connector is a Bot Framework connector (a Teams serviceUrl) that records
// every call.
type Connector struct {
	srv *httptest.Server

	mu         sync.Mutex
	calls      []ConnectorCall
	failures   []int // statuses to answer with before succeeding
	retryAfter string
	delay      time.Duration
	skipBodies bool
	notify     chan struct{}
}

// ConnectorCall is one recorded request.
type ConnectorCall struct {
	Method        string
	Path          string
	Authorization string
	Activity      map[string]any // the decoded JSON body, if any
}

// NewConnector starts the connector.
func NewConnector(tb testing.TB) *Connector {
	tb.Helper()
	c := &Connector{notify: make(chan struct{}, 1024)}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	tb.Cleanup(c.srv.Close)
	return c
}

// URL is the serviceUrl activities should carry.
func (c *Connector) URL() string { return c.srv.URL + "/" }

// FailNext makes the next calls answer with these statuses.
func (c *Connector) FailNext(statuses ...int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures = append(c.failures, statuses...)
}

// RetryAfter sets the Retry-After header of failures (default "0"; "none"
// sends none).
func (c *Connector) RetryAfter(v string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retryAfter = v
}

// Delay makes every call take d before answering.
func (c *Connector) Delay(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.delay = d
}

// RecordBodies sets whether calls keep their decoded body and
// Authorization header (the default). A load generator turns it off:
// decoding and holding every reply would cost the machine about as much as
// the bot under test spends on it.
func (c *Connector) RecordBodies(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skipBodies = !on
}

// Calls returns the calls recorded so far.
func (c *Connector) Calls() []ConnectorCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ConnectorCall(nil), c.calls...)
}

// WaitCalls waits until at least n calls are recorded.
func (c *Connector) WaitCalls(tb testing.TB, n int) []ConnectorCall {
	tb.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if calls := c.Calls(); len(calls) >= n {
			return calls
		}
		select {
		case <-c.notify:
		case <-deadline:
			tb.Fatalf("connector: got %d calls, want %d", len(c.Calls()), n)
		}
	}
}

func (c *Connector) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	call := ConnectorCall{Method: r.Method, Path: r.URL.RequestURI()}
	c.mu.Lock()
	skip := c.skipBodies
	c.mu.Unlock()
	if !skip {
		call.Authorization = r.Header.Get("Authorization")
		if len(body) > 0 {
			_ = json.Unmarshal(body, &call.Activity)
		}
	}
	c.mu.Lock()
	c.calls = append(c.calls, call)
	n := len(c.calls)
	delay, retryAfter := c.delay, c.retryAfter
	status := 0
	if len(c.failures) > 0 {
		status, c.failures = c.failures[0], c.failures[1:]
	}
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	time.Sleep(delay)
	if status != 0 {
		switch retryAfter {
		case "":
			w.Header().Set("Retry-After", "0")
		case "none":
		default:
			w.Header().Set("Retry-After", retryAfter)
		}
		writeJSON(w, status, map[string]any{"error": map[string]string{"code": "ServiceError", "message": http.StatusText(status)}})
		return
	}
	switch r.Method {
	case http.MethodPost:
		writeJSON(w, http.StatusCreated, map[string]string{"id": fmt.Sprintf("activity-%d", n)})
	case http.MethodPut:
		writeJSON(w, http.StatusOK, map[string]string{"id": path.Base(r.URL.Path)})
	default:
		w.WriteHeader(http.StatusOK)
	}
}
