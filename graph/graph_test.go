package graph_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/graph"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
	"github.com/upgradeapprovals/bot/internal/fakeentra"
)

const (
	appID    = "00000000-0000-0000-0000-0000000000b0"
	tenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	chatID   = "19:ea28e88c00e94c7786b065394a61f296@thread.v2"
	meetID   = "19:meeting_NjQ0ZjEwNzEtYmU0Ny00N2I5LWE5MjYtYTU4Y2I4NDQ0YjVm@thread.v2"
	teamID   = "02bd9fd6-8f93-4758-87c3-1fb73740a315"
	userID   = "5b649834-7412-4cce-9e69-176e95a394f5"
	pollsID  = "0d820ecd-def2-4297-adad-78056cde7c78"
)

type env struct {
	tenant *fakegraph.Tenant
	aad    *fakeentra.Authority
	client *graph.Client
	srv    *httptest.Server
}

func credential(aad *fakeentra.Authority) func(string) (azcore.TokenCredential, error) {
	return func(tid string) (azcore.TokenCredential, error) {
		return azidentity.NewClientSecretCredential(tid, appID, "s3cret", &azidentity.ClientSecretCredentialOptions{
			ClientOptions: azcore.ClientOptions{
				Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: aad.AuthorityHost()},
				Transport: aad.Client(),
			},
			DisableInstanceDiscovery: true,
		})
	}
}

func newEnv(t testing.TB, opts ...func(*graph.Options)) *env {
	t.Helper()
	e := &env{tenant: fakegraph.New(), aad: fakeentra.New(t)}
	e.srv = httptest.NewServer(e.tenant)
	t.Cleanup(e.srv.Close)
	e.tenant.BaseURL = e.srv.URL
	e.client = newClient(t, e, opts...)
	return e
}

// newClient returns a client of the env's tenant with a cache of its own.
func newClient(t testing.TB, e *env, opts ...func(*graph.Options)) *graph.Client {
	t.Helper()
	o := graph.Options{BaseURL: e.srv.URL + "/v1.0", Credential: credential(e.aad), HomeTenantID: tenantID}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	c, err := graph.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var (
	meetingRead = fakegraph.Permission{Value: "ChannelMeeting.ReadBasic.Group", Type: "delegated"}
	chatRead    = fakegraph.Permission{Value: "ChatMessage.Read.Chat", Type: "application"}
	settings    = fakegraph.Permission{Value: "ChatSettings.Read.Chat", Type: "application"}
)

// seedPolls publishes Polls 1.0.0 and 1.1.0 (which trades ChatSettings for
// the meeting permission).
func seedPolls(tn *fakegraph.Tenant) {
	tn.AddApp(fakegraph.App{ID: pollsID, ExternalID: "f1a3b2c4-0000-4000-8000-000000000001", DisplayName: "Polls",
		Definitions: []fakegraph.Definition{
			{Version: "1.0.0", RSC: []fakegraph.Permission{chatRead, settings}},
			{Version: "1.1.0", RSC: []fakegraph.Permission{chatRead, meetingRead}, ShortDescription: "Quick polls"},
		}})
}

func chat() approval.Scope {
	return approval.Scope{Kind: approval.ScopeChat, ID: chatID, TenantID: tenantID}
}

func TestInstalledReadsDefinitionAndConsentInOnePagedRequest(t *testing.T) {
	e := newEnv(t)
	e.tenant.PageSize = 1
	seedPolls(e.tenant)
	e.tenant.AddApp(fakegraph.App{ID: "11111111-aaaa-4000-8000-000000000000", DisplayName: "Tasks",
		Definitions: []fakegraph.Definition{{Version: "3.0"}}})
	// Consented set as an older client wrote it, capitalised.
	e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", []fakegraph.Permission{{Value: "ChatMessage.Read.Chat", Type: "Application"}, settings})
	e.tenant.Install(fakegraph.Chat, chatID, "11111111-aaaa-4000-8000-000000000000", "3.0", nil)

	ins, err := e.client.Installed(context.Background(), chat())
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 2 || ins[0].DisplayName != "Polls" || ins[1].DisplayName != "Tasks" {
		t.Fatalf("installations %+v", ins)
	}
	if ins[0].Definition.Version != "1.0.0" || ins[0].DistributionMethod != "organization" || ins[0].TeamsAppID != pollsID {
		t.Errorf("first installation %+v", ins[0])
	}
	want := []approval.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}, {Value: "ChatSettings.Read.Chat", Type: "application"}}
	if !reflect.DeepEqual(ins[0].Consented, want) || ins[1].Consented != nil {
		t.Errorf("consented %+v and %+v", ins[0].Consented, ins[1].Consented)
	}
	calls := e.tenant.Calls()
	if len(calls) != 2 || calls[0].Query.Get("$skiptoken") != "" || calls[1].Query.Get("$skiptoken") != "1" {
		t.Fatalf("calls %+v, want two pages", calls)
	}
	for _, c := range calls {
		if got := c.Query.Get("$expand"); got != "teamsApp,teamsAppDefinition" {
			t.Errorf("$expand %q", got)
		}
		if got := c.Query.Get("$select"); got != "id,consentedPermissionSet" {
			t.Errorf("$select %q", got)
		}
		if !strings.HasPrefix(c.Authorization, "Bearer aad-token-") {
			t.Errorf("Authorization %q", c.Authorization)
		}
	}
	if reqs := e.aad.Requests(); len(reqs) != 1 || reqs[0].Scope != e.srv.URL+"/.default" || reqs[0].Tenant != tenantID {
		t.Errorf("token requests %+v", reqs)
	}
}

