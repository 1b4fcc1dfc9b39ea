package botframework

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/infracloudio/msbotbuilder-go/schema"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

// ConnectorOptions configures a Connector.
type ConnectorOptions struct {
	// Credential gets the bot's tokens. Nil sends no Authorization header,
	// for local runs against a client that does not check (auth off).
	Credential azcore.TokenCredential
	// Scope is the token scope (Cloud.TokenScope).
	Scope string
	// Trust decides which service URLs may be called. Required.
	Trust ServiceURLTrust
	// HTTPClient defaults to a client with a 30 s timeout that keeps up to
	// 64 idle connections per connector host for reuse.
	HTTPClient *http.Client
	// MaxRetries bounds retries of one call. Default 3.
	MaxRetries int
	// RetryDelay is the first backoff when the connector sends no
	// Retry-After; it doubles on each retry. Default 800 ms.
	RetryDelay time.Duration
	// MaxRetryWait caps one wait; a Retry-After beyond it is not waited
	// for. Default 10 s.
	MaxRetryWait time.Duration
	// Metrics may be nil.
	Metrics *Metrics
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Connector calls the Bot Framework connector REST API (v3) through
// azcore's pipeline: bearer token, Retry-After, backoff.
//
// A POST creates a message: retrying it after the connector may have
// acted would post it twice, so a POST is retried only when it certainly
// did not take effect (429 with Retry-After, connection refused) — never
// on 502, 503, 504 or a broken connection. A PUT (update) is idempotent and
// is retried on those too.
type Connector struct {
	opts     ConnectorOptions
	pipeline runtime.Pipeline
	retry    policy.RetryOptions // for PUTs and GETs
	post     policy.RetryOptions // for POSTs
}

// NewConnector returns a Connector.
func NewConnector(opts ConnectorOptions) (*Connector, error) {
	if opts.Trust == nil {
		return nil, errors.New("botframework: ConnectorOptions.Trust is required")
	}
	if opts.Credential != nil && opts.Scope == "" {
		return nil, errors.New("botframework: ConnectorOptions.Scope is required with a Credential")
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: connectorTransport()}
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 3
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 800 * time.Millisecond
	}
	if opts.MaxRetryWait <= 0 {
		opts.MaxRetryWait = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Connector{opts: opts}
	c.retry = policy.RetryOptions{
		MaxRetries: int32(opts.MaxRetries), RetryDelay: opts.RetryDelay, MaxRetryDelay: opts.MaxRetryWait,
		StatusCodes: []int{http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout},
	}
	c.post = c.retry
	c.post.ShouldRetry = postMayRetry
	var perRetry []policy.Policy
	if opts.Credential != nil {
		// Trust (CheckSecureURL) lets only https, or http on loopback for
		// local fakes, reach the pipeline.
		perRetry = append(perRetry, runtime.NewBearerTokenPolicy(opts.Credential, []string{opts.Scope},
			&policy.BearerTokenOptions{InsecureAllowCredentialWithHTTP: true}))
	}
	c.pipeline = runtime.NewPipeline("upgradebot/connector", "v1", runtime.PipelineOptions{PerRetry: perRetry},
		&policy.ClientOptions{Transport: opts.HTTPClient, Retry: c.retry, Telemetry: policy.TelemetryOptions{Disabled: true}})
	return c, nil
}

// connectorTransport is http.DefaultTransport's configuration with more
// idle connections kept per host: the standard library keeps 2, so replies
// sent at once to one connector would mostly close their connection after
// the response and open (and handshake) a new one for the next reply.
func connectorTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 128
	t.MaxIdleConnsPerHost = 64
	return t
}

// postMayRetry reports whether a POST certainly did not take effect.
func postMayRetry(resp *http.Response, err error) bool {
	if err != nil {
		// Refused before a byte of the request was read.
		return errors.Is(err, syscall.ECONNREFUSED)
	}
	return resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != ""
}

// outgoing is the activity the bot sends. It is its own type because
// schema.Activity marshals zero times and empty structs ("expiration":
// "0001-01-01T00:00:00Z", "relatesTo":{}) that the connector need not see.
type outgoing struct {
	Type         string                      `json:"type"`
	From         *schema.ChannelAccount      `json:"from,omitempty"`
	Conversation *schema.ConversationAccount `json:"conversation,omitempty"`
	ReplyToID    string                      `json:"replyToId,omitempty"`
	Text         string                      `json:"text,omitempty"`
	TextFormat   string                      `json:"textFormat,omitempty"`
	Summary      string                      `json:"summary,omitempty"`
	Locale       string                      `json:"locale,omitempty"`
	Attachments  []schema.Attachment         `json:"attachments,omitempty"`
}

func newOutgoing(ref approval.ConversationRef, replyToID string, m bot.Message) outgoing {
	format := m.TextFormat
	if format == "" && m.Text != "" {
		format = "markdown"
	}
	return outgoing{
		Type:         "message",
		From:         &schema.ChannelAccount{ID: ref.BotID, Name: ref.BotName},
		Conversation: &schema.ConversationAccount{ID: ref.ConversationID},
		ReplyToID:    replyToID,
		Text:         m.Text,
		TextFormat:   format,
		Summary:      m.Summary,
		Locale:       m.Locale,
		Attachments:  m.Attachments,
	}
}

