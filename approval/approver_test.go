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
			if got := tc.policy.Judge(tc.scope, tc.who, tc.membership, approval.Chat{}); got != tc.want {
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
	if p.Judge(chat, who, []approval.Member{{UserID: meganID, TenantID: ourTenant}}, approval.Chat{}) != approval.Allowed {
		t.Error("a user named in capitals is not allowed")
	}
	for _, bad := range []string{"owner", "owners:x", "group:not-a-guid", "user:", "admins", "organizer",
		"chat=organizer", "team=organizer", "meeting=", "meetings=owners", "personal=owners", "personal=group:" + groupID,
		"=owners", "team=group:x", "chat=owners=x"} {
		if _, err := approval.ParseApproverPolicy([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Rules for one kind of scope hold there alone, on top of the plain ones.
func TestApproverRulesPerKindOfScope(t *testing.T) {
	const (
		alexID  = "7a1f0c1e-2b3c-4d5e-8f90-123456789abc"
		otherID = "8b2e1d2f-3c4d-4e5f-9a01-23456789abcd"
		ownerID = "9c3f2e30-4d5e-4f60-8b12-3456789abcde"
	)
	p, err := approval.ParseApproverPolicy([]string{"user:" + alexID, "chat=group:" + groupID, "team=owners",
		"meeting=organizer", "meeting=user:" + otherID, "personal=user"})
	if err != nil {
		t.Fatal(err)
	}
	chat := approval.Scope{Kind: approval.ScopeChat, ID: "19:x@thread.v2", TenantID: ourTenant}
	team := approval.Scope{Kind: approval.ScopeTeam, ID: groupID, TenantID: ourTenant}
	personal := approval.Scope{Kind: approval.ScopeUser, ID: meganID, TenantID: ourTenant}
	meeting := approval.Chat{Meeting: true, Organizer: meganID}
	person := func(id string) approval.Person { return approval.Person{AADObjectID: id} }
	in := func(id string, roles ...string) []approval.Member {
		return []approval.Member{{UserID: id, TenantID: ourTenant, Roles: roles}}
	}
	for _, tc := range []struct {
		name       string
		scope      approval.Scope
		chat       approval.Chat
		who        string
		membership []approval.Member
		want       approval.Judgement
	}{
		{"team: an owner", team, approval.Chat{}, meganID, in(meganID, "owner"), approval.Allowed},
		{"team: a member", team, approval.Chat{}, meganID, in(meganID), approval.Refused},
		{"team: the plain named user", team, approval.Chat{}, alexID, in(alexID), approval.Allowed},
		{"team: a meeting's named user", team, approval.Chat{}, otherID, in(otherID), approval.Refused},
		{"chat: an owner is not enough", chat, approval.Chat{}, meganID, in(meganID, "owner"), approval.IfInGroup},
		{"chat: the plain named user", chat, approval.Chat{}, alexID, in(alexID), approval.Allowed},
		{"chat: the organizer rule is the meeting's", chat, approval.Chat{Organizer: meganID}, meganID, in(meganID), approval.IfInGroup},
		{"meeting: the organizer", chat, meeting, meganID, in(meganID), approval.Allowed},
		{"meeting: the organizer as a guest", chat, meeting, meganID, in(meganID, "guest"), approval.Refused},
		{"meeting: the organizer, not a member", chat, meeting, meganID, nil, approval.Refused},
		{"meeting: the organizer from another tenant", chat, meeting, meganID,
			[]approval.Member{{UserID: meganID, TenantID: otherTenant}}, approval.Refused},
		{"meeting: an owner who did not organize it", chat, meeting, ownerID, in(ownerID, "owner"), approval.Refused},
		{"meeting: its named user", chat, meeting, otherID, in(otherID), approval.Allowed},
		{"meeting: the chat's group is not its", chat, meeting, alexID, in(alexID), approval.Allowed},
		{"meeting: Graph names no organizer", chat, approval.Chat{Meeting: true}, meganID, in(meganID, "owner"), approval.Refused},
		{"personal: the user", personal, approval.Chat{}, meganID, nil, approval.Allowed},
		{"personal: anyone else", personal, approval.Chat{}, alexID, nil, approval.Refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Judge(tc.scope, person(tc.who), tc.membership, tc.chat); got != tc.want {
				t.Errorf("judged %d, want %d", got, tc.want)
			}
		})
	}
	if !p.NeedsChat(chat) || p.NeedsChat(team) || p.NeedsChat(personal) {
		t.Error("Graph's chat is asked for where the rules do not need it, or not where they do")
	}
	if plain, _ := approval.ParseApproverPolicy([]string{"owners", "team=owners"}); plain.NeedsChat(chat) {
		t.Error("a policy without chat or meeting rules asks Graph for the chat")
	}
	if g := p.For(approval.ForChat).Groups; len(g) != 1 || g[0] != groupID || len(p.For(approval.ForMeeting).Groups) != 0 {
		t.Errorf("chat=group: holds in %q, meetings %q", g, p.For(approval.ForMeeting).Groups)
	}
}
