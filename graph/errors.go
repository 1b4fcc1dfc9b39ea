package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

// APIError is a failed Graph call: the HTTP status, Graph's error code and
// message (either may be empty: Graph sends 403 UnknownError with no
// message), and what an admin can do about it.
type APIError struct {
	Op      string // what the bot was doing, e.g. "upgrade app in chat"
	Status  int    // HTTP status; 0 when no response arrived
	Code    string // Graph's error.code
	Message string // Graph's error.message
	// Permission is the Graph application permission that grants Op, named
	// on 403 so the admin knows what to grant.
	Permission string
	// RetryAfter is how long Graph asked the caller to wait (its
	// Retry-After header); 0 when it did not say.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("graph: %s: %d %s", e.Op, e.Status, http.StatusText(e.Status))
	if e.Code != "" || e.Message != "" {
		s += fmt.Sprintf(" (%s: %s)", e.Code, e.Message)
	}
	return s
}

// Problem is what went wrong, as facts the cards word in the reader's
// language (approval.ProblemOf finds it in the chain).
func (e *APIError) Problem() approval.Problem {
	_, reason, _ := assess(e)
	p := approval.Problem{Reason: reason, Status: e.Status, GraphCode: e.Code, GraphMessage: e.Message}
	if reason == approval.ReasonGraphRefused {
		p.Permission = e.Permission
	}
	return p
}

// Throttled reports a 429 that the client did not wait out itself (its
// retries were spent, or Graph asked for longer than Options.MaxRetryWait)
// and the wait Graph asked for, so a background job is delayed by exactly
// that rather than dropped (bot.Throttled).
func (e *APIError) Throttled() (time.Duration, bool) {
	return e.RetryAfter, e.Status == http.StatusTooManyRequests
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110); 0 when absent, unreadable or past.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		switch {
		case !(secs > 0): // zero, negative, NaN
			return 0
		case secs >= maxRetryAfter.Seconds():
			return maxRetryAfter
		}
		return time.Duration(secs * float64(time.Second))
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return min(at.Sub(now), maxRetryAfter)
	}
	return 0
}

// maxRetryAfter caps a Retry-After: a job is never parked for more than a
// day by one answer.
const maxRetryAfter = 24 * time.Hour

// responseHeaders returns the headers of the response an SDK error came
// from (kiota keeps them on ApiError and ODataError).
func responseHeaders(err error) http.Header {
	var withHeaders interface {
		GetResponseHeaders() *abstractions.ResponseHeaders
	}
	h := http.Header{}
	if !errors.As(err, &withHeaders) || withHeaders.GetResponseHeaders() == nil {
		return h
	}
	rh := withHeaders.GetResponseHeaders()
	for _, k := range rh.ListKeys() {
		for _, v := range rh.Get(k) {
			h.Add(k, v)
		}
	}
	return h
}

// translate turns an SDK error into a *bot.Error whose code callers test
// and whose message, for the log, tells an operator what to do; the
// *APIError stays in the chain for errors.As, and with it the
// approval.Problem the cards word. Nothing above this package sees an SDK
// error type.
func translate(err error, op, permission string) error {
	if err == nil {
		return nil
	}
	var te *tokenError
	if errors.As(err, &te) {
		return te.translate(op)
	}
	ae := &APIError{Op: op, Permission: permission}
	var odata *odataerrors.ODataError
	var api *abstractions.ApiError
	switch {
	case errors.As(err, &odata):
		ae.Status = odata.ResponseStatusCode
		// ODataError.Error() dereferences a nil message: read the parts.
		if main := odata.GetErrorEscaped(); main != nil {
			ae.Code = deref(main.GetCode())
			ae.Message = deref(main.GetMessage())
		}
	case errors.As(err, &api):
		ae.Status = api.ResponseStatusCode
		ae.Message = api.Message
	default:
		return &bot.Error{Code: bot.CodeUnavailable, Message: "graph: " + op + ": Microsoft Graph unreachable", Err: &noAnswer{err}}
	}
	ae.RetryAfter = retryAfter(responseHeaders(err), time.Now())
	code, _, hint := assess(ae)
	return &bot.Error{Code: code, Message: ae.Error() + hint, Err: ae}
}

