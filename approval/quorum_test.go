package approval_test

import (
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

func TestQuorumForPersonalScopeIsAlwaysOne(t *testing.T) {
	for _, tc := range []struct {
		kind       approval.ScopeKind
		configured int
		want       int
	}{
		{approval.ScopeChat, 2, 2}, {approval.ScopeTeam, 3, 3}, {approval.ScopeUser, 3, 1}, {approval.ScopeChat, 0, 1},
	} {
		if got := approval.QuorumFor(approval.Scope{Kind: tc.kind}, tc.configured); got != tc.want {
			t.Errorf("QuorumFor(%s, %d) = %d, want %d", tc.kind, tc.configured, got, tc.want)
		}
	}
}

func TestApproveClaimsOnceTheQuorumIsMet(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	megan := approval.Person{ID: "29:megan", AADObjectID: "00000000-0000-0000-0000-000000000001", Name: "Megan"}
	alex := approval.Person{ID: "29:alex", AADObjectID: "00000000-0000-0000-0000-000000000002", Name: "Alex"}
	a := approval.Approval{Status: approval.StatusPending, Quorum: 2}

	a, v := a.Approve(megan, at, "t1")
	if v != approval.VoteCounted || a.Status != approval.StatusPending || a.Needed()-len(a.Approvals) != 1 {
		t.Fatalf("first approval: vote %v, status %s, still needed %d", v, a.Status, a.Needed()-len(a.Approvals))
	}
	// The same person again (another click, the same id in other case) counts once.
	again := megan
	again.AADObjectID = "00000000-0000-0000-0000-000000000001"
	if b, v := a.Approve(again, at.Add(time.Minute), "t2"); v != approval.VoteRepeated || len(b.Approvals) != 1 {
		t.Fatalf("second click by the same person: vote %v, %d approvals", v, len(b.Approvals))
	}
	c, v := a.Approve(alex, at.Add(2*time.Minute), "t3")
	if v != approval.VoteClaimed || !c.HeldBy("t3") || c.DecidedBy.Name != "Alex" || len(c.Approvals) != 2 {
		t.Fatalf("second approver: vote %v, claimed %v by %v, approvals %v", v, c.HeldBy("t3"), c.DecidedBy, c.Approvals)
	}
	if len(a.Approvals) != 1 {
		t.Errorf("approving changed the approval it started from: %v", a.Approvals)
	}
	if _, v := c.Approve(megan, at, "t4"); v != approval.VoteRefused {
		t.Errorf("approving an upgrading approval: vote %v, want refused", v)
	}
	// A failed upgrade keeps its approvals: Retry claims it at once.
	failed := c.Close(approval.Outcome{Status: approval.StatusFailed, At: at})
	if r, v := failed.Approve(megan, at, "t5"); v != approval.VoteClaimed || !r.HeldBy("t5") {
		t.Errorf("retry of a failed upgrade with its quorum: vote %v", v)
	}
}

func TestApproveWithoutQuorumClaimsAtOnce(t *testing.T) {
	a := approval.Approval{Status: approval.StatusPending} // recorded before quorums
	c, v := a.Approve(approval.Person{ID: "29:megan"}, time.Now(), "t")
	if v != approval.VoteClaimed || !c.HeldBy("t") {
		t.Errorf("vote %v, want claimed", v)
	}
}
