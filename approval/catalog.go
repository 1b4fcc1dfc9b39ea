package approval

import (
	"errors"
	"fmt"
)

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

// Why MayUpgrade refused an upgrade; in the error chain for errors.Is.
var (
	// ErrSuperseded: the catalog changed since the upgrade was approved.
	ErrSuperseded = errors.New("the app's catalog definition changed since approval")
	// ErrAlreadyUpgraded: the installation already runs the target version.
	ErrAlreadyUpgraded = errors.New("the installation is already up to date")
	// ErrNotPublished: the catalog no longer publishes the app.
	ErrNotPublished = errors.New("the catalog no longer publishes the app")
)

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
// so it refuses when the installation already runs the approved version
// (ErrAlreadyUpgraded: never upgrade twice), when the catalog no longer
// publishes exactly what the approver saw (ErrSuperseded), and when it no
// longer publishes the app (ErrNotPublished).
func MayUpgrade(approved PendingUpgrade, current []AppDefinition, now Installation) error {
	in := approved.Installation
	if CompareVersions(now.Definition.Version, approved.Target.Version) >= 0 {
		return fmt.Errorf("%s already runs version %s: %w", in.DisplayName, now.Definition.Version, ErrAlreadyUpgraded)
	}
	target, ok := NewestPublished(current)[in.TeamsAppID]
	if !ok {
		return &refusal{message: "the catalog no longer publishes " + in.DisplayName, reason: ErrNotPublished}
	}
	if target.ID != approved.Target.ID || CompareVersions(target.Version, approved.Target.Version) != 0 ||
		!SamePermissions(target.Permissions, approved.Target.Permissions) {
		return fmt.Errorf("the catalog now publishes version %s of %s, not the approved %s: %w",
			target.Version, in.DisplayName, approved.Target.Version, ErrSuperseded)
	}
	return nil
}

// refusal is a refused upgrade whose message says it all, its reason kept
// for errors.Is.
type refusal struct {
	message string
	reason  error
}

func (r *refusal) Error() string { return r.message }
func (r *refusal) Unwrap() error { return r.reason }
