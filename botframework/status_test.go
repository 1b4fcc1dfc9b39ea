package botframework

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/cards"
)

// One table maps codes to statuses and back, for the endpoint, invoke
// errors and the connector alike.
func TestHTTPStatusTable(t *testing.T) {
	for code, status := range map[bot.Code]int{
		bot.CodeInvalid: 400, bot.CodeForbidden: 403, bot.CodeNotFound: 404, bot.CodeConflict: 409,
		bot.CodeUnavailable: 503, bot.CodeInternal: 500, bot.Code("whatever"): 500,
	} {
		if got := statusOf(code); got != status {
			t.Errorf("%s: %d, want %d", code, got, status)
		}
		if code != "whatever" && codeOf(status) != code {
			t.Errorf("%d reads back as %s, want %s", status, codeOf(status), code)
		}
	}
	for status, code := range map[int]bot.Code{
		http.StatusUnauthorized: bot.CodeForbidden, http.StatusPreconditionFailed: bot.CodeConflict,
		http.StatusTooManyRequests: bot.CodeUnavailable, http.StatusBadGateway: bot.CodeUnavailable,
		http.StatusGatewayTimeout: bot.CodeUnavailable, http.StatusGone: bot.CodeNotFound, 418: bot.CodeInternal,
	} {
		if got := codeOf(status); got != code {
			t.Errorf("%d: %s, want %s", status, got, code)
		}
	}
}

// What Teams receives for each kind of answer, byte for byte.
func TestInvokeBody(t *testing.T) {
	for _, c := range []struct {
		resp *bot.InvokeResponse
		want string
	}{
		{nil, `null`},
		{bot.InvokeCard(cards.Card{Type: "AdaptiveCard", Version: "1.5"}),
			`{"statusCode":200,"type":"application/vnd.microsoft.card.adaptive","value":{"type":"AdaptiveCard","$schema":"","version":"1.5","body":null}}`},
		{bot.Refuse(bot.CodeUnavailable, "NotConfigured", "Graph is not configured"),
			`{"statusCode":503,"type":"application/vnd.microsoft.error","value":{"code":"NotConfigured","message":"Graph is not configured"}}`},
		{bot.Refuse(bot.CodeForbidden, "", "no"),
			`{"statusCode":403,"type":"application/vnd.microsoft.error","value":{"code":"forbidden","message":"no"}}`},
	} {
		got, err := json.Marshal(InvokeBody(c.resp))
		if err != nil || string(got) != c.want {
			t.Errorf("%+v rendered %s (%v), want %s", c.resp, got, err, c.want)
		}
	}
}
