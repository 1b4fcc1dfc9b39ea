package approval_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/upgradeapprovals/bot/approval"
)

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.10.0", "1.9.0", 1},
		{"2.10", "2.9", 1},
		{"1.2", "1.2.0", 0},
		{"1.2", "1.2.1", -1},
		{"2.0.0", "10.0.0", -1},
		{"1.0.0", "1.0.0", 0},
		{" 1.0.0 ", "1.0.0", 0},
		// semver pre-release precedence (semver.org §11)
		{"1.0.0-beta", "1.0.0", -1},
		{"1.0.0-rc.1", "1.0.0", -1},
		{"1.0.0-beta", "1.0.0-alpha", 1},
		{"1.0.0-alpha", "1.0.0-alpha.1", -1},
		{"1.0.0-alpha.1", "1.0.0-alpha.beta", -1},
		{"1.0.0-beta.2", "1.0.0-beta.11", -1},
		{"1.0.0-rc.1", "1.0.0-beta.11", 1},
		{"1.0.0-beta", "0.9.9", 1},
		{"1.2-beta", "1.2.0", -1},
		{"1.0.0+build.5", "1.0.0+build.7", 0},
		{"1.0.0-beta+exp", "1.0.0-beta", 0},
		// free-form legacy versions
		{"3b", "3a", 1},
		{"3", "3a", -1},
		{"10", "9a", 1},
		{"1a", "2", -1},
		{"x", "99", 1},
		{"2024.01", "2023.12", 1},
		{"build-7", "build-10", 1}, // no numeric release: plain text, no pre-release
	} {
		if got := approval.CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := approval.CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

// Sorting needs a total order: no cycles, whatever mix of versions a
// catalog holds.
func TestCompareVersionsIsTransitive(t *testing.T) {
	vs := []string{"1", "1.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-1", "1.0.0-beta", "1.0.0", "1.0.1", "1.10",
		"1.9", "1a", "1b", "2", "10", "9a", "x", "y.1", "1.x", "1.0.0beta", "", "0", "99999999999999999999999", "v1"}
	for _, a := range vs {
		for _, b := range vs {
			for _, c := range vs {
				ab, bc, ac := approval.CompareVersions(a, b), approval.CompareVersions(b, c), approval.CompareVersions(a, c)
				if ab <= 0 && bc <= 0 && ac > 0 {
					t.Fatalf("%q <= %q <= %q but %q > %q", a, b, c, a, c)
				}
			}
		}
	}
}

func TestDiffPermissionsIgnoresTypeCase(t *testing.T) {
	consented := []approval.Permission{
		{Value: "ChatMessage.Read.Chat", Type: "application"},
		{Value: "ChatSettings.Read.Chat", Type: "application"},
	}
	required := []approval.Permission{
		{Value: "ChatMessage.Read.Chat", Type: "Application"},
		{Value: "OnlineMeeting.ReadBasic.Chat", Type: "Delegated"},
		{Value: "ChatMessage.Read.Chat", Type: "Delegated"},
	}
	d := approval.DiffPermissions(consented, required)
	want := approval.PermissionDiff{
		Added: []approval.Permission{
			{Value: "ChatMessage.Read.Chat", Type: "Delegated"},
			{Value: "OnlineMeeting.ReadBasic.Chat", Type: "Delegated"},
		},
		Removed: []approval.Permission{{Value: "ChatSettings.Read.Chat", Type: "application"}},
		Kept:    []approval.Permission{{Value: "ChatMessage.Read.Chat", Type: "Application"}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("diff\n got %+v\nwant %+v", d, want)
	}
	if !d.Changed() {
		t.Error("Changed() is false")
	}
	if approval.DiffPermissions(consented, consented).Changed() {
		t.Error("a set differs from itself")
	}
	if !approval.SamePermissions(consented, []approval.Permission{{Value: "chatsettings.read.chat", Type: "APPLICATION"}, consented[0]}) {
		t.Error("SamePermissions is case-sensitive")
	}
}

var (
	chatMsg  = approval.Permission{Value: "ChatMessage.Read.Chat", Type: "application"}
	settings = approval.Permission{Value: "ChatSettings.Read.Chat", Type: "application"}
	meeting  = approval.Permission{Value: "OnlineMeeting.ReadBasic.Chat", Type: "delegated"}
)

func def(app, id, version, state string, perms ...approval.Permission) approval.AppDefinition {
	return approval.AppDefinition{ID: id, TeamsAppID: app, Version: version, PublishingState: state, Permissions: perms}
}

func TestNewestPublishedSkipsSubmittedAndRejected(t *testing.T) {
	got := approval.NewestPublished([]approval.AppDefinition{
		def("polls", "d1", "1.9.0", "published"),
		def("polls", "d2", "1.10.0", "published", meeting),
		def("polls", "d3", "2.0.0", "submitted"),
		def("polls", "d4", "1.11.0", "rejected"),
		def("tasks", "t1", "3.0", "published"),
		def("tasks", "t2", "3.0-beta", "published"), // a pre-release of 3.0 ranks below it
		def("draft", "x1", "1.0", "submitted"),
	})
	if len(got) != 2 || got["polls"].ID != "d2" || got["tasks"].ID != "t1" {
		t.Errorf("newest %+v", got)
	}
}

func TestBehindListsOnlyOlderInstallationsWithTheirDiff(t *testing.T) {
	chat := approval.Scope{Kind: approval.ScopeChat, ID: "19:x@thread.v2"}
	installed := []approval.Installation{
		{ID: "i1", Scope: chat, TeamsAppID: "polls", DisplayName: "Polls", Definition: approval.AppDefinition{Version: "1.0.0"},
			Consented: []approval.Permission{chatMsg, settings}},
		{ID: "i2", Scope: chat, TeamsAppID: "tasks", Definition: approval.AppDefinition{Version: "3.1"}},
		{ID: "i3", Scope: chat, TeamsAppID: "store-app", Definition: approval.AppDefinition{Version: "1.0"}},      // not in the catalog
		{ID: "i4", Scope: chat, TeamsAppID: "board", Definition: approval.AppDefinition{Version: "2.0.0-beta.2"}}, // pre-release of the published one
	}
	catalog := []approval.AppDefinition{
		def("polls", "p1", "1.0.0", "published", chatMsg, settings),
		def("polls", "p2", "1.1.0", "published", chatMsg, meeting),
		def("tasks", "t1", "3.1", "published"),
		def("board", "b1", "2.0.0", "published"),
	}
	got := approval.Behind(installed, catalog)
	if len(got) != 2 || got[0].Installation.ID != "i1" || got[1].Installation.ID != "i4" {
		t.Fatalf("behind %+v", got)
	}
	want := approval.PermissionDiff{Added: []approval.Permission{meeting}, Removed: []approval.Permission{settings}, Kept: []approval.Permission{chatMsg}}
	if got[0].Target.ID != "p2" || !reflect.DeepEqual(got[0].Diff, want) {
		t.Errorf("polls: target %s diff %+v", got[0].Target.ID, got[0].Diff)
	}
}

// BenchmarkDiffPermissions compares sets of 40 permissions, half shared.
func BenchmarkDiffPermissions(b *testing.B) {
	var consented, required []approval.Permission
	for i := range 40 {
		consented = append(consented, approval.Permission{Value: fmt.Sprintf("Contoso.Permission%d.Chat", i), Type: "application"})
		required = append(required, approval.Permission{Value: fmt.Sprintf("Contoso.Permission%d.Chat", i+20), Type: "Application"})
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := approval.DiffPermissions(consented, required); len(d.Kept) != 20 {
			b.Fatalf("kept %d", len(d.Kept))
		}
	}
}

// BenchmarkBehind is a check's decision for 30 installed apps against a
// catalog listing three definitions of each.
func BenchmarkBehind(b *testing.B) {
	var installed []approval.Installation
	var catalog []approval.AppDefinition
	for i := range 30 {
		app := fmt.Sprintf("app-%d", i)
		installed = append(installed, approval.Installation{ID: "i" + app, TeamsAppID: app,
			Definition: approval.AppDefinition{Version: "1.9.0"}, Consented: []approval.Permission{chatMsg, settings}})
		catalog = append(catalog, def(app, "d1", "1.9.0", "published", chatMsg, settings),
			def(app, "d2", "1.10.0", "published", chatMsg, meeting), def(app, "d3", "2.0.0-beta.1", "submitted"))
	}
	b.ReportAllocs()
	for b.Loop() {
		if ups := approval.Behind(installed, catalog); len(ups) != 30 {
			b.Fatalf("%d behind", len(ups))
		}
	}
}

// FuzzCompareVersions checks that version comparison is a total order (and
// that a release ignores trailing zero parts), whatever the strings: catalogs hold
// free-form versions, and "the newest" must not depend on listing order.
// Seeds: testdata/fuzz/FuzzCompareVersions.
func FuzzCompareVersions(f *testing.F) {
	f.Add("1.10.0", "1.9.0", "1.9")
	f.Add("1.0.0-beta", "1.0.0-alpha", "1.0.0")
	f.Add("10", "2a", "3")
	f.Add(" 1.2 ", "01.2.0", "1..2")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		sign := func(x, y string) int { return approval.CompareVersions(x, y) }
		if sign(a, a) != 0 {
			t.Fatalf("%q != itself", a)
		}
		if sign(a, b) != -sign(b, a) {
			t.Fatalf("compare(%q, %q) = %d but compare(%q, %q) = %d", a, b, sign(a, b), b, a, sign(b, a))
		}
		if sign(a, b) <= 0 && sign(b, c) <= 0 && sign(a, c) > 0 {
			t.Fatalf("not transitive: %q <= %q <= %q but %q > %q", a, b, c, a, c)
		}
		if sign(a, b) == 0 && sign(a, c) != sign(b, c) {
			t.Fatalf("%q == %q but they compare differently with %q", a, b, c)
		}
		// A plain release (no pre-release or build part) is unchanged by
		// a trailing zero part.
		if r := strings.TrimSpace(a); !strings.ContainsAny(r, "-+ ") && sign(r, r+".0") != 0 {
			t.Fatalf("%q != %q", r, r+".0")
		}
	})
}

