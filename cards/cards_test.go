package cards_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/upgradeapprovals/bot/cards"
	"github.com/upgradeapprovals/bot/internal/nodetest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

var (
	requested = time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)
	decided   = time.Date(2026, 11, 23, 14, 5, 0, 0, time.UTC)
)

var polls = cards.App{Name: "Polls", ShortDescription: "Quick polls in chats and meetings",
	FromVersion: "1.0.0", ToVersion: "1.1.0"}

// craftedPermission is a permission value a custom app's manifest could
// carry: markdown for a link.
var craftedPermission = cards.Permission{Value: "[Approve here](https://evil.example/rsc)", Type: "application"}

var pollsDiff = cards.Diff{
	Added: []cards.Permission{
		{Value: "ChatMessage.Read.Chat", Type: "application"},
		{Value: "OnlineMeeting.ReadBasic.Chat", Type: "Delegated"},
	},
	Removed: []cards.Permission{{Value: "ChatSettings.Read.Chat", Type: "application"}},
	Kept:    []cards.Permission{{Value: "TeamsActivity.Send.Chat", Type: "application"}, {Value: "ChatMember.Read.Chat", Type: "application"}},
}

// manyPermissions is 40 added permissions: every known one for chats and
// teams, then unknown ones.
func manyPermissions() []cards.Permission {
	known := []string{"Channel.Create.Group", "Channel.Delete.Group", "ChannelMeeting.ReadBasic.Group", "ChannelMeetingParticipant.Read.Group",
		"ChannelMeetingRecording.Read.Group", "ChannelMeetingTranscript.Read.Group", "ChannelMessage.Read.Group", "ChannelMessage.Send.Group",
		"ChannelSettings.Read.Group", "ChannelSettings.ReadWrite.Group", "TeamMember.Read.Group", "TeamSettings.Read.Group",
		"TeamSettings.ReadWrite.Group", "TeamsTab.Create.Group", "TeamsTab.Delete.Group", "TeamsTab.Read.Group", "TeamsTab.ReadWrite.Group",
		"Calls.AccessMedia.Chat", "Calls.JoinGroupCalls.Chat", "ChatSettings.Read.Chat", "ChatSettings.ReadWrite.Chat", "ChatMessage.Read.Chat",
		"ChatMember.Read.Chat", "Chat.Manage.Chat", "TeamsTab.Read.Chat", "TeamsTab.Create.Chat", "OnlineMeetingTranscript.Read.Chat",
		"OnlineMeeting.ReadBasic.Chat", "OnlineMeetingRecording.Read.Chat", "OnlineMeetingAudioVideo.Stream.Chat", "CameraStream.Read.User",
		"MicrophoneStream.Read.User", "OutgoingVideoStream.Write.User", "TeamsActivity.Send.User", "TeamsAppInstallation.Read.User"}
	var ps []cards.Permission
	for _, v := range known {
		ps = append(ps, cards.Permission{Value: v, Type: "application"})
	}
	for i := len(ps); i < 40; i++ {
		ps = append(ps, cards.Permission{Value: fmt.Sprintf("Contoso.Future%d.Chat", i), Type: "delegated"})
	}
	return ps
}

