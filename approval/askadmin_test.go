package approval_test

import (
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

func TestAskAdminOncePerPerson(t *testing.T) {
	adele := approval.Person{ID: "29:1adele", AADObjectID: "33333333-3333-3333-3333-333333333333", Name: "Adele Vance"}
	megan := approval.Person{ID: "29:1megan", AADObjectID: "11111111-1111-1111-1111-111111111111", Name: "Megan Bowen"}
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	a := approval.Approval{Status: approval.StatusPending}
	a, ok := a.AskAdmin(adele, at, approval.AskNotApprover)
	if !ok || !a.AdminAsked(adele) || a.AdminAsked(megan) {
		t.Fatalf("first ask: %v %+v", ok, a.AdminAskedBy)
	}
	if len(a.AsksUnposted) != 1 || a.AsksUnposted[0].Name != "Adele Vance" || a.AsksUnposted[0].Why != approval.AskNotApprover {
		t.Fatalf("the ask is not recorded as to be posted: %+v", a.AsksUnposted)
	}
	again := adele
	again.AADObjectID = "33333333-3333-3333-3333-333333333333"
	again.Name = "Adele V." // renamed since: still the same person
	if _, ok := a.AskAdmin(again, at, approval.AskNotApprover); ok {
		t.Error("the same person asked twice")
	}
	a, ok = a.AskAdmin(megan, at.Add(time.Hour), approval.AskSecondOpinion)
	if !ok || len(a.AdminAskedBy) != 2 || a.AdminAskedBy[1].Name != "Megan Bowen" {
		t.Fatalf("second person: %v %+v", ok, a.AdminAskedBy)
	}
	if ask, ok := a.AsksUnposted.Of(approval.Person{AADObjectID: adele.AADObjectID}); !ok || ask.Why != approval.AskNotApprover || !ask.At.Equal(at) {
		t.Errorf("Adele's ask: %+v, %v", ask, ok)
	}
	if _, ok := a.AsksUnposted.Of(approval.Person{AADObjectID: "44444444-4444-4444-4444-444444444444"}); ok {
		t.Error("found the ask of someone who did not ask")
	}
	if old := a.AsksUnposted.Before(at.Add(time.Minute)); len(old) != 1 || old[0].Name != "Adele Vance" {
		t.Errorf("asks before %s: %+v", at.Add(time.Minute), old)
	}
	if left := a.AsksUnposted.Without(adele); len(left) != 1 || left[0].Name != "Megan Bowen" || len(a.AsksUnposted) != 2 {
		t.Errorf("Adele's ask posted: left %+v (original %+v)", left, a.AsksUnposted)
	}
	back := a.TakeBackAsk(adele)
	if back.AdminAsked(adele) || !back.AdminAsked(megan) || len(a.AdminAskedBy) != 2 || len(back.AsksUnposted) != 1 {
		t.Errorf("taking back Adele's ask: %+v, unposted %+v (original %+v)", back.AdminAskedBy, back.AsksUnposted, a.AdminAskedBy)
	}
	for _, s := range approval.Statuses() {
		_, ok := approval.Approval{Status: s}.AskAdmin(adele, at, approval.AskNotApprover)
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
