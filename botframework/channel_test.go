package botframework_test

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upgradeapprovals/bot/botframework"
)

// Web Chat, Direct Line and the Emulator let the client pick its own
// from.aadObjectId, tenant and channelData: a member who saw a card could
// approve as an owner. Their keys are genuinely endorsed by the Bot
// Framework, so only the channel id can keep them out.
func TestOnlyTeamsActivitiesReachTheBot(t *testing.T) {
	for _, channel := range []string{"webchat", "directline", "emulator", "skype", "MSTeams", ""} {
		t.Run("channel "+channel, func(t *testing.T) {
			f := newFixture(t)
			f.channel.Endorse("msteams", "webchat", "directline", "emulator", "skype", "MSTeams", "")
			a := activity()
			a["channelId"] = channel
			a["type"] = "invoke"
			a["name"] = "adaptiveCard/action"
			a["value"] = map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
				"data": map[string]any{"approvalId": "a1"}}}
			w := f.post(t, "Bearer "+f.channel.Token(t), a)
			if w.Code != http.StatusForbidden {
				t.Fatalf("status %d, want 403", w.Code)
			}
			if f.bot.count() != 0 {
				t.Error("a non-Teams activity reached the bot")
			}
			if got := rejections(t, f.reg, botframework.ReasonChannel); got != 1 {
				t.Errorf("auth rejection metric for %q = %v, want 1", botframework.ReasonChannel, got)
			}
			if len(f.trust.urls) != 0 {
				t.Errorf("a non-Teams activity's service URL became trusted: %v", f.trust.urls)
			}
		})
	}
	// The same key and token with channelId msteams is accepted.
	f := newFixture(t)
	f.channel.Endorse("msteams", "webchat")
	if w := f.post(t, "Bearer "+f.channel.Token(t), activity()); w.Code != http.StatusOK {
		t.Fatalf("msteams: status %d, want 200", w.Code)
	}
}

// With authentication off (local runs) the channel is still checked: the
// Agents Playground sends msteams, anything else is refused.
func TestLocalModeRefusesOtherChannels(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec, trust := &recorder{}, &memTrust{}
	h, err := botframework.NewServer(botframework.ServerOptions{Bot: rec, Trust: trust, Metrics: botframework.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{handler: h, bot: rec, reg: reg, trust: trust}
	a := activity()
	a["channelId"] = "emulator"
	if w := f.post(t, "", a); w.Code != http.StatusForbidden {
		t.Fatalf("emulator: status %d, want 403", w.Code)
	}
	if rec.count() != 0 || len(trust.urls) != 0 {
		t.Fatal("an emulator activity reached the bot or the trust store")
	}
	if got := rejections(t, reg, botframework.ReasonChannel); got != 1 {
		t.Errorf("channel rejections %v, want 1", got)
	}
	if w := f.post(t, "", activity()); w.Code != http.StatusOK {
		t.Fatalf("msteams: status %d, want 200", w.Code)
	}
	if rec.count() != 1 {
		t.Fatalf("bot got %d activities, want 1", rec.count())
	}
}
