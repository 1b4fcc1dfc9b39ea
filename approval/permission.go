package approval

import (
	"cmp"
	"slices"
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
