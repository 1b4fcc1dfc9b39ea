package botframework

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/infracloudio/msbotbuilder-go/schema"

	"github.com/upgradeapprovals/bot/bot"
)

// ServiceURLTrust remembers the service URLs that arrived on authenticated
// activities. The connector sends the bot's token to no other URL.
type ServiceURLTrust interface {
	TrustServiceURL(ctx context.Context, serviceURL string) error
	IsTrustedServiceURL(ctx context.Context, serviceURL string) (bool, error)
}

// ConnectorOptions configures a Connector.
type ConnectorOptions struct {
	// Credential gets the bot's tokens. Nil sends no Authorization header,
	// for local runs against a client that does not check (auth off).
	Credential azcore.TokenCredential
	// Scope is the token scope (Cloud.TokenScope).
	Scope string
	// Trust decides which service URLs may be called. Required.
	Trust ServiceURLTrust
	// HTTPClient defaults to a client with a 30 s timeout.
	HTTPClient *http.Client
	// MaxRetries bounds retries on 429, 502, 503 and 504. Default 3.
	MaxRetries int
	// MaxRetryWait caps one wait, whatever Retry-After says. Default 10 s.
	MaxRetryWait time.Duration
	// Metrics may be nil.
	Metrics *Metrics
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Connector calls the Bot Framework connector REST API (v3).
type Connector struct {
	opts ConnectorOptions
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
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 3
	}
	if opts.MaxRetryWait <= 0 {
		opts.MaxRetryWait = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Connector{opts: opts}, nil
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

func newOutgoing(ref bot.ConversationRef, replyToID string, m bot.Message) outgoing {
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
func (c *Connector) Send(ctx context.Context, ref bot.ConversationRef, m bot.Message) (string, error) {
	var rr schema.ResourceResponse
	err := c.do(ctx, "send", ref, http.MethodPost, conversationPath(ref.ConversationID, ""), newOutgoing(ref, "", m), &rr)
	return rr.ID, err
}

// Reply posts a message as a reply to activity replyToID.
func (c *Connector) Reply(ctx context.Context, ref bot.ConversationRef, replyToID string, m bot.Message) (string, error) {
	var rr schema.ResourceResponse
	err := c.do(ctx, "reply", ref, http.MethodPost, conversationPath(ref.ConversationID, replyToID), newOutgoing(ref, replyToID, m), &rr)
	return rr.ID, err
}

// Update replaces a message the bot posted.
func (c *Connector) Update(ctx context.Context, ref bot.ConversationRef, activityID string, m bot.Message) error {
	o := newOutgoing(ref, "", m)
	body := struct {
		outgoing
		ID string `json:"id"`
	}{o, activityID}
	return c.do(ctx, "update", ref, http.MethodPut, conversationPath(ref.ConversationID, activityID), body, nil)
}

// Delete removes a message the bot posted.
func (c *Connector) Delete(ctx context.Context, ref bot.ConversationRef, activityID string) error {
	return c.do(ctx, "delete", ref, http.MethodDelete, conversationPath(ref.ConversationID, activityID), nil, nil)
}

// Member is a conversation member as Teams returns it.
type Member struct {
	ID                string `json:"id"`
	Name              string `json:"name,omitempty"`
	AADObjectID       string `json:"aadObjectId,omitempty"`
	Email             string `json:"email,omitempty"`
	UserPrincipalName string `json:"userPrincipalName,omitempty"`
	TenantID          string `json:"tenantId,omitempty"`
	UserRole          string `json:"userRole,omitempty"`
}

// MembersPage is one page of conversation members.
type MembersPage struct {
	Members           []Member `json:"members"`
	ContinuationToken string   `json:"continuationToken,omitempty"`
}

// Members returns one page of the conversation's members; pass the previous
// page's ContinuationToken to get the next one.
func (c *Connector) Members(ctx context.Context, ref bot.ConversationRef, pageSize int, continuationToken string) (MembersPage, error) {
	q := url.Values{}
	if pageSize > 0 {
		q.Set("pageSize", strconv.Itoa(pageSize))
	}
	if continuationToken != "" {
		q.Set("continuationToken", continuationToken)
	}
	p := "/v3/conversations/" + url.PathEscape(ref.ConversationID) + "/pagedmembers"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var page MembersPage
	err := c.do(ctx, "members", ref, http.MethodGet, p, nil, &page)
	return page, err
}

func conversationPath(conversationID, activityID string) string {
	p := "/v3/conversations/" + url.PathEscape(conversationID) + "/activities"
	if activityID != "" {
		p += "/" + url.PathEscape(activityID)
	}
	return p
}

func (c *Connector) do(ctx context.Context, op string, ref bot.ConversationRef, method, path string, in, out any) (err error) {
	start := time.Now()
	status := 0
	defer func() { c.opts.Metrics.observeConnector(op, status, time.Since(start)) }()

	if ref.ServiceURL == "" || ref.ConversationID == "" {
		return bot.Errorf(bot.CodeInvalid, "botframework: %s: the conversation reference has no service URL or conversation id", op)
	}
	trusted, err := c.opts.Trust.IsTrustedServiceURL(ctx, ref.ServiceURL)
	if err != nil {
		return err
	}
	if !trusted {
		return bot.Errorf(bot.CodeForbidden, "botframework: %s: service URL %q never arrived on an authenticated activity", op, ref.ServiceURL)
	}
	endpoint := strings.TrimRight(ref.ServiceURL, "/") + path

	var body []byte
	if in != nil {
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("botframework: %s: encode: %w", op, err)
		}
	}
	for attempt := 0; ; attempt++ {
		var resp *http.Response
		resp, err = c.send(ctx, method, endpoint, body)
		if err != nil {
			return &bot.Error{Code: bot.CodeUnavailable, Message: "botframework: " + op + ": connector unreachable", Err: err}
		}
		status = resp.StatusCode
		if retryable(status) && attempt < c.opts.MaxRetries {
			wait := c.retryWait(resp.Header.Get("Retry-After"), attempt)
			drain(resp)
			c.opts.Logger.WarnContext(ctx, "connector call retried", "op", op, "status", status, "wait", wait.String())
			select {
			case <-ctx.Done():
				return &bot.Error{Code: bot.CodeUnavailable, Message: "botframework: " + op + ": gave up waiting to retry", Err: ctx.Err()}
			case <-time.After(wait):
			}
			continue
		}
		defer resp.Body.Close()
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
}

func (c *Connector) send(ctx context.Context, method, endpoint string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	if c.opts.Credential != nil {
		// azidentity caches tokens and renews them before they expire.
		tok, err := c.opts.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.opts.Scope}})
		if err != nil {
			return nil, fmt.Errorf("get token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok.Token)
	}
	return c.opts.HTTPClient.Do(req)
}

func retryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryWait honours Retry-After (seconds, possibly fractional, or an HTTP
// date) and otherwise backs off exponentially with jitter.
func (c *Connector) retryWait(retryAfter string, attempt int) time.Duration {
	if secs, err := strconv.ParseFloat(retryAfter, 64); err == nil && secs >= 0 {
		return min(time.Duration(secs*float64(time.Second)), c.opts.MaxRetryWait)
	}
	if t, err := http.ParseTime(retryAfter); err == nil {
		return min(max(time.Until(t), 0), c.opts.MaxRetryWait)
	}
	base := 200 * time.Millisecond << attempt
	return min(base+rand.N(base), c.opts.MaxRetryWait)
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func connectorError(op string, resp *http.Response) error {
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&env)
	code := bot.CodeInternal
	switch resp.StatusCode {
	case http.StatusBadRequest:
		code = bot.CodeInvalid
	case http.StatusUnauthorized, http.StatusForbidden:
		code = bot.CodeForbidden
	case http.StatusNotFound:
		code = bot.CodeNotFound
	case http.StatusConflict, http.StatusPreconditionFailed:
		code = bot.CodeConflict
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		code = bot.CodeUnavailable
	}
	msg := fmt.Sprintf("botframework: %s: connector answered %s", op, resp.Status)
	if env.Error.Code != "" || env.Error.Message != "" {
		msg += fmt.Sprintf(" (%s: %s)", env.Error.Code, env.Error.Message)
	}
	return &bot.Error{Code: code, Message: msg}
}
