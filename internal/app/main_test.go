package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/botframework/fakechannel"
	"github.com/upgradeapprovals/bot/graph"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
	"github.com/upgradeapprovals/bot/internal/fakeentra"
)

const (
	testAppID  = "00000000-0000-0000-0000-0000000000b0"
	testTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
)

func redisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// harness runs the whole bot, as `serve` does, against a fake channel,
// Entra ID, connector and Graph tenant, on real Redis.
type harness struct {
	channel   *fakechannel.Channel
	aad       *fakeentra.Authority
	connector *fakechannel.Connector
	graph     *fakegraph.Tenant
	// sharedGraph is the Graph client of replicas started in this process.
	sharedGraph *graph.Client
	env         map[string]string
	url         string
	stop        context.CancelFunc
	done        chan error
	tune        func(*deps) // adjusts serve's seams before start
	reads       *catalogReads
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{channel: fakechannel.NewChannel(t, testAppID), aad: fakeentra.New(t), connector: fakechannel.NewConnector(t), graph: fakegraph.New(),
		reads: &catalogReads{}}
	h.channel.ServiceURL = h.connector.URL()
	graphSrv := httptest.NewServer(h.graph)
	t.Cleanup(graphSrv.Close)
	h.graph.BaseURL = graphSrv.URL
	h.env = map[string]string{
		"MicrosoftAppId":          testAppID,
		"MicrosoftAppPassword":    "s3cret value",
		"MicrosoftAppTenantId":    testTenant,
		"MicrosoftAppType":        "SingleTenant",
		"BOT_OPENID_METADATA_URL": h.channel.MetadataURL(),
		"AZURE_AUTHORITY_HOST":    h.aad.AuthorityHost(),
		"REDIS_URL":               redisURL(),
		"GRAPH_BASE_URL":          graphSrv.URL + "/v1.0",
		"REDIS_PREFIX":            fmt.Sprintf("test:e2e:%d:", time.Now().UnixNano()),
	}
	return h
}

