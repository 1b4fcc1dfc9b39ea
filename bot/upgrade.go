package bot

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Permission is a resource-specific consent (RSC) permission: a value such as
// "ChannelMeeting.ReadBasic.Group" and its type, "application" or
// "delegated". Graph returns types in lower case, its docs show them
// capitalised; comparisons ignore case.
type Permission struct {
	Value string `json:"value"`
	Type  string `json:"type"`
}

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
		k := p.key()
		if want[k] {
			continue
		}
		want[k] = true
		if have[k] {
			d.Kept = append(d.Kept, p)
		} else {
			d.Added = append(d.Added, p)
		}
	}
	for _, p := range consented {
		if k := p.key(); !want[k] {
			want[k] = true // list each removed permission once
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
	slices.SortFunc(ps, func(a, b Permission) int {
		return cmp.Or(compareFold(a.Value, b.Value), compareFold(a.Type, b.Type))
	})
}

// compareFold compares ASCII case-insensitively without allocating, as
// strings.ToLower would on every comparison of a sort.
func compareFold(a, b string) int {
	for i := range min(len(a), len(b)) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return cmp.Compare(x, y)
		}
	}
	return cmp.Compare(len(a), len(b))
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

// Installations reads and writes the apps installed in chats, teams and
// personal scopes. It only reports what Graph says and does what it is told;
// deciding what is behind and whether to upgrade is the bot's.
type Installations interface {
	// Installed lists the apps installed in scope, each with its installed
	// definition and consented RSC permissions.
	Installed(ctx context.Context, scope Scope) ([]Installation, error)
	// Installation reads one installation afresh, with its installed
	// definition and consented RSC permissions.
	Installation(ctx context.Context, scope Scope, id string) (Installation, error)
	// Upgrade moves the installation to the catalog's current definition
	// (Graph's upgrade takes no version), consenting to exactly consent.
	Upgrade(ctx context.Context, in Installation, consent []Permission) error
}

// Catalog reads the tenant app catalog.
type Catalog interface {
	// Definitions returns every definition, whatever its publishing state,
	// of the given apps; apps the catalog lacks are simply absent. An
	// explicit "check" and every upgrade call it, so it must not answer
	// from a cache.
	Definitions(ctx context.Context, tenantID string, teamsAppIDs []string) ([]AppDefinition, error)
}

// NewestPublished returns, per Teams app id, the catalog's newest published
// definition: an org app can list submitted and rejected definitions beside
// the published one, and only a published one is an upgrade target.
func NewestPublished(defs []AppDefinition) map[string]AppDefinition {
	newest := make(map[string]AppDefinition, len(defs))
	for _, d := range defs {
		if d.PublishingState != "published" || d.TeamsAppID == "" {
			continue
		}
		if cur, ok := newest[d.TeamsAppID]; !ok || CompareVersions(d.Version, cur.Version) > 0 {
			newest[d.TeamsAppID] = d
		}
	}
	return newest
}

// Behind returns the installations that run an older version than the
// catalog's newest published one, in the order given, each with what its
// upgrade adds, removes and keeps.
func Behind(installed []Installation, catalog []AppDefinition) []PendingUpgrade {
	newest := NewestPublished(catalog)
	var pending []PendingUpgrade
	for _, in := range installed {
		target, ok := newest[in.TeamsAppID]
		if !ok || CompareVersions(in.Definition.Version, target.Version) >= 0 {
			continue // not in the catalog (any more), or up to date
		}
		pending = append(pending, PendingUpgrade{Installation: in, Target: target,
			Diff: DiffPermissions(in.Consented, target.Permissions)})
	}
	return pending
}

// MayUpgrade decides whether an approved upgrade may go ahead, given what
// the catalog publishes now and what the installation runs now. Graph's
// upgrade moves to the catalog's current definition whatever was approved,
// so it refuses, with CodeConflict, when the installation already runs the
// approved version (never upgrade twice) or the catalog no longer publishes
// exactly what the approver saw; and with CodeNotFound when the catalog no
// longer publishes the app.
func MayUpgrade(approved PendingUpgrade, current []AppDefinition, now Installation) error {
	in := approved.Installation
	if CompareVersions(now.Definition.Version, approved.Target.Version) >= 0 {
		return &Error{Code: CodeConflict, Message: in.DisplayName + " already runs version " + now.Definition.Version,
			Err: ErrAlreadyUpgraded}
	}
	target, ok := NewestPublished(current)[in.TeamsAppID]
	if !ok {
		return Errorf(CodeNotFound, "the catalog no longer publishes %s", in.DisplayName)
	}
	if target.ID != approved.Target.ID || CompareVersions(target.Version, approved.Target.Version) != 0 ||
		!SamePermissions(target.Permissions, approved.Target.Permissions) {
		return &Error{Code: CodeConflict, Message: "the catalog now publishes version " + target.Version +
			" of " + in.DisplayName + ", not the approved " + approved.Target.Version, Err: ErrSuperseded}
	}
	return nil
}

