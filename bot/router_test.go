package bot_test

import (
	"context"
	"testing"

	"github.com/upgradeapprovals/bot/bot"
)

// A message whose value names a card verb is a click (the Action.Submit
// twin of Action.Execute): the router hands it to the verb's handler, never
// to the message handler; a verb it does not know is another card's button.
func TestRouterRoutesTheSubmitTwinToItsVerb(t *testing.T) {
	r := bot.NewRouter()
	var messages []string
	var clicks []bot.CardAction
	r.OnType("message", func(_ context.Context, t *bot.Turn) (*bot.InvokeResponse, error) {
		messages = append(messages, t.Text)
		return nil, nil
	})
	r.OnVerb("approve", func(_ context.Context, t *bot.Turn) (*bot.InvokeResponse, error) {
		clicks = append(clicks, *t.CardAction)
		return nil, nil
	})
	for _, value := range []string{`{"verb":"approve","approvalId":"apr_1"}`, `{"verb":"vote","choice":"yes"}`} {
		a := decode(t, `{"type":"message","id":"m1","conversation":{"id":"19:x"},"value":`+value+`}`)
		if _, err := r.Route(context.Background(), &bot.Turn{Activity: a, Text: "words"}); err != nil {
			t.Fatal(err)
		}
	}
	if len(clicks) != 1 || clicks[0].Verb != "approve" || clicks[0].Data.ApprovalID != "apr_1" || !clicks[0].Submit {
		t.Errorf("clicks %+v, want one submitted approve of apr_1", clicks)
	}
	if len(messages) != 0 {
		t.Errorf("the message handler got card clicks: %q", messages)
	}
	a := decode(t, `{"type":"message","id":"m2","conversation":{"id":"19:x"},"text":"check"}`)
	if _, err := r.Route(context.Background(), &bot.Turn{Activity: a, Text: "check"}); err != nil || len(messages) != 1 {
		t.Errorf("a message without a card verb: %q %v", messages, err)
	}
}