func (h *harness) start(t testing.TB) {
	t.Helper()
	cfg, err := loadConfig(func(k string) string { return h.env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.url = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := deps{listener: ln, azureTransport: h.aad.Client(), catalogRead: h.reads.note}
	if h.tune != nil {
		h.tune(&d)
	}
	go func() { h.done <- serve(ctx, cfg, logger, d) }()
	t.Cleanup(func() { h.shutdown(t) })
}

func (h *harness) shutdown(t testing.TB) {
	t.Helper()
	if h.stop == nil {
		return
	}
	h.stop()
	h.stop = nil
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("serve did not stop")
	}
}

func (h *harness) message(id, text string) map[string]any {
	return map[string]any{
		"type": "message", "id": id, "channelId": "msteams", "serviceUrl": h.connector.URL(), "locale": "en-US",
		"text":         "<at>Upgrade Approvals</at> " + text,
		"from":         map[string]any{"id": "29:1megan", "aadObjectId": "11111111-1111-1111-1111-111111111111", "name": "Megan"},
		"recipient":    map[string]any{"id": "28:" + testAppID, "name": "Upgrade Approvals"},
		"conversation": map[string]any{"id": "19:abc@thread.v2", "conversationType": "groupChat", "tenantId": testTenant},
		"entities": []any{map[string]any{"type": "mention", "text": "<at>Upgrade Approvals</at>",
			"mentioned": map[string]any{"id": "28:" + testAppID, "name": "Upgrade Approvals"}}},
		"channelData": map[string]any{"tenant": map[string]any{"id": testTenant}},
	}
}

func (h *harness) post(t *testing.T, body any) int {
	t.Helper()
	code, _ := h.exchange(t, body)
	return code
}

// exchange posts an activity and returns the status and response body.
func (h *harness) exchange(t *testing.T, body any) (int, []byte) {
	t.Helper()
	return h.exchangeAt(t, h.url, body)
}

// exchangeAt posts an activity to the bot at base as Teams does, signed by
// the channel. A failure is an error, not fatal: tests post from several
// goroutines at once; the status is then 0.
func (h *harness) exchangeAt(t *testing.T, base string, body any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/messages", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+h.channel.Token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func TestHelpThroughTheWholeStack(t *testing.T) {
	h := newHarness(t)
	// The token requests are counted: the catalog watcher's first round,
	// if it runs after help made the tenant known, would ask for a Graph
	// token among them.
	h.tune = func(d *deps) { d.noBackground = true }
	h.start(t)
	if code := h.post(t, h.message("1700000000001", "help")); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	calls := h.connector.WaitCalls(t, 1)
	c := calls[0]
	if c.Method != http.MethodPost || c.Path != "/v3/conversations/19:abc@thread.v2/activities/1700000000001" {
		t.Errorf("connector call %s %s", c.Method, c.Path)
	}
	a := c.Activity
	if a["replyToId"] != "1700000000001" {
		t.Errorf("replyToId %v", a["replyToId"])
	}
	if conv, _ := a["conversation"].(map[string]any); conv["id"] != "19:abc@thread.v2" {
		t.Errorf("conversation %v", a["conversation"])
	}
	if from, _ := a["from"].(map[string]any); from["id"] != "28:"+testAppID {
		t.Errorf("from %v, want the bot", a["from"])
	}
	atts, _ := a["attachments"].([]any)
	if len(atts) != 1 {
		t.Fatalf("reply attachments %v, want one card", a["attachments"])
	}
	card, _ := json.Marshal(atts[0])
	if att := atts[0].(map[string]any); att["contentType"] != "application/vnd.microsoft.card.adaptive" || !strings.Contains(string(card), "List pending app upgrades here") {
		t.Errorf("reply %s is not the help card", card)
	}
	scope := "https://api.botframework.com/.default"
	reqs := h.aad.Requests()
	if len(reqs) != 1 || reqs[0].Tenant != testTenant || reqs[0].ClientID != testAppID || reqs[0].Scope != scope {
		t.Fatalf("token requests %+v", reqs)
	}
	if want := "Bearer " + h.aad.AccessToken(testTenant, scope, 1); c.Authorization != want {
		t.Errorf("connector Authorization %q, want %q", c.Authorization, want)
	}

	// Teams redelivers: the same activity is handled once.
	if code := h.post(t, h.message("1700000000001", "help")); code != http.StatusOK {
		t.Fatalf("redelivery status %d", code)
	}

	// After a restart on the same Redis, the redelivery is still recognised.
	h.shutdown(t)
	h.start(t)
	if code := h.post(t, h.message("1700000000001", "help")); code != http.StatusOK {
		t.Fatalf("redelivery after restart: status %d", code)
	}
	if code := h.post(t, h.message("1700000000002", "help")); code != http.StatusOK {
		t.Fatalf("new activity after restart: status %d", code)
	}
	// A message is answered before its POST is: the replies are all in.
	if calls = h.connector.Calls(); len(calls) != 2 {
		t.Fatalf("%d replies, want 2 (one per distinct activity)", len(calls))
	}
	if calls[1].Activity["replyToId"] != "1700000000002" {
		t.Errorf("second reply to %v", calls[1].Activity["replyToId"])
	}
}

func TestOversizedBodyIs413(t *testing.T) {
	h := newHarness(t)
	h.start(t)
	if code := h.post(t, h.message("big", strings.Repeat("x", 300<<10))); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", code)
	}
}

// A client that sends its headers and then trickles its body holds a
// connection and a goroutine: it is cut off once the read timeout passes,
// long before its body would have arrived.
func TestTricklingClientIsCutOff(t *testing.T) {
	h := newHarness(t)
	h.tune = func(d *deps) { d.readTimeout = 300 * time.Millisecond }
	h.start(t)
	body, _ := json.Marshal(h.message("1700000000030", "help"))
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/messages HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", conn.RemoteAddr(), h.channel.Token(t), len(body))
	answered := make(chan *http.Response, 1)
	go func() {
		resp, _ := http.ReadResponse(bufio.NewReader(conn), nil)
		answered <- resp
	}()
	// One byte every 50 ms: the whole body would take len(body)/20 seconds.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < len(body); i++ {
		select {
		case resp := <-answered:
			if resp != nil && resp.StatusCode == http.StatusOK {
				t.Fatalf("a trickled body was served: %s", resp.Status)
			}
			if calls := h.connector.Calls(); len(calls) != 0 {
				t.Errorf("the bot replied to a trickled activity: %d calls", len(calls))
			}
			return
		case <-tick.C:
		}
		if _, err := conn.Write(body[i : i+1]); err != nil {
			return // cut off
		}
	}
	t.Fatalf("the server read a %d-byte body trickled over %s", len(body), time.Duration(len(body))*50*time.Millisecond)
}

