package botframework_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/botframework/fakechannel"
	"github.com/upgradeapprovals/bot/cards"
)

func TestBodyOverLimitIs413(t *testing.T) {
	f := newFixture(t)
	a := activity()
	a["text"] = strings.Repeat("x", 300<<10)
	w := f.post(t, "Bearer "+f.channel.Token(t), a)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", w.Code)
	}
	if f.bot.count() != 0 {
		t.Error("an oversized activity reached the bot")
	}
}

// jsonPost is a POST to /api/messages as channels send it.
func jsonPost(body io.Reader) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/api/messages", body)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	return req
}

// A web page can make the user's browser post a form or text/plain to a bot
// running locally with auth off; only JSON, which such a page cannot send
// without the bot's consent (CORS), reaches the bot.
func TestOnlyJSONReachesTheBot(t *testing.T) {
	rec := &recorder{}
	h, err := botframework.NewServer(botframework.ServerOptions{Bot: rec, Trust: &memTrust{}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(activity())
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		req := httptest.NewRequest(http.MethodPost, "/api/messages", bytes.NewReader(b))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %q: status %d, want 415", ct, w.Code)
		}
	}
	if rec.count() != 0 {
		t.Fatalf("%d activities without a JSON content type reached the bot", rec.count())
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, jsonPost(bytes.NewReader(b)))
	if w.Code != http.StatusOK || rec.count() != 1 {
		t.Errorf("JSON: status %d, %d activities reached the bot", w.Code, rec.count())
	}
}

func TestMalformedJSONIs400(t *testing.T) {
	f := newFixture(t)
	req := jsonPost(strings.NewReader(`{"type":"message",`))
	req.Header.Set("Authorization", "Bearer "+f.channel.Token(t))
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, req)
	if w.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", w.Code)
	}
}

func TestMalformedJSONWithoutTokenIs401(t *testing.T) {
	f := newFixture(t)
	req := jsonPost(strings.NewReader(`{"type":`))
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, req)
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401: anonymous bodies are not parsed", w.Code)
	}
}

func TestInvokeResponseIsWrittenSynchronously(t *testing.T) {
	f := newFixture(t)
	f.bot.resp = bot.InvokeCard(cards.Card{Type: "AdaptiveCard", Version: "1.5"})
	a := activity()
	a["type"] = "invoke"
	a["name"] = "adaptiveCard/action"
	a["value"] = map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve"}}
	w := f.post(t, "Bearer "+f.channel.Token(t), a)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	card, _ := body["value"].(map[string]any)
	if body["statusCode"] != float64(200) || body["type"] != "application/vnd.microsoft.card.adaptive" || card["type"] != "AdaptiveCard" {
		t.Errorf("invoke response %v", body)
	}

	// A refusal travels with 200 too: its status is in the body, where
	// Teams shows the message to the clicker.
	f.bot.resp = bot.Refuse(bot.CodeNotFound, "NotFound", "This request is no longer known.")
	w = f.post(t, "Bearer "+f.channel.Token(t), a)
	if w.Code != http.StatusOK || w.Body.String() != `{"statusCode":404,"type":"application/vnd.microsoft.error","value":{"code":"NotFound","message":"This request is no longer known."}}` {
		t.Errorf("refusal answered %d %s", w.Code, w.Body)
	}

	// No answer (an invoke nobody handles) is a bare 200.
	f.bot.resp = nil
	a["name"] = "task/fetch"
	if w = f.post(t, "Bearer "+f.channel.Token(t), a); w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("unhandled invoke answered %d %q", w.Code, w.Body)
	}
}

type failingBot struct{ err error }

func (b failingBot) Handle(context.Context, *bot.Activity) (*bot.InvokeResponse, error) {
	return nil, b.err
}

func TestHandlerErrorsMapToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{bot.Errorf(bot.CodeUnavailable, "redis down"), http.StatusServiceUnavailable},
		{bot.Errorf(bot.CodeInvalid, "bad"), http.StatusBadRequest},
		{errors.New("boom"), http.StatusInternalServerError},
	} {
		h, err := botframework.NewServer(botframework.ServerOptions{Bot: failingBot{tc.err}, Trust: &memTrust{}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(activity())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, jsonPost(bytes.NewReader(b)))
		if w.Code != tc.want {
			t.Errorf("%v: status %d, want %d", tc.err, w.Code, tc.want)
		}
	}
}