// Send posts a message to the conversation and returns its activity id. Some
// channels (and Teams for some payloads) answer without an id: then "".
func (c *Connector) Send(ctx context.Context, ref approval.ConversationRef, m bot.Message) (string, error) {
	var rr schema.ResourceResponse
	err := c.do(ctx, "send", ref, http.MethodPost, conversationPath(ref.ConversationID, ""), newOutgoing(ref, "", m), &rr)
	return rr.ID, err
}

// Reply posts a message as a reply to activity replyToID.
func (c *Connector) Reply(ctx context.Context, ref approval.ConversationRef, replyToID string, m bot.Message) (string, error) {
	var rr schema.ResourceResponse
	err := c.do(ctx, "reply", ref, http.MethodPost, conversationPath(ref.ConversationID, replyToID), newOutgoing(ref, replyToID, m), &rr)
	return rr.ID, err
}

// Update replaces a message the bot posted.
func (c *Connector) Update(ctx context.Context, ref approval.ConversationRef, activityID string, m bot.Message) error {
	o := newOutgoing(ref, "", m)
	body := struct {
		outgoing
		ID string `json:"id"`
	}{o, activityID}
	return c.do(ctx, "update", ref, http.MethodPut, conversationPath(ref.ConversationID, activityID), body, nil)
}

// encodeBody is in's JSON, as json.Marshal writes it. A message's card
// content already encoded (a json.RawMessage, as the help card is kept) is
// copied in as it is: json.Marshal would scan and compact it again on every
// reply, and a card is most of a reply's bytes.
func encodeBody(in any) ([]byte, error) {
	o, ok := in.(outgoing)
	if !ok || len(o.Attachments) == 0 {
		return json.Marshal(in)
	}
	size := 0
	for _, a := range o.Attachments {
		raw, ok := a.Content.(json.RawMessage)
		if !ok || len(raw) == 0 || a.ContentURL != "" || a.Name != "" || a.ThumbnailURL != "" {
			return json.Marshal(in)
		}
		size += len(a.ContentType) + len(raw) + 32
	}
	atts := o.Attachments
	o.Attachments = nil
	head, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	// Attachments is outgoing's last field: it goes before the closing brace.
	out := make([]byte, 0, len(head)+size+16)
	out = append(out, head[:len(head)-1]...)
	if len(head) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"attachments":[`...)
	for i, a := range atts {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '{')
		if a.ContentType != "" {
			out = appendJSONString(append(out, `"contentType":`...), a.ContentType)
			out = append(out, ',')
		}
		out = append(append(append(out, `"content":`...), a.Content.(json.RawMessage)...), '}')
	}
	return append(out, "]}"...), nil
}

// appendJSONString appends s as a JSON string, as json.Marshal writes it.
// Media types need no escaping: only those that do go through json.Marshal.
func appendJSONString(out []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(out, q...)
		}
	}
	return append(append(append(out, '"'), s...), '"')
}

func conversationPath(conversationID, activityID string) string {
	p := "/v3/conversations/" + url.PathEscape(conversationID) + "/activities"
	if activityID != "" {
		p += "/" + url.PathEscape(activityID)
	}
	return p
}

func (c *Connector) do(ctx context.Context, op string, ref approval.ConversationRef, method, path string, in, out any) (err error) {
	start := time.Now()
	status := 0
	defer func() { c.opts.Metrics.observeConnector(op, status, time.Since(start)) }()

	if ref.ServiceURL == "" || ref.ConversationID == "" {
		return bot.Errorf(bot.CodeInvalid, "botframework: %s: the conversation reference has no service URL or conversation id", op)
	}
	trusted, err := c.opts.Trust.IsTrustedServiceURL(ctx, ref.ConversationID, ref.ServiceURL)
	if err != nil {
		return err
	}
	if !trusted {
		return bot.Errorf(bot.CodeForbidden, "botframework: %s: service URL %q never arrived on an authenticated activity of this conversation", op, ref.ServiceURL)
	}
	endpoint := strings.TrimRight(ref.ServiceURL, "/") + path

	retry := c.retry
	if method == http.MethodPost {
		retry = c.post
	}
	req, err := runtime.NewRequest(policy.WithRetryOptions(ctx, retry), method, endpoint)
	if err != nil {
		return fmt.Errorf("botframework: %s: %w", op, err)
	}
	if in != nil {
		body, err := encodeBody(in)
		if err != nil {
			return fmt.Errorf("botframework: %s: encode: %w", op, err)
		}
		if err := req.SetBody(streaming.NopCloser(bytes.NewReader(body)), "application/json; charset=utf-8"); err != nil {
			return fmt.Errorf("botframework: %s: %w", op, err)
		}
	}
	resp, err := c.pipeline.Do(req)
	if err != nil {
		return &bot.Error{Code: bot.CodeUnavailable, Message: "botframework: " + op + ": connector unreachable", Err: err}
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	if status/100 != 2 {
		return connectorError(op, resp)
	}
	if out != nil && status != http.StatusNoContent {
		// Teams sometimes answers 201/202 with an empty body.
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("botframework: %s: decode: %w", op, err)
		}
	}
	return nil
}

func connectorError(op string, resp *http.Response) error {
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&env)
	code := codeOf(resp.StatusCode)
	msg := fmt.Sprintf("botframework: %s: connector answered %s", op, resp.Status)
	if env.Error.Code != "" || env.Error.Message != "" {
		msg += fmt.Sprintf(" (%s: %s)", env.Error.Code, env.Error.Message)
	}
	return &bot.Error{Code: code, Message: msg}
}