// Headers beyond 64 KiB are refused before any handler runs.
func TestOversizedHeadersAre431(t *testing.T) {
	h := newHarness(t)
	h.start(t)
	req, _ := http.NewRequest(http.MethodGet, h.url+"/healthz", nil)
	req.Header.Set("X-Padding", strings.Repeat("x", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
}

func TestSIGTERMLetsInFlightRequestFinish(t *testing.T) {
	h := newHarness(t)
	h.connector.Delay(time.Second)
	h.start(t)
	codes := make(chan int, 1)
	go func() { codes <- h.post(t, h.message("1700000000003", "help")) }()
	h.connector.WaitCalls(t, 1) // the request is now in flight, waiting on the connector
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.done:
		h.stop = nil
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if code := <-codes; code != http.StatusOK {
		t.Errorf("in-flight request finished with %d, want 200", code)
	}
	// And nothing new is accepted.
	if _, err := http.Get(h.url + "/healthz"); err == nil {
		t.Error("the server still accepts requests after SIGTERM")
	}
}

func TestConfigErrorsExit2NamingTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		name string
	}{
		{map[string]string{"MicrosoftAppType": "Federated"}, "MicrosoftAppType"},
		{map[string]string{"MicrosoftAppId": testAppID, "MicrosoftAppType": "SingleTenant", "MicrosoftAppTenantId": testTenant}, "MicrosoftAppPassword"},
		{map[string]string{"MicrosoftAppId": testAppID, "MicrosoftAppType": "SingleTenant", "MicrosoftAppPassword": "x"}, "MicrosoftAppTenantId"},
		{map[string]string{"MicrosoftAppId": "not-a-guid", "MicrosoftAppPassword": "x"}, "MicrosoftAppId"},
		{map[string]string{"REDIS_URL": "http://localhost:6379"}, "REDIS_URL"},
		{map[string]string{"REDIS_URL": "redis://:hunter2@localhost:notaport"}, "REDIS_URL"},
		{map[string]string{"PORT": "http"}, "PORT"},
		{map[string]string{"BOT_CLOUD": "mars"}, "BOT_CLOUD"},
		{map[string]string{"GRAPH_BASE_URL": "graph.local"}, "GRAPH_BASE_URL"},
		{map[string]string{"GRAPH_BASE_URL": "http://graph.microsoft.com/v1.0"}, "GRAPH_BASE_URL"}, // the app's token would travel in clear
		{map[string]string{"BOT_OPENID_METADATA_URL": "http://login.botframework.com/v1/.well-known/openidconfiguration"}, "BOT_OPENID_METADATA_URL"},
		{map[string]string{"AZURE_AUTHORITY_HOST": "http://login.microsoftonline.com/"}, "AZURE_AUTHORITY_HOST"},
		{map[string]string{"BOT_ALLOWED_TENANTS": "contoso.com"}, "BOT_ALLOWED_TENANTS"},
		{map[string]string{"BOT_ALLOWED_TENANTS": "*," + testTenant}, "BOT_ALLOWED_TENANTS"},
		// A MultiTenant bot must say which tenants it serves, or * on purpose.
		{map[string]string{"MicrosoftAppId": testAppID, "MicrosoftAppPassword": "x", "REDIS_URL": "redis://localhost:6379"}, "BOT_ALLOWED_TENANTS"},
		{map[string]string{"BOT_APPROVERS": "everyone"}, "BOT_APPROVERS"},
		{map[string]string{"BOT_APPROVERS": "owners,meeting=owner"}, "BOT_APPROVERS"},
		{map[string]string{"BOT_APPROVERS": "chat=organizer"}, "BOT_APPROVERS"}, // a group chat has no organizer
		{map[string]string{"BOT_APPROVERS": "channel=owners"}, "BOT_APPROVERS"},
		{map[string]string{"BOT_APPROVAL_QUORUM": "two"}, "BOT_APPROVAL_QUORUM"},
		{map[string]string{"BOT_SNOOZE": "3 days"}, "BOT_SNOOZE"},
		{map[string]string{"BOT_APPROVAL_QUORUM": "0"}, "BOT_APPROVAL_QUORUM"},
		{map[string]string{"BOT_APPROVAL_QUORUM": "-1"}, "BOT_APPROVAL_QUORUM"},
		{map[string]string{"BOT_APPROVAL_QUORUM": "21"}, "BOT_APPROVAL_QUORUM"},
		{map[string]string{"HOST": "0.0.0.0"}, "HOST"},      // no app id: auth is off, so no public bind
		{map[string]string{"HOST": "localhost:80"}, "HOST"}, // the port belongs in PORT
		{map[string]string{"BOT_PROACTIVE": "sometimes"}, "BOT_PROACTIVE"},
		{map[string]string{"BOT_SCAN_INTERVAL": "15"}, "BOT_SCAN_INTERVAL"},
		{map[string]string{"BOT_SWEEP_INTERVAL": "-1h"}, "BOT_SWEEP_INTERVAL"},
		{map[string]string{"BOT_APPROVAL_TTL": "a week"}, "BOT_APPROVAL_TTL"},
		{map[string]string{"BOT_UPGRADE_GRACE": "-5m"}, "BOT_UPGRADE_GRACE"},
		{map[string]string{"BOT_CHECK_WINDOW": "a while"}, "BOT_CHECK_WINDOW"},
		{map[string]string{"BOT_REMIND_AFTER": "200h"}, "BOT_REMIND_AFTER"}, // after the default 168h expiry
		{map[string]string{"BOT_ADMIN_CONVERSATION": "admins"}, "BOT_ADMIN_CONVERSATION"},
		{map[string]string{"BOT_ADMIN_CONVERSATION": "a:1mJx9personal"}, "BOT_ADMIN_CONVERSATION"}, // a personal chat
		{map[string]string{"BOT_ADMIN_CONVERSATION": "19:abc@thread.tacv2;messageid=1"}, "BOT_ADMIN_CONVERSATION"},
		{map[string]string{"BOT_ADMINS": "everyone"}, "BOT_ADMINS"},
		{map[string]string{"BOT_ADMINS": "team=owners"}, "BOT_ADMINS"}, // BOT_APPROVERS' kinds of scope do not apply
		{map[string]string{"BOT_ADMINS": "group:finance"}, "BOT_ADMINS"},
		{map[string]string{"BOT_DIGEST_INTERVAL": "weekly"}, "BOT_DIGEST_INTERVAL"},
	} {
		var stderr bytes.Buffer
		code := Run(context.Background(), nil, func(k string) string { return tc.env[k] }, &stderr, &stderr)
		out := stderr.String()
		if code != 2 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "config: "+tc.name+":") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line naming %s", tc.env, code, out, tc.name)
		}
		if strings.Contains(out, "hunter2") {
			t.Errorf("the Redis password leaked into %q", out)
		}
	}
}