func TestInstallationReadsOneAfresh(t *testing.T) {
	e := newEnv(t)
	seedPolls(e.tenant)
	iid := e.tenant.Install(fakegraph.User, userID, pollsID, "1.1.0", []fakegraph.Permission{chatRead, meetingRead})
	in, err := e.client.Installation(context.Background(), approval.Scope{Kind: approval.ScopeUser, ID: userID, TenantID: tenantID}, iid)
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != iid || in.Definition.Version != "1.1.0" || in.TeamsAppID != pollsID || len(in.Consented) != 2 {
		t.Errorf("installation %+v", in)
	}
	if c := e.tenant.Calls(); len(c) != 1 || c[0].Path != "/users/"+userID+"/teamwork/installedApps/"+iid {
		t.Errorf("calls %+v", c)
	}
	_, err = e.client.Installation(context.Background(), chat(), "bm9wZQ==")
	if !errors.Is(err, bot.ErrNotFound) {
		t.Errorf("unknown installation: %v, want not_found", err)
	}
}

func TestDefinitionsOfExactlyTheGivenAppsInOneRequest(t *testing.T) {
	e := newEnv(t)
	e.tenant.PageSize = 2
	e.tenant.AddApp(fakegraph.App{ID: pollsID, DisplayName: "Polls", Definitions: []fakegraph.Definition{
		{Version: "1.9.0"},
		{Version: "1.10.0", RSC: []fakegraph.Permission{meetingRead}},
		{Version: "2.0.0", State: "submitted"},
	}})
	for _, id := range []string{"a1", "a2", "a3", "not-asked"} {
		e.tenant.AddApp(fakegraph.App{ID: id, DisplayName: id, Definitions: []fakegraph.Definition{{Version: "1.0"}}})
	}
	e.tenant.AddApp(fakegraph.App{ID: "o'hara", DisplayName: "Quoted", Definitions: []fakegraph.Definition{{Version: "1.0"}}})

	defs, err := e.client.Definitions(context.Background(), tenantID, []string{pollsID, "a1", "a2", "a3", "o'hara", "unknown"})
	if err != nil {
		t.Fatal(err)
	}
	byApp := map[string][]approval.AppDefinition{}
	for _, d := range defs {
		byApp[d.TeamsAppID] = append(byApp[d.TeamsAppID], d)
	}
	if len(byApp) != 5 || len(byApp[pollsID]) != 3 || byApp["not-asked"] != nil || byApp["o'hara"] == nil {
		t.Fatalf("definitions by app %+v", byApp)
	}
	p := byApp[pollsID]
	if p[1].Version != "1.10.0" || p[1].PublishingState != "published" || p[2].PublishingState != "submitted" {
		t.Errorf("polls definitions %+v", p)
	}
	if want := []approval.Permission{{Value: "ChannelMeeting.ReadBasic.Group", Type: "delegated"}}; !reflect.DeepEqual(p[1].Permissions, want) {
		t.Errorf("permissions %+v", p[1].Permissions)
	}
	calls := e.tenant.Calls()
	if len(calls) != 3 { // five apps, two a page
		t.Fatalf("%d requests, want 3 pages of one request", len(calls))
	}
	if f := calls[0].Query.Get("$filter"); f != "id in ('"+pollsID+"','a1','a2','a3','o''hara','unknown')" {
		t.Errorf("$filter %q", f)
	}
	if defs, err := e.client.Definitions(context.Background(), tenantID, nil); err != nil || defs != nil || len(e.tenant.Calls()) != 3 {
		t.Errorf("no apps: %v %v, %d requests", defs, err, len(e.tenant.Calls()))
	}
}

func TestCatalogIsNeverStale(t *testing.T) {
	e := newEnv(t)
	seedPolls(e.tenant)
	newest := func() string {
		defs, err := e.client.Definitions(context.Background(), tenantID, []string{pollsID})
		if err != nil {
			t.Fatal(err)
		}
		return approval.NewestPublished(defs)[pollsID].Version
	}
	if v := newest(); v != "1.1.0" {
		t.Fatalf("newest %s", v)
	}
	e.tenant.Publish(pollsID, fakegraph.Definition{Version: "1.2.0"})
	if v := newest(); v != "1.2.0" {
		t.Errorf("a version published a moment ago is hidden: newest %s", v)
	}
}

