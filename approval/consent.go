package approval

import (
	"slices"
	"strings"
	"time"
)

// ConsentFacts is what the tenant's policies say about who may consent to
// resource-specific (RSC) application permissions, as Graph returned them:
// the facts ConsentEligibility decides from.
type ConsentFacts struct {
	// Read: the authorization policy was read. False when the bot may
	// not read it (Graph answered 403: Policy.Read.All is not granted);
	// nothing is then known.
	Read bool `json:"read"`
	// GrantPolicies is the authorization policy's
	// defaultUserRolePermissions.permissionGrantPoliciesAssigned: ids such
	// as "ManagePermissionGrantsForOwnedResource.microsoft-pre-approval-apps-for-chat".
	GrantPolicies []string `json:"grantPolicies"`
	// PreApprovalRead: the tenant's permission grant pre-approval policies
	// were read (beta /policies/permissionGrantPreApprovalPolicies, which
	// needs Policy.Read.PermissionGrant).
	PreApprovalRead bool `json:"preApprovalRead,omitempty"`
	// PreApprovedScopes are the scope types ("chat", "group") that at least
	// one pre-approval policy has a condition for. The policies name
	// neither the app (a policy is assigned to an app's service principal)
	// nor permissions by name (they are ids), so this is what they say
	// without further reads: whether any app may be pre-approved there.
	PreApprovedScopes []string `json:"preApprovedScopes,omitempty"`
}

// Eligibility is whether a scope's approvers may consent to an upgrade's
// RSC permissions.
type Eligibility string

const (
	// EligibilityAllowed: the tenant lets them consent.
	EligibilityAllowed Eligibility = "allowed"
	// EligibilityNeedsAdmin: the tenant does not: an admin must allow it
	// (pre-approve the app, or change the consent setting) first.
	EligibilityNeedsAdmin Eligibility = "needsadmin"
	// EligibilityUnknown: the policy could not be read, or does not say
	// (Microsoft manages it, a custom policy, a personal scope): the
	// upgrade is offered as before, and Graph's answer decides.
	EligibilityUnknown Eligibility = "unknown"
)

// The permission grant policies Teams assigns to the default user role
// (ManagePermissionGrantsForOwnedResource.<id>), one per consent setting
// of chats and teams. Microsoft's Graph PowerShell
// (Get-MgBetaTeamRscConfiguration) derives the setting from these: none of a
// scope's assigned means disabled for all apps.
const (
	grantPolicyPrefix = "managepermissiongrantsforownedresource."
	// Microsoft decides which permissions owners may consent to (the
	// default).
	policyChatManaged = "microsoft-dynamically-managed-permissions-for-chat"
	policyTeamManaged = "microsoft-dynamically-managed-permissions-for-team"
	// Enabled for all apps.
	policyChatAll = "microsoft-all-application-permissions-for-chat"
	policyTeamAll = "microsoft-all-application-permissions-for-team"
	// Enabled for pre-approved apps only; older tenants show "-for-group".
	policyChatPreApproved  = "microsoft-pre-approval-apps-for-chat"
	policyTeamPreApproved  = "microsoft-pre-approval-apps-for-team"
	policyGroupPreApproved = "microsoft-pre-approval-apps-for-group"
)

// ConsentEligibility decides whether the approvers of a scope of kind may
// consent to the application permissions of permissions (what an upgrade
// adds), from the tenant's facts. Delegated RSC permissions are anyone's who
// may install the app to consent to, so only application ones count; an
// upgrade that asks for none is allowed.
//
// Chats follow their chat consent setting and teams their team setting; a
// personal scope has no owner consent policy the bot can read (Unknown). A
// scope with no consent policy assigned is disabled for all apps
// (NeedsAdmin); the older switches that enabled it (the Teams app setting
// isChatResourceSpecificConsentEnabled, the group setting
// EnableGroupSpecificConsent) were retired in 2024. "Pre-approved apps only"
// allows nobody when no pre-approval policy covers the scope, and is Unknown
// otherwise: which app a policy pre-approves is not in the policy.
func ConsentEligibility(f ConsentFacts, kind ScopeKind, permissions []Permission) Eligibility {
	if !AsksApplicationConsent(permissions) {
		return EligibilityAllowed
	}
	if !f.Read || kind == ScopeUser {
		return EligibilityUnknown
	}
	var all, managed, preApproved []string
	preScope := ""
	switch kind {
	case ScopeChat:
		all, managed, preApproved, preScope = []string{policyChatAll}, []string{policyChatManaged}, []string{policyChatPreApproved}, "chat"
	case ScopeTeam:
		all, managed, preApproved, preScope = []string{policyTeamAll}, []string{policyTeamManaged},
			[]string{policyTeamPreApproved, policyGroupPreApproved}, "group"
	default:
		return EligibilityUnknown
	}
	assigned := func(ids []string) bool {
		return slices.ContainsFunc(f.GrantPolicies, func(g string) bool {
			g = strings.ToLower(strings.TrimSpace(g))
			return strings.HasPrefix(g, grantPolicyPrefix) && slices.Contains(ids, strings.TrimPrefix(g, grantPolicyPrefix))
		})
	}
	switch {
	case assigned(all):
		return EligibilityAllowed
	case assigned(managed):
		return EligibilityUnknown // Microsoft decides per permission
	case assigned(preApproved):
		if f.PreApprovalRead && !slices.ContainsFunc(f.PreApprovedScopes, func(s string) bool { return strings.EqualFold(s, preScope) }) {
			return EligibilityNeedsAdmin
		}
		return EligibilityUnknown
	case slices.ContainsFunc(f.GrantPolicies, func(g string) bool {
		g = strings.ToLower(g)
		return strings.HasPrefix(g, grantPolicyPrefix) && (strings.HasSuffix(g, "-for-"+string(kind)) ||
			kind == ScopeTeam && strings.HasSuffix(g, "-for-group"))
	}):
		return EligibilityUnknown // a custom policy for this scope
	}
	return EligibilityNeedsAdmin
}