// The refusal says how to fix it, and "*" (any tenant) or a list of
// tenants is that fix.
func TestConfigMultiTenantNamesItsTenants(t *testing.T) {
	env := map[string]string{"MicrosoftAppId": testAppID, "MicrosoftAppPassword": "x", "REDIS_URL": "redis://localhost:6379"}
	if _, err := loadConfig(func(k string) string { return env[k] }); err == nil ||
		!strings.Contains(err.Error(), "tenant ids") || !strings.Contains(err.Error(), "*") {
		t.Errorf("a MultiTenant bot without BOT_ALLOWED_TENANTS: %v", err)
	}
	for tenants, want := range map[string][]string{"*": nil, " * ": nil, testTenant: {testTenant}} {
		env["BOT_ALLOWED_TENANTS"] = tenants
		cfg, err := loadConfig(func(k string) string { return env[k] })
		if err != nil || !slices.Equal(cfg.AllowedTenants, want) {
			t.Errorf("BOT_ALLOWED_TENANTS=%q: tenants %q, %v; want %q", tenants, cfg.AllowedTenants, err, want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.addr() != "127.0.0.1:3978" {
		t.Errorf("without an app id the bot listens on %s, want loopback 127.0.0.1:3978", cfg.addr())
	}
	if cfg.CheckWindow != 30*time.Second {
		t.Errorf("a repeated check is answered from the one before for %s, want 30s", cfg.CheckWindow)
	}
	if off, err := loadConfig(func(k string) string { return map[string]string{"BOT_CHECK_WINDOW": "off"}[k] }); err != nil || off.CheckWindow != 0 {
		t.Errorf("BOT_CHECK_WINDOW=off: window %s, %v; want none", off.CheckWindow, err)
	}
	if cfg.AdminConversation != "" || cfg.DigestInterval != 168*time.Hour || !cfg.Admins.Owners {
		t.Errorf("admins' defaults: conversation %q, digest every %s, admins %+v; want none, 168h, owners",
			cfg.AdminConversation, cfg.DigestInterval, cfg.Admins)
	}
	for _, id := range []string{"19:9d2f6b0c1a8e4f7d@thread.tacv2", "19:meeting_N2E3@thread.v2"} {
		env := map[string]string{"BOT_ADMIN_CONVERSATION": id, "BOT_DIGEST_INTERVAL": "off"}
		if c, err := loadConfig(func(k string) string { return env[k] }); err != nil || c.AdminConversation != id || c.DigestInterval != 0 {
			t.Errorf("BOT_ADMIN_CONVERSATION=%s, BOT_DIGEST_INTERVAL=off: %q, %s, %v", id, c.AdminConversation, c.DigestInterval, err)
		}
	}
	if cfg.Cloud.Name != "public" || cfg.GraphBaseURL != "https://graph.microsoft.com/v1.0" ||
		cfg.OpenIDMetadataURL != "https://login.botframework.com/v1/.well-known/openidconfiguration" {
		t.Errorf("cloud defaults %+v", cfg)
	}
	cfg, err = loadConfig(func(k string) string {
		return map[string]string{"MicrosoftAppId": testAppID, "MicrosoftAppPassword": "x", "MicrosoftAppType": "SingleTenant",
			"MicrosoftAppTenantId": testTenant, "BOT_CLOUD": "usgovdod", "REDIS_URL": redisURL()}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.addr() != ":3978" || len(cfg.AllowedTenants) != 1 || cfg.AllowedTenants[0] != testTenant {
		t.Errorf("single tenant: addr %s tenants %v", cfg.addr(), cfg.AllowedTenants)
	}
	if cfg.GraphBaseURL != "https://dod-graph.microsoft.us/v1.0" || cfg.Cloud.Issuer != "https://api.botframework.us" {
		t.Errorf("usgovdod endpoints: graph %s issuer %s", cfg.GraphBaseURL, cfg.Cloud.Issuer)
	}
}

func TestUnknownSubcommandExits2(t *testing.T) {
	var stderr bytes.Buffer
	if code := Run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, &stderr, &stderr); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
}

func TestHealthcheckSubcommand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	var stderr bytes.Buffer
	env := func(k string) string { return map[string]string{"PORT": port}[k] }
	ln.Close()
	if code := Run(context.Background(), []string{"healthcheck"}, env, &stderr, &stderr); code != 1 {
		t.Errorf("healthcheck with nothing listening: exit %d, want 1", code)
	}
	cfg, _ := loadConfig(env)
	cfg.RedisURL = redisURL()
	ln, err = net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), deps{listener: ln}) }()
	defer func() { cancel(); <-done }()
	var seen string
	eventually(t, 5*time.Second, "the healthcheck to pass", func() bool {
		ok := Run(context.Background(), []string{"healthcheck"}, env, &stderr, &stderr) == 0
		seen = stderr.String()
		return ok
	}, &seen)
}

