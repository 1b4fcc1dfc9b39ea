package botframework_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/bot/botframework"
	"github.com/upgradeapprovals/bot/bot/bottest"
)

func newConnector(t *testing.T, aad *bottest.AAD, trust *memTrust) *botframework.Connector {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(tenantID, appID, "s3cret", &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: aad.AuthorityHost()},
			Transport: aad.Client(),
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := botframework.NewConnector(botframework.ConnectorOptions{
		Credential: cred, Scope: "https://api.botframework.com/.default", Trust: trust,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func refTo(conn *bottest.Connector) bot.ConversationRef {
	return bot.ConversationRef{
		ConversationID: "19:abc@thread.v2", ServiceURL: conn.URL(), ChannelID: "msteams",
		BotID: "28:" + appID, BotName: "Upgrade Approvals",
	}
}

func TestConnectorSendsWithBearerAndReturnsID(t *testing.T) {
	aad, conn, trust := bottest.NewAAD(t), bottest.NewConnector(t), &memTrust{}
	trust.TrustServiceURL(context.Background(), conn.URL())
	c := newConnector(t, aad, trust)

	id, err := c.Reply(context.Background(), refTo(conn), "1700000000000", bot.Message{Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if id != "activity-1" {
		t.Errorf("id %q, want activity-1", id)
	}
	calls := conn.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls", len(calls))
	}
	got := calls[0]
	if got.Method != http.MethodPost || got.Path != "/v3/conversations/19:abc@thread.v2/activities/1700000000000" {
		t.Errorf("call %s %s", got.Method, got.Path)
	}
	reqs := aad.Requests()
	if len(reqs) != 1 || reqs[0].Tenant != tenantID || reqs[0].Scope != "https://api.botframework.com/.default" {
		t.Fatalf("token requests %+v", reqs)
	}
	if want := "Bearer " + aad.AccessToken(tenantID, "https://api.botframework.com/.default", 1); got.Authorization != want {
		t.Errorf("Authorization %q, want %q", got.Authorization, want)
	}
	if got.Activity["replyToId"] != "1700000000000" || got.Activity["text"] != "hi" || got.Activity["type"] != "message" {
		t.Errorf("activity %v", got.Activity)
	}
	if _, ok := got.Activity["expiration"]; ok {
		t.Error("the outgoing activity carries a zero expiration")
	}
}

func TestConnectorRetriesThrottlingThenSucceeds(t *testing.T) {
	aad, conn, trust := bottest.NewAAD(t), bottest.NewConnector(t), &memTrust{}
	trust.TrustServiceURL(context.Background(), conn.URL())
	c := newConnector(t, aad, trust)
	conn.FailNext(http.StatusTooManyRequests, http.StatusServiceUnavailable)

	id, err := c.Send(context.Background(), refTo(conn), bot.Message{Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if id != "activity-3" || len(conn.Calls()) != 3 {
		t.Errorf("id %q after %d calls, want activity-3 after 3", id, len(conn.Calls()))
	}
	if len(aad.Requests()) != 1 {
		t.Errorf("%d token requests, want 1 (cached)", len(aad.Requests()))
	}
}

func TestConnectorGivesUpAfterBoundedRetries(t *testing.T) {
	aad, conn, trust := bottest.NewAAD(t), bottest.NewConnector(t), &memTrust{}
	trust.TrustServiceURL(context.Background(), conn.URL())
	c := newConnector(t, aad, trust)
	conn.FailNext(503, 503, 503, 503, 503, 503)

	_, err := c.Send(context.Background(), refTo(conn), bot.Message{Text: "hi"})
	if !errors.Is(err, bot.ErrUnavailable) {
		t.Fatalf("err %v, want unavailable", err)
	}
	if n := len(conn.Calls()); n != 4 {
		t.Errorf("%d calls, want 4 (1 + 3 retries)", n)
	}
}

func TestConnectorMapsClientErrors(t *testing.T) {
	aad, conn, trust := bottest.NewAAD(t), bottest.NewConnector(t), &memTrust{}
	trust.TrustServiceURL(context.Background(), conn.URL())
	c := newConnector(t, aad, trust)
	conn.FailNext(http.StatusNotFound)
	err := c.Update(context.Background(), refTo(conn), "activity-9", bot.Message{Text: "x"})
	if !errors.Is(err, bot.ErrNotFound) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("err %v, want not_found naming 404", err)
	}
	if calls := conn.Calls(); len(calls) != 1 || calls[0].Method != http.MethodPut || calls[0].Activity["id"] != "activity-9" {
		t.Errorf("calls %+v", calls)
	}
}

func TestConnectorRefusesUntrustedServiceURL(t *testing.T) {
	aad, conn := bottest.NewAAD(t), bottest.NewConnector(t)
	c := newConnector(t, aad, &memTrust{})
	_, err := c.Send(context.Background(), refTo(conn), bot.Message{Text: "hi"})
	if !errors.Is(err, bot.ErrForbidden) {
		t.Fatalf("err %v, want forbidden", err)
	}
	if len(conn.Calls()) != 0 || len(aad.Requests()) != 0 {
		t.Error("a token was requested or sent for an untrusted service URL")
	}
}

func TestConnectorHonoursRetryAfterAndContext(t *testing.T) {
	conn, trust := bottest.NewConnector(t), &memTrust{}
	trust.TrustServiceURL(context.Background(), conn.URL())
	c, err := botframework.NewConnector(botframework.ConnectorOptions{Trust: trust, MaxRetryWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	conn.FailNext(http.StatusTooManyRequests)
	conn.RetryAfter("30")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = c.Send(ctx, refTo(conn), bot.Message{Text: "hi"})
	if !errors.Is(err, bot.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want unavailable after the deadline", err)
	}
	if n := len(conn.Calls()); n != 1 {
		t.Errorf("%d calls, want 1: Retry-After: 30 must hold the retry back", n)
	}
	if conn.Calls()[0].Authorization != "" {
		t.Error("a connector without a credential sent an Authorization header")
	}
}

func TestMembersPaging(t *testing.T) {
	aad, conn, trust := bottest.NewAAD(t), bottest.NewConnector(t), &memTrust{}
	trust.TrustServiceURL(context.Background(), conn.URL())
	c := newConnector(t, aad, trust)
	if _, err := c.Members(context.Background(), refTo(conn), 50, "tok en"); err != nil {
		t.Fatal(err)
	}
	if p := conn.Calls()[0].Path; p != "/v3/conversations/19:abc@thread.v2/pagedmembers?continuationToken=tok+en&pageSize=50" {
		t.Errorf("path %q", p)
	}
}
