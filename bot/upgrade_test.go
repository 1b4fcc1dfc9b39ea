package bot_test

import (
	"reflect"
	"testing"

	"github.com/upgradeapprovals/bot/bot"
)

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.10.0", "1.9.0", 1},
		{"1.2", "1.2.0", 0},
		{"1.2", "1.2.1", -1},
		{"2.0.0", "10.0.0", -1},
		{"1.0.0-beta", "1.0.0-alpha", 1},
		{"1.0.0", "1.0.0", 0},
	} {
		if got := bot.CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestDiffPermissionsIgnoresTypeCase(t *testing.T) {
	consented := []bot.Permission{
		{Value: "ChatMessage.Read.Chat", Type: "application"},
		{Value: "ChatSettings.Read.Chat", Type: "application"},
	}
	required := []bot.Permission{
		{Value: "ChatMessage.Read.Chat", Type: "Application"},
		{Value: "OnlineMeeting.ReadBasic.Chat", Type: "Delegated"},
		{Value: "ChatMessage.Read.Chat", Type: "Delegated"},
	}
	d := bot.DiffPermissions(consented, required)
	want := bot.PermissionDiff{
		Added: []bot.Permission{
			{Value: "ChatMessage.Read.Chat", Type: "Delegated"},
			{Value: "OnlineMeeting.ReadBasic.Chat", Type: "Delegated"},
		},
		Removed: []bot.Permission{{Value: "ChatSettings.Read.Chat", Type: "application"}},
		Kept:    []bot.Permission{{Value: "ChatMessage.Read.Chat", Type: "Application"}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("diff\n got %+v\nwant %+v", d, want)
	}
	if !d.Changed() {
		t.Error("Changed() is false")
	}
	if bot.DiffPermissions(consented, consented).Changed() {
		t.Error("a set differs from itself")
	}
	if !bot.SamePermissions(consented, []bot.Permission{{Value: "chatsettings.read.chat", Type: "APPLICATION"}, consented[0]}) {
		t.Error("SamePermissions is case-sensitive")
	}
}
