package app

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/upgradeapprovals/bot/approval"
)

// GraphPermission is a Microsoft Graph application permission the bot needs.
type GraphPermission struct {
	// Name is the permission as Entra ID spells it, and as a Graph access
	// token's roles claim lists it.
	Name string
	// Purpose is what the bot does with it.
	Purpose string
	// groupApprovers: needed only when BOT_APPROVERS names a group.
	groupApprovers bool
	// chatApprovers: needed only when BOT_APPROVERS has a rule for chats
	// or meetings alone (chat=…, meeting=…).
	chatApprovers bool
	// optional: the bot works without it, knowing less (doctor warns).
	optional bool
}

// GraphPermissions are the Graph application permissions the bot needs, in
// the order README's table lists them. README, doctor, the server's log at
// start and the grant script in deploy/azure all say what this says (their
// tests compare).
func GraphPermissions() []GraphPermission {
	return []GraphPermission{
		{Name: "TeamsAppInstallation.ReadWriteAndConsentForChat.All", Purpose: "List the apps installed in group " +
			"and meeting chats, read their consented RSC permissions, and upgrade them with consent to the new " +
			"version's RSC permissions."},
		{Name: "TeamsAppInstallation.ReadWriteAndConsentForTeam.All", Purpose: "The same for apps installed in " +
			"teams (the bot used in a channel)."},
		{Name: "TeamsAppInstallation.ReadWriteAndConsentForUser.All", Purpose: "The same for apps in a user's " +
			"personal scope (the bot used in a personal chat)."},
		{Name: "AppCatalog.Read.All", Purpose: "Read the tenant app catalog: the newest published version of " +
			"each app and the RSC permissions it requires."},
		{Name: "ChatMember.Read.All", Purpose: "List chat members and their roles, to let chat owners approve."},
		{Name: "TeamMember.Read.All", Purpose: "List team members and their roles, to let team owners approve."},
		{Name: "GroupMember.Read.All", Purpose: "Check membership (including nested groups) when " +
			"`BOT_APPROVERS` names an approver group.", groupApprovers: true},
		{Name: "Chat.ReadBasic.WhereInstalled", Purpose: "Read whether a chat is a meeting's, and its organizer, " +
			"when `BOT_APPROVERS` has a rule for chats or meetings alone (`chat=…`, `meeting=…`).", chatApprovers: true},
		{Name: "Channel.ReadBasic.All", Purpose: "Read whether the team channel the bot was last talked to in is a " +
			"standard one (its `membershipType`): a team's unprompted cards go there only then, else to its General " +
			"channel. Without it they go to General."},
		{Name: "TeamsAppInstallation.ReadForChat.All", Purpose: "After an upgrade in a chat, read the chat's " +
			"`permissionGrants` to check that the consent took. Microsoft's reference for that call lists this " +
			"permission, not the `…AndConsentForChat.All` one above."},
		{Name: "TeamsAppInstallation.ReadForTeam.All", Purpose: "The same for a team. (In a personal scope " +
			"`TeamsAppInstallation.ReadWriteAndConsentForUser.All` covers it.) Microsoft offers the " +
			"`permissionGrants` of chats and teams in the global and US Government clouds, not in China (21Vianet)."},
		{Name: "Policy.Read.All", Purpose: "Optional. Read the tenant's authorization policy " +
			"(`permissionGrantPoliciesAssigned`), which says whether chat and team owners may consent to an app's " +
			"resource-specific permissions, so a request they may not approve says an admin is needed instead of " +
			"offering a button that would fail. Without it owners get every card, and an upgrade Graph refuses for " +
			"consent waits for an admin.", optional: true},
		{Name: "Policy.Read.PermissionGrant", Purpose: "Optional. Where owners may consent to pre-approved apps only, " +
			"read the RSC pre-approval policies (`/beta/policies/permissionGrantPreApprovalPolicies`): none covering " +
			"chats (or teams) means an admin is needed there.", optional: true},
	}
}

// neededPermissions are the permissions this configuration uses.
func neededPermissions(cfg config) []GraphPermission {
	var out []GraphPermission
	for _, p := range GraphPermissions() {
		if p.groupApprovers && !hasApproverGroup(cfg.Approvers) {
			continue
		}
		chat := approval.Scope{Kind: approval.ScopeChat}
		if p.chatApprovers && !cfg.Approvers.NeedsChat(chat) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// hasApproverGroup reports whether any rule names an Entra group.
func hasApproverGroup(p approval.ApproverPolicy) bool {
	for _, k := range []approval.ApproverKind{approval.ForChat, approval.ForMeeting, approval.ForTeam} {
		if len(p.For(k).Groups) > 0 {
			return true
		}
	}
	return false
}

// missingPermissions are the needed permissions a Graph access token's roles
// claim does not list.
func missingPermissions(cfg config, roles []string) []GraphPermission {
	var out []GraphPermission
	for _, p := range neededPermissions(cfg) {
		if !slices.ContainsFunc(roles, func(r string) bool { return strings.EqualFold(r, p.Name) }) {
			out = append(out, p)
		}
	}
	return out
}

// errNotJWT: the access token cannot be read, so its roles are unknown.
var errNotJWT = errors.New("the access token is not a JWT")

// tokenRoles reads the roles claim of an app-only access token: the
// application permissions granted to the app in the token's tenant. The
// token came from Entra ID over TLS and is not verified here: only Graph
// acts on it.
func tokenRoles(token string) ([]string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errNotJWT
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotJWT, err)
	}
	var claims struct {
		Roles []string `json:"roles"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotJWT, err)
	}
	return claims.Roles, nil
}