// pendingUpgrades is what is installed in scope and behind the catalog:
// the installations, then the catalog definitions of exactly those apps —
// two reads however many apps there are ("check" makes the same two).
func (b *Bot) pendingUpgrades(ctx context.Context, scope Scope) ([]PendingUpgrade, error) {
	installed, err := b.opts.Installations.Installed(ctx, scope)
	if err != nil {
		return nil, err
	}
	return b.behind(ctx, scope, installed)
}

// behind reads the catalog definitions of the installed apps and returns
// the installations behind them.
func (b *Bot) behind(ctx context.Context, scope Scope, installed []Installation) ([]PendingUpgrade, error) {
	ids := make([]string, 0, len(installed))
	for _, in := range installed {
		if in.TeamsAppID != "" && !slices.Contains(ids, in.TeamsAppID) {
			ids = append(ids, in.TeamsAppID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	defs, err := b.opts.Catalog.Definitions(ctx, scope.TenantID, ids)
	if err != nil {
		return nil, err
	}
	return Behind(installed, defs), nil
}

// upgrade performs an approved upgrade after reading, at once, the catalog
// and the installation as they are now: see MayUpgrade.
func (b *Bot) upgrade(ctx context.Context, u PendingUpgrade) error {
	in := u.Installation
	var (
		wg     sync.WaitGroup
		defs   []AppDefinition
		defErr error
	)
	wg.Go(func() { defs, defErr = b.opts.Catalog.Definitions(ctx, in.Scope.TenantID, []string{in.TeamsAppID}) })
	now, err := b.opts.Installations.Installation(ctx, in.Scope, in.ID)
	wg.Wait()
	if err = cmp.Or(err, defErr); err != nil {
		return err
	}
	if err := MayUpgrade(u, defs, now); err != nil {
		return err
	}
	return b.opts.Installations.Upgrade(ctx, in, u.Target.Permissions)
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
	// Membership returns the member entries of one user (an Entra object
	// id) in a chat or team scope: none when they are not a member. It
	// asks Graph for that user, not for a whole team.
	Membership(ctx context.Context, scope Scope, userID string) ([]Member, error)
	// InGroup reports whether the user is a member, directly or through
	// nested groups, of the Entra group.
	InGroup(ctx context.Context, tenantID, groupID, userID string) (bool, error)
}

// CompareVersions compares Teams app versions, which are free-form strings
// (store apps show "1.2", org apps mostly semver). Build metadata after "+"
// is ignored. The release part compares dot-separated parts: numbers
// numerically (1.10.0 > 1.9.0), missing parts as 0 (1.2 == 1.2.0), a part
// with text after its number by number then text ("3b" > "3a" > "3"), and a
// part without a number after every numbered one, by text. After a numeric
// release part, "-" starts a pre-release, ranked as semver ranks it:
// 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0.
// It is a total order, so sorting by it is stable across replicas.
func CompareVersions(a, b string) int {
	ra, pa := splitVersion(a)
	rb, pb := splitVersion(b)
	pra, prb := strings.Split(ra, "."), strings.Split(rb, ".")
	for i := range max(len(pra), len(prb)) {
		x, y := "0", "0"
		if i < len(pra) {
			x = pra[i]
		}
		if i < len(prb) {
			y = prb[i]
		}
		if c := comparePart(x, y); c != 0 {
			return c
		}
	}
	switch {
	case pa == "" && pb == "":
		return 0
	case pa == "":
		return 1 // a release outranks its pre-releases
	case pb == "":
		return -1
	}
	return comparePrerelease(pa, pb)
}

// splitVersion splits off build metadata and, after a numeric release such
// as 1.0.0 or 1.2, a pre-release tag.
func splitVersion(v string) (release, pre string) {
	v = strings.TrimSpace(v)
	v, _, _ = strings.Cut(v, "+")
	r, p, ok := strings.Cut(v, "-")
	if !ok || r == "" || strings.Trim(r, "0123456789.") != "" {
		return v, ""
	}
	return r, p
}

// comparePart orders one release part by (has a number, number, rest).
func comparePart(x, y string) int {
	nx, sx, okx := leadingNumber(x)
	ny, sy, oky := leadingNumber(y)
	switch {
	case okx && oky:
		if c := cmp.Compare(nx, ny); c != 0 {
			return c
		}
		return strings.Compare(sx, sy)
	case okx:
		return -1
	case oky:
		return 1
	}
	return strings.Compare(x, y)
}

func leadingNumber(s string) (uint64, string, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, s, false
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil { // longer than uint64: compare as text
		return 0, s, false
	}
	return n, s[i:], true
}

// comparePrerelease follows semver 2.0.0 §11: identifiers compare
// numerically when both are numbers, numbers rank below text, text compares
// in ASCII order, and a longer list wins when all before are equal.
func comparePrerelease(a, b string) int {
	ia, ib := strings.Split(a, "."), strings.Split(b, ".")
	for i := range min(len(ia), len(ib)) {
		x, y := ia[i], ib[i]
		nx, ex := strconv.ParseUint(x, 10, 64)
		ny, ey := strconv.ParseUint(y, 10, 64)
		var c int
		switch {
		case ex == nil && ey == nil:
			c = cmp.Compare(nx, ny)
		case ex == nil:
			c = -1
		case ey == nil:
			c = 1
		default:
			c = strings.Compare(x, y)
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(ia), len(ib))
}
