package bot_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

var (
	chatMsg = approval.Permission{Value: "ChatMessage.Read.Chat", Type: "application"}
	meeting = approval.Permission{Value: "OnlineMeeting.ReadBasic.Chat", Type: "delegated"}
)

func def(app, id, version, state string, perms ...approval.Permission) approval.AppDefinition {
	return approval.AppDefinition{ID: id, TeamsAppID: app, Version: version, PublishingState: state, Permissions: perms}
}

// TestMayUpgradeRefusesWithACode: the domain decides whether an approved
// upgrade may still go ahead (approval's TestMayUpgrade covers each case);
// the application gives each refusal the code its answer carries.
func TestMayUpgradeRefusesWithACode(t *testing.T) {
	chat := approval.Scope{Kind: approval.ScopeChat, ID: "19:x@thread.v2"}
	approved := approval.PendingUpgrade{
		Installation: approval.Installation{ID: "i1", Scope: chat, TeamsAppID: "polls", DisplayName: "Polls",
			Definition: approval.AppDefinition{Version: "1.0.0"}},
		Target: def("polls", "p2", "1.1.0", "published", chatMsg),
	}
	at := func(v string) approval.Installation {
		in := approved.Installation
		in.Definition.Version = v
		return in
	}
	for _, tc := range []struct {
		name    string
		catalog []approval.AppDefinition
		now     approval.Installation
		want    error // nil, or a sentinel for errors.Is
		code    bot.Code
	}{
		{"as approved", []approval.AppDefinition{def("polls", "p1", "1.0.0", "published"), approved.Target,
			def("polls", "p3", "1.2.0", "submitted")}, at("1.0.0"), nil, ""},
		{"upgraded elsewhere", []approval.AppDefinition{approved.Target}, at("1.1.0"), approval.ErrAlreadyUpgraded, bot.CodeConflict},
		{"same version, other permissions", []approval.AppDefinition{def("polls", "p2", "1.1.0", "published", chatMsg, meeting)},
			at("1.0.0"), approval.ErrSuperseded, bot.CodeConflict},
		{"no longer published", []approval.AppDefinition{def("polls", "p2", "1.1.0", "rejected", chatMsg)},
			at("1.0.0"), bot.ErrNotFound, bot.CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := bot.MayUpgrade(approved, tc.catalog, tc.now)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || bot.ErrorCode(err) != tc.code {
				t.Fatalf("err %v (code %s), want %v with code %s", err, bot.ErrorCode(err), tc.want, tc.code)
			}
		})
	}
}

// "check" reads the installed apps and then the catalog definitions of all
// of them at once, however many there are; an approval reads who may
// approve, the catalog and the installation, then upgrades. Each call
// carries the command, for the per-command Graph request metric.
func TestGraphCallsPerCommand(t *testing.T) {
	apps := make([]string, 30)
	for i := range apps {
		apps[i] = fmt.Sprintf("App %d", i)
	}
	f := newFlow(t, approval.ApproverPolicy{Owners: true}, apps...)
	f.say("check")
	if want := []string{"Installed check", "Definitions check"}; !slices.Equal(f.graph.calls, want) {
		t.Fatalf("check called %v, want %v", f.graph.calls, want)
	}
	all := f.state.Approvals()
	if n := len(all); n != 30 {
		t.Fatalf("%d approvals, want 30", n)
	}
	var id string
	for _, a := range all {
		if a.Upgrade.Installation.ID == "inst-7" {
			id = a.ID
		}
	}
	f.graph.calls = nil
	if resp := f.click("approve", id, owner); !strings.Contains(resp, "was upgraded") {
		t.Fatalf("approve: %s", resp)
	}
	got := slices.Clone(f.graph.calls)
	slices.Sort(got[:len(got)-1]) // the catalog and the installation are read at once
	if want := []string{"Definitions approve", "Installation approve", "Membership approve", "Upgrade approve"}; !slices.Equal(got, want) {
		t.Errorf("approve called %v, want %v", f.graph.calls, want)
	}
}