func TestProbesAndMetrics(t *testing.T) {
	ready := errors.New("redis: connection refused")
	reg := prometheus.NewRegistry()
	h, err := botframework.NewServer(botframework.ServerOptions{
		Bot: &recorder{}, Trust: &memTrust{}, Gatherer: reg, Metrics: botframework.NewMetrics(reg),
		Ready: func(context.Context) error { return ready },
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	if w := get("/healthz"); w.Code != http.StatusOK {
		t.Errorf("/healthz %d", w.Code)
	}
	if w := get("/readyz"); w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "refused") {
		t.Errorf("/readyz with Redis down: %d %q, want 503 without the error's detail", w.Code, w.Body)
	}
	ready = nil
	if w := get("/readyz"); w.Code != http.StatusOK {
		t.Errorf("/readyz with Redis up: %d, want 200", w.Code)
	}
	b, _ := json.Marshal(activity())
	h.ServeHTTP(httptest.NewRecorder(), jsonPost(bytes.NewReader(b)))
	w := get("/metrics")
	if !strings.Contains(w.Body.String(), `upgradebot_activities_total{result="ok",type="message"} 1`) {
		t.Errorf("/metrics lacks the activity count:\n%s", w.Body.String())
	}
}

// /readyz says 503 until the signing keys are loaded, then 200: a replica
// that could not verify a single token takes no traffic.
func TestReadyzWaitsForSigningKeys(t *testing.T) {
	ch := fakechannel.NewChannel(t, appID)
	v, err := botframework.NewVerifier(botframework.VerifierOptions{AppID: appID, Issuer: ch.Issuer, OpenIDMetadataURL: ch.MetadataURL()})
	if err != nil {
		t.Fatal(err)
	}
	h, err := botframework.NewServer(botframework.ServerOptions{Bot: &recorder{}, Trust: &memTrust{}, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	readyz := func() int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w.Code
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the keys are loaded: %d, want 503", code)
	}
	if err := v.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code := readyz(); code != http.StatusOK {
		t.Errorf("/readyz with the keys loaded: %d, want 200", code)
	}
}

// Keys that cannot be fetched keep the replica out of rotation.
func TestReadyzStaysDownWhenKeysCannotBeFetched(t *testing.T) {
	v, err := botframework.NewVerifier(botframework.VerifierOptions{
		AppID: appID, Issuer: "https://api.botframework.com", OpenIDMetadataURL: "http://127.0.0.1:1/none",
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := botframework.NewServer(botframework.ServerOptions{Bot: &recorder{}, Trust: &memTrust{}, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Load(context.Background()); err == nil {
		t.Fatal("keys loaded from a closed port")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz without keys: %d, want 503", w.Code)
	}
}

// With authentication off (the sandbox, a local run) the listener is on
// loopback, but a web page the user opens can rebind its own name to
// 127.0.0.1: requests naming another host, or sent from another origin, are
// refused before they reach the bot.
func TestLoopbackOnlyRefusesOtherHostsAndOrigins(t *testing.T) {
	rec := &recorder{}
	h, err := botframework.NewServer(botframework.ServerOptions{Bot: rec, Trust: &memTrust{}, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(activity())
	for _, tc := range []struct {
		host, origin string
		want         int
	}{
		{"127.0.0.1:3978", "", http.StatusOK},
		{"localhost:3978", "", http.StatusOK},
		{"LOCALHOST", "", http.StatusOK},
		{"[::1]:3978", "", http.StatusOK},
		{"127.0.0.1:3978", "http://localhost:56150", http.StatusOK},
		{"127.0.0.1:3978", "http://[::1]:56150", http.StatusOK},
		{"evil.example", "", http.StatusForbidden},
		{"evil.example:3978", "", http.StatusForbidden},
		{"127.0.0.1.evil.example:3978", "", http.StatusForbidden},
		{"localhost.evil.example", "", http.StatusForbidden},
		{"", "", http.StatusForbidden},
		{"127.0.0.1:3978", "http://evil.example", http.StatusForbidden},
		{"127.0.0.1:3978", "http://127.0.0.1.evil.example:3978", http.StatusForbidden},
		{"127.0.0.1:3978", "null", http.StatusForbidden},
	} {
		before := rec.count()
		req := jsonPost(bytes.NewReader(b))
		req.Host = tc.host
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tc.want {
			t.Errorf("Host %q, Origin %q: status %d, want %d", tc.host, tc.origin, w.Code, tc.want)
		}
		if reached := rec.count() > before; reached != (tc.want == http.StatusOK) {
			t.Errorf("Host %q, Origin %q: reached the bot: %v", tc.host, tc.origin, reached)
		}
	}
	// Nor can such a page read the bot's state.
	req := httptest.NewRequest(http.MethodGet, "/readyz", nil)
	req.Host = "evil.example"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusForbidden {
		t.Errorf("GET /readyz for evil.example: status %d, want 403", w.Code)
	}
}
