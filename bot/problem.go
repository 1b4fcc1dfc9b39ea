package bot

import (
	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// problemView is what went wrong, for the cards to word.
func problemView(p approval.Problem) cards.Problem {
	return cards.Problem{Reason: string(p.Reason), Permission: p.Permission, Status: p.Status, GraphCode: p.GraphCode,
		GraphMessage: p.GraphMessage, InstalledVersion: p.InstalledVersion, Text: p.Text}
}
