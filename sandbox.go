package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/upgradeapprovals/bot/graph/graphtest"
)

// Sandbox ids match e2e/testdata/playground.yml, the Agents Playground
// configuration to use with it.
const (
	sandboxTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	sandboxUser   = "11111111-1111-1111-1111-111111111111" // the Playground's current user, Megan
	sandboxChat   = "19:e2e-group@thread.v2"
	sandboxTeam   = "22222222-2222-2222-2222-222222222222"
	sandboxPolls  = "0d820ecd-def2-4297-adad-78056cde7c78"
	sandboxTasks  = "a3b1c2d4-0000-4000-8000-000000000002"
	sandboxBoard  = "a3b1c2d4-0000-4000-8000-000000000003"
	sandboxWiki   = "a3b1c2d4-0000-4000-8000-000000000004"
)

// sandboxCommand runs the bot on loopback with authentication off against
// a seeded fake Graph tenant, to try the whole approval flow in the M365
// Agents Playground. Nothing here talks to Microsoft.
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
	tenant := seedSandbox()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logger.Error("sandbox", "err", err)
		return 1
	}
	tenant.BaseURL = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: tenant, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	cfg.GraphBaseURL = tenant.BaseURL + "/v1.0"
	logger.Warn("SANDBOX: Microsoft Graph is a fake tenant on " + tenant.BaseURL +
		"; start the Playground with M365_AGENTS_PLAYGROUND_CONFIG_PATH=e2e/testdata/playground.yml")
	if err := serve(ctx, cfg, logger, deps{graphCredential: staticToken("sandbox")}); err != nil {
		logger.Error("bot stopped", "err", err)
		return 1
	}
	return 0
}

// seedSandbox installs apps behind the catalog in the Playground's personal
// chat, group chat and team, with Megan as owner.
func seedSandbox() *graphtest.Tenant {
	t := graphtest.New()
	p := func(v, typ string) graphtest.Permission { return graphtest.Permission{Value: v, Type: typ} }
	t.AddApp(graphtest.App{ID: sandboxPolls, DisplayName: "Polls", Definitions: []graphtest.Definition{
		{Version: "1.0.0", RSC: []graphtest.Permission{p("ChatSettings.Read.Chat", "application"), p("TeamsActivity.Send.User", "application")}},
		{Version: "1.1.0", ShortDescription: "Quick polls in chats and meetings", RSC: []graphtest.Permission{
			p("ChatMessage.Read.Chat", "application"), p("OnlineMeeting.ReadBasic.Chat", "delegated"),
			p("TeamsActivity.Send.User", "application")}},
	}})
	t.AddApp(graphtest.App{ID: sandboxTasks, DisplayName: "Tasks", Definitions: []graphtest.Definition{
		{Version: "3.0"}, {Version: "3.1", ShortDescription: "Plan and track work"},
	}})
	t.AddApp(graphtest.App{ID: sandboxBoard, DisplayName: "Whiteboard", Definitions: []graphtest.Definition{
		{Version: "1.9.0", RSC: []graphtest.Permission{p("MeetingStage.Write.Chat", "delegated")}},
		{Version: "1.10.0", RSC: []graphtest.Permission{p("MeetingStage.Write.Chat", "delegated")}},
	}})
	t.AddApp(graphtest.App{ID: sandboxWiki, DisplayName: "Wiki", Definitions: []graphtest.Definition{{Version: "2.0"}}})

	t.Install(graphtest.User, sandboxUser, sandboxPolls, "1.0.0", []graphtest.Permission{p("ChatSettings.Read.Chat", "application"), p("TeamsActivity.Send.User", "application")})
	t.Install(graphtest.User, sandboxUser, sandboxWiki, "2.0", nil)
	for _, s := range []struct{ kind, id string }{{graphtest.Chat, sandboxChat}, {graphtest.Team, sandboxTeam}} {
		t.Install(s.kind, s.id, sandboxPolls, "1.0.0", []graphtest.Permission{p("ChatSettings.Read.Chat", "application"), p("TeamsActivity.Send.User", "application")})
		t.Install(s.kind, s.id, sandboxTasks, "3.0", nil)
		t.Install(s.kind, s.id, sandboxBoard, "1.9.0", []graphtest.Permission{p("MeetingStage.Write.Chat", "delegated")})
		t.AddMembers(s.kind, s.id,
			graphtest.Member{UserID: sandboxUser, DisplayName: "Megan Bowen", TenantID: sandboxTenant, Roles: []string{"owner"}},
			graphtest.Member{UserID: "11111111-1111-1111-1111-111111111112", DisplayName: "Alex Wilber", TenantID: sandboxTenant, Roles: []string{}})
	}
	return t
}

// staticToken is a credential with a fixed token, for the fake tenant.
type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}
