package approval

import "testing"

func TestConsentEligibility(t *testing.T) {
	app := []Permission{{Value: "ChatMessage.Read.Chat", Type: "Application"}}
	delegated := []Permission{{Value: "MeetingStage.Write.Chat", Type: "Delegated"}}
	policies := func(ids ...string) ConsentFacts {
		f := ConsentFacts{Read: true}
		for _, id := range ids {
			f.GrantPolicies = append(f.GrantPolicies, "ManagePermissionGrantsForOwnedResource."+id)
		}
		// What every tenant also assigns, for users' own consent.
		f.GrantPolicies = append(f.GrantPolicies, "ManagePermissionGrantsForSelf.microsoft-user-default-legacy")
		return f
	}
	preApproved := func(f ConsentFacts, scopes ...string) ConsentFacts {
		f.PreApprovalRead, f.PreApprovedScopes = true, scopes
		return f
	}
	for _, c := range []struct {
		name  string
		facts ConsentFacts
		kind  ScopeKind
		perms []Permission
		want  Eligibility
	}{
		{"policy unread", ConsentFacts{}, ScopeChat, app, EligibilityUnknown},
		{"no application permission", policies(), ScopeChat, delegated, EligibilityAllowed},
		{"nothing added", policies(), ScopeTeam, nil, EligibilityAllowed},
		{"chat: no policy assigned", policies(), ScopeChat, app, EligibilityNeedsAdmin},
		{"chat: a team policy only", policies("microsoft-all-application-permissions-for-team"), ScopeChat, app, EligibilityNeedsAdmin},
		{"chat: all apps", policies("microsoft-all-application-permissions-for-chat"), ScopeChat, app, EligibilityAllowed},
		{"chat: managed by Microsoft", policies("microsoft-dynamically-managed-permissions-for-chat"), ScopeChat, app, EligibilityUnknown},
		{"chat: pre-approved only, none pre-approved", preApproved(policies("microsoft-pre-approval-apps-for-chat")), ScopeChat, app, EligibilityNeedsAdmin},
		{"chat: pre-approved only, teams pre-approved", preApproved(policies("microsoft-pre-approval-apps-for-chat"), "group"), ScopeChat, app, EligibilityNeedsAdmin},
		{"chat: pre-approved only, some chat pre-approval", preApproved(policies("microsoft-pre-approval-apps-for-chat"), "chat"), ScopeChat, app, EligibilityUnknown},
		{"chat: pre-approved only, pre-approvals unread", policies("microsoft-pre-approval-apps-for-chat"), ScopeChat, app, EligibilityUnknown},
		{"chat: a custom policy", policies("contoso-for-chat"), ScopeChat, app, EligibilityUnknown},
		{"team: all apps", policies("microsoft-all-application-permissions-for-team"), ScopeTeam, app, EligibilityAllowed},
		{"team: older pre-approval id, none", preApproved(policies("microsoft-pre-approval-apps-for-group")), ScopeTeam, app, EligibilityNeedsAdmin},
		{"team: pre-approval, some", preApproved(policies("microsoft-pre-approval-apps-for-team"), "group"), ScopeTeam, app, EligibilityUnknown},
		{"team: none", policies("microsoft-all-application-permissions-for-chat"), ScopeTeam, app, EligibilityNeedsAdmin},
		{"personal scope", policies(), ScopeUser, app, EligibilityUnknown},
		{"ids in any case", ConsentFacts{Read: true, GrantPolicies: []string{"managePermissionGrantsForOwnedResource.Microsoft-All-Application-Permissions-For-Chat"}}, ScopeChat, app, EligibilityAllowed},
	} {
		if got := ConsentEligibility(c.facts, c.kind, c.perms); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestNeedsAdminOffersAgainOnlyWhenThePolicyAllows(t *testing.T) {
	blocked := ConsentFacts{Read: true}
	open := ConsentFacts{Read: true, GrantPolicies: []string{"ManagePermissionGrantsForOwnedResource.microsoft-all-application-permissions-for-chat"}}
	managed := ConsentFacts{Read: true, GrantPolicies: []string{"ManagePermissionGrantsForOwnedResource.microsoft-dynamically-managed-permissions-for-chat"}}
	a := Approval{Status: StatusPending, Upgrade: PendingUpgrade{
		Installation: Installation{Scope: Scope{Kind: ScopeChat, ID: "19:a@thread.v2"}},
		Diff:         PermissionDiff{Added: []Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}},
	}}
	byPolicy := a.NeedsAdmin(Problem{Reason: ReasonConsentPolicy}, blocked.Fingerprint())
	if byPolicy.Status != StatusNeedsAdmin || byPolicy.Decidable() || !byPolicy.Status.Open() {
		t.Fatalf("needs admin: %+v", byPolicy)
	}
	if byPolicy.MayOfferAgain(blocked) || byPolicy.MayOfferAgain(ConsentFacts{}) {
		t.Error("offered again while the policy still blocks it, or unread")
	}
	if !byPolicy.MayOfferAgain(open) || !byPolicy.MayOfferAgain(managed) {
		t.Error("not offered again once the policy allows it")
	}
	if again := byPolicy.OfferAgain(); again.Status != StatusPending || !again.Problem.IsZero() {
		t.Errorf("offered again: %+v", again)
	}
	// Graph refused under a policy that seemed to allow it: the same
	// policy must not bring the button back; a changed one does.
	refused := a.NeedsAdmin(Problem{Reason: ReasonConsentNotAllowed, Status: 412}, managed.Fingerprint())
	if refused.MayOfferAgain(managed) {
		t.Error("offered again under the policy Graph refused it under")
	}
	if !refused.MayOfferAgain(open) {
		t.Error("not offered again under a changed policy")
	}
	if !(Problem{Reason: ReasonConsentNotAllowed}).NeedsAdmin() || (Problem{Reason: ReasonGraphRefused}).NeedsAdmin() {
		t.Error("Problem.NeedsAdmin")
	}
}
