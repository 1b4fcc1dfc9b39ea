package graph_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"testing"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/graph"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

const (
	chatPreApproval = "ManagePermissionGrantsForOwnedResource.microsoft-pre-approval-apps-for-chat"
	chatAllApps     = "ManagePermissionGrantsForOwnedResource.microsoft-all-application-permissions-for-chat"
)

func TestConsentFactsReadTheAuthorizationPolicy(t *testing.T) {
	e := newEnv(t)
	f, err := e.client.ConsentFacts(context.Background(), tenantID)
	if err != nil {
		t.Fatal(err)
	}
	want := approval.ConsentFacts{Read: true, GrantPolicies: fakegraph.DefaultGrantPolicies}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("facts %+v, want %+v", f, want)
	}
	calls := e.tenant.Calls()
	if len(calls) != 1 || calls[0].Path != "/policies/authorizationPolicy" {
		t.Errorf("calls %+v: want only the authorization policy (no pre-approval policy is assigned)", calls)
	}
}

func TestConsentFactsReadPreApprovalsFromBetaOnlyWhenTheyMatter(t *testing.T) {
	e := newEnv(t)
	e.tenant.SetGrantPolicies(chatPreApproval)
	e.tenant.SetPreApproved("group")
	f, err := e.client.ConsentFacts(context.Background(), tenantID)
	if err != nil {
		t.Fatal(err)
	}
	if !f.PreApprovalRead || !reflect.DeepEqual(f.PreApprovedScopes, []string{"group"}) {
		t.Errorf("facts %+v: want the pre-approval policies read, covering teams only", f)
	}
	if got := approval.ConsentEligibility(f, approval.ScopeChat, []approval.Permission{{Value: chatRead.Value, Type: chatRead.Type}}); got != approval.EligibilityNeedsAdmin {
		t.Errorf("chat eligibility %s, want needs admin: no app is pre-approved for chats", got)
	}
	if c := e.tenant.Calls(); len(c) != 2 || c[1].Path != "/beta/policies/permissionGrantPreApprovalPolicies" {
		t.Errorf("calls %+v", c)
	}
	// Without Policy.Read.PermissionGrant the pre-approvals stay unknown.
	e.tenant.Revoke(graph.PermissionReadPreApprovalPolicies)
	f, err = e.client.ConsentFacts(context.Background(), tenantID)
	if err != nil || !f.Read || f.PreApprovalRead {
		t.Errorf("facts %+v, %v: want the policy read and the pre-approvals not", f, err)
	}
}

func TestConsentFactsWithoutPolicyReadAllIsForbidden(t *testing.T) {
	e := newEnv(t)
	e.tenant.Revoke(graph.PermissionReadAuthorizationPolicy)
	_, err := e.client.ConsentFacts(context.Background(), tenantID)
	if bot.ErrorCode(err) != bot.CodeForbidden {
		t.Fatalf("err %v (code %s), want forbidden", err, bot.ErrorCode(err))
	}
	p := approval.ProblemOf(err)
	if p.Reason != approval.ReasonGraphRefused || p.Permission != "Policy.Read.All" || p.Status != http.StatusForbidden ||
		p.GraphCode != "Authorization_RequestDenied" {
		t.Errorf("problem %+v", p)
	}
}

// Graph's refusals of the consent an upgrade needs come back as problems
// only an admin ends, never as a retryable failure.
func TestConsentRefusalsNeedAnAdmin(t *testing.T) {
	e := newEnv(t)
	e.tenant.SetGrantPolicies() // no owner may consent in chats or teams
	e.tenant.AddApp(fakegraph.App{ID: pollsID, DisplayName: "Polls", Definitions: []fakegraph.Definition{
		{Version: "1.0.0"}, {Version: "1.1.0", RSC: []fakegraph.Permission{chatRead}},
	}})
	e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", nil)
	u := pending(t, e.client, chat())
	err := e.client.Upgrade(context.Background(), u.Installation, u.Target.Permissions)
	p := approval.ProblemOf(err)
	if p.Reason != approval.ReasonConsentNotAllowed || p.Status != http.StatusPreconditionFailed || p.GraphMessage != fakegraph.ConsentRefused || !p.NeedsAdmin() {
		t.Errorf("problem %+v", p)
	}
	if errors.Is(err, bot.ErrUpgradeUncertain) {
		t.Error("a refusal is certain: nothing to read back")
	}
	e.tenant.SetGrantPolicies(chatAllApps)
	e.tenant.Fail(fakegraph.Fault{Method: http.MethodPost, Path: "/upgrade", Status: http.StatusForbidden, Code: "Forbidden",
		Message: "App with id " + pollsID + " is explicitly blocked by the tenant admin."})
	p = approval.ProblemOf(e.client.Upgrade(context.Background(), u.Installation, u.Target.Permissions))
	if p.Reason != approval.ReasonAppBlocked || !p.NeedsAdmin() {
		t.Errorf("problem %+v", p)
	}
	if err := e.client.Upgrade(context.Background(), u.Installation, u.Target.Permissions); err != nil {
		t.Errorf("upgrade once the policy allows it: %v", err)
	}
}
