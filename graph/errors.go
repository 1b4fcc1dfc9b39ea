package graph

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

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
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("graph: %s: %d %s", e.Op, e.Status, http.StatusText(e.Status))
	if e.Code != "" || e.Message != "" {
		s += fmt.Sprintf(" (%s: %s)", e.Code, e.Message)
	}
	return s
}

// Throttled reports a 429 that outlasted the SDK's own retries (which
// honour Retry-After), so a background job is delayed rather than dropped
// (bot.Throttled); the wait is the job's to choose.
func (e *APIError) Throttled() (time.Duration, bool) {
	return 0, e.Status == http.StatusTooManyRequests
}

// translate turns an SDK error into a *bot.Error whose code callers test
// and whose message tells an admin what to do; the *APIError stays in the
// chain for errors.As. Nothing above this package sees an SDK error type.
func translate(err error, op, permission string) error {
	if err == nil {
		return nil
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
		return &bot.Error{Code: bot.CodeUnavailable, Message: "graph: " + op + ": Microsoft Graph unreachable", Err: err}
	}
	code, hint := codeAndHint(ae)
	return &bot.Error{Code: code, Message: ae.Error() + hint, Err: ae}
}

// codeAndHint maps a Graph failure to the domain's code and what an admin
// can do about it. (Retry-After needs no parsing here: the SDK's retry
// handler honours it before an error gets this far.)
func codeAndHint(e *APIError) (bot.Code, string) {
	switch {
	case e.Status == http.StatusBadRequest:
		return bot.CodeInvalid, ""
	case e.Status == http.StatusUnauthorized:
		return bot.CodeForbidden, ": the app's Graph token was refused; check MicrosoftAppId, its secret and the tenant"
	case e.Status == http.StatusForbidden:
		hint := ": Graph refused the call"
		if e.Permission != "" {
			hint += "; an admin must grant the application permission " + e.Permission + " with admin consent"
		}
		return bot.CodeForbidden, hint
	case e.Status == http.StatusNotFound:
		return bot.CodeNotFound, ": the chat, team, user or installation is gone, or the catalog app was re-uploaded under a new id"
	case e.Status == http.StatusConflict:
		return bot.CodeConflict, ""
	case e.Status == http.StatusPreconditionFailed:
		return bot.CodeForbidden, ": the tenant does not let this consent be granted (resource-specific consent may be turned off for chats, teams or users)"
	case e.Status == http.StatusTooManyRequests:
		return bot.CodeUnavailable, ": Graph is throttling; try again shortly"
	case e.Status >= 500:
		return bot.CodeUnavailable, ""
	}
	return bot.CodeInternal, ""
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