func TestMayUpgrade(t *testing.T) {
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
		says    string
	}{
		{"as approved", []approval.AppDefinition{def("polls", "p1", "1.0.0", "published"), approved.Target,
			def("polls", "p3", "1.2.0", "submitted")}, at("1.0.0"), nil, ""},
		{"upgraded elsewhere", []approval.AppDefinition{approved.Target}, at("1.1.0"), approval.ErrAlreadyUpgraded,
			"Polls already runs version 1.1.0"},
		{"newer version published", []approval.AppDefinition{approved.Target, def("polls", "p3", "1.2.0", "published", chatMsg)},
			at("1.0.0"), approval.ErrSuperseded, "the catalog now publishes version 1.2.0 of Polls, not the approved 1.1.0"},
		{"same version, other permissions", []approval.AppDefinition{def("polls", "p2", "1.1.0", "published", chatMsg, meeting)},
			at("1.0.0"), approval.ErrSuperseded, "not the approved 1.1.0"},
		{"no longer published", []approval.AppDefinition{def("polls", "p2", "1.1.0", "rejected", chatMsg)},
			at("1.0.0"), approval.ErrNotPublished, "the catalog no longer publishes Polls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := approval.MayUpgrade(approved, tc.catalog, tc.now)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err %v, want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
}
