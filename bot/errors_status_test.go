package bot_test

import (
	"net/http"
	"testing"

	"github.com/upgradeapprovals/bot/bot"
)

// One table maps codes to statuses and back, for the endpoint, invoke
// errors and the connector alike.
func TestHTTPStatusTable(t *testing.T) {
	for code, status := range map[bot.Code]int{
		bot.CodeInvalid: 400, bot.CodeForbidden: 403, bot.CodeNotFound: 404, bot.CodeConflict: 409,
		bot.CodeUnavailable: 503, bot.CodeInternal: 500, bot.Code("whatever"): 500,
	} {
		if got := code.HTTPStatus(); got != status {
			t.Errorf("%s: %d, want %d", code, got, status)
		}
		if code != "whatever" && bot.CodeOfHTTPStatus(status) != code {
			t.Errorf("%d reads back as %s, want %s", status, bot.CodeOfHTTPStatus(status), code)
		}
	}
	for status, code := range map[int]bot.Code{
		http.StatusUnauthorized: bot.CodeForbidden, http.StatusPreconditionFailed: bot.CodeConflict,
		http.StatusTooManyRequests: bot.CodeUnavailable, http.StatusBadGateway: bot.CodeUnavailable,
		http.StatusGatewayTimeout: bot.CodeUnavailable, http.StatusGone: bot.CodeNotFound, 418: bot.CodeInternal,
	} {
		if got := bot.CodeOfHTTPStatus(status); got != code {
			t.Errorf("%d: %s, want %s", status, got, code)
		}
	}
}
