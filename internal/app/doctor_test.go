package app

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/upgradeapprovals/bot/graph/fakegraph"
	"github.com/upgradeapprovals/bot/internal/fakeentra"
)

// grantAllBut makes the fake Entra ID grant the app every Graph permission
// but the named ones.
func grantAllBut(aad *fakeentra.Authority, missing ...string) {
	aad.GrantRoles(func(fakeentra.TokenRequest) []string {
		var roles []string
		for _, p := range GraphPermissions() {
			if !slices.Contains(missing, p.Name) {
				roles = append(roles, p.Name)
			}
		}
		return roles
	})
}

// runDoctor runs doctor with the harness's configuration against its fakes.
func runDoctor(t *testing.T, h *harness) (int, string) {
	t.Helper()
	h.graph.AddApp(fakegraph.App{ID: "a1b2c3d4-0000-0000-0000-000000000001", ExternalID: "polls", DisplayName: "Polls",
		Definitions: []fakegraph.Definition{{Version: "1.0.0"}}})
	cfg, err := loadConfig(func(k string) string { return h.env[k] })
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code := doctor(context.Background(), cfg, "", doctorDeps{azureTransport: h.aad.Client()}, &out)
	return code, out.String()
}

func lines(out string) []string { return strings.Split(strings.TrimSuffix(out, "\n"), "\n") }

func TestDoctorAllOK(t *testing.T) {
	h := newHarness(t)
	grantAllBut(h.aad)
	code, out := runDoctor(t, h)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, l := range lines(out) {
		if !strings.HasPrefix(l, "ok   ") {
			t.Errorf("not ok: %s", l)
		}
	}
	for _, want := range []string{"configuration: SingleTenant app " + testAppID, "Redis answers", "Bot Framework token",
		"Microsoft Graph token for tenant " + testTenant, "org app catalog of tenant " + testTenant + " is readable (1 apps published)",
		"Bot Framework signing keys load"} {
		if !strings.Contains(out, want) {
			t.Errorf("no line says %q:\n%s", want, out)
		}
	}
	for _, p := range GraphPermissions() {
		// GroupMember.Read.All only matters with an approver group,
		// Chat.ReadBasic.WhereInstalled with a rule for chats or meetings.
		if has := strings.Contains(out, "ok   Graph permission "+p.Name+"\n"); has == (p.groupApprovers || p.chatApprovers) {
			t.Errorf("Graph permission %s checked: %v\n%s", p.Name, has, out)
		}
	}
	if strings.Contains(out, h.env["MicrosoftAppPassword"]) {
		t.Errorf("doctor printed the secret:\n%s", out)
	}
	// Both tokens came from the app's tenant with its secret; the Graph one for Graph.
	var scopes []string
	for _, r := range h.aad.Requests() {
		if r.Tenant != testTenant || r.Secret != h.env["MicrosoftAppPassword"] {
			t.Errorf("token request %+v", r)
		}
		scopes = append(scopes, r.Scope)
	}
	graphHost := strings.TrimSuffix(strings.TrimPrefix(h.env["GRAPH_BASE_URL"], "http://"), "/v1.0")
	if !slices.Contains(scopes, "https://api.botframework.com/.default") || !slices.Contains(scopes, "http://"+graphHost+"/.default") {
		t.Errorf("token scopes %v", scopes)
	}
}

