package botframework

import (
	"net/http"

	"github.com/upgradeapprovals/bot/bot"
)

// httpStatuses is the one table between the domain's error codes and HTTP
// statuses: the endpoint's answer to a failed activity, the statusCode of an
// error invoke response, and the connector's answers read back as codes
// (status or one of its aliases).
var httpStatuses = []struct {
	code    bot.Code
	status  int
	aliases []int
}{
	{bot.CodeInvalid, http.StatusBadRequest, nil},
	{bot.CodeForbidden, http.StatusForbidden, []int{http.StatusUnauthorized}},
	{bot.CodeNotFound, http.StatusNotFound, []int{http.StatusGone}},
	{bot.CodeConflict, http.StatusConflict, []int{http.StatusPreconditionFailed}},
	{bot.CodeUnavailable, http.StatusServiceUnavailable, []int{http.StatusTooManyRequests, http.StatusBadGateway, http.StatusGatewayTimeout}},
	{bot.CodeInternal, http.StatusInternalServerError, nil},
}

// statusOf is the HTTP status that answers an error of this code: 5xx for
// what may pass on a retry (the channel redelivers), 4xx for what will not.
// Unknown codes are 500.
func statusOf(c bot.Code) int {
	for _, s := range httpStatuses {
		if s.code == c {
			return s.status
		}
	}
	return http.StatusInternalServerError
}

// codeOf classifies an HTTP error status; CodeInternal for any status the
// table does not name.
func codeOf(status int) bot.Code {
	for _, s := range httpStatuses {
		if s.status == status {
			return s.code
		}
		for _, a := range s.aliases {
			if a == status {
				return s.code
			}
		}
	}
	return bot.CodeInternal
}

// Universal Actions response types: an invoke's answer is a card that
// replaces the one clicked, or an error Teams shows the clicker.
const (
	ResponseTypeCard  = "application/vnd.microsoft.card.adaptive"
	ResponseTypeError = "application/vnd.microsoft.error"
)

// InvokeBody is an adaptiveCard/action invoke's synchronous answer as Teams
// reads it: {"statusCode","type","value"}. Both kinds travel with HTTP 200;
// a refusal's statusCode comes from its code. Nil for no answer (a bare 200).
func InvokeBody(r *bot.InvokeResponse) any {
	switch {
	case r == nil:
		return nil
	case r.Card != nil:
		return invokeBody{StatusCode: http.StatusOK, Type: ResponseTypeCard, Value: r.Card}
	case r.Refusal != nil:
		return invokeBody{StatusCode: statusOf(r.Refusal.Code), Type: ResponseTypeError,
			Value: invokeError{Code: r.Refusal.Reason, Message: r.Refusal.Message}}
	}
	return nil
}

type invokeBody struct {
	StatusCode int    `json:"statusCode"`
	Type       string `json:"type"`
	Value      any    `json:"value"`
}

type invokeError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
