package approval

import (
	"cmp"
	"strconv"
	"strings"
)

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
