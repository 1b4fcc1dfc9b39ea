package botframework_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/infracloudio/msbotbuilder-go/schema"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/botframework/fakechannel"
	"github.com/upgradeapprovals/bot/internal/fakeentra"
)

func newConnector(t *testing.T, aad *fakeentra.Authority, trust *memTrust) *botframework.Connector {
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
		Credential: cred, Scope: "https://api.botframework.com/.default", Trust: trust, RetryDelay: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func refTo(conn *fakechannel.Connector) approval.ConversationRef {
	return approval.ConversationRef{
		ConversationID: "19:abc@thread.v2", ServiceURL: conn.URL(), ChannelID: "msteams",
		BotID: "28:" + appID, BotName: "Upgrade Approvals",
	}
}

func TestConnectorSendsWithBearerAndReturnsID(t *testing.T) {
	aad, conn, trust := fakeentra.New(t), fakechannel.NewConnector(t), &memTrust{}
	trust.TrustServiceURL(context.Background(), "19:abc@thread.v2", conn.URL())
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
	aad, conn, trust := fakeentra.New(t), fakechannel.NewConnector(t), &memTrust{}
	trust.TrustServiceURL(context.Background(), "19:abc@thread.v2", conn.URL())
	c := newConnector(t, aad, trust)
	conn.FailNext(http.StatusTooManyRequests, http.StatusTooManyRequests)

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

// A 502, 503 or 504 to a POST may come after the connector posted the
// message: retrying would post it twice. The caller hears "unavailable".
func TestConnectorNeverRetriesAPostThatMayHaveTakenEffect(t *testing.T) {
	for _, status := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusInternalServerError} {
		aad, conn, trust := fakeentra.New(t), fakechannel.NewConnector(t), &memTrust{}
		trust.TrustServiceURL(context.Background(), "19:abc@thread.v2", conn.URL())
		c := newConnector(t, aad, trust)
		conn.FailNext(status)
		_, err := c.Send(context.Background(), refTo(conn), bot.Message{Text: "hi"})
		if err == nil {
			t.Errorf("%d: no error", status)
		}
		if n := len(conn.Calls()); n != 1 {
			t.Errorf("POST answered %d was sent %d times, want once", status, n)
		}
	}
	// 429 without Retry-After: the connector did not say it refused before
	// acting, so no retry either.
	aad, conn, trust := fakeentra.New(t), fakechannel.NewConnector(t), &memTrust{}
	trust.TrustServiceURL(context.Background(), "19:abc@thread.v2", conn.URL())
	c := newConnector(t, aad, trust)
	conn.RetryAfter("none")
	conn.FailNext(http.StatusTooManyRequests)
	if _, err := c.Reply(context.Background(), refTo(conn), "1", bot.Message{Text: "hi"}); !errors.Is(err, bot.ErrUnavailable) {
		t.Errorf("429 without Retry-After: err %v, want unavailable", err)
	}
	if n := len(conn.Calls()); n != 1 {
		t.Errorf("429 without Retry-After: %d calls, want 1", n)
	}
}

// A connection that breaks after the request went out may have posted the
// message; a refused connection certainly did not.
func TestConnectorRetriesAPostOnlyWhenTheConnectionWasRefused(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // the request arrived; the answer never does
		}
	}))
	defer srv.Close()
	trust := &memTrust{}
	ref := approval.ConversationRef{ConversationID: "19:abc@thread.v2", ServiceURL: srv.URL + "/", ChannelID: "msteams", BotID: "28:" + appID}
	trust.TrustServiceURL(context.Background(), ref.ConversationID, ref.ServiceURL)
	c, err := botframework.NewConnector(botframework.ConnectorOptions{Trust: trust, RetryDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(context.Background(), ref, bot.Message{Text: "hi"}); !errors.Is(err, bot.ErrUnavailable) {
		t.Fatalf("err %v, want unavailable", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("a POST whose connection broke was sent %d times, want once", n)
	}

	// Refused first, then answered: retried, posted once.
	conn := fakechannel.NewConnector(t)
	trust.TrustServiceURL(context.Background(), ref.ConversationID, conn.URL())
	refused := &refuseOnce{next: http.DefaultTransport}
	c, err = botframework.NewConnector(botframework.ConnectorOptions{Trust: trust, RetryDelay: 10 * time.Millisecond,
		HTTPClient: &http.Client{Transport: refused}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(context.Background(), refTo(conn), bot.Message{Text: "hi"}); err != nil {
		t.Fatalf("after a refused connection: %v", err)
	}
	if n := len(conn.Calls()); n != 1 || refused.refusals.Load() != 1 {
		t.Errorf("%d posts after %d refusals, want 1 after 1", n, refused.refusals.Load())
	}
}

// refuseOnce fails the first request as a dial to a closed port does.
type refuseOnce struct {
	next     http.RoundTripper
	refusals atomic.Int32
}

func (r *refuseOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.refusals.CompareAndSwap(0, 1) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	return r.next.RoundTrip(req)
}

// Updating a card is idempotent: it is retried on 5xx, within bounds.
func TestConnectorRetriesUpdatesAndGivesUpAfterBoundedRetries(t *testing.T) {
	aad, conn, trust := fakeentra.New(t), fakechannel.NewConnector(t), &memTrust{}
	trust.TrustServiceURL(context.Background(), "19:abc@thread.v2", conn.URL())
	c := newConnector(t, aad, trust)
	conn.FailNext(502, 503)
	if err := c.Update(context.Background(), refTo(conn), "activity-1", bot.Message{Text: "x"}); err != nil {
		t.Fatal(err)
	}
	if n := len(conn.Calls()); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}

	conn = fakechannel.NewConnector(t)
	trust.TrustServiceURL(context.Background(), "19:abc@thread.v2", conn.URL())
	conn.FailNext(503, 503, 503, 503, 503, 503)
	err := c.Update(context.Background(), refTo(conn), "activity-1", bot.Message{Text: "x"})
	if !errors.Is(err, bot.ErrUnavailable) {
		t.Fatalf("err %v, want unavailable", err)
	}
	if n := len(conn.Calls()); n != 4 {
		t.Errorf("%d calls, want 4 (1 + 3 retries)", n)
	}
}

func TestConnectorMapsClientErrors(t *testing.T) {
	aad, conn, trust := fakeentra.New(t), fakechannel.NewConnector(t), &memTrust{}
	trust.TrustServiceURL(context.Background(), "19:abc@thread.v2", conn.URL())
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
	aad, conn := fakeentra.New(t), fakechannel.NewConnector(t)
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
	conn, trust := fakechannel.NewConnector(t), &memTrust{}
	trust.TrustServiceURL(context.Background(), "19:abc@thread.v2", conn.URL())
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

// A reply's body is what json.Marshal would write, byte for byte, whether
// its card is kept encoded (the help card) or not, with text or without,
// one attachment or several; what is not encoded JSON goes through
// json.Marshal.
func TestReplyBodyIsWhatJSONMarshalWrites(t *testing.T) {
	card := map[string]any{"type": "AdaptiveCard", "version": "1.5", "body": []any{
		map[string]any{"type": "TextBlock", "text": "Mise à jour <b> & 升级 \u2028", "wrap": true}}}
	raw, err := json.Marshal(card)
	if err != nil {
		t.Fatal(err)
	}
	ref := approval.ConversationRef{ConversationID: "19:abc@thread.v2", ServiceURL: "https://smba.trafficmanager.net/amer/",
		BotID: "28:app", BotName: "Upgrade \"Approvals\""}
	att := func(content any) schema.Attachment {
		return schema.Attachment{ContentType: "application/vnd.microsoft.card.adaptive", Content: content}
	}
	for name, m := range map[string]bot.Message{
		"kept card":              {Attachments: []schema.Attachment{att(json.RawMessage(raw))}},
		"kept card and text":     {Text: "see **below**", Locale: "zh-CN", Attachments: []schema.Attachment{att(json.RawMessage(raw))}},
		"two kept cards":         {Attachments: []schema.Attachment{att(json.RawMessage(raw)), att(json.RawMessage(raw))}},
		"card value":             {Attachments: []schema.Attachment{att(card)}},
		"kept and value cards":   {Attachments: []schema.Attachment{att(json.RawMessage(raw)), att(card)}},
		"text only":              {Text: "hello"},
		"no content type":        {Attachments: []schema.Attachment{{Content: json.RawMessage(raw)}}},
		"content type to escape": {Attachments: []schema.Attachment{{ContentType: "text/x-\"odd\" <type> & \u00e9\n", Content: json.RawMessage(raw)}}},
	} {
		got, err := botframework.EncodeReply(ref, "1700000000001", m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, err := botframework.MarshalReply(ref, "1700000000001", m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}
