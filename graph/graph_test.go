package graph_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/bot/bottest"
	"github.com/upgradeapprovals/bot/graph"
	"github.com/upgradeapprovals/bot/graph/graphtest"
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
	tenant *graphtest.Tenant
	aad    *bottest.AAD
	client *graph.Client
	srv    *httptest.Server
}

func credential(aad *bottest.AAD) func(string) (azcore.TokenCredential, error) {
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
	e := &env{tenant: graphtest.New(), aad: bottest.NewAAD(t)}
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
	meetingRead = graphtest.Permission{Value: "ChannelMeeting.ReadBasic.Group", Type: "delegated"}
	chatRead    = graphtest.Permission{Value: "ChatMessage.Read.Chat", Type: "application"}
	settings    = graphtest.Permission{Value: "ChatSettings.Read.Chat", Type: "application"}
)

// seedPolls publishes Polls 1.0.0 and 1.1.0 (which trades ChatSettings for
// the meeting permission).
func seedPolls(tn *graphtest.Tenant) {
	tn.AddApp(graphtest.App{ID: pollsID, ExternalID: "f1a3b2c4-0000-4000-8000-000000000001", DisplayName: "Polls",
		Definitions: []graphtest.Definition{
			{Version: "1.0.0", RSC: []graphtest.Permission{chatRead, settings}},
			{Version: "1.1.0", RSC: []graphtest.Permission{chatRead, meetingRead}, ShortDescription: "Quick polls"},
		}})
}

func chat() bot.Scope { return bot.Scope{Kind: bot.ScopeChat, ID: chatID, TenantID: tenantID} }

func TestInstallationsFollowNextLink(t *testing.T) {
	e := newEnv(t)
	e.tenant.PageSize = 1
	seedPolls(e.tenant)
	e.tenant.AddApp(graphtest.App{ID: "11111111-aaaa-4000-8000-000000000000", DisplayName: "Tasks",
		Definitions: []graphtest.Definition{{Version: "3.0"}}})
	e.tenant.Install(graphtest.Chat, chatID, pollsID, "1.0.0", []graphtest.Permission{chatRead, settings})
	e.tenant.Install(graphtest.Chat, chatID, "11111111-aaaa-4000-8000-000000000000", "3.0", nil)

	ins, err := e.client.Installations(context.Background(), chat())
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 2 || ins[0].DisplayName != "Polls" || ins[1].DisplayName != "Tasks" {
		t.Fatalf("installations %+v", ins)
	}
	if ins[0].Definition.Version != "1.0.0" || ins[0].DistributionMethod != "organization" || ins[0].TeamsAppID != pollsID {
		t.Errorf("first installation %+v", ins[0])
	}
	calls := e.tenant.Calls()
	if len(calls) != 2 || calls[1].Query.Get("$skiptoken") != "1" {
		t.Fatalf("calls %+v, want two pages", calls)
	}
	if got := calls[0].Query.Get("$expand"); got != "teamsApp,teamsAppDefinition" {
		t.Errorf("$expand %q", got)
	}
	if !strings.HasPrefix(calls[0].Authorization, "Bearer aad-token-") {
		t.Errorf("Authorization %q", calls[0].Authorization)
	}
	if reqs := e.aad.Requests(); len(reqs) != 1 || reqs[0].Scope != e.srv.URL+"/.default" || reqs[0].Tenant != tenantID {
		t.Errorf("token requests %+v", reqs)
	}
}