// upgradeBody is what the SDK posted to …/upgrade.
func upgradeBody(t *testing.T, tn *fakegraph.Tenant) (string, map[string]any) {
	t.Helper()
	for _, c := range tn.Calls() {
		if c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/upgrade") {
			var m map[string]any
			if err := json.Unmarshal(c.Body, &m); err != nil {
				t.Fatalf("body %q: %v", c.Body, err)
			}
			return c.Path, m
		}
	}
	t.Fatal("no upgrade call")
	return "", nil
}

// pending returns what the bot would offer in scope: the first installation
// behind the catalog.
func pending(t *testing.T, c *graph.Client, scope approval.Scope) approval.PendingUpgrade {
	t.Helper()
	ins, err := c.Installed(context.Background(), scope)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := c.Definitions(context.Background(), scope.TenantID, []string{pollsID})
	if err != nil {
		t.Fatal(err)
	}
	ups := approval.Behind(ins, defs)
	if len(ups) != 1 {
		t.Fatalf("pending %+v", ups)
	}
	return ups[0]
}

func TestUpgradeEveryScope(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kind  string
		scope approval.Scope
		path  string
	}{
		{"chat", fakegraph.Chat, approval.Scope{Kind: approval.ScopeChat, ID: chatID, TenantID: tenantID}, "/chats/" + chatID + "/installedApps/"},
		{"meeting chat", fakegraph.Chat, approval.Scope{Kind: approval.ScopeChat, ID: meetID, TenantID: tenantID}, "/chats/" + meetID + "/installedApps/"},
		{"team", fakegraph.Team, approval.Scope{Kind: approval.ScopeTeam, ID: teamID, TenantID: tenantID}, "/teams/" + teamID + "/installedApps/"},
		{"user", fakegraph.User, approval.Scope{Kind: approval.ScopeUser, ID: userID, TenantID: tenantID}, "/users/" + userID + "/teamwork/installedApps/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.tenant.AddApp(fakegraph.App{ID: pollsID, DisplayName: "Polls", Definitions: []fakegraph.Definition{
				{Version: "1.0.0"}, {Version: "1.1.0", RSC: []fakegraph.Permission{meetingRead}},
			}})
			iid := e.tenant.Install(tc.kind, tc.scope.ID, pollsID, "1.0.0", nil)
			u := pending(t, e.client, tc.scope)
			if err := e.client.Upgrade(context.Background(), u.Installation, u.Target.Permissions); err != nil {
				t.Fatal(err)
			}
			path, body := upgradeBody(t, e.tenant)
			if path != tc.path+iid+"/upgrade" {
				t.Errorf("POST %s, want %s", path, tc.path+iid+"/upgrade")
			}
			want := map[string]any{"consentedPermissionSet": map[string]any{"resourceSpecificPermissions": []any{
				map[string]any{"permissionValue": "ChannelMeeting.ReadBasic.Group", "permissionType": "delegated"},
			}}}
			if !reflect.DeepEqual(body, want) {
				t.Errorf("body\n got %v\nwant %v", body, want)
			}
			if v, consented := e.tenant.Installed(tc.kind, tc.scope.ID, iid); v != "1.1.0" || len(consented) != 1 {
				t.Errorf("after upgrade: version %s consented %v", v, consented)
			}
		})
	}
}

func TestUpgradeWithoutRSCSendsNoConsentSet(t *testing.T) {
	e := newEnv(t)
	e.tenant.AddApp(fakegraph.App{ID: pollsID, DisplayName: "Polls", Definitions: []fakegraph.Definition{{Version: "1.0"}, {Version: "1.2"}}})
	e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0", nil)
	u := pending(t, e.client, chat())
	if err := e.client.Upgrade(context.Background(), u.Installation, u.Target.Permissions); err != nil {
		t.Fatal(err)
	}
	if _, body := upgradeBody(t, e.tenant); body["consentedPermissionSet"] != nil {
		t.Errorf("body %v carries a consent set for an app without RSC", body)
	}
}

func TestFakeRefusesMismatchedConsent(t *testing.T) {
	// The fake must behave like Graph, or the tests above prove nothing.
	tn := fakegraph.New()
	seedPolls(tn)
	iid := tn.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", nil)
	srv := httptest.NewServer(tn)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1.0/chats/"+url.PathEscape(chatID)+"/installedApps/"+iid+"/upgrade",
		strings.NewReader(`{"consentedPermissionSet":{"resourceSpecificPermissions":[{"permissionValue":"ChatMessage.Read.Chat","permissionType":"application"}]}}`))
	req.Header.Set("Authorization", "Bearer x")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	if v, _ := tn.Installed(fakegraph.Chat, chatID, iid); v != "1.0.0" {
		t.Errorf("a refused upgrade moved the installation to %s", v)
	}
}

