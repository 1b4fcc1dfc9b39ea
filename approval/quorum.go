package approval

import (
	"slices"
	"strings"
	"time"
)

// Approver is one approval given to a request: who, and when.
type Approver struct {
	Person
	At time.Time `json:"at"`
}

// Approvers are the distinct people who approved a request, in order.
type Approvers []Approver

// Include reports whether who has already approved.
func (as Approvers) Include(who Person) bool {
	return slices.ContainsFunc(as, func(p Approver) bool { return samePerson(p.Person, who) })
}

// Except returns the approvers other than who.
func (as Approvers) Except(who Person) []Person {
	var out []Person
	for _, p := range as {
		if !samePerson(p.Person, who) {
			out = append(out, p.Person)
		}
	}
	return out
}

// Without returns the approvers less gone: people who approved but may no
// longer (removed from the chat, made guests), whose approval must not
// count towards a quorum.
func (as Approvers) Without(gone []Person) Approvers {
	var kept Approvers
	for _, p := range as {
		if !slices.ContainsFunc(gone, func(g Person) bool { return samePerson(p.Person, g) }) {
			kept = append(kept, p)
		}
	}
	return kept
}

// QuorumFor is how many distinct approvers must approve an upgrade in scope
// when configured asks for that many (BOT_APPROVAL_QUORUM): a personal
// scope has one approver, its user, so one always; less than one is one.
func QuorumFor(scope Scope, configured int) int {
	if scope.Kind == ScopeUser || configured < 1 {
		return 1
	}
	return configured
}

// Needed is how many distinct approvers must approve before the upgrade
// runs: the approval's Quorum, at least one (requests recorded before
// quorums have none).
func (a Approval) Needed() int { return max(a.Quorum, 1) }

// samePerson compares by Entra object id when both have one, else by
// channel id: the same person clicking twice (or on two replicas) counts
// once.
func samePerson(a, b Person) bool {
	if a.AADObjectID != "" && b.AADObjectID != "" {
		return strings.EqualFold(a.AADObjectID, b.AADObjectID)
	}
	return a.ID != "" && a.ID == b.ID
}

// Vote is what an approver's Approve did.
type Vote int

const (
	// VoteRefused: the approval may not be decided (someone else's
	// approval claimed it, it was closed): nothing changed.
	VoteRefused Vote = iota
	// VoteCounted: who's approval was added; more are still needed.
	VoteCounted
	// VoteRepeated: who had already approved; nothing changed.
	VoteRepeated
	// VoteClaimed: the quorum is met: the approval is claimed for the
	// upgrade under the token given, by the approver whose click met it.
	VoteClaimed
)

// Approve records who's approval at at, once per person, and claims the
// approval for the upgrade under token (as Claim) once Needed distinct
// approvers have approved. A failed upgrade keeps its approvals: any of
// its approvers, or another, claims it again at once (Retry). Applied in
// one compare-and-set with the claim, the approval that meets the quorum
// is the one claim that wins.
func (a Approval) Approve(who Person, at time.Time, token string) (Approval, Vote) {
	if !a.Status.Decidable() {
		return a, VoteRefused
	}
	added := false
	if !a.Approvals.Include(who) {
		a.Approvals = append(a.Approvals[:len(a.Approvals):len(a.Approvals)], Approver{Person: who, At: at.UTC()})
		added = true
	}
	if len(a.Approvals) >= a.Needed() {
		c, _ := a.Claim(who, at, token)
		return c, VoteClaimed
	}
	if !added {
		return a, VoteRepeated
	}
	return a, VoteCounted
}

// Completes reports whether who's approval would meet a quorum of more
// than one: the moment to make sure the earlier approvers still may.
func (a Approval) Completes(who Person) bool {
	n := len(a.Approvals)
	if !a.Approvals.Include(who) {
		n++
	}
	return a.Needed() > 1 && n >= a.Needed()
}
