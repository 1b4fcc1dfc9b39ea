package botframework

import (
	"net/http"

	"github.com/upgradeapprovals/bot/bot"
)

// statuses is the one table between the domain's error codes and HTTP
// statuses: the endpoint answers a failed activity with status, and the
// connector reads status (or one of its aliases) back as the code.
var statuses = []struct {
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

// HTTPStatus is the HTTP status that answers an error of this code: 5xx for
// what may pass on a retry, 4xx for what will not. Unknown codes are 500.
func HTTPStatus(code bot.Code) int {
	for _, s := range statuses {
		if s.code == code {
			return s.status
		}
	}
	return http.StatusInternalServerError
}

// CodeOf classifies an HTTP error status: CodeInternal for any status the
// table does not name.
func CodeOf(status int) bot.Code {
	for _, s := range statuses {
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