// A MultiTenant bot has no tenant of its own: doctor (as `helm test` runs
// it, without -tenant) checks each customer tenant it serves.
func TestDoctorChecksAMultiTenantBotsCustomerTenants(t *testing.T) {
	h := newHarness(t)
	grantAllBut(h.aad)
	h.env["MicrosoftAppType"] = "MultiTenant"
	delete(h.env, "MicrosoftAppTenantId")
	h.env["BOT_ALLOWED_TENANTS"] = testTenant
	code, out := runDoctor(t, h)
	if code != 0 || !strings.Contains(out, "ok   Microsoft Graph token for tenant "+testTenant) ||
		!strings.Contains(out, "org app catalog of tenant "+testTenant+" is readable") {
		t.Fatalf("exit %d\n%s", code, out)
	}

	// With a home tenant beside its customers', the customers are where
	// it calls Graph; each permission line says whose.
	const other = "0f0f0f0f-0000-4000-8000-00000000c0de"
	h.env["MicrosoftAppTenantId"] = "11111111-2222-4333-8444-555555555555"
	h.env["BOT_ALLOWED_TENANTS"] = testTenant + "," + other
	code, out = runDoctor(t, h)
	for _, want := range []string{"ok   Microsoft Graph token for tenant " + testTenant, "ok   Microsoft Graph token for tenant " + other,
		"ok   Graph permission AppCatalog.Read.All in tenant " + other + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("no line says %q (exit %d):\n%s", want, code, out)
		}
	}
	if strings.Contains(out, "tenant "+h.env["MicrosoftAppTenantId"]+"\n") {
		t.Errorf("the home tenant was checked for Graph:\n%s", out)
	}

	delete(h.env, "MicrosoftAppTenantId")
	h.env["BOT_ALLOWED_TENANTS"] = "*" // any tenant: doctor must be told which
	code, out = runDoctor(t, h)
	if code != 1 || !strings.Contains(out, "FAIL Microsoft Graph: no tenant to check") || !strings.Contains(out, "doctor -tenant") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

