package botframework_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/botframework"
)

// Each step of POST /api/messages stops the request with its own status:
// what a later step would have done (read the body, count a rejection of
// its own, trust a service URL, call the bot) does not happen.

// watchedBody is a request body that records whether anything read it.
type watchedBody struct {
	r    io.Reader
	read atomic.Bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.r.Read(p)
}

// send posts body with the content type and authorization given (either
// may be empty) to h.
func send(h http.Handler, contentType, authorization string, body io.Reader) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/api/messages", body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func encode(t *testing.T, a map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// activities reads upgradebot_activities_total{result} (all types) from reg.
func activities(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "upgradebot_activities_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

func TestTokenCheckStopsBeforeTheBodyIsRead(t *testing.T) {
	f := newFixture(t)
	body := &watchedBody{r: bytes.NewReader(encode(t, activity()))}
	if w := send(f.handler, "application/json", "", body); w.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", w.Code)
	}
	if body.read.Load() {
		t.Error("an anonymous body was read")
	}
	if got := rejections(t, f.reg, botframework.ReasonMissingHeader); got != 1 {
		t.Errorf("missing-header rejections %v, want 1", got)
	}
	if f.bot.count() != 0 || len(f.trust.urls) != 0 {
		t.Error("an anonymous activity reached the trust store or the bot")
	}
}

func TestNonJSONStopsBeforeTheBodyIsRead(t *testing.T) {
	f := newFixture(t)
	body := &watchedBody{r: bytes.NewReader(encode(t, activity()))}
	if w := send(f.handler, "text/plain", "Bearer "+f.channel.Token(t), body); w.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("status %d, want 415", w.Code)
	}
	if body.read.Load() {
		t.Error("a text/plain body was read")
	}
	if got := activities(t, f.reg, "unsupported_media_type"); got != 1 {
		t.Errorf("unsupported_media_type count %v, want 1", got)
	}
	if f.bot.count() != 0 || len(f.trust.urls) != 0 {
		t.Error("a text/plain activity reached the trust store or the bot")
	}
}

// A body that is not an activity has no channel either: had the chain gone
// on, the channel check would have counted a rejection.
func TestUnreadableActivityStopsBeforeTheChannelCheck(t *testing.T) {
	big := activity()
	big["text"] = strings.Repeat("x", 300<<10)
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		result string
	}{
		{"malformed", []byte(`{"type":"message",`), http.StatusBadRequest, "malformed"},
		{"no type", []byte(`{"channelId":"msteams"}`), http.StatusBadRequest, "malformed"},
		{"over the limit", encode(t, big), http.StatusRequestEntityTooLarge, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if w := send(f.handler, "application/json", "Bearer "+f.channel.Token(t), bytes.NewReader(tc.body)); w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if got := activities(t, f.reg, tc.result); got != 1 {
				t.Errorf("%s count %v, want 1", tc.result, got)
			}
			if got := rejections(t, f.reg, botframework.ReasonChannel); got != 0 {
				t.Errorf("the channel check ran (%v rejections)", got)
			}
			if f.bot.count() != 0 || len(f.trust.urls) != 0 {
				t.Error("an unreadable activity reached the trust store or the bot")
			}
		})
	}
}

// A Web Chat activity from a tenant that is not allowed: the claims check
// after the channel check would refuse it for its tenant, had it run.
func TestWebChatStopsBeforeTheClaimsCheck(t *testing.T) {
	f := newFixture(t)
	f.channel.Endorse("msteams", "webchat")
	a := activity()
	a["channelId"] = "webchat"
	a["conversation"].(map[string]any)["tenantId"] = "00000000-0000-0000-0000-00000000beef"
	a["channelData"] = map[string]any{"tenant": map[string]any{"id": "00000000-0000-0000-0000-00000000beef"}}
	if w := f.post(t, "Bearer "+f.channel.Token(t), a); w.Code != http.StatusForbidden {
		t.Fatalf("status %d, want 403", w.Code)
	}
	if got := rejections(t, f.reg, botframework.ReasonChannel); got != 1 {
		t.Errorf("channel rejections %v, want 1", got)
	}
	if got := rejections(t, f.reg, botframework.ReasonTenant); got != 0 {
		t.Errorf("the claims check ran after the channel check refused (%v tenant rejections)", got)
	}
	if f.bot.count() != 0 || len(f.trust.urls) != 0 {
		t.Error("a Web Chat activity reached the trust store or the bot")
	}
}

// An activity that names another connector than its token does is refused
// before its service URL is trusted.
func TestClaimsCheckStopsBeforeTheServiceURLIsTrusted(t *testing.T) {
	f := newFixture(t)
	a := activity()
	a["serviceUrl"] = "https://smba.trafficmanager.net/emea/"
	if w := f.post(t, "Bearer "+f.channel.Token(t), a); w.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", w.Code)
	}
	if got := rejections(t, f.reg, botframework.ReasonServiceURL); got != 1 {
		t.Errorf("service URL rejections %v, want 1", got)
	}
	if f.bot.count() != 0 || len(f.trust.urls) != 0 {
		t.Errorf("a mismatched activity reached the bot or trusted %v", f.trust.urls)
	}
}

// failingTrust cannot record service URLs (Redis down).
type failingTrust struct{ memTrust }

func (*failingTrust) TrustServiceURL(context.Context, string, string) error {
	return bot.Errorf(bot.CodeUnavailable, "redis down")
}

// The bot never handles an activity whose service URL could not be
// recorded: its answer could not be sent. 503 makes Teams deliver it again.
func TestUntrustedServiceURLStopsBeforeTheBot(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := &recorder{}
	h, err := botframework.NewServer(botframework.ServerOptions{Bot: rec, Trust: &failingTrust{}, Metrics: botframework.NewMetrics(reg),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if w := send(h, "application/json", "", bytes.NewReader(encode(t, activity()))); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", w.Code)
	}
	if rec.count() != 0 {
		t.Error("the bot handled an activity whose service URL was not recorded")
	}
	if got := activities(t, reg, "error"); got != 1 {
		t.Errorf("error count %v, want 1", got)
	}
}

type requestKey struct{}

// ctxBot records a value of the context it handles an activity with.
type ctxBot struct{ got any }

func (b *ctxBot) Handle(ctx context.Context, _ *bot.Activity) (*bot.InvokeResponse, error) {
	b.got = ctx.Value(requestKey{})
	return nil, nil
}

// The bot works within the request: when the channel hangs up, its calls
// to Redis and Graph are cancelled with the request's context.
func TestTheBotHandlesWithTheRequestsContext(t *testing.T) {
	b := &ctxBot{}
	h, err := botframework.NewServer(botframework.ServerOptions{Bot: b, Trust: &memTrust{}})
	if err != nil {
		t.Fatal(err)
	}
	req := jsonPost(bytes.NewReader(encode(t, activity())))
	req = req.WithContext(context.WithValue(req.Context(), requestKey{}, "this request"))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", w.Code)
	}
	if b.got != "this request" {
		t.Errorf("the bot handled with another context than the request's (value %v)", b.got)
	}
}
