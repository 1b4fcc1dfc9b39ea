package cards_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/cards"
)

// BenchmarkPendingCard builds and encodes the card of an upgrade that adds,
// removes and keeps ten permissions each, as a reply sends it.
func BenchmarkPendingCard(b *testing.B) {
	c, err := cards.New()
	if err != nil {
		b.Fatal(err)
	}
	var d cards.Diff
	for i := range 10 {
		d.Added = append(d.Added, cards.Permission{Value: fmt.Sprintf("ChatMessage.Read%d.Chat", i), Type: "application"})
		d.Removed = append(d.Removed, cards.Permission{Value: fmt.Sprintf("ChatSettings.Read%d.Chat", i), Type: "application"})
		d.Kept = append(d.Kept, cards.Permission{Value: fmt.Sprintf("OnlineMeeting.ReadBasic%d.Chat", i), Type: "delegated"})
	}
	view := cards.PendingUpgrade{Locale: "en-US", ApprovalID: "apr_0123456789abcdef01234567",
		App:  cards.App{Name: "Polls", ShortDescription: "Quick polls", FromVersion: "1.0.0", ToVersion: "1.1.0"},
		Diff: d, Place: cards.PlaceChat, Approvers: cards.ApproversOwners, RequestedAt: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(c.Pending(view)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHelpCard is the reply to "help", the bench's lightest work unit.
func BenchmarkHelpCard(b *testing.B) {
	c, err := cards.New()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(c.Help("zh-CN")); err != nil {
			b.Fatal(err)
		}
	}
}