func TestManifestSubcommand(t *testing.T) {
	dir := t.TempDir()
	out := dir + "/appPackage/build/app.zip"
	env := func(k string) string { return map[string]string{"MicrosoftAppId": testAppID}[k] }
	var stderr bytes.Buffer
	if code := Run(context.Background(), []string{"manifest", "--out", out, "--domain", "upgrades.contoso.com"}, env, &stderr, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() < 1000 {
		t.Fatalf("package: %v", err)
	}

	for _, args := range [][]string{
		{"--version", "1.0"},
		{"--bot-id", "not-a-guid"},
		{"--name", strings.Repeat("n", 31)},
		{"--privacy-url", "http://contoso.com/privacy"},
	} {
		bad := dir + "/bad/app.zip"
		stderr.Reset()
		code := Run(context.Background(), append([]string{"manifest", "--out", bad, "--domain", "upgrades.contoso.com"}, args...), env, &stderr, &stderr)
		if code != 2 || !strings.HasPrefix(stderr.String(), "manifest: ") {
			t.Errorf("%v: exit %d, %q; want 2 and a clear error", args, code, stderr.String())
		}
		if _, err := os.Stat(bad); err == nil {
			t.Errorf("%v: a package was written from bad input", args)
		}
	}
	stderr.Reset()
	if code := Run(context.Background(), []string{"manifest", "--out", dir + "/x.zip"}, func(string) string { return "" }, &stderr, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "bot id") {
		t.Errorf("without a bot id: exit %d, %q", code, stderr.String())
	}
}

func TestCheckAndApproveThroughTheWholeStack(t *testing.T) {
	h := newHarness(t)
	const pollsID = "0d820ecd-def2-4297-adad-78056cde7c78"
	owner := "11111111-1111-1111-1111-111111111111"
	h.graph.AddApp(fakegraph.App{ID: pollsID, DisplayName: "Polls", Definitions: []fakegraph.Definition{
		{Version: "1.0.0"},
		{Version: "1.1.0", RSC: []fakegraph.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}},
	}})
	iid := h.graph.Install(fakegraph.Chat, "19:abc@thread.v2", pollsID, "1.0.0", nil)
	h.graph.AddMembers(fakegraph.Chat, "19:abc@thread.v2",
		fakegraph.Member{UserID: owner, DisplayName: "Megan Bowen", TenantID: testTenant, Roles: []string{"owner"}})
	// The calls to the connector are counted: the catalog watcher's first
	// round, once check made the tenant known, would post the same pending
	// upgrade to the chat among them.
	h.tune = func(d *deps) { d.noBackground = true }
	h.start(t)

	if code := h.post(t, h.message("1700000000010", "check")); code != http.StatusOK {
		t.Fatalf("check: status %d", code)
	}
	reply := h.connector.WaitCalls(t, 1)[0]
	card, _ := json.Marshal(reply.Activity["attachments"])
	var att []struct {
		Content struct {
			Actions []struct {
				Verb string `json:"verb"`
				Data struct {
					ApprovalID string `json:"approvalId"`
				} `json:"data"`
			} `json:"actions"`
		} `json:"content"`
	}
	if err := json.Unmarshal(card, &att); err != nil || len(att) != 1 || len(att[0].Content.Actions) == 0 ||
		att[0].Content.Actions[0].Verb != "approve" || !strings.Contains(string(card), "Read all messages in this chat") {
		t.Fatalf("check replied %s", card)
	}
	approvalID := att[0].Content.Actions[0].Data.ApprovalID

	invoke := h.message("1700000000011", "")
	delete(invoke, "text")
	invoke["type"], invoke["name"], invoke["replyToId"] = "invoke", "adaptiveCard/action", "activity-1"
	invoke["value"] = map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
		"data": map[string]any{"approvalId": approvalID}}}
	code, body := h.exchange(t, invoke)
	if code != http.StatusOK || !strings.Contains(string(body), `"type":"application/vnd.microsoft.card.adaptive"`) ||
		!strings.Contains(string(body), "Polls was upgraded to 1.1.0") {
		t.Fatalf("approve: %d %s", code, body)
	}
	if v, consented := h.graph.Installed(fakegraph.Chat, "19:abc@thread.v2", iid); v != "1.1.0" || len(consented) != 1 {
		t.Errorf("installation after approval: %s %v", v, consented)
	}
	calls := h.connector.WaitCalls(t, 2)
	if u := calls[1]; u.Method != http.MethodPut || u.Path != "/v3/conversations/19:abc@thread.v2/activities/activity-1" {
		t.Errorf("the card was not updated for everyone: %s %s", u.Method, u.Path)
	}
}

