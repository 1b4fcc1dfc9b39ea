package bot

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// Permission is a resource-specific consent (RSC) permission: a value such as
// "ChannelMeeting.ReadBasic.Group" and its type, "application" or
// "delegated". Graph returns types in lower case, its docs show them
// capitalised; comparisons ignore case.
type Permission struct {
	Value string `json:"value"`
	Type  string `json:"type"`
}

// Permission types, as Graph returns them.
const (
	PermissionApplication = "application"
	PermissionDelegated   = "delegated"
)

func (p Permission) key() string { return strings.ToLower(p.Value) + "|" + strings.ToLower(p.Type) }

// PermissionDiff is what an upgrade changes in an installation's consented
// RSC permissions.
type PermissionDiff struct {
	Added   []Permission `json:"added"`
	Removed []Permission `json:"removed"`
	Kept    []Permission `json:"kept"`
}

// Changed reports whether the upgrade adds or removes any permission.
func (d PermissionDiff) Changed() bool { return len(d.Added) > 0 || len(d.Removed) > 0 }

// DiffPermissions compares the permissions an installation has consented to
// with those the target definition requires. Each group is sorted by value.
func DiffPermissions(consented, required []Permission) PermissionDiff {
	have := make(map[string]bool, len(consented))
	for _, p := range consented {
		have[p.key()] = true
	}
	want := make(map[string]bool, len(required))
	var d PermissionDiff
	for _, p := range required {
		if want[p.key()] {
			continue
		}
		want[p.key()] = true
		if have[p.key()] {
			d.Kept = append(d.Kept, p)
		} else {
			d.Added = append(d.Added, p)
		}
	}
	seen := map[string]bool{}
	for _, p := range consented {
		if !want[p.key()] && !seen[p.key()] {
			seen[p.key()] = true
			d.Removed = append(d.Removed, p)
		}
	}
	for _, g := range [][]Permission{d.Added, d.Removed, d.Kept} {
		SortPermissions(g)
	}
	return d
}

// SortPermissions orders permissions by value, then type, ignoring case.
func SortPermissions(ps []Permission) {
	slices.SortFunc(ps, func(a, b Permission) int { return cmp.Compare(a.key(), b.key()) })
}

// SamePermissions reports whether two sets hold the same permissions,
// ignoring order, duplicates and case.
func SamePermissions(a, b []Permission) bool {
	d := DiffPermissions(a, b)
	return !d.Changed()
}

// AppDefinition is one version of a Teams app (a teamsAppDefinition).
type AppDefinition struct {
	ID               string       `json:"id"`
	TeamsAppID       string       `json:"teamsAppId"`
	DisplayName      string       `json:"displayName"`
	Version          string       `json:"version"`
	PublishingState  string       `json:"publishingState,omitempty"` // submitted, rejected or published
	ShortDescription string       `json:"shortDescription,omitempty"`
	Permissions      []Permission `json:"permissions"` // the RSC permissions it requires
}

// Installation is a Teams app installed in a chat, team or personal scope.
type Installation struct {
	ID                 string        `json:"id"`
	Scope              Scope         `json:"scope"`
	TeamsAppID         string        `json:"teamsAppId"`
	DisplayName        string        `json:"displayName"`
	DistributionMethod string        `json:"distributionMethod,omitempty"` // store, organization or sideloaded
	Definition         AppDefinition `json:"definition"`
	Consented          []Permission  `json:"consented"`
}

// PendingUpgrade is an installation behind the catalog's published version.
type PendingUpgrade struct {
	Installation Installation   `json:"installation"`
	Target       AppDefinition  `json:"target"`
	Diff         PermissionDiff `json:"diff"`
}

// Why an upgrade was refused with CodeConflict; in the error chain for errors.Is.
var (
	// ErrSuperseded: the catalog changed since the upgrade was approved.
	ErrSuperseded = errors.New("the app's catalog definition changed since approval")
	// ErrAlreadyUpgraded: the installation already runs the target version.
	ErrAlreadyUpgraded = errors.New("the installation is already up to date")
)

// Installations is what the bot needs to know and do about installed apps.
type Installations interface {
	// PendingUpgrades lists the installations in scope that are behind the
	// catalog's newest published definition.
	PendingUpgrades(ctx context.Context, scope Scope) ([]PendingUpgrade, error)
	// Upgrade moves the installation to the catalog's current definition,
	// consenting to exactly its RSC permissions. It refuses with CodeConflict
	// when the catalog no longer matches u.Target (the approver saw something
	// else) or the installation is already at the target version.
	Upgrade(ctx context.Context, u PendingUpgrade) error
}

// Member is a member of a chat or team as Graph lists it.
type Member struct {
	UserID      string   `json:"userId"`
	DisplayName string   `json:"displayName,omitempty"`
	Email       string   `json:"email,omitempty"` // may be missing
	TenantID    string   `json:"tenantId,omitempty"`
	Roles       []string `json:"roles"` // ["owner"], ["guest"] or [] (meeting chats may list owners with [])
}

// IsOwner reports whether the member holds the owner role.
func (m Member) IsOwner() bool { return slices.Contains(m.Roles, "owner") }

// Directory answers who may approve: members and their roles, and group
// membership for an explicit approver group.
type Directory interface {
	// Members lists the members of a chat or team scope.
	Members(ctx context.Context, scope Scope) ([]Member, error)
	// InGroup reports whether the user is a member, directly or through
	// nested groups, of the Entra group.
	InGroup(ctx context.Context, tenantID, groupID, userID string) (bool, error)
}

// CompareVersions compares Teams app versions. Versions are free-form
// strings: dot-separated parts compare numerically where both are numbers
// (so 1.10.0 > 1.9.0), missing parts count as 0 (1.2 == 1.2.0), and other
// parts fall back to string order.
func CompareVersions(a, b string) int {
	pa, pb := strings.Split(strings.TrimSpace(a), "."), strings.Split(strings.TrimSpace(b), ".")
	for i := range max(len(pa), len(pb)) {
		x, y := "0", "0"
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		nx, ex := strconv.ParseUint(x, 10, 64)
		ny, ey := strconv.ParseUint(y, 10, 64)
		var c int
		if ex == nil && ey == nil {
			c = cmp.Compare(nx, ny)
		} else {
			c = strings.Compare(x, y)
		}
		if c != 0 {
			return c
		}
	}
	return 0
}
