package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

// Ids of e2e/testdata/playground.yml, the Agents Playground configuration
// whose chats the sandbox knows before they talk to it. Any other
// conversation is adopted on first sight (see sandbox.adopt).
const (
	sandboxTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	sandboxUser   = "11111111-1111-1111-1111-111111111111" // the configuration's current user, Megan
	sandboxChat   = "19:e2e-group@thread.v2"
	sandboxTeam   = "22222222-2222-2222-2222-222222222222"
	sandboxPolls  = "0d820ecd-def2-4297-adad-78056cde7c78"
	sandboxTasks  = "a3b1c2d4-0000-4000-8000-000000000002"
	sandboxBoard  = "a3b1c2d4-0000-4000-8000-000000000003"
	sandboxWiki   = "a3b1c2d4-0000-4000-8000-000000000004"
)

// sandboxCommand runs the bot on loopback with authentication off against
// a fake Graph tenant, to try the whole approval flow in the M365 Agents
// Playground. Nothing here talks to Microsoft.
func sandboxCommand(ctx context.Context, getenv func(string) string, stderr io.Writer) int {
	cfg, err := loadConfig(getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if cfg.AppID != "" {
		fmt.Fprintln(stderr, "sandbox: unset MicrosoftAppId: the sandbox runs without authentication, against a fake tenant")
		return 2
	}
	logger := newLogger(stderr)
	sb := newSandbox(logger)
	stop, err := sb.listen()
	if err != nil {
		logger.Error("sandbox", "err", err)
		return 1
	}
	defer stop()
	cfg.GraphBaseURL = sb.tenant.BaseURL + "/v1.0"

	endpoint := "http://" + cfg.addr() + "/api/messages"
	fmt.Fprint(stderr, sandboxBanner(sb.tenant.BaseURL, endpoint))
	logger.Warn("SANDBOX: Microsoft Graph is a fake tenant; authentication is off", "graph", sb.tenant.BaseURL, "endpoint", endpoint)
	if err := serve(ctx, cfg, logger, deps{sandbox: sb}); err != nil {
		logger.Error("bot stopped", "err", err)
		return 1
	}
	return 0
}

// sandbox is the sandbox's seam into serve: a fake Graph tenant, a fixed
// token for it, and an activity handler that seeds that tenant with each
// conversation that talks to the bot, before the bot (which stays exactly
// the production bot) asks Graph about it.
type sandbox struct {
	tenant *fakegraph.Tenant
	logger *slog.Logger
	mu     sync.Mutex // adoption is check-then-seed
}

func newSandbox(logger *slog.Logger) *sandbox {
	t := fakegraph.New()
	seedCatalog(t)
	megan := fakegraph.Member{UserID: sandboxUser, DisplayName: "Megan Bowen", TenantID: sandboxTenant, Roles: []string{"owner"}}
	alex := fakegraph.Member{UserID: "11111111-1111-1111-1111-111111111112", DisplayName: "Alex Wilber", TenantID: sandboxTenant, Roles: []string{}}
	seedScope(t, fakegraph.User, sandboxUser)
	seedScope(t, fakegraph.Chat, sandboxChat, megan, alex)
	seedScope(t, fakegraph.Team, sandboxTeam, megan, alex)
	return &sandbox{tenant: t, logger: logger}
}

// listen serves the fake tenant on a loopback port until stop.
func (s *sandbox) listen() (stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.tenant.BaseURL = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: s.tenant, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}

// credential is the Graph credential for every tenant: the fake takes any
// bearer token.
func (s *sandbox) credential() azcore.TokenCredential { return staticToken("sandbox") }

// handler adopts each activity's conversation, then lets next handle it.
func (s *sandbox) handler(next botframework.ActivityHandler) botframework.ActivityHandler {
	return adoptingHandler{s: s, next: next}
}

type adoptingHandler struct {
	s    *sandbox
	next botframework.ActivityHandler
}

func (h adoptingHandler) Handle(ctx context.Context, a *bot.Activity) (*bot.InvokeResponse, error) {
	h.s.adopt(ctx, a)
	return h.next.Handle(ctx, a)
}

var graphKinds = map[approval.ScopeKind]string{approval.ScopeChat: fakegraph.Chat, approval.ScopeTeam: fakegraph.Team, approval.ScopeUser: fakegraph.User}

// adopt makes the activity's installation scope (a personal scope, a group
// or meeting chat, a team) exist in the fake tenant: on first sight it
// installs apps behind the catalog there, with the sender as owner and the
// other people the activity names (members added, mentioned) as members;
// later, people it has not seen become members.
func (s *sandbox) adopt(ctx context.Context, a *bot.Activity) {
	scope, ok := a.Scope()
	if !ok {
		return
	}
	kind := graphKinds[scope.Kind]
	people := participants(a, scope.TenantID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tenant.Knows(kind, scope.ID) {
		var members []fakegraph.Member
		if kind != fakegraph.User && len(people) > 0 {
			people[0].Roles = []string{"owner"}
			members = people
		}
		seedScope(s.tenant, kind, scope.ID, members...)
		s.logger.InfoContext(ctx, "SANDBOX: adopted a new "+string(scope.Kind)+" into the fake tenant, with apps behind the catalog",
			"scope", scope.ID, "owner", a.From.Name)
		return
	}
	if kind == fakegraph.User {
		return
	}
	known := map[string]bool{}
	for _, m := range s.tenant.Members(kind, scope.ID) {
		known[strings.ToLower(m.UserID)] = true
	}
	for _, p := range people {
		if !known[strings.ToLower(p.UserID)] {
			s.tenant.AddMembers(kind, scope.ID, p)
		}
	}
}

// participants lists the people an activity names, sender first, as chat
// members of tenant without roles. The bot itself and accounts without an
// Entra object id are left out.
func participants(a *bot.Activity, tenant string) []fakegraph.Member {
	var out []fakegraph.Member
	seen := map[string]bool{}
	add := func(id, aadID, name string) {
		if aadID == "" || id == a.Recipient.ID || seen[strings.ToLower(aadID)] {
			return
		}
		seen[strings.ToLower(aadID)] = true
		out = append(out, fakegraph.Member{UserID: aadID, DisplayName: name, TenantID: tenant, Roles: []string{}})
	}
	add(a.From.ID, a.From.AadObjectID, a.From.Name)
	for _, m := range a.MembersAdded {
		add(m.ID, m.AadObjectID, m.Name)
	}
	for _, e := range a.Entities {
		if strings.EqualFold(e.Type, "mention") && e.Mentioned != nil {
			add(e.Mentioned.ID, e.Mentioned.AadObjectID, e.Mentioned.Name)
		}
	}
	return out
}

// seedCatalog publishes the sandbox's apps, each with a newer version than
// the one seedScope installs (except Wiki, which stays up to date).
func seedCatalog(t *fakegraph.Tenant) {
	t.AddApp(fakegraph.App{ID: sandboxPolls, DisplayName: "Polls", Definitions: []fakegraph.Definition{
		{Version: "1.0.0", RSC: pollsRSC},
		{Version: "1.1.0", ShortDescription: "Quick polls in chats and meetings", RSC: []fakegraph.Permission{
			perm("ChatMessage.Read.Chat", "application"), perm("OnlineMeeting.ReadBasic.Chat", "delegated"),
			perm("TeamsActivity.Send.User", "application")}},
	}})
	t.AddApp(fakegraph.App{ID: sandboxTasks, DisplayName: "Tasks", Definitions: []fakegraph.Definition{
		{Version: "3.0"}, {Version: "3.1", ShortDescription: "Plan and track work"},
	}})
	t.AddApp(fakegraph.App{ID: sandboxBoard, DisplayName: "Whiteboard", Definitions: []fakegraph.Definition{
		{Version: "1.9.0", RSC: []fakegraph.Permission{perm("MeetingStage.Write.Chat", "delegated")}},
		{Version: "1.10.0", RSC: []fakegraph.Permission{perm("MeetingStage.Write.Chat", "delegated")}},
	}})
	t.AddApp(fakegraph.App{ID: sandboxWiki, DisplayName: "Wiki", Definitions: []fakegraph.Definition{{Version: "2.0"}}})
}

var pollsRSC = []fakegraph.Permission{perm("ChatSettings.Read.Chat", "application"), perm("TeamsActivity.Send.User", "application")}

func perm(v, typ string) fakegraph.Permission { return fakegraph.Permission{Value: v, Type: typ} }

// seedScope installs the catalog's apps at old versions in a scope: Polls
// (whose upgrade adds RSC permissions) and an up-to-date Wiki in a personal
// scope; Polls, Tasks and Whiteboard in a chat or team, with members.
func seedScope(t *fakegraph.Tenant, kind, id string, members ...fakegraph.Member) {
	t.Install(kind, id, sandboxPolls, "1.0.0", pollsRSC)
	if kind == fakegraph.User {
		t.Install(kind, id, sandboxWiki, "2.0", nil)
		return
	}
	t.Install(kind, id, sandboxTasks, "3.0", nil)
	t.Install(kind, id, sandboxBoard, "1.9.0", []fakegraph.Permission{perm("MeetingStage.Write.Chat", "delegated")})
	t.AddMembers(kind, id, members...)
}

// staticToken is a credential with a fixed token, for the fake tenant.
type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// sandboxBanner is what the sandbox prints on start: what it is, and the
// Playground command to talk to it, which makes no outside connection (no
// telemetry, no Application Insights statsbeat), as the e2e test runs it.
func sandboxBanner(graphURL, endpoint string) string {
	return fmt.Sprintf(`
*** SANDBOX ***  No MicrosoftAppId, so this is the sandbox: the bot against a FAKE Microsoft Graph tenant
(%s), authentication off, loopback only, state in memory. Nothing here talks to Microsoft.
Any chat or team that talks to it gets apps behind the catalog, with you as its owner. In another terminal:

    APPLICATION_INSIGHTS_NO_STATSBEAT=true npx @microsoft/m365agentsplayground@0.2.28 -e %s -c msteams --disable-telemetry

then send "check", press Approve, send "history". Set MicrosoftAppId (see README) to run the real bot.

`, graphURL, endpoint)
}
