package bot_test

import (
	"encoding/json"
	"fmt"

	"github.com/upgradeapprovals/bot/bot"
)

// answer shows a card action's answer for assertions, as the clicker gets
// it: "card " and the card as JSON, "refused <code> <reason>: <message>",
// or "" for no answer.
func answer(r *bot.InvokeResponse) string {
	switch {
	case r == nil:
		return ""
	case r.Card != nil:
		j, err := json.Marshal(r.Card)
		if err != nil {
			return fmt.Sprintf("card that does not encode: %v", err)
		}
		return "card " + string(j)
	case r.Refusal != nil:
		return fmt.Sprintf("refused %s %s: %s", r.Refusal.Code, r.Refusal.Reason, r.Refusal.Message)
	}
	return ""
}

// refusedWith reports whether an answer (see answer) refuses with code.
func refusedWith(answer string, code bot.Code) bool {
	var got bot.Code
	_, err := fmt.Sscanf(answer, "refused %s ", &got)
	return err == nil && got == code
}