// A wrong or expired secret (here: refused for Graph only, as in a tenant
// where the app is not consented) is told to the chat as what to fix, in one
// line without Entra ID's answer: that names the tenant, the app and trace ids.
func TestRefusedGraphCredentialIsToldInChatAsWhatToFix(t *testing.T) {
	h := newHarness(t)
	graphScope := strings.TrimSuffix(h.env["GRAPH_BASE_URL"], "/v1.0") + "/.default"
	h.aad.Refuse(func(r fakeentra.TokenRequest) bool { return r.Scope == graphScope })
	h.start(t)

	if code := h.post(t, h.message("1700000000020", "check")); code != http.StatusOK {
		t.Fatalf("check: status %d", code)
	}
	reply := h.connector.WaitCalls(t, 1)[0]
	text, _ := reply.Activity["text"].(string)
	if !strings.Contains(text, "cannot get a Microsoft Graph token for this tenant") ||
		!strings.Contains(text, "MicrosoftAppId, its secret or certificate") || !strings.Contains(text, "consented") {
		t.Errorf("check replied %q, want what to fix", text)
	}
	for _, leak := range []string{testTenant, testAppID, fakeentra.RefusalTraceID, "AADSTS", "unreachable", "\n"} {
		if strings.Contains(text, leak) {
			t.Errorf("check replied %q, showing %q", text, leak)
		}
	}
}