func TestCatalogPicksNewestPublished(t *testing.T) {
	e := newEnv(t)
	e.tenant.AddApp(graphtest.App{ID: pollsID, DisplayName: "Polls", Definitions: []graphtest.Definition{
		{Version: "1.9.0"},
		{Version: "1.10.0", RSC: []graphtest.Permission{meetingRead}},
		{Version: "2.0.0", State: "submitted"},
		{Version: "1.11.0", State: "rejected"},
	}})
	d, err := e.client.CatalogDefinition(context.Background(), tenantID, pollsID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != "1.10.0" || d.PublishingState != "published" {
		t.Errorf("picked %s (%s), want published 1.10.0", d.Version, d.PublishingState)
	}
	if want := []bot.Permission{{Value: "ChannelMeeting.ReadBasic.Group", Type: "delegated"}}; !reflect.DeepEqual(d.Permissions, want) {
		t.Errorf("permissions %+v", d.Permissions)
	}
	if f := e.tenant.Calls()[0].Query.Get("$filter"); f != "id eq '"+pollsID+"'" {
		t.Errorf("$filter %q", f)
	}
	if _, err := e.client.CatalogDefinition(context.Background(), tenantID, "not-in-catalog"); !errors.Is(err, bot.ErrNotFound) {
		t.Errorf("unknown app: %v, want not_found", err)
	}
}

func TestPendingUpgradeDiff(t *testing.T) {
	e := newEnv(t)
	seedPolls(e.tenant)
	// Consented set as an older client wrote it, capitalised.
	e.tenant.Install(graphtest.Chat, chatID, pollsID, "1.0.0", []graphtest.Permission{
		{Value: "ChatMessage.Read.Chat", Type: "Application"}, settings})
	ups, err := e.client.PendingUpgrades(context.Background(), chat())
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 1 {
		t.Fatalf("%d pending upgrades, want 1", len(ups))
	}
	u := ups[0]
	if u.Installation.Definition.Version != "1.0.0" || u.Target.Version != "1.1.0" {
		t.Errorf("versions %s → %s", u.Installation.Definition.Version, u.Target.Version)
	}
	want := bot.PermissionDiff{
		Added:   []bot.Permission{{Value: "ChannelMeeting.ReadBasic.Group", Type: "delegated"}},
		Removed: []bot.Permission{{Value: "ChatSettings.Read.Chat", Type: "application"}},
		Kept:    []bot.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}},
	}
	if !reflect.DeepEqual(u.Diff, want) {
		t.Errorf("diff\n got %+v\nwant %+v", u.Diff, want)
	}
}

func TestUpToDateAppsAreNotPending(t *testing.T) {
	e := newEnv(t)
	seedPolls(e.tenant)
	e.tenant.Install(graphtest.Chat, chatID, pollsID, "1.1.0", []graphtest.Permission{chatRead, meetingRead})
	ups, err := e.client.PendingUpgrades(context.Background(), chat())
	if err != nil || len(ups) != 0 {
		t.Fatalf("pending %+v, err %v; want none", ups, err)
	}
}

// upgradeBody is what the SDK posted to …/upgrade.
func upgradeBody(t *testing.T, tn *graphtest.Tenant) (string, map[string]any) {
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

func TestUpgradeEveryScope(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kind  string
		scope bot.Scope
		path  string
	}{
		{"chat", graphtest.Chat, bot.Scope{Kind: bot.ScopeChat, ID: chatID, TenantID: tenantID}, "/chats/" + chatID + "/installedApps/"},
		{"meeting chat", graphtest.Chat, bot.Scope{Kind: bot.ScopeChat, ID: meetID, TenantID: tenantID}, "/chats/" + meetID + "/installedApps/"},
		{"team", graphtest.Team, bot.Scope{Kind: bot.ScopeTeam, ID: teamID, TenantID: tenantID}, "/teams/" + teamID + "/installedApps/"},
		{"user", graphtest.User, bot.Scope{Kind: bot.ScopeUser, ID: userID, TenantID: tenantID}, "/users/" + userID + "/teamwork/installedApps/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.tenant.AddApp(graphtest.App{ID: pollsID, DisplayName: "Polls", Definitions: []graphtest.Definition{
				{Version: "1.0.0"}, {Version: "1.1.0", RSC: []graphtest.Permission{meetingRead}},
			}})
			iid := e.tenant.Install(tc.kind, tc.scope.ID, pollsID, "1.0.0", nil)
			ups, err := e.client.PendingUpgrades(context.Background(), tc.scope)
			if err != nil || len(ups) != 1 {
				t.Fatalf("pending %+v, err %v", ups, err)
			}
			if err := e.client.Upgrade(context.Background(), ups[0]); err != nil {
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
	e.tenant.AddApp(graphtest.App{ID: pollsID, DisplayName: "Polls", Definitions: []graphtest.Definition{{Version: "1.0"}, {Version: "1.2"}}})
	e.tenant.Install(graphtest.Chat, chatID, pollsID, "1.0", nil)
	ups, _ := e.client.PendingUpgrades(context.Background(), chat())
	if len(ups) != 1 {
		t.Fatalf("pending %+v", ups)
	}
	if err := e.client.Upgrade(context.Background(), ups[0]); err != nil {
		t.Fatal(err)
	}
	if _, body := upgradeBody(t, e.tenant); body["consentedPermissionSet"] != nil {
		t.Errorf("body %v carries a consent set for an app without RSC", body)
	}
}