// all builds every card the package can produce, edge cases included.
func all(c *cards.Cards, locale string) map[string]cards.Card {
	long := cards.App{Name: strings.Repeat("Contoso Enterprise Meeting Notes and Action Items Assistant ", 3),
		ShortDescription: strings.Repeat("Takes notes, tracks action items and follows up after every meeting. ", 4),
		FromVersion:      "2.14.9", ToVersion: "2.15.0"}
	pending := func(app cards.App, d cards.Diff, place cards.Place, who cards.ApproverPolicy) cards.Card {
		return c.Pending(cards.PendingUpgrade{Locale: locale, ApprovalID: "apr_7Qm2x", App: app, Diff: d, Place: place,
			Approvers: who, RequestedAt: requested})
	}
	outcome := func(k cards.OutcomeKind) cards.Outcome {
		return cards.Outcome{Locale: locale, Kind: k, ApprovalID: "apr_7Qm2x", App: polls, Diff: pollsDiff,
			By: "Megan Bowen", At: decided, Place: cards.PlaceChat, Approvers: cards.ApproversOwners}
	}
	needsAdmin := func(place cards.Place, p cards.Problem) cards.Card {
		return c.Pending(cards.PendingUpgrade{Locale: locale, ApprovalID: "apr_7Qm2x", App: polls,
			Diff: cards.Diff{Added: pollsDiff.Added}, Place: place, Approvers: cards.ApproversOwners, RequestedAt: requested,
			NeedsAdmin: &cards.WaitsForAdmin{Problem: p}})
	}
	failed := outcome(cards.OutcomeFailed)
	failed.Problem = cards.Problem{Reason: cards.ReasonGraphRefused, Status: 403, GraphCode: "Forbidden",
		GraphMessage: "Missing scope permissions on the request.", Permission: "TeamsAppInstallation.ReadWriteAndConsentForChat.All"}
	return map[string]cards.Card{
		"pending":             pending(polls, pollsDiff, cards.PlaceChat, cards.ApproversOwners),
		"pending-meeting":     pending(polls, pollsDiff, cards.PlaceMeeting, cards.ApproversOwners),
		"pending-team":        pending(polls, cards.Diff{Added: pollsDiff.Added}, cards.PlaceTeam, cards.ApproversOwners),
		"pending-personal":    pending(polls, cards.Diff{Removed: pollsDiff.Removed}, cards.PlacePersonal, cards.ApproversSelf),
		"pending-group":       pending(polls, pollsDiff, cards.PlaceChat, cards.ApproversGroup),
		"pending-no-change":   pending(polls, cards.Diff{Kept: pollsDiff.Kept}, cards.PlaceChat, cards.ApproversOwners),
		"pending-no-rsc":      pending(polls, cards.Diff{}, cards.PlaceChat, cards.ApproversNamed),
		"pending-40":          pending(polls, cards.Diff{Added: manyPermissions()}, cards.PlaceChat, cards.ApproversOwners),
		"pending-long":        pending(long, cards.Diff{Added: []cards.Permission{{Value: "Contoso.Notes.ReadWrite.Chat", Type: "Delegated"}}}, cards.PlaceChat, cards.ApproversOwners),
		"pending-needs-admin": needsAdmin(cards.PlaceChat, cards.Problem{Reason: cards.ReasonConsentPolicy}),
		"pending-needs-admin-refused": needsAdmin(cards.PlaceTeam, cards.Problem{Reason: cards.ReasonConsentNotAllowed, Status: 412,
			GraphCode: "PreconditionFailed", GraphMessage: "Failed to execute TeamsGraphService backend request IsUserAuthorizedToGrantGroupResourceSpecificPermissionsRequest. Workload Unknown"}),
		"pending-needs-admin-blocked": needsAdmin(cards.PlaceChat, cards.Problem{Reason: cards.ReasonAppBlocked, Status: 403,
			GraphCode: "Forbidden", GraphMessage: "App is explicitly blocked by the tenant admin."}),
		"outcome-upgraded":              c.Outcome(outcome(cards.OutcomeUpgraded)),
		"outcome-rejected":              c.Outcome(outcome(cards.OutcomeRejected)),
		"outcome-failed":                c.Outcome(failed),
		"outcome-expired":               c.Outcome(outcome(cards.OutcomeExpired)),
		"outcome-superseded":            c.Outcome(outcome(cards.OutcomeSuperseded)),
		"outcome-uptodate":              c.Outcome(outcome(cards.OutcomeUpToDate)),
		"outcome-notallowed":            c.Outcome(outcome(cards.OutcomeNotAllowed)),
		"outcome-upgrading":             c.Outcome(outcome(cards.OutcomeUpgrading)),
		"outcome-upgrading-unconfirmed": c.Outcome(retryAt(outcome(cards.OutcomeUpgrading), decided.Add(10*time.Minute))),
		"pending-meeting-organizer":     pending(polls, cards.Diff{Added: pollsDiff.Added}, cards.PlaceMeeting, cards.ApproversOrganizer),
		"pending-crafted-permission":    pending(polls, cards.Diff{Added: []cards.Permission{craftedPermission}}, cards.PlaceChat, cards.ApproversOwners),
		"list-upgrading": c.PendingList(cards.PendingList{Locale: locale, Place: cards.PlaceChat, Approvers: cards.ApproversOwners,
			Items: []cards.PendingItem{
				{ApprovalID: "apr_1", App: polls, Diff: pollsDiff, Status: cards.OutcomeUpgrading},
				{ApprovalID: "apr_2", App: cards.App{Name: "Tasks", FromVersion: "3.0", ToVersion: "3.1"}, Status: cards.OutcomeUpgraded},
				{ApprovalID: "apr_3", App: cards.App{Name: "Whiteboard", FromVersion: "1.9.0", ToVersion: "1.10.0"}, Status: cards.OutcomeFailed},
			}}),
		"list-pending": c.PendingList(cards.PendingList{Locale: locale, Place: cards.PlaceChat, Approvers: cards.ApproversOwners, BatchID: "bat_91xk",
			Items: []cards.PendingItem{
				{ApprovalID: "apr_1", App: polls, Diff: pollsDiff},
				{ApprovalID: "apr_2", App: cards.App{Name: "Tasks", FromVersion: "3.0", ToVersion: "3.1"}, Diff: cards.Diff{}},
				{ApprovalID: "apr_3", App: cards.App{Name: "Whiteboard", FromVersion: "1.9.0", ToVersion: "1.10.0"},
					Diff: cards.Diff{Kept: []cards.Permission{{Value: "MeetingStage.Write.Chat", Type: "delegated"}}}},
			}}),
		"list-uptodate": c.UpToDate(cards.UpToDate{Locale: locale, Place: cards.PlaceTeam,
			Apps: []cards.InstalledApp{{Name: "Polls", Version: "1.1.0"}, {Name: "Tasks", Version: "3.1"}}}),
		"list-uptodate-empty": c.UpToDate(cards.UpToDate{Locale: locale, Place: cards.PlacePersonal}),
		"help":                c.Help(locale),
		"history": c.History(cards.History{Locale: locale, Events: []cards.HistoryEvent{
			{At: decided, Kind: cards.OutcomeUpgraded, Actor: "Megan Bowen", App: "Polls", From: "1.0.0", To: "1.1.0"},
			{At: requested, Kind: cards.OutcomeRejected, Actor: "Alex Wilber", App: "Tasks", From: "3.0", To: "3.1"},
			{At: requested.Add(-time.Hour), Kind: cards.OutcomeFailed, App: "Whiteboard", From: "1.9.0", To: "1.10.0"},
			{At: requested.Add(-2 * time.Hour), Kind: cards.OutcomeExpired, App: "Polls", From: "0.9", To: "1.0.0"},
			{At: requested.Add(-3 * time.Hour), Kind: cards.OutcomeSuperseded, App: "Polls", From: "0.9", To: "0.9.5"},
			{At: requested.Add(-4 * time.Hour), Kind: cards.OutcomeUpToDate, Actor: "Megan Bowen", App: "Tasks", From: "2.9", To: "3.0"},
		}}),
		"history-empty":    c.History(cards.History{Locale: locale}),
		"welcome":          c.Welcome(cards.Welcome{Locale: locale, Place: cards.PlaceChat, Approvers: cards.ApproversOwners}),
		"welcome-team":     c.Welcome(cards.Welcome{Locale: locale, Place: cards.PlaceTeam, Approvers: cards.ApproversGroup}),
		"welcome-personal": c.Welcome(cards.Welcome{Locale: locale, Place: cards.PlacePersonal, Approvers: cards.ApproversSelf}),
		"welcome-quiet":    c.Welcome(cards.Welcome{Locale: locale, Place: cards.PlaceChat, Approvers: cards.ApproversOwners, Quiet: true}),
		"reminder": c.Reminder(cards.Reminder{Locale: locale, App: polls, Place: cards.PlaceChat, Approvers: cards.ApproversOwners,
			People:      []cards.Approver{{ID: "11111111-1111-1111-1111-111111111111", Name: "Megan Bowen"}, {ID: "22222222-2222-2222-2222-222222222222", Name: "Alex Wilber"}},
			RequestedAt: requested, ExpiresAt: requested.Add(7 * 24 * time.Hour)}),
		"reminder-nobody": c.Reminder(cards.Reminder{Locale: locale, App: polls, Place: cards.PlaceTeam, Approvers: cards.ApproversGroup,
			RequestedAt: requested, ExpiresAt: requested.Add(7 * 24 * time.Hour)}),
		"admin-needed": c.AdminNeeded(cards.AdminNeeded{Locale: locale, App: "Polls", TeamsAppID: "0f9e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
			ToVersion: "1.1.0", Waiting: cards.ScopeCounts{Chats: 3, Teams: 1}, Permissions: pollsDiff.Added, Since: requested}),
		"admin-needed-one": c.AdminNeeded(cards.AdminNeeded{Locale: locale, App: "Polls", TeamsAppID: "0f9e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
			ToVersion: "1.1.0", Waiting: cards.ScopeCounts{Chats: 1}, Permissions: manyPermissions(), Since: requested}),
		"admin-needed-done": c.AdminNeeded(cards.AdminNeeded{Locale: locale, App: "Polls", TeamsAppID: "0f9e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
			ToVersion: "1.1.0", Since: requested}),
		"inventory": c.Inventory(cards.Inventory{Locale: locale, Installations: 10000, More: 37,
			Scopes: cards.ScopeCounts{Chats: 8200, Teams: 1500, Personal: 300},
			Apps: []cards.InventoryApp{
				{Name: "Polls", CatalogVersion: "1.1.0", Installed: []cards.VersionCount{{"1.0.0", 5100}, {"0.9", 900}},
					Scopes: cards.ScopeCounts{Chats: 5400, Teams: 600}, Open: 4200, NeedsAdmin: 3, Failed: 12, Expired: 40, OldestWaiting: requested},
				{Name: "Tasks", CatalogVersion: "3.1", Installed: []cards.VersionCount{{"3.0", 2000}, {"2.9", 500}, {"2.8", 90}, {"2.7", 8}, {"2.0", 1}},
					Scopes: cards.ScopeCounts{Chats: 1500, Teams: 800, Personal: 299}, Open: 2599, OldestWaiting: requested.Add(-72 * time.Hour)},
				{Name: "Whiteboard", CatalogVersion: "1.10.0", Installed: []cards.VersionCount{{"1.9.0", 1}},
					Scopes: cards.ScopeCounts{Personal: 1}},
			}}),
		"inventory-empty": c.Inventory(cards.Inventory{Locale: locale}),
		"digest": c.Digest(cards.Digest{Locale: locale, Since: requested.Add(-7 * 24 * time.Hour), Upgraded: 42, Expired: 3, Failed: 1,
			Waiting: 17, NeedsAdmin: 4, OldestWaiting: requested.Add(-5 * 24 * time.Hour)}),
		"pending-quorum": c.Pending(cards.PendingUpgrade{Locale: locale, ApprovalID: "apr_7Qm2x", App: polls, Diff: pollsDiff,
			Place: cards.PlaceChat, Approvers: cards.ApproversOwners, RequestedAt: requested, Needed: 2, ApprovedBy: []string{"Megan Bowen"}}),
		"outcome-upgraded-quorum": c.Outcome(approvedBy(outcome(cards.OutcomeUpgraded), "Megan Bowen", "Alex Wilber")),
		"pending-snoozed": c.Pending(cards.PendingUpgrade{Locale: locale, ApprovalID: "apr_7Qm2x", App: polls, Diff: pollsDiff,
			Place: cards.PlaceChat, Approvers: cards.ApproversOwners, RequestedAt: requested,
			SnoozedUntil: decided.Add(72 * time.Hour), SnoozedBy: "Alex Wilber"}),
		"outcome-skipped": c.Outcome(outcome(cards.OutcomeSkipped)),
		"history-skip-snooze": c.History(cards.History{Locale: locale, Events: []cards.HistoryEvent{
			{At: decided, Kind: cards.OutcomeSkipped, Actor: "Megan Bowen", App: "Polls", From: "1.0.0", To: "1.1.0"},
			{At: requested, Kind: cards.OutcomeSnoozed, Actor: "Alex Wilber", App: "Polls", From: "1.0.0", To: "1.1.0"},
		}}),
		"pending-admin-asked": c.Pending(cards.PendingUpgrade{Locale: locale, ApprovalID: "apr_7Qm2x", App: polls, Diff: pollsDiff,
			Place: cards.PlaceChat, Approvers: cards.ApproversOwners, RequestedAt: requested, AskAdmin: true,
			AdminAskedBy: []string{"Adele Vance", "Alex Wilber"}}),
		"pending-needsadmin-ask": c.Pending(cards.PendingUpgrade{Locale: locale, ApprovalID: "apr_7Qm2x", App: polls,
			Diff: cards.Diff{Added: pollsDiff.Added}, Place: cards.PlaceTeam, Approvers: cards.ApproversOwners, RequestedAt: requested,
			NeedsAdmin: &cards.WaitsForAdmin{Problem: cards.Problem{Reason: cards.ReasonConsentPolicy}}, AskAdmin: true,
			AdminAskedBy: []string{"Megan Bowen"}}),
		"admin-asked": c.AdminAsked(cards.AdminAsked{Locale: locale, App: polls, TeamsAppID: "0f9e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
			Place: cards.PlaceChat, Conversation: "19:abc@thread.v2", AskedBy: "Adele Vance", Reason: cards.AskGuest,
			Permissions: pollsDiff.Added, RequestedAt: requested}),
		"admin-asked-second-opinion": c.AdminAsked(cards.AdminAsked{Locale: locale, App: polls, TeamsAppID: "0f9e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
			Place: cards.PlaceTeam, Conversation: "19:general@thread.tacv2", AskedBy: "Megan Bowen", Reason: cards.AskSecondOpinion,
			RequestedAt: requested}),
		"outcome-upgradedoutside":   c.Outcome(outcome(cards.OutcomeUpgradedOutside)),
		"outcome-upgraded-verified": c.Outcome(verified(outcome(cards.OutcomeUpgraded), &cards.Verification{})),
		"outcome-upgraded-missing-grant": c.Outcome(verified(outcome(cards.OutcomeUpgraded), &cards.Verification{
			Missing: []cards.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}})),
		"outcome-upgraded-unverified": c.Outcome(verified(outcome(cards.OutcomeUpgraded), &cards.Verification{
			Problem: cards.Problem{Reason: cards.ReasonGraphRefused, Status: 403, GraphCode: "Forbidden",
				GraphMessage: "Missing role permissions on the request.", Permission: "TeamsAppInstallation.ReadForChat.All"}})),
	}
}