func TestErrorsAreTypedAndNameWhatToDo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  fakegraph.Fault
		is     error
		status int
		text   string
		reason approval.Reason
	}{
		{"missing permission", fakegraph.Fault{Status: 403, Code: "Forbidden", Message: "Missing scope permissions on the request."},
			bot.ErrForbidden, 403, "TeamsAppInstallation.ReadWriteAndConsentForChat.All", approval.ReasonGraphRefused},
		{"403 with empty message", fakegraph.Fault{Status: 403, Code: "UnknownError", Message: ""},
			bot.ErrForbidden, 403, "UnknownError", approval.ReasonGraphRefused},
		{"token refused", fakegraph.Fault{Status: 401, Code: "InvalidAuthenticationToken", Message: "Access token validation failure."},
			bot.ErrForbidden, 401, "MicrosoftAppId", approval.ReasonTokenRefused},
		{"chat gone", fakegraph.Fault{Status: 404, Code: "NotFound", Message: "Not Found"}, bot.ErrNotFound, 404, "gone", approval.ReasonNotFound},
		{"conflict", fakegraph.Fault{Status: 409, Code: "Conflict", Message: "Conflict"}, bot.ErrConflict, 409, "409", approval.ReasonUnexpected},
		{"precondition", fakegraph.Fault{Status: 412, Code: "PreconditionFailed",
			Message: "IsUserAuthorizedToGrantGroupResourceSpecificPermissionsRequest"}, bot.ErrForbidden, 412, "resource-specific consent",
			approval.ReasonConsentNotAllowed},
		{"invalid consent", fakegraph.Fault{Status: 400, Code: "BadRequest", Message: "The consented permissions do not match"},
			bot.ErrInvalid, 400, "do not match", approval.ReasonUnexpected},
		{"throttled after retries", fakegraph.Fault{Status: 429, Code: "TooManyRequests", Message: "Too many requests", RetryAfter: "0", Times: 4},
			bot.ErrUnavailable, 429, "throttling", approval.ReasonThrottled},
		{"unavailable", fakegraph.Fault{Status: 500, Code: "InternalServerError", Message: "boom"}, bot.ErrUnavailable, 500, "500",
			approval.ReasonGraphUnavailable},
		{"bad gateway", fakegraph.Fault{Status: 502, Code: "BadGateway", Message: "upstream"}, bot.ErrUnavailable, 502, "502",
			approval.ReasonGraphUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			seedPolls(e.tenant)
			e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", nil)
			tc.fault.Path = "/installedApps"
			e.tenant.Fail(tc.fault)
			_, err := e.client.Installed(context.Background(), chat())
			if !errors.Is(err, tc.is) {
				t.Fatalf("err %v, want %v", err, tc.is)
			}
			var ae *graph.APIError
			if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.fault.Code || ae.Message != tc.fault.Message {
				t.Fatalf("APIError %+v", ae)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("%q does not mention %q", err.Error(), tc.text)
			}
			// What the cards word: the reason and Graph's own answer, and
			// the permission only where granting it is the fix.
			want := approval.Problem{Reason: tc.reason, Status: tc.status, GraphCode: tc.fault.Code, GraphMessage: tc.fault.Message}
			if tc.reason == approval.ReasonGraphRefused {
				want.Permission = "TeamsAppInstallation.ReadWriteAndConsentForChat.All"
			}
			if got := approval.ProblemOf(err); got != want {
				t.Errorf("problem %+v, want %+v", got, want)
			}
		})
	}
}

