package approval_test

import (
	"testing"

	"github.com/upgradeapprovals/bot/approval"
)

func TestAskAdminOncePerPerson(t *testing.T) {
	adele := approval.Person{ID: "29:1adele", AADObjectID: "33333333-3333-3333-3333-333333333333", Name: "Adele Vance"}
	megan := approval.Person{ID: "29:1megan", AADObjectID: "11111111-1111-1111-1111-111111111111", Name: "Megan Bowen"}
	a := approval.Approval{Status: approval.StatusPending}
	a, ok := a.AskAdmin(adele)
	if !ok || !a.AdminAsked(adele) || a.AdminAsked(megan) {
		t.Fatalf("first ask: %v %+v", ok, a.AdminAskedBy)
	}
	again := adele
	again.AADObjectID = "33333333-3333-3333-3333-333333333333"
	again.Name = "Adele V." // renamed since: still the same person
	if _, ok := a.AskAdmin(again); ok {
		t.Error("the same person asked twice")
	}
	a, ok = a.AskAdmin(megan)
	if !ok || len(a.AdminAskedBy) != 2 || a.AdminAskedBy[1].Name != "Megan Bowen" {
		t.Fatalf("second person: %v %+v", ok, a.AdminAskedBy)
	}
	back := a.TakeBackAsk(adele)
	if back.AdminAsked(adele) || !back.AdminAsked(megan) || len(a.AdminAskedBy) != 2 {
		t.Errorf("taking back Adele's ask: %+v (original %+v)", back.AdminAskedBy, a.AdminAskedBy)
	}
	for _, s := range approval.Statuses() {
		_, ok := approval.Approval{Status: s}.AskAdmin(adele)
		want := s == approval.StatusPending || s == approval.StatusFailed || s == approval.StatusNeedsAdmin
		if ok != want {
			t.Errorf("%s: asking an admin %v, want %v", s, ok, want)
		}
	}
}

func TestWhyNotApprover(t *testing.T) {
	scope := approval.Scope{Kind: approval.ScopeChat, ID: "19:abc@thread.v2", TenantID: "tenant-a"}
	who := approval.Person{AADObjectID: "u1"}
	for _, c := range []struct {
		name       string
		membership []approval.Member
		want       approval.AskReason
	}{
		{"not a member", nil, approval.AskNotApprover},
		{"a member the rule does not name", []approval.Member{{UserID: "U1", TenantID: "tenant-a"}}, approval.AskNotApprover},
		{"a guest", []approval.Member{{UserID: "u1", TenantID: "tenant-a", Roles: []string{"guest"}}}, approval.AskGuest},
		{"another organization", []approval.Member{{UserID: "u1", TenantID: "tenant-b", Roles: []string{"owner"}}}, approval.AskOtherTenant},
		{"someone else's entry", []approval.Member{{UserID: "u2", TenantID: "tenant-b"}}, approval.AskNotApprover},
	} {
		if got := approval.WhyNotApprover(scope, who, c.membership); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
