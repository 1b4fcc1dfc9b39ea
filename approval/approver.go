package approval

import (
	"fmt"
	"slices"
	"strings"
)

// ApproverPolicy says who may approve (BOT_APPROVERS). Anyone a rule
// allows may approve; with no rule, nobody but the personal scope's user.
type ApproverPolicy struct {
	Owners bool     // owners of the chat or team, from our tenant
	Groups []string // members (transitively) of these Entra groups
	Users  []string // these Entra users
}

// ParseApproverPolicy reads entries such as "owners", "group:<id>",
// "user:<id>", where ids are Entra object ids.
func ParseApproverPolicy(entries []string) (ApproverPolicy, error) {
	var p ApproverPolicy
	for _, e := range entries {
		kind, id, _ := strings.Cut(strings.TrimSpace(e), ":")
		switch {
		case kind == "owners" && id == "":
			p.Owners = true
		case kind == "group" && IsEntraID(id):
			p.Groups = append(p.Groups, id)
		case kind == "user" && IsEntraID(id):
			p.Users = append(p.Users, strings.ToLower(id))
		default:
			return p, fmt.Errorf("%q is not a policy entry (want owners, group:<entra-group-id> or user:<entra-user-id>)", e)
		}
	}
	return p, nil
}

// Judgement is what the approver rule says of someone from Graph's
// membership answer.
type Judgement int

const (
	// Refused: they may not approve.
	Refused Judgement = iota
	// Allowed: they may approve.
	Allowed
	// IfInGroup: they may approve if they are a member of one of the
	// policy's groups, which Graph is asked next.
	IfInGroup
)

// NeedsMembership reports whether Judge needs who's member entries in
// scope: in a chat or team it does; in a personal scope nobody but its user
// takes part, and someone without an Entra object id is refused anyway.
func NeedsMembership(scope Scope, who Person) bool {
	return who.AADObjectID != "" && scope.Kind != ScopeUser
}

// Judge applies the policy to who in scope, given who's member entries in
// the scope as Graph returned them at click time (none: not a member). A
// user consents for their own personal scope. In a chat or team, every rule
// is about a member of it from its own tenant: an external (federated)
// participant arrives with their home tenant's object id, which a named
// user or group must not match.
func (p ApproverPolicy) Judge(scope Scope, who Person, membership []Member) Judgement {
	if who.AADObjectID == "" {
		return Refused
	}
	if scope.Kind == ScopeUser {
		return judged(strings.EqualFold(scope.ID, who.AADObjectID))
	}
	i := slices.IndexFunc(membership, func(m Member) bool {
		return strings.EqualFold(m.UserID, who.AADObjectID) && scope.InTenant(m)
	})
	switch {
	case i < 0 || membership[i].IsGuest():
		return Refused
	case slices.Contains(p.Users, strings.ToLower(who.AADObjectID)) || (p.Owners && membership[i].IsOwner()):
		return Allowed
	case len(p.Groups) > 0:
		return IfInGroup
	}
	return Refused
}

func judged(ok bool) Judgement {
	if ok {
		return Allowed
	}
	return Refused
}

// Member is a member of a chat or team as Graph lists it.
type Member struct {
	UserID      string   `json:"userId"`
	DisplayName string   `json:"displayName,omitempty"`
	Email       string   `json:"email,omitempty"` // may be missing
	TenantID    string   `json:"tenantId,omitempty"`
	Roles       []string `json:"roles"` // ["owner"], ["guest"] or [] (meeting chats may list owners with [])
}

// IsOwner reports whether the member holds the owner role.
func (m Member) IsOwner() bool { return slices.Contains(m.Roles, "owner") }

// IsGuest reports whether the member holds the guest role. A chat's roles
// are only owner and guest, and Graph makes every full member an owner, so
// "owner" says little; a guest is never an approver, whatever rule names
// them.
func (m Member) IsGuest() bool { return slices.Contains(m.Roles, "guest") }
