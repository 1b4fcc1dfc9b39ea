package bot_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

// FuzzCardAction sends any value as a card action (an Action.Execute
// invoke, and the Action.Submit twin as a message) to a bot with one open
// approval; "$ID" in the value stands for its id. Nothing may panic or
// fail: a malformed action is answered with a 4xx invoke error, a valid one
// with a card. Seeds: testdata/fuzz/FuzzCardAction.
func FuzzCardAction(f *testing.F) {
	f.Add([]byte(`{"action":{"type":"Action.Execute","verb":"approve","data":{"approvalId":"$ID"}}}`))
	f.Add([]byte(`{"action":{"type":"Action.Execute","verb":"approveAll","data":{"approvalId":"bat_0"}}}`))
	f.Add([]byte(`{"verb":"reject","approvalId":"$ID"}`))
	f.Add([]byte(`{"action":{"verb":"review","data":"$ID"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, value []byte) {
		fl := newFlow(t, approval.ApproverPolicy{Owners: true}, "Polls", "Tasks")
		fl.say("check")
		var id string
		for _, a := range fl.state.Approvals() {
			id = a.ID
		}
		value = bytes.ReplaceAll(value, []byte("$ID"), []byte(id))
		raw := json.RawMessage(value)
		if !json.Valid(value) {
			raw, _ = json.Marshal(string(value))
		}
		invoke := fl.activity(map[string]any{"type": "invoke", "name": "adaptiveCard/action", "replyToId": "reply-1"})
		invoke.Value = raw
		resp, err := fl.bot.Handle(context.Background(), invoke)
		if err != nil {
			t.Fatalf("invoke with value %s: %v", value, err)
		}
		// A card, or a refusal whose code is a client's error (4xx).
		if got := answer(resp); !strings.HasPrefix(got, "card ") && !refusedWith(got, bot.CodeInvalid) &&
			!refusedWith(got, bot.CodeNotFound) && !refusedWith(got, bot.CodeForbidden) && !refusedWith(got, bot.CodeConflict) {
			t.Fatalf("invoke with value %s answered %q", value, got)
		}
		submit := fl.activity(map[string]any{"type": "message", "replyToId": "reply-1"})
		submit.Value = raw
		if _, err := fl.bot.Handle(context.Background(), submit); err != nil {
			t.Fatalf("submit with value %s: %v", value, err)
		}
		fl.drain()
		if n := fl.graph.upgradeCount(); n > 2 {
			t.Fatalf("%d upgrades for 2 apps", n)
		}
	})
}
