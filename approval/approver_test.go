package approval_test

import (
	"testing"

	"github.com/upgradeapprovals/bot/approval"
)

const (
	ourTenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	otherTenant = "11111111-2222-3333-4444-555555555555"
	meganID     = "6e7b768e-07e2-4810-8459-485f84f8f204"
	groupID     = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
)

func TestApproverRule(t *testing.T) {
	chat := approval.Scope{Kind: approval.ScopeChat, ID: "19:x@thread.v2", TenantID: ourTenant}
	megan := approval.Person{ID: "29:megan", AADObjectID: meganID, Name: "Megan"}
	member := func(tenant string, roles ...string) []approval.Member {
		return []approval.Member{{UserID: meganID, TenantID: tenant, Roles: roles}}
	}
	owners := approval.ApproverPolicy{Owners: true}
	named := approval.ApproverPolicy{Users: []string{meganID}}
	group := approval.ApproverPolicy{Groups: []string{groupID}}
	for _, tc := range []struct {
		name       string
		policy     approval.ApproverPolicy
		scope      approval.Scope
		who        approval.Person
		membership []approval.Member
		want       approval.Judgement
	}{
		{"owner from our tenant", owners, chat, megan, member(ourTenant, "owner"), approval.Allowed},
		{"member, not owner", owners, chat, megan, member(ourTenant), approval.Refused},
		{"guest", owners, chat, megan, member(ourTenant, "guest"), approval.Refused},
		{"owner from another tenant", owners, chat, megan, member(otherTenant, "owner"), approval.Refused},
		{"not a member", owners, chat, megan, nil, approval.Refused},
		{"no Entra object id", owners, chat, approval.Person{ID: "29:anon"}, member(ourTenant, "owner"), approval.Refused},
		{"named user, a member", named, chat, megan, member(ourTenant), approval.Allowed},
		{"named user, a guest", named, chat, megan, member(ourTenant, "guest"), approval.Refused},
		{"owner and guest", owners, chat, megan, member(ourTenant, "owner", "guest"), approval.Refused},
		{"group, a guest", group, chat, megan, member(ourTenant, "guest"), approval.Refused},
		{"named user, not a member", named, chat, megan, nil, approval.Refused},
		{"named user from another tenant", named, chat, megan, member(otherTenant), approval.Refused},
		{"group, a member of the scope", group, chat, megan, member(ourTenant), approval.IfInGroup},
		{"group, not a member of the scope", group, chat, megan, nil, approval.Refused},
		{"group, a member from another tenant", group, chat, megan, member(otherTenant), approval.Refused},
		{"no rule", approval.ApproverPolicy{}, chat, megan, member(ourTenant, "owner"), approval.Refused},
		{"own personal scope", approval.ApproverPolicy{}, approval.Scope{Kind: approval.ScopeUser, ID: meganID}, megan, nil, approval.Allowed},
		{"someone else's personal scope", owners, approval.Scope{Kind: approval.ScopeUser, ID: otherTenant}, megan, nil, approval.Refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.policy.Judge(tc.scope, tc.who, tc.membership); got != tc.want {
				t.Errorf("judged %d, want %d", got, tc.want)
			}
		})
	}
	if approval.NeedsMembership(approval.Scope{Kind: approval.ScopeUser, ID: meganID}, megan) ||
		approval.NeedsMembership(chat, approval.Person{ID: "29:anon"}) || !approval.NeedsMembership(chat, megan) {
		t.Error("membership is asked for where the rule does not need it, or not where it does")
	}
}

func TestParseApproverPolicy(t *testing.T) {
	p, err := approval.ParseApproverPolicy([]string{"owners", " group:" + groupID, "user:6E7B768E-07E2-4810-8459-485F84F8F204"})
	if err != nil || !p.Owners || len(p.Groups) != 1 || p.Groups[0] != groupID || len(p.Users) != 1 || p.Users[0] != meganID {
		t.Fatalf("policy %+v %v", p, err)
	}
	// A named user matches whatever the case of the id Teams sends.
	chat := approval.Scope{Kind: approval.ScopeChat, ID: "19:x@thread.v2", TenantID: ourTenant}
	who := approval.Person{AADObjectID: meganID}
	if p.Judge(chat, who, []approval.Member{{UserID: meganID, TenantID: ourTenant}}) != approval.Allowed {
		t.Error("a user named in capitals is not allowed")
	}
	for _, bad := range []string{"owner", "owners:x", "group:not-a-guid", "user:", "admins"} {
		if _, err := approval.ParseApproverPolicy([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