func approvedBy(o cards.Outcome, names ...string) cards.Outcome {
	o.ApprovedBy, o.By = names, names[len(names)-1]
	return o
}

func verified(o cards.Outcome, v *cards.Verification) cards.Outcome {
	o.Verification = v
	return o
}

func newCards(t testing.TB) *cards.Cards {
	t.Helper()
	c, err := cards.New()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type named struct {
	Name string     `json:"name"`
	Card cards.Card `json:"card"`
}

func everyCard(t testing.TB) []named {
	c := newCards(t)
	var out []named
	for _, l := range cards.Locales {
		for name, card := range all(c, l) {
			out = append(out, named{Name: name + "." + l, Card: card})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// TestGolden compares every card the code builds with its golden file under
// testdata/golden and fails on any difference, a missing file or a golden
// file no card matches. Only -update rewrites them (go test ./cards -run
// Golden -update): review the diff before committing it.
func TestGolden(t *testing.T) {
	dir := filepath.Join("testdata", "golden")
	want := map[string]bool{}
	for _, n := range everyCard(t) {
		got, err := json.MarshalIndent(n.Card, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		path := filepath.Join(dir, n.Name+".json")
		want[path] = true
		old, err := os.ReadFile(path)
		if bytes.Equal(got, old) {
			continue
		}
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("rewrote %s", path)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v (go test ./cards -run Golden -update creates it)", n.Name, err)
			continue
		}
		t.Errorf("%s differs from %s at line %d:\n got: %s\nwant: %s\n(if the change is intended: go test ./cards -run Golden -update, and review the diff)",
			n.Name, path, firstDiff(got, old), lineAt(got, firstDiff(got, old)), lineAt(old, firstDiff(got, old)))
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if want[f] {
			continue
		}
		if *update {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
			t.Logf("removed %s: no card matches it", f)
			continue
		}
		t.Errorf("%s matches no card the code builds (go test ./cards -run Golden -update removes it)", f)
	}
}

// firstDiff is the 1-based number of the first line where a and b differ.
func firstDiff(a, b []byte) int {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range max(len(la), len(lb)) {
		if i >= len(la) || i >= len(lb) || la[i] != lb[i] {
			return i + 1
		}
	}
	return 0
}

func lineAt(b []byte, n int) string {
	lines := strings.Split(string(b), "\n")
	if n < 1 || n > len(lines) {
		return "(end of file)"
	}
	return strings.TrimSpace(lines[n-1])
}

// teamsMessageLimit is the largest message Teams accepts, card included.
const teamsMessageLimit = 28 * 1024

func TestCardsPassTheOfficialParser(t *testing.T) {
	nodetest.Require(t, "adaptivecards")
	cs := everyCard(t)
	for _, n := range cs {
		b, _ := json.Marshal(n.Card)
		if len(b) > teamsMessageLimit-1024 { // leave room for the activity around it
			t.Errorf("%s: %d bytes, over Teams' message limit", n.Name, len(b))
		}
	}
	in := filepath.Join(t.TempDir(), "cards.json")
	b, _ := json.Marshal(cs)
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := nodetest.Output(t, nil, filepath.Join("testdata", "validate.cjs"), in)
	var results []struct {
		Name     string   `json:"name"`
		Version  string   `json:"version"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("validator output %q: %v", out, err)
	}
	if len(results) != len(cs) {
		t.Fatalf("validated %d cards, built %d", len(results), len(cs))
	}
	for _, r := range results {
		if r.Version != "1.5" {
			t.Errorf("%s: version %q, want 1.5", r.Name, r.Version)
		}
		for _, p := range r.Problems {
			t.Errorf("%s: %s", r.Name, p)
		}
	}
}

func TestEveryMessageInEveryLanguage(t *testing.T) {
	keys := map[string][]string{}
	for _, l := range cards.Locales {
		b, err := os.ReadFile(filepath.Join("locales", "active."+l+".toml"))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := toml.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		for k := range m {
			keys[k] = append(keys[k], l)
		}
	}
	for k, ls := range keys {
		if len(ls) != len(cards.Locales) {
			t.Errorf("message %q is only in %v", k, ls)
		}
	}
}

func TestPendingCardCarriesButtonsAndOnlyAnID(t *testing.T) {
	c := newCards(t)
	card := c.Pending(cards.PendingUpgrade{Locale: "en-US", ApprovalID: "apr_1", App: polls, Diff: pollsDiff,
		Place: cards.PlaceChat, Approvers: cards.ApproversOwners})
	// Approve and Reject are the buttons; Skip this version and Remind me
	// later are in the overflow menu.
	if len(card.Actions) != 4 || card.Actions[0].Verb != cards.VerbApprove || card.Actions[1].Verb != cards.VerbReject ||
		card.Actions[2].Verb != cards.VerbSkip || card.Actions[3].Verb != cards.VerbSnooze {
		t.Fatalf("actions %+v", card.Actions)
	}
	for i, a := range card.Actions {
		if secondary := a.Mode == "secondary"; secondary != (i >= 2) || (a.Fallback != nil && a.Fallback.Mode != a.Mode) {
			t.Errorf("%s: mode %q, want the decision primary and the rest in the overflow menu", a.Verb, a.Mode)
		}
	}
	for _, a := range card.Actions {
		b, _ := json.Marshal(a.Data)
		if string(b) != `{"approvalId":"apr_1"}` {
			t.Errorf("%s data %s, want only the approval id", a.Verb, b)
		}
		if a.Fallback == nil || a.Fallback.Type != "Action.Submit" {
			t.Errorf("%s has no Action.Submit twin", a.Verb)
		}
	}
	b, _ := json.Marshal(card)
	s := string(b)
	for _, want := range []string{"Chat owners can approve.", "Read all messages in this chat", "High risk", "Delegated", "Removed permission"} {
		if !strings.Contains(s, want) {
			t.Errorf("card lacks %q", want)
		}
	}
}

// A custom app's name, a description or a person's name is shown as text:
// whoever uploads an app cannot put a link into an approval card.
func TestNamesFromOutsideNeverBecomeLinks(t *testing.T) {
	c := newCards(t)
	evil := polls
	evil.Name = "[Approve here](https://evil.example/approve)"
	evil.ShortDescription = "See [the release notes](https://evil.example/notes)"
	// A version is free-form text in the catalog, and shown as a fact.
	evil.FromVersion = "[1.0](https://evil.example/old)"
	evil.ToVersion = "[2.0](https://evil.example/new)"
	// So is a permission a manifest names that this bot does not know.
	crafted := cards.Diff{Added: []cards.Permission{craftedPermission}, Removed: []cards.Permission{craftedPermission},
		Kept: []cards.Permission{craftedPermission}}
	built := []cards.Card{
		c.Pending(cards.PendingUpgrade{Locale: "en-US", ApprovalID: "apr_1", App: evil, Diff: pollsDiff, Place: cards.PlaceChat}),
		c.Pending(cards.PendingUpgrade{Locale: "en-US", ApprovalID: "apr_1", App: evil, Diff: crafted, Place: cards.PlaceChat}),
		c.PendingList(cards.PendingList{Locale: "en-US", Items: []cards.PendingItem{{ApprovalID: "apr_1", App: evil, Diff: crafted}}}),
		c.Outcome(verified(cards.Outcome{Locale: "zh-CN", Kind: cards.OutcomeUpgraded, App: evil, At: time.Now()},
			&cards.Verification{Missing: []cards.Permission{craftedPermission}})),
		c.Outcome(cards.Outcome{Locale: "en-US", Kind: cards.OutcomeUpgraded, App: evil, By: "[Megan](https://evil.example)", At: time.Now()}),
		c.PendingList(cards.PendingList{Locale: "zh-CN", Items: []cards.PendingItem{{ApprovalID: "apr_1", App: evil, Diff: pollsDiff}}}),
		c.Reminder(cards.Reminder{Locale: "en-US", App: evil, People: []cards.Approver{{ID: "29:1", Name: "[Megan](https://evil.example)"}}}),
		c.UpToDate(cards.UpToDate{Locale: "en-US", Place: cards.PlaceChat, Apps: []cards.InstalledApp{{Name: evil.Name, Version: evil.ToVersion}}}),
	}
	for i, card := range built {
		b, _ := json.Marshal(card)
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		texts := textBlocks(v)
		if !slices.ContainsFunc(texts, func(s string) bool { return strings.Contains(s, "Approve here") }) {
			t.Errorf("card %d does not name the app: %s", i, b)
		}
		for _, s := range texts {
			if strings.Contains(s, "](") {
				t.Errorf("card %d shows a link: %q", i, s)
			}
		}
	}
}

// textBlocks returns the markdown of every TextBlock and fact in a card's JSON.
func textBlocks(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		if s, ok := v["text"].(string); ok && v["type"] == "TextBlock" {
			out = append(out, s)
		}
		if facts, ok := v["facts"].([]any); ok && v["type"] == "FactSet" {
			for _, f := range facts {
				f, _ := f.(map[string]any)
				for _, k := range []string{"title", "value"} {
					if s, ok := f[k].(string); ok {
						out = append(out, s)
					}
				}
			}
		}
		for _, e := range v {
			out = append(out, textBlocks(e)...)
		}
	case []any:
		for _, e := range v {
			out = append(out, textBlocks(e)...)
		}
	}
	return out
}

// Simplified Chinese in any spelling gets Chinese; Traditional Chinese and
// every other language get English.
func TestLocaleFallsBackToEnglish(t *testing.T) {
	c := newCards(t)
	const zh, en = "聊天所有者可以批准", "Chat owners can approve"
	for locale, want := range map[string]string{
		"zh-CN": zh, "zh-cn": zh, "zh-Hans": zh, "zh": zh, "zh-SG": zh, "zh-Hans-HK": zh,
		"zh-TW": en, "zh-HK": en, "zh-MO": en, "zh-Hant": en, "zh-Hant-CN": en,
		"en-US": en, "en-GB": en, "fr-FR": en, "ja-JP": en, "": en, "not a locale": en,
	} {
		b, _ := json.Marshal(c.Pending(cards.PendingUpgrade{Locale: locale, App: polls, Approvers: cards.ApproversOwners, Place: cards.PlaceChat}))
		if !strings.Contains(string(b), want) {
			t.Errorf("locale %q: card lacks %q", locale, want)
		}
	}
}

func TestUnknownPermissionShowsRawValue(t *testing.T) {
	c := newCards(t)
	b, _ := json.Marshal(c.Pending(cards.PendingUpgrade{Locale: "en", App: polls,
		Diff: cards.Diff{Added: []cards.Permission{{Value: "Contoso.Secret.Chat", Type: "application"}}}}))
	if !strings.Contains(string(b), "Contoso.Secret.Chat") || !strings.Contains(string(b), "does not know") {
		t.Errorf("unknown permission not shown raw: %s", b)
	}
}

func TestDatesRenderInTheViewersLocale(t *testing.T) {
	c := newCards(t)
	b, _ := json.Marshal(c.Outcome(cards.Outcome{Locale: "en", Kind: cards.OutcomeUpgraded, App: polls, By: "Megan", At: decided}))
	if !strings.Contains(string(b), "{{DATE(2026-11-23T14:05:00Z, SHORT)}}") {
		t.Errorf("date is not left to the client: %s", b)
	}
}

// A scope with hundreds of apps, all current, still gets one message:
// the card names the first ones and counts the rest.
func TestUpToDateListFitsOneMessage(t *testing.T) {
	c := newCards(t)
	apps := make([]cards.InstalledApp, 300)
	for i := range apps {
		apps[i] = cards.InstalledApp{Name: fmt.Sprintf("Line-of-business app number %d with a long name", i), Version: "10.20.30"}
	}
	for _, locale := range []string{"en-US", "zh-CN"} {
		b, _ := json.Marshal(c.UpToDate(cards.UpToDate{Locale: locale, Place: cards.PlaceTeam, Apps: apps}))
		s := string(b)
		if len(b) > teamsMessageLimit || !strings.Contains(s, "number 0 ") || !strings.Contains(s, "250") || strings.Contains(s, "number 299 ") {
			t.Errorf("%s: %d bytes: %s", locale, len(b), s[:min(len(s), 600)])
		}
	}
}

// "Approve all" says how many it would approve: the apps still to review,
// not those already upgrading or decided; with none left it is gone.
func TestApproveAllCountsWhatItWouldApprove(t *testing.T) {
	c := newCards(t)
	item := func(name string, status cards.OutcomeKind) cards.PendingItem {
		return cards.PendingItem{ApprovalID: "apr_" + name, App: cards.App{Name: name, FromVersion: "1.0", ToVersion: "1.1"}, Status: status}
	}
	button := func(items ...cards.PendingItem) string {
		t.Helper()
		card := c.PendingList(cards.PendingList{Locale: "en-US", Place: cards.PlaceChat, Approvers: cards.ApproversOwners, BatchID: "bat_1", Items: items})
		for _, a := range card.Actions {
			if a.Verb == cards.VerbApproveAll {
				return a.Title
			}
		}
		return ""
	}
	if got := button(item("Polls", ""), item("Tasks", ""), item("Whiteboard", "")); got != "Approve all 3" {
		t.Errorf("three to review: %q", got)
	}
	if got := button(item("Polls", cards.OutcomeUpgraded), item("Tasks", ""), item("Whiteboard", "")); got != "Approve all 2" {
		t.Errorf("one upgraded, two to review: %q", got)
	}
	if got := button(item("Polls", cards.OutcomeUpgrading), item("Tasks", cards.OutcomeRejected), item("Whiteboard", "")); got != "Approve" {
		t.Errorf("one left to review: %q", got)
	}
	if got := button(item("Polls", cards.OutcomeUpgraded), item("Tasks", cards.OutcomeFailed)); got != "" {
		t.Errorf("none left to review: %q", got)
	}
}

func retryAt(o cards.Outcome, at time.Time) cards.Outcome {
	o.RetryAt = at
	return o
}