// assess maps a Graph failure to the domain's code, the reason the cards
// word, and what an operator reading the log can do about it.
func assess(e *APIError) (bot.Code, approval.Reason, string) {
	switch {
	case e.Status == http.StatusBadRequest:
		return bot.CodeInvalid, approval.ReasonUnexpected, ""
	case e.Status == http.StatusUnauthorized:
		return bot.CodeForbidden, approval.ReasonTokenRefused, ": the app's Graph token was refused; check MicrosoftAppId, its secret and the tenant"
	case e.Status == http.StatusForbidden && blockedByAdmin(e.Message):
		return bot.CodeForbidden, approval.ReasonAppBlocked, ": the tenant admin blocked the app; a Teams admin can allow it in the Teams admin center"
	case e.Status == http.StatusForbidden:
		hint := ": Graph refused the call"
		if e.Permission != "" {
			hint += "; an admin must grant the application permission " + e.Permission + " with admin consent"
		}
		return bot.CodeForbidden, approval.ReasonGraphRefused, hint
	case e.Status == http.StatusNotFound:
		return bot.CodeNotFound, approval.ReasonNotFound, ": the chat, team, user or installation is gone, or the catalog app was re-uploaded under a new id"
	case e.Status == http.StatusConflict:
		return bot.CodeConflict, approval.ReasonUnexpected, ""
	case e.Status == http.StatusPreconditionFailed:
		return bot.CodeForbidden, approval.ReasonConsentNotAllowed, ": the tenant does not let this consent be granted (resource-specific consent may be turned off for chats, teams or users)"
	case e.Status == http.StatusTooManyRequests:
		return bot.CodeUnavailable, approval.ReasonThrottled, ": Graph is throttling; try again shortly"
	case e.Status >= 500:
		return bot.CodeUnavailable, approval.ReasonGraphUnavailable, ""
	}
	return bot.CodeInternal, approval.ReasonUnexpected, ""
}

// blockedByAdmin reports Graph's 403 for an app the tenant admin blocked
// ("… is explicitly blocked by the tenant admin", as public reports of the
// Teams app installation APIs show it).
func blockedByAdmin(message string) bool {
	return strings.Contains(strings.ToLower(message), "blocked by the tenant admin")
}

// noAnswer is a Graph call that got no answer: the connection failed or
// the deadline passed.
type noAnswer struct{ err error }

func (e *noAnswer) Error() string { return e.err.Error() }
func (e *noAnswer) Unwrap() error { return e.err }

// Problem is what went wrong, for the cards: Graph could not be reached.
func (e *noAnswer) Problem() approval.Problem {
	return approval.Problem{Reason: approval.ReasonGraphUnavailable}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// tokenSource tags the failures of the app's credential, so that they are
// told apart from Graph's own and never shown raw: Entra ID's answer names
// the tenant, the app and its trace ids, and lands in a chat as the reason a
// check or an upgrade failed. The raw answer is logged instead.
type tokenSource struct {
	cred   azcore.TokenCredential
	tenant string
	logger *slog.Logger
}

func (s tokenSource) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := s.cred.GetToken(ctx, o)
	if err != nil {
		s.logger.WarnContext(ctx, "cannot get a Microsoft Graph token", "tenant", s.tenant, "err", err)
		return tok, &tokenError{err: err}
	}
	return tok, nil
}

// tokenError is a failure to get a Graph token. Its text is what an admin
// can act on; the credential's error stays in the chain for errors.As.
type tokenError struct{ err error }

func (e *tokenError) Error() string {
	if e.refused() {
		return "the bot cannot get a Microsoft Graph token for this tenant: check MicrosoftAppId, its secret or certificate, and that an admin consented to the app in this tenant"
	}
	return "the bot cannot get a Microsoft Graph token: Microsoft Entra ID is unreachable or failing; try again shortly"
}

func (e *tokenError) Unwrap() error { return e.err }

// Problem is what went wrong, for the cards: Entra ID refused the
// credential, or failed to answer.
func (e *tokenError) Problem() approval.Problem {
	if e.refused() {
		return approval.Problem{Reason: approval.ReasonCredentialRefused}
	}
	return approval.Problem{Reason: approval.ReasonEntraUnavailable}
}

// refused reports a failure that the configuration causes and only an
// admin can end: Entra ID refused the app's credential (a wrong or expired
// secret, an unknown app, no consent in the tenant), or the credential
// cannot be used here at all (no managed identity, no token file). No
// answer, a 5xx or a 429 is Entra ID's trouble, and passes.
func (e *tokenError) refused() bool {
	if errors.Is(e.err, context.Canceled) || errors.Is(e.err, context.DeadlineExceeded) {
		return false
	}
	var failed *azidentity.AuthenticationFailedError
	if errors.As(e.err, &failed) {
		r := failed.RawResponse
		return r != nil && r.StatusCode < 500 && r.StatusCode != http.StatusTooManyRequests
	}
	// azidentity's credential-unavailable errors (unexported) are marked
	// as not worth retrying.
	var unavailable interface{ NonRetriable() }
	return errors.As(e.err, &unavailable)
}

func (e *tokenError) translate(op string) error {
	code := bot.CodeUnavailable
	if e.refused() {
		code = bot.CodeForbidden
	}
	// Message holds e's text, so bot.Error's text leaves the cause out.
	return &bot.Error{Code: code, Message: "graph: " + op + ": " + e.Error(), Err: e}
}