func TestErrorOnALaterPageKeepsGraphsCodeAndMessage(t *testing.T) {
	e := newEnv(t)
	e.tenant.PageSize = 1
	seedPolls(e.tenant)
	e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", nil)
	e.tenant.Install(fakegraph.Chat, chatID, "a1", "1.0", nil)
	// Only the second page fails: the SDK's page iterator fetches it.
	e.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("$skiptoken") != "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":{"code":"Forbidden","message":"Missing scope permissions on the request."}}`)
			return
		}
		e.tenant.ServeHTTP(w, r)
	})
	_, err := e.client.Installed(context.Background(), chat())
	var ae *graph.APIError
	if !errors.Is(err, bot.ErrForbidden) || !errors.As(err, &ae) || ae.Code != "Forbidden" ||
		ae.Message != "Missing scope permissions on the request." || !strings.Contains(err.Error(), "ReadWriteAndConsentForChat") {
		t.Fatalf("err %v (%+v)", err, ae)
	}
}

func TestThrottledThenSucceedsHonouringRetryAfter(t *testing.T) {
	e := newEnv(t)
	seedPolls(e.tenant)
	iid := e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", []fakegraph.Permission{chatRead, settings})
	u := pending(t, e.client, chat())
	e.tenant.Fail(fakegraph.Fault{Method: http.MethodPost, Path: "/upgrade", Status: 429, Code: "TooManyRequests", RetryAfter: "1"})
	e.tenant.ResetCalls()
	if err := e.client.Upgrade(context.Background(), u.Installation, u.Target.Permissions); err != nil {
		t.Fatal(err)
	}
	var posts int
	for _, c := range e.tenant.Calls() {
		if c.Method == http.MethodPost {
			posts++
		}
	}
	if posts != 2 {
		t.Errorf("%d POSTs, want 2 (429, then 204)", posts)
	}
	if v, _ := e.tenant.Installed(fakegraph.Chat, chatID, iid); v != "1.1.0" {
		t.Errorf("version %s after retry", v)
	}
}

// A Retry-After longer than the client waits in process reaches the caller
// as bot.Throttled with Graph's wait, after one request, not after the
// SDK slept through it; both of Retry-After's forms are read.
func TestLongRetryAfterReachesTheCaller(t *testing.T) {
	for _, tc := range []struct {
		name, header string
		want         time.Duration
	}{
		{"seconds", "120", 120 * time.Second},
		{"HTTP date", time.Now().Add(95 * time.Second).UTC().Format(http.TimeFormat), 95 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			seedPolls(e.tenant)
			e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", nil)
			e.tenant.Fail(fakegraph.Fault{Method: http.MethodGet, Path: "/installedApps", Status: http.StatusTooManyRequests,
				Code: "TooManyRequests", Message: "Too many requests", RetryAfter: tc.header})
			start := time.Now()
			_, err := e.client.Installed(context.Background(), chat())
			var th bot.Throttled
			if !errors.As(err, &th) {
				t.Fatalf("err %v: not throttled", err)
			}
			wait, ok := th.Throttled()
			if !ok || wait > tc.want || wait < tc.want-3*time.Second {
				t.Errorf("Throttled() = %s, %v; want about %s", wait, ok, tc.want)
			}
			if !errors.Is(err, bot.ErrUnavailable) {
				t.Errorf("err %v: want code unavailable", err)
			}
			if n := len(e.tenant.Calls()); n != 1 {
				t.Errorf("%d requests, want 1: the client must not sleep through a long Retry-After", n)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the call took %s", d)
			}
		})
	}
}

// Once the SDK's retries are spent, the last answer's Retry-After is the
// one reported.
func TestRetriesSpentReportTheLastRetryAfter(t *testing.T) {
	e := newEnv(t, func(o *graph.Options) { o.MaxRetries = 1 })
	seedPolls(e.tenant)
	e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", nil)
	e.tenant.Fail(fakegraph.Fault{Method: http.MethodGet, Path: "/installedApps", Status: http.StatusTooManyRequests, RetryAfter: "1", Times: 2})
	_, err := e.client.Installed(context.Background(), chat())
	var th bot.Throttled
	if !errors.As(err, &th) {
		t.Fatalf("err %v: not throttled", err)
	}
	if wait, ok := th.Throttled(); !ok || wait != time.Second {
		t.Errorf("Throttled() = %s, %v; want 1s", wait, ok)
	}
	if n := len(e.tenant.Calls()); n != 2 {
		t.Errorf("%d requests, want 2 (the request and one retry)", n)
	}
}

func TestMembersAndGroups(t *testing.T) {
	e := newEnv(t)
	e.tenant.PageSize = 2
	e.tenant.AddMembers(fakegraph.Chat, chatID,
		fakegraph.Member{UserID: "u-owner", DisplayName: "Megan", Email: "megan@contoso.com", TenantID: tenantID, Roles: []string{"owner"}},
		fakegraph.Member{UserID: "u-guest", DisplayName: "Guest", TenantID: tenantID, Roles: []string{"guest"}},
		fakegraph.Member{UserID: "u-member", DisplayName: "Alex", TenantID: tenantID})
	ms, err := e.client.Members(context.Background(), chat())
	if err != nil {
		t.Fatal(err)
	}
	// Three members, two a page: the third comes only by following the link.
	if len(ms) != 3 || ms[2].UserID != "u-member" || !ms[0].IsOwner() || ms[1].IsOwner() || ms[2].Roles == nil || len(ms[2].Roles) != 0 {
		t.Fatalf("members %+v", ms)
	}
	if calls := e.tenant.Calls(); len(calls) != 2 || calls[1].Path != "/chats/"+chatID+"/members" || calls[1].Query.Get("$skiptoken") != "2" {
		t.Errorf("calls %+v, want two pages", calls)
	}
	if ms[0].Email != "megan@contoso.com" || ms[1].Email != "" || ms[0].TenantID != tenantID {
		t.Errorf("member fields %+v", ms)
	}
	e.tenant.AddMembers(fakegraph.Team, teamID, fakegraph.Member{UserID: "u-owner", Roles: []string{"owner"}})
	if ms, err := e.client.Members(context.Background(), approval.Scope{Kind: approval.ScopeTeam, ID: teamID}); err != nil || len(ms) != 1 || !ms[0].IsOwner() {
		t.Errorf("team members %+v %v", ms, err)
	}

	e.tenant.AddGroupMember("g-approvers", "u-member")
	if in, err := e.client.InGroup(context.Background(), tenantID, "g-approvers", "u-member"); err != nil || !in {
		t.Errorf("member: %v %v", in, err)
	}
	if in, err := e.client.InGroup(context.Background(), tenantID, "g-approvers", "u-guest"); err != nil || in {
		t.Errorf("non-member: %v %v", in, err)
	}
	// An external participant is no user of this tenant: Graph answers 404,
	// and they are in none of its groups.
	e.tenant.Fail(fakegraph.Fault{Path: "/checkMemberGroups", Status: 404, Code: "Request_ResourceNotFound", Times: 1})
	if in, err := e.client.InGroup(context.Background(), tenantID, "g-approvers", "u-external"); err != nil || in {
		t.Errorf("a user unknown to the tenant: %v %v, want false without error", in, err)
	}
	e.tenant.Fail(fakegraph.Fault{Path: "/checkMemberGroups", Status: 403, Code: "Authorization_RequestDenied"})
	if _, err := e.client.InGroup(context.Background(), tenantID, "g", "u"); !errors.Is(err, bot.ErrForbidden) || !strings.Contains(err.Error(), "GroupMember.Read.All") {
		t.Errorf("err %v", err)
	}
}

// An approver check in a team of thousands asks Graph for the one user
// (Graph's documented filter on userId), not for every page of members.
func TestMembershipAsksForOneUser(t *testing.T) {
	e := newEnv(t)
	e.tenant.PageSize = 100
	const owner = "7c6f3a8e-1f0e-4d5e-9a51-2b8f4c1e9d00"
	var ms []fakegraph.Member
	for i := range 2500 {
		ms = append(ms, fakegraph.Member{UserID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i), TenantID: tenantID})
	}
	ms = append(ms, fakegraph.Member{UserID: owner, DisplayName: "Megan", TenantID: tenantID, Roles: []string{"owner"}})
	e.tenant.AddMembers(fakegraph.Team, teamID, ms...)
	team := approval.Scope{Kind: approval.ScopeTeam, ID: teamID, TenantID: tenantID}
	got, err := e.client.Membership(context.Background(), team, strings.ToUpper(owner))
	if err != nil || len(got) != 1 || !got[0].IsOwner() || got[0].UserID != owner {
		t.Fatalf("membership %+v %v", got, err)
	}
	calls := e.tenant.Calls()
	if len(calls) != 1 || calls[0].Path != "/teams/"+teamID+"/members" ||
		calls[0].Query.Get("$filter") != "(microsoft.graph.aadUserConversationMember/userId eq '"+owner+"')" {
		t.Errorf("calls %+v, want one filtered request", calls)
	}
	if got, err := e.client.Membership(context.Background(), team, "9d0c1b2a-0000-4000-8000-000000000001"); err != nil || len(got) != 0 {
		t.Errorf("a stranger's membership: %+v %v", got, err)
	}
	// An id is never pasted into the filter unchecked.
	if _, err := e.client.Membership(context.Background(), team, "x') or (true"); !errors.Is(err, bot.ErrInvalid) {
		t.Errorf("a malformed user id: %v, want invalid", err)
	}
	// A chat (at most 250 members) is read whole and picked from.
	e.tenant.AddMembers(fakegraph.Chat, chatID, fakegraph.Member{UserID: owner, TenantID: tenantID, Roles: []string{"owner"}},
		fakegraph.Member{UserID: "00000000-0000-0000-0000-000000000001", TenantID: tenantID})
	if got, err := e.client.Membership(context.Background(), chat(), owner); err != nil || len(got) != 1 || !got[0].IsOwner() {
		t.Errorf("chat membership %+v %v", got, err)
	}
}

func TestNationalCloudsUseTheirHostAndAudience(t *testing.T) {
	for _, tc := range []struct{ cloud, host string }{
		{"public", "graph.microsoft.com"},
		{"usgov", "graph.microsoft.us"},
		{"usgovdod", "dod-graph.microsoft.us"},
		{"china", "microsoftgraph.chinacloudapi.cn"},
	} {
		t.Run(tc.cloud, func(t *testing.T) {
			base := "https://" + tc.host + "/v1.0"
			tn := fakegraph.New()
			var hosts []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hosts = append(hosts, r.Host)
				tn.ServeHTTP(w, r)
			}))
			defer srv.Close()
			tn.BaseURL = "https://" + tc.host
			e := newEnv(t, func(o *graph.Options) {
				o.BaseURL = base
				o.Transport = rewrite{to: must(url.Parse(srv.URL))}
			})
			e.tenant = tn
			seedPolls(e.tenant)
			e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", nil)
			if _, err := e.client.Installed(context.Background(), chat()); err != nil {
				t.Fatal(err)
			}
			if len(hosts) != 1 || hosts[0] != tc.host {
				t.Errorf("requests went to %v, want %s", hosts, tc.host)
			}
			if reqs := e.aad.Requests(); len(reqs) != 1 || reqs[0].Scope != "https://"+tc.host+"/.default" {
				t.Errorf("token requests %+v, want audience https://%s/.default", reqs, tc.host)
			}
			if c := e.tenant.Calls(); len(c) != 1 || !strings.HasPrefix(c[0].Authorization, "Bearer aad-token-") {
				t.Errorf("calls %+v: no bearer token sent to the cloud's Graph host", c)
			}
		})
	}
}

// rewrite sends requests for a national cloud's Graph host to the fake,
// keeping the Host header the client meant.
type rewrite struct{ to *url.URL }

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Host = req.URL.Host
	req.URL.Scheme, req.URL.Host = r.to.Scheme, r.to.Host
	return http.DefaultTransport.RoundTrip(req)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestGraphLatencyMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(o *graph.Options) { o.Registerer = reg })
	seedPolls(e.tenant)
	e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", nil)
	if _, err := e.client.Installed(bot.WithCommand(context.Background(), "check"), chat()); err != nil {
		t.Fatal(err)
	}
	e.tenant.Fail(fakegraph.Fault{Path: "/installedApps", Status: 404, Code: "NotFound"})
	if _, err := e.client.Installed(bot.WithCommand(context.Background(), "check"), chat()); !errors.Is(err, bot.ErrNotFound) {
		t.Fatalf("err %v", err)
	}
	if _, err := e.client.Definitions(context.Background(), tenantID, []string{pollsID}); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"GET 200": 2, "GET 404": 1}
	got := map[string]uint64{}
	counts := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "upgradebot_graph_request_duration_seconds":
				got[labels["method"]+" "+labels["status"]] += m.GetHistogram().GetSampleCount()
			case "upgradebot_graph_requests_total":
				counts[labels["command"]] += m.GetCounter().GetValue()
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("observed %v, want %v", got, want)
	}
	if want := map[string]float64{"check": 2, "none": 1}; !reflect.DeepEqual(counts, want) {
		t.Errorf("requests per command %v, want %v", counts, want)
	}
}

// A 403 on the permissionGrants read names the application permission that
// Microsoft's reference lists for that call.
func TestGrantsReadRefusedNamesItsPermission(t *testing.T) {
	for _, tc := range []struct {
		scope approval.Scope
		want  string
	}{
		{chat(), "TeamsAppInstallation.ReadForChat.All"},
		{approval.Scope{Kind: approval.ScopeTeam, ID: teamID, TenantID: tenantID}, "TeamsAppInstallation.ReadForTeam.All"},
		{approval.Scope{Kind: approval.ScopeUser, ID: userID, TenantID: tenantID}, "TeamsAppInstallation.ReadWriteAndConsentForUser.All"},
	} {
		t.Run(string(tc.scope.Kind), func(t *testing.T) {
			e := newEnv(t)
			e.tenant.Fail(fakegraph.Fault{Path: "/permissionGrants", Status: http.StatusForbidden, Code: "Forbidden",
				Message: "Missing role permissions on the request."})
			_, err := e.client.PermissionGrants(context.Background(), tc.scope)
			if !errors.Is(err, bot.ErrForbidden) || !strings.Contains(err.Error(), "an admin must grant the application permission "+tc.want) {
				t.Errorf("err %v: want forbidden naming %s", err, tc.want)
			}
		})
	}
}

func TestRefusedCredentialIsForbiddenAndNamesTheFixWithoutEntrasText(t *testing.T) {
	var logs strings.Builder
	e := newEnv(t, func(o *graph.Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	seedPolls(e.tenant)
	e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", nil)
	e.aad.Refuse(func(fakeentra.TokenRequest) bool { return true })

	_, err := e.client.Installed(context.Background(), chat())
	if !errors.Is(err, bot.ErrForbidden) {
		t.Fatalf("err %v, want forbidden", err)
	}
	if failed := new(azidentity.AuthenticationFailedError); !errors.As(err, &failed) {
		t.Errorf("the credential's error is not in the chain: %v", err)
	}
	// err's text is what a chat shows as the reason.
	text := err.Error()
	for _, leak := range []string{tenantID, appID, fakeentra.RefusalTraceID, "AADSTS", "\n"} {
		if strings.Contains(text, leak) {
			t.Errorf("%q shows %q", text, leak)
		}
	}
	for _, fix := range []string{"Microsoft Graph token", "MicrosoftAppId", "secret or certificate", "consented"} {
		if !strings.Contains(text, fix) {
			t.Errorf("%q does not name %q", text, fix)
		}
	}
	if !strings.Contains(logs.String(), "AADSTS7000215") {
		t.Errorf("the log lacks Entra ID's answer: %s", logs.String())
	}
	if got := approval.ProblemOf(err); got != (approval.Problem{Reason: approval.ReasonCredentialRefused}) {
		t.Errorf("problem %+v", got)
	}
}

type failingCredential struct{ err error }

func (c failingCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, c.err
}

// A credential that cannot be used here (no managed identity) is the
// admin's to fix, like a refused one; a failure that may pass is
// unavailable. Neither shows the credential's own text in a chat.
func TestUnusableCredentialIsForbiddenAndAFailingOneUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		is     error
		text   string
		reason approval.Reason
	}{
		{"managed identity unavailable", azidentity.NewCredentialUnavailableError("ManagedIdentityCredential: no managed identity endpoint for tenant " + tenantID),
			bot.ErrForbidden, "MicrosoftAppId, its secret or certificate", approval.ReasonCredentialRefused},
		{"no answer", fmt.Errorf("POST https://login.microsoftonline.com/%s/oauth2/v2.0/token: connection reset", tenantID),
			bot.ErrUnavailable, "Microsoft Entra ID is unreachable or failing", approval.ReasonEntraUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *graph.Options) {
				o.Credential = func(string) (azcore.TokenCredential, error) { return failingCredential{tc.err}, nil }
				o.Logger = slog.New(slog.DiscardHandler)
			})
			_, err := e.client.Installed(context.Background(), chat())
			if !errors.Is(err, tc.is) || !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v wrapping the credential's", err, tc.is)
			}
			if text := err.Error(); !strings.Contains(text, tc.text) || strings.Contains(text, tenantID) {
				t.Errorf("%q: want %q and no tenant id", text, tc.text)
			}
			if got := approval.ProblemOf(err); got != (approval.Problem{Reason: tc.reason}) {
				t.Errorf("problem %+v, want %s", got, tc.reason)
			}
		})
	}
}

// A Graph that does not answer is unavailable, for the cards as for the
// caller.
func TestUnreachableGraphIsUnavailable(t *testing.T) {
	e := newEnv(t)
	e.srv.Close()
	_, err := e.client.Installed(context.Background(), chat())
	if !errors.Is(err, bot.ErrUnavailable) {
		t.Fatalf("err %v, want unavailable", err)
	}
	if got := approval.ProblemOf(err); got != (approval.Problem{Reason: approval.ReasonGraphUnavailable}) {
		t.Errorf("problem %+v", got)
	}
}

// A meeting's chat names its organizer in onlineMeetingInfo; a group chat
// has none, and a chat Graph does not know is an error.
func TestChatSaysMeetingAndOrganizer(t *testing.T) {
	e := newEnv(t)
	const organizer = "6e7b768e-07e2-4810-8459-485f84f8f204"
	meeting := approval.Scope{Kind: approval.ScopeChat, ID: "19:meeting_NjA0@thread.v2", TenantID: tenantID}
	e.tenant.SetMeeting(meeting.ID, fakegraph.Member{UserID: organizer, TenantID: tenantID})
	got, err := e.client.Chat(context.Background(), meeting)
	if err != nil || !got.Meeting || got.Organizer != organizer {
		t.Errorf("meeting chat: %+v %v", got, err)
	}
	e.tenant.AddMembers(fakegraph.Chat, chatID, fakegraph.Member{UserID: organizer, TenantID: tenantID, Roles: []string{"owner"}})
	if got, err := e.client.Chat(context.Background(), chat()); err != nil || got.Meeting || got.Organizer != "" {
		t.Errorf("group chat: %+v %v", got, err)
	}
	gone := approval.Scope{Kind: approval.ScopeChat, ID: "19:gone@thread.v2", TenantID: tenantID}
	if _, err := e.client.Chat(context.Background(), gone); !errors.Is(err, bot.ErrNotFound) {
		t.Errorf("unknown chat: %v", err)
	}
	if calls := e.tenant.Calls(); len(calls) != 3 || calls[0].Method != "GET" || calls[0].Path != "/chats/"+meeting.ID {
		t.Errorf("calls %+v", calls)
	}
}

// A team channel's membershipType is read from Graph's channel.
func TestChannelMembershipType(t *testing.T) {
	e := newEnv(t)
	team := approval.Scope{Kind: approval.ScopeTeam, ID: "8f3c1e62-5d4b-4a7e-9c21-0b6d2f4e8a10", TenantID: tenantID}
	e.tenant.AddMembers(fakegraph.Team, team.ID, fakegraph.Member{UserID: "6e7b768e-07e2-4810-8459-485f84f8f204", TenantID: tenantID, Roles: []string{"owner"}})
	e.tenant.SetChannel(team.ID, "19:private@thread.tacv2", "private")
	for channel, want := range map[string]string{"19:private@thread.tacv2": "private", "19:planning@thread.tacv2": "standard"} {
		if got, err := e.client.ChannelMembershipType(context.Background(), team, channel); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", channel, got, err, want)
		}
	}
	e.tenant.Fail(fakegraph.Fault{Path: "/channels/", Status: http.StatusForbidden, Code: "Forbidden", Message: "Missing role permissions on the request."})
	if _, err := e.client.ChannelMembershipType(context.Background(), team, "19:planning@thread.tacv2"); !errors.Is(err, bot.ErrForbidden) ||
		!strings.Contains(err.Error(), "Channel.ReadBasic.All") {
		t.Errorf("refused: %v", err)
	}
}
