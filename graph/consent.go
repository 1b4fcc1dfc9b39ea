package graph

import (
	"context"
	"net/url"
	"slices"
	"strings"

	abstractions "github.com/microsoft/kiota-abstractions-go"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.ConsentPolicies = (*Client)(nil)

// The application permissions that read a tenant's consent policies, as
// Microsoft's reference names them: GET /policies/authorizationPolicy
// (v1.0) and GET /policies/permissionGrantPreApprovalPolicies (beta only).
const (
	PermissionReadAuthorizationPolicy = "Policy.Read.All"
	PermissionReadPreApprovalPolicies = "Policy.Read.PermissionGrant"
)

// ConsentFacts reads what the tenant lets chat and team owners consent to:
// the authorization policy's defaultUserRolePermissions
// .permissionGrantPoliciesAssigned and, when one of those is a "pre-approved
// apps only" policy, the scopes the beta permissionGrantPreApprovalPolicies
// cover. A 403 on the authorization policy is an error with code
// CodeForbidden naming Policy.Read.All; one on the pre-approval policies
// leaves them unread (ConsentFacts.PreApprovalRead false).
func (c *Client) ConsentFacts(ctx context.Context, tenantID string) (approval.ConsentFacts, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(tenantID)
	if err != nil {
		return approval.ConsentFacts{}, err
	}
	var policy struct {
		DefaultUserRolePermissions *struct {
			PermissionGrantPoliciesAssigned []string `json:"permissionGrantPoliciesAssigned"`
		} `json:"defaultUserRolePermissions"`
	}
	ri, err := g.Policies().AuthorizationPolicy().ToGetRequestInformation(ctx, nil)
	if err == nil {
		err = getJSON(ctx, g, ri, &policy)
	}
	if err != nil {
		return approval.ConsentFacts{}, translate(err, "read the tenant's authorization policy", PermissionReadAuthorizationPolicy)
	}
	f := approval.ConsentFacts{Read: true}
	if p := policy.DefaultUserRolePermissions; p != nil {
		f.GrantPolicies = p.PermissionGrantPoliciesAssigned
	}
	if !f.NeedsPreApproval(approval.ScopeChat) && !f.NeedsPreApproval(approval.ScopeTeam) {
		return f, nil
	}
	var pre []preApprovalPolicyJSON
	ri, err = c.betaRequest("/policies/permissionGrantPreApprovalPolicies")
	if err == nil {
		pre, err = list[preApprovalPolicyJSON](ctx, g, ri)
	}
	if err != nil {
		c.opts.Logger.WarnContext(ctx, "cannot read the tenant's RSC pre-approval policies; which apps are pre-approved stays unknown",
			"tenant", tenantID, "err", translate(err, "read the permission grant pre-approval policies", PermissionReadPreApprovalPolicies))
		return f, nil
	}
	f.PreApprovalRead = true
	for _, p := range pre {
		for _, cond := range p.Conditions {
			if s := strings.ToLower(cond.ScopeType); s != "" && !slices.Contains(f.PreApprovedScopes, s) {
				f.PreApprovedScopes = append(f.PreApprovedScopes, s)
			}
		}
	}
	return f, nil
}

// betaRequest is a GET of path on Graph's beta endpoint beside the v1.0
// base (msgraph-sdk-go speaks v1.0 only), sent through the same adapter.
func (c *Client) betaRequest(path string) (*abstractions.RequestInformation, error) {
	base := strings.TrimSuffix(strings.TrimRight(c.opts.BaseURL, "/"), "/v1.0") + "/beta"
	u, err := url.Parse(base + path)
	if err != nil {
		return nil, err
	}
	ri := abstractions.NewRequestInformation()
	ri.Method = abstractions.GET
	ri.SetUri(*u)
	ri.Headers.TryAdd("Accept", "application/json")
	return ri, nil
}

// preApprovalPolicyJSON is a permissionGrantPreApprovalPolicy (beta):
// its conditions' scopeType is "chat" or "group".
type preApprovalPolicyJSON struct {
	Conditions []struct {
		ScopeType string `json:"scopeType"`
	} `json:"conditions"`
}