func TestUpgradeRefusesWhenCatalogMovedOn(t *testing.T) {
	e := newEnv(t)
	seedPolls(e.tenant)
	e.tenant.Install(graphtest.Chat, chatID, pollsID, "1.0.0", []graphtest.Permission{chatRead, settings})
	ups, _ := e.client.PendingUpgrades(context.Background(), chat())
	// The admin publishes 1.2.0 with more permissions after the card went out.
	e.tenant.Publish(pollsID, graphtest.Definition{Version: "1.2.0", RSC: []graphtest.Permission{chatRead, meetingRead, settings}})
	err := e.client.Upgrade(context.Background(), ups[0])
	if !errors.Is(err, bot.ErrConflict) || !errors.Is(err, bot.ErrSuperseded) {
		t.Fatalf("err %v, want conflict/superseded", err)
	}
	for _, c := range e.tenant.Calls() {
		if c.Method == http.MethodPost {
			t.Fatal("upgraded to a definition nobody approved")
		}
	}
}

func TestUpgradeNeverRunsTwice(t *testing.T) {
	e := newEnv(t)
	seedPolls(e.tenant)
	e.tenant.Install(graphtest.Chat, chatID, pollsID, "1.0.0", []graphtest.Permission{chatRead, settings})
	ups, _ := e.client.PendingUpgrades(context.Background(), chat())
	if err := e.client.Upgrade(context.Background(), ups[0]); err != nil {
		t.Fatal(err)
	}
	e.tenant.ResetCalls()
	err := e.client.Upgrade(context.Background(), ups[0])
	if !errors.Is(err, bot.ErrAlreadyUpgraded) {
		t.Fatalf("second upgrade: %v, want already upgraded", err)
	}
	for _, c := range e.tenant.Calls() {
		if c.Method == http.MethodPost {
			t.Fatal("a second upgrade was posted")
		}
	}
}

func TestFakeRefusesMismatchedConsent(t *testing.T) {
	// The fake must behave like Graph, or the tests above prove nothing.
	tn := graphtest.New()
	seedPolls(tn)
	iid := tn.Install(graphtest.Chat, chatID, pollsID, "1.0.0", nil)
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
	if v, _ := tn.Installed(graphtest.Chat, chatID, iid); v != "1.0.0" {
		t.Errorf("a refused upgrade moved the installation to %s", v)
	}
}

func TestErrorsAreTypedAndNameWhatToDo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  graphtest.Fault
		is     error
		status int
		text   string
	}{
		{"missing permission", graphtest.Fault{Status: 403, Code: "Forbidden", Message: "Missing scope permissions on the request."},
			bot.ErrForbidden, 403, "TeamsAppInstallation.ReadWriteAndConsentForChat.All"},
		{"403 with empty message", graphtest.Fault{Status: 403, Code: "UnknownError", Message: ""},
			bot.ErrForbidden, 403, "UnknownError"},
		{"chat gone", graphtest.Fault{Status: 404, Code: "NotFound", Message: "Not Found"}, bot.ErrNotFound, 404, "gone"},
		{"conflict", graphtest.Fault{Status: 409, Code: "Conflict", Message: "Conflict"}, bot.ErrConflict, 409, "409"},
		{"precondition", graphtest.Fault{Status: 412, Code: "PreconditionFailed",
			Message: "IsUserAuthorizedToGrantGroupResourceSpecificPermissionsRequest"}, bot.ErrForbidden, 412, "resource-specific consent"},
		{"invalid consent", graphtest.Fault{Status: 400, Code: "BadRequest", Message: "The consented permissions do not match"},
			bot.ErrInvalid, 400, "do not match"},
		{"throttled after retries", graphtest.Fault{Status: 429, Code: "TooManyRequests", Message: "Too many requests", RetryAfter: "0", Times: 4},
			bot.ErrUnavailable, 429, "throttling"},
		{"unavailable", graphtest.Fault{Status: 500, Code: "InternalServerError", Message: "boom"}, bot.ErrUnavailable, 500, "500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			seedPolls(e.tenant)
			e.tenant.Install(graphtest.Chat, chatID, pollsID, "1.0.0", nil)
			tc.fault.Path = "/installedApps"
			e.tenant.Fail(tc.fault)
			_, err := e.client.Installations(context.Background(), chat())
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
		})
	}
}