func TestDoctorNamesEachMissingPermissionWithItsPurpose(t *testing.T) {
	h := newHarness(t)
	h.env["BOT_APPROVERS"] = "owners,group:3a6c4e10-8d37-4c1b-9a57-0f1f2b3c4d5e"
	grantAllBut(h.aad, "ChatMember.Read.All", "GroupMember.Read.All")
	code, out := runDoctor(t, h)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	var failed []string
	for _, l := range lines(out) {
		if strings.HasPrefix(l, "FAIL") {
			failed = append(failed, l)
		}
	}
	want := []string{
		"FAIL Graph permission ChatMember.Read.All is not granted; the bot needs it to: List chat members and their roles, " +
			"to let chat owners approve. — " + permissionFix,
		"FAIL Graph permission GroupMember.Read.All is not granted; the bot needs it to: Check membership (including nested " +
			"groups) when `BOT_APPROVERS` names an approver group. — " + permissionFix,
	}
	if !slices.Equal(failed, want) {
		t.Errorf("failures:\n%s\nwant:\n%s", strings.Join(failed, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(out, "ok   Graph permission AppCatalog.Read.All\n") {
		t.Errorf("granted permissions are not listed ok:\n%s", out)
	}
}

// The consent policy permissions are optional: doctor warns, and passes.
func TestDoctorWarnsOfAMissingOptionalPermission(t *testing.T) {
	h := newHarness(t)
	grantAllBut(h.aad, "Policy.Read.All")
	code, out := runDoctor(t, h)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "warn Graph permission Policy.Read.All is not granted; it is optional: ") || strings.Contains(out, "FAIL") {
		t.Errorf("doctor:\n%s", out)
	}
}

func TestDoctorNamesRedisDown(t *testing.T) {
	h := newHarness(t)
	grantAllBut(h.aad)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	h.env["REDIS_URL"] = "redis://:hunter22@" + addr + "/0"
	code, out := runDoctor(t, h)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if !regexp.MustCompile(`(?m)^FAIL Redis does not answer: .*` + regexp.QuoteMeta(addr) + `.* — check REDIS_URL`).MatchString(out) {
		t.Errorf("Redis down is not named:\n%s", out)
	}
	if strings.Contains(out, "hunter22") {
		t.Errorf("doctor printed the Redis password:\n%s", out)
	}
	if strings.Count(out, "FAIL") != 1 {
		t.Errorf("other checks failed too:\n%s", out)
	}
}

func TestDoctorNamesARefusedSecret(t *testing.T) {
	h := newHarness(t)
	h.aad.Refuse(func(fakeentra.TokenRequest) bool { return true })
	code, out := runDoctor(t, h)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, re := range []string{
		`(?m)^FAIL Bot Framework token: Entra ID refused the app's credential: .*AADSTS7000215.* — check MicrosoftAppId and MicrosoftAppPassword`,
		`(?m)^FAIL Microsoft Graph token for tenant ` + testTenant + `: .*AADSTS7000215.* — check MicrosoftAppId and MicrosoftAppPassword`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no line matches %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "Graph permission") {
		t.Errorf("permissions reported without a token:\n%s", out)
	}
	if strings.Contains(out, h.env["MicrosoftAppPassword"]) {
		t.Errorf("doctor printed the secret:\n%s", out)
	}
}

func TestDoctorBadConfigurationExits2(t *testing.T) {
	env := map[string]string{"MicrosoftAppId": testAppID, "MicrosoftAppType": "Personal"}
	var out bytes.Buffer
	if code := Run(context.Background(), []string{"doctor"}, func(k string) string { return env[k] }, &out, &out); code != 2 {
		t.Fatalf("exit %d\n%s", code, out.String())
	}
	if want := `FAIL configuration: config: MicrosoftAppType: unknown value "Personal"`; !strings.HasPrefix(out.String(), want) ||
		!strings.Contains(out.String(), "— fix MicrosoftAppType") {
		t.Errorf("output %q, want it to start %q and name the fix", out.String(), want)
	}
}

// recordHandler is a slog.Handler that keeps every record and tells when
// one with a given message arrives.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
	want    string
	arrived chan struct{}
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	if r.Message == h.want {
		select {
		case h.arrived <- struct{}{}:
		default:
		}
	}
	return nil
}

func (h *recordHandler) named(msg string) []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range h.records {
		if r.Message != msg {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		out = append(out, attrs)
	}
	return out
}

// The server names a missing Graph permission once, at start.
func TestServeLogsAMissingPermissionOnceAtStart(t *testing.T) {
	h := newHarness(t)
	grantAllBut(h.aad, "TeamMember.Read.All")
	cfg, err := loadConfig(func(k string) string { return h.env[k] })
	if err != nil {
		t.Fatal(err)
	}
	const msg = "a Graph application permission is not granted"
	rec := &recordHandler{want: msg, arrived: make(chan struct{}, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(rec), deps{listener: ln, azureTransport: h.aad.Client()}) }()
	<-rec.arrived
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := rec.named(msg)
	if len(got) != 1 || got[0]["permission"] != "TeamMember.Read.All" || got[0]["tenant"] != testTenant ||
		!strings.Contains(got[0]["purpose"], "team owners approve") {
		t.Errorf("logged %v, want TeamMember.Read.All once with its purpose", got)
	}
}

// README's permission table is GraphPermissions, row for row.
func TestREADMEPermissionTableIsTheBots(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Graph permissions\n")
	if !ok {
		t.Fatal("README has no Graph permissions section")
	}
	var rows []GraphPermission
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z.]+)` \\| (.+) \\|$").FindAllStringSubmatch(section, -1) {
		rows = append(rows, GraphPermission{Name: m[1], Purpose: m[2]})
		if len(rows) == len(GraphPermissions()) {
			break
		}
	}
	var want []GraphPermission
	for _, p := range GraphPermissions() {
		want = append(want, GraphPermission{Name: p.Name, Purpose: p.Purpose})
	}
	if !slices.Equal(rows, want) {
		t.Errorf("README's table:\n%v\nGraphPermissions:\n%v", rows, want)
	}
}

// README's configuration table lists exactly the names the bot reads.
func TestREADMEConfigTableIsTheBots(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "\n### Configuration\n")
	section, _, _ = strings.Cut(section, "\n\n")
	var names []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z_]+)` \\|").FindAllStringSubmatch(section, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	if !slices.Equal(names, ConfigNames()) {
		t.Errorf("README's configuration table: %v\nthe bot reads: %v", names, ConfigNames())
	}
}

// On a Redis Cluster every master must answer, and the one that does not is named.
func TestDoctorChecksEveryClusterMaster(t *testing.T) {
	cl := startRedisCluster(t)
	h := newHarness(t)
	grantAllBut(h.aad)
	h.env["REDIS_URL"] = cl.url()
	code, out := runDoctor(t, h)
	if code != 0 || !strings.Contains(out, "ok   Redis Cluster answers: every master (3)\n") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	down := cl.addrs[1]
	p := cl.procs[down]
	if err := p.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.Wait()
	code, out = runDoctor(t, h)
	if code != 1 || !regexp.MustCompile(`(?m)^FAIL Redis Cluster does not answer: master `+regexp.QuoteMeta(down)+`: .* — check REDIS_URL`).MatchString(out) {
		t.Errorf("exit %d, want the master at %s named:\n%s", code, down, out)
	}
}