// AsksApplicationConsent reports whether permissions hold an application
// RSC permission: the only kind a tenant's owner consent policy governs.
func AsksApplicationConsent(permissions []Permission) bool {
	return slices.ContainsFunc(permissions, func(p Permission) bool { return strings.EqualFold(p.Type, "application") })
}

// NeedsPreApproval reports whether the facts say that owners of a scope of
// kind may consent only to pre-approved apps, so the admin's way to allow
// one app is to pre-approve it.
func (f ConsentFacts) NeedsPreApproval(kind ScopeKind) bool {
	id := policyChatPreApproved
	if kind == ScopeTeam {
		id = policyTeamPreApproved
	}
	for _, g := range f.GrantPolicies {
		g = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(g)), grantPolicyPrefix)
		if g == id || (kind == ScopeTeam && g == policyGroupPreApproved) {
			return true
		}
	}
	return false
}

// Fingerprint names the facts, so that a request an upgrade refusal left
// needing an admin is offered again only once the policy changed.
func (f ConsentFacts) Fingerprint() string {
	if !f.Read {
		return ""
	}
	ids := make([]string, 0, len(f.GrantPolicies))
	for _, g := range f.GrantPolicies {
		ids = append(ids, strings.ToLower(strings.TrimSpace(g)))
	}
	slices.Sort(ids)
	pre := slices.Clone(f.PreApprovedScopes)
	slices.Sort(pre)
	s := strings.Join(ids, ",")
	if f.PreApprovalRead {
		s += ";pre=" + strings.Join(pre, ",")
	}
	return s
}

// ConsentPermissions are the permissions an upgrade asks the approvers to
// consent to: the ones it adds.
func (u PendingUpgrade) ConsentPermissions() []Permission { return u.Diff.Added }

// NeedsAdmin returns the approval waiting for an admin because of why (the
// consent policy, or Graph's refusal of the consent), under the policy
// whose fingerprint is seen.
func (a Approval) NeedsAdmin(why Problem, seen string) Approval {
	a.Status, a.Problem, a.ProblemText, a.ClaimToken, a.RetryAt = StatusNeedsAdmin, why, "", "", time.Time{}
	a.Problem.ConsentPolicy = seen
	return a
}

// MayOfferAgain reports whether an approval waiting for an admin may go back
// to pending under the facts just read: they no longer say an admin is
// needed, and, when Graph itself refused the consent, the policy changed
// since (else the same refusal would follow the next click).
func (a Approval) MayOfferAgain(f ConsentFacts) bool {
	if a.Status != StatusNeedsAdmin || !f.Read {
		return false
	}
	u := a.Upgrade
	if ConsentEligibility(f, u.Installation.Scope.Kind, u.ConsentPermissions()) == EligibilityNeedsAdmin {
		return false
	}
	return a.Problem.Reason == ReasonConsentPolicy || f.Fingerprint() != a.Problem.ConsentPolicy
}

// OfferAgain returns the approval pending again: an admin allowed it. Who
// approved it before Graph refused is forgotten: it awaits a decision.
func (a Approval) OfferAgain() Approval {
	a.Status, a.Problem, a.ProblemText, a.DecidedBy, a.DecidedAt = StatusPending, Problem{}, "", nil, time.Time{}
	a.Approvals = nil // they approved a consent the tenant did not allow then: they approve again
	return a
}