func TestThrottledThenSucceedsHonouringRetryAfter(t *testing.T) {
	e := newEnv(t)
	seedPolls(e.tenant)
	iid := e.tenant.Install(graphtest.Chat, chatID, pollsID, "1.0.0", []graphtest.Permission{chatRead, settings})
	ups, err := e.client.PendingUpgrades(context.Background(), chat())
	if err != nil {
		t.Fatal(err)
	}
	e.tenant.Fail(graphtest.Fault{Method: http.MethodPost, Path: "/upgrade", Status: 429, Code: "TooManyRequests", RetryAfter: "1"})
	e.tenant.ResetCalls()
	if err := e.client.Upgrade(context.Background(), ups[0]); err != nil {
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
	if v, _ := e.tenant.Installed(graphtest.Chat, chatID, iid); v != "1.1.0" {
		t.Errorf("version %s after retry", v)
	}
}

func TestMembersAndGroups(t *testing.T) {
	e := newEnv(t)
	e.tenant.PageSize = 2
	e.tenant.AddMembers(graphtest.Chat, chatID,
		graphtest.Member{UserID: "u-owner", DisplayName: "Megan", Email: "megan@contoso.com", TenantID: tenantID, Roles: []string{"owner"}},
		graphtest.Member{UserID: "u-guest", DisplayName: "Guest", TenantID: tenantID, Roles: []string{"guest"}},
		graphtest.Member{UserID: "u-member", DisplayName: "Alex", TenantID: tenantID})
	ms, err := e.client.Members(context.Background(), chat())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || !ms[0].IsOwner() || ms[1].IsOwner() || ms[2].Roles == nil || len(ms[2].Roles) != 0 {
		t.Fatalf("members %+v", ms)
	}
	if ms[0].Email != "megan@contoso.com" || ms[1].Email != "" || ms[0].TenantID != tenantID {
		t.Errorf("member fields %+v", ms)
	}
	e.tenant.AddMembers(graphtest.Team, teamID, graphtest.Member{UserID: "u-owner", Roles: []string{"owner"}})
	if ms, err := e.client.Members(context.Background(), bot.Scope{Kind: bot.ScopeTeam, ID: teamID}); err != nil || len(ms) != 1 || !ms[0].IsOwner() {
		t.Errorf("team members %+v %v", ms, err)
	}

	e.tenant.AddGroupMember("g-approvers", "u-member")
	if in, err := e.client.InGroup(context.Background(), tenantID, "g-approvers", "u-member"); err != nil || !in {
		t.Errorf("member: %v %v", in, err)
	}
	if in, err := e.client.InGroup(context.Background(), tenantID, "g-approvers", "u-guest"); err != nil || in {
		t.Errorf("non-member: %v %v", in, err)
	}
	e.tenant.Fail(graphtest.Fault{Path: "/checkMemberGroups", Status: 403, Code: "Authorization_RequestDenied"})
	if _, err := e.client.InGroup(context.Background(), tenantID, "g", "u"); !errors.Is(err, bot.ErrForbidden) || !strings.Contains(err.Error(), "GroupMember.Read.All") {
		t.Errorf("err %v", err)
	}
}

// rewrite sends requests for a national cloud's Graph host to the fake.
type rewrite struct{ to *url.URL }

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host = r.to.Scheme, r.to.Host
	return http.DefaultTransport.RoundTrip(req)
}

func TestNationalCloudsUseTheirHostAndAudience(t *testing.T) {
	for cloudName, base := range graph.BaseURLs {
		t.Run(cloudName, func(t *testing.T) {
			tn := graphtest.New()
			srv := httptest.NewServer(tn)
			defer srv.Close()
			tn.BaseURL = strings.TrimSuffix(base, "/v1.0")
			e := newEnv(t, func(o *graph.Options) {
				o.BaseURL = base
				o.Transport = rewrite{to: must(url.Parse(srv.URL))}
			})
			e.tenant = tn
			seedPolls(e.tenant)
			e.tenant.Install(graphtest.Chat, chatID, pollsID, "1.0.0", nil)
			if _, err := e.client.Installations(context.Background(), chat()); err != nil {
				t.Fatal(err)
			}
			host := must(url.Parse(base)).Host
			if reqs := e.aad.Requests(); len(reqs) != 1 || reqs[0].Scope != "https://"+host+"/.default" {
				t.Errorf("token requests %+v, want audience https://%s/.default", reqs, host)
			}
			if c := e.tenant.Calls()[0]; !strings.HasPrefix(c.Authorization, "Bearer ") {
				t.Error("no bearer token sent to the cloud's Graph host")
			}
		})
	}
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
	e.tenant.Install(graphtest.Chat, chatID, pollsID, "1.0.0", nil)
	e.client.Installations(context.Background(), chat())
	mfs, _ := reg.Gather()
	if len(mfs) != 1 || mfs[0].GetName() != "upgradebot_graph_request_duration_seconds" || mfs[0].GetMetric()[0].GetHistogram().GetSampleCount() != 1 {
		t.Errorf("metrics %v", mfs)
	}
}
