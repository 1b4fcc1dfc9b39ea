package approval

import (
	"fmt"
	"slices"
	"strings"
)

// ApproverPolicy says who may approve (BOT_APPROVERS). Anyone a rule
// allows may approve; with no rule, nobody but the personal scope's user.
// The plain rules (Owners, Groups, Users) hold in every kind of scope;
// Kinds adds rules for one kind of scope only.
type ApproverPolicy struct {
	Owners bool     // owners of the chat or team, from our tenant
	Groups []string // members (transitively) of these Entra groups
	Users  []string // these Entra users
	// Kinds holds the rules given for one kind of scope ("meeting=organizer").
	Kinds map[ApproverKind]ApproverRules
}

// ApproverKind is the kind of scope a rule of BOT_APPROVERS is for. A
// meeting's chat is a chat to Graph's installation endpoints, but not to
// its approvers.
type ApproverKind string

const (
	ForChat     ApproverKind = "chat"     // group chats (not meeting chats)
	ForMeeting  ApproverKind = "meeting"  // a meeting's chat
	ForTeam     ApproverKind = "team"     // a team and its channels
	ForPersonal ApproverKind = "personal" // a user's personal scope
)

// ApproverRules are the rules for one kind of scope.
type ApproverRules struct {
	Owners    bool
	Organizer bool // the meeting's organizer (meetings only)
	Groups    []string
	Users     []string
}

// ParseApproverPolicy reads entries such as "owners", "group:<id>",
// "user:<id>", where ids are Entra object ids, each for every kind of
// scope, or the same prefixed with a kind of scope ("team=owners",
// "chat=group:<id>"), for that kind alone. "meeting=organizer" names a
// meeting's organizer; "personal=user" the personal scope's user, who is
// its only approver in any case.
func ParseApproverPolicy(entries []string) (ApproverPolicy, error) {
	var p ApproverPolicy
	for _, raw := range entries {
		e := strings.TrimSpace(raw)
		kind, rule, forKind := strings.Cut(e, "=")
		if !forKind {
			var r ApproverRules
			if !r.add(e, false) {
				return p, fmt.Errorf("%q is not a policy entry (want owners, group:<entra-group-id>, user:<entra-user-id>, "+
					"or one of them for a kind of scope: chat=…, meeting=…, team=…, or meeting=organizer, personal=user)", raw)
			}
			p.Owners = p.Owners || r.Owners
			p.Groups = append(p.Groups, r.Groups...)
			p.Users = append(p.Users, r.Users...)
			continue
		}
		k := ApproverKind(strings.TrimSpace(kind))
		rule = strings.TrimSpace(rule)
		ok := false
		switch k {
		case ForChat, ForTeam, ForMeeting:
			r := p.Kinds[k]
			if ok = r.add(rule, k == ForMeeting); ok {
				if p.Kinds == nil {
					p.Kinds = map[ApproverKind]ApproverRules{}
				}
				p.Kinds[k] = r
			}
		case ForPersonal:
			ok = rule == "user"
		}
		if !ok {
			return p, fmt.Errorf("%q is not a policy entry (want chat=, meeting= or team= followed by owners, "+
				"group:<entra-group-id> or user:<entra-user-id>; meeting=organizer; personal=user)", raw)
		}
	}
	return p, nil
}

// add reads one rule into r, reporting whether it is one.
func (r *ApproverRules) add(rule string, meeting bool) bool {
	kind, id, _ := strings.Cut(rule, ":")
	switch {
	case kind == "owners" && id == "":
		r.Owners = true
	case kind == "organizer" && id == "" && meeting:
		r.Organizer = true
	case kind == "group" && IsEntraID(id):
		r.Groups = append(r.Groups, id)
	case kind == "user" && IsEntraID(id):
		r.Users = append(r.Users, strings.ToLower(id))
	default:
		return false
	}
	return true
}

// For returns the rules that hold in a kind of scope: the plain ones and
// that kind's own.
func (p ApproverPolicy) For(kind ApproverKind) ApproverRules {
	own := p.Kinds[kind]
	return ApproverRules{
		Owners:    p.Owners || own.Owners,
		Organizer: own.Organizer,
		Groups:    append(slices.Clip(p.Groups), own.Groups...),
		Users:     append(slices.Clip(p.Users), own.Users...),
	}
}

// Chat is what Graph says of a chat that the approver rules can ask about:
// whether it is a meeting's, and who organized the meeting.
type Chat struct {
	Meeting   bool
	Organizer string // the organizer's Entra object id; "" when Graph does not say
}

// NeedsChat reports whether judging someone in scope needs Graph's word on
// the chat: only when a rule is for chats or meetings alone, and then only
// in a chat.
func (p ApproverPolicy) NeedsChat(scope Scope) bool {
	if scope.Kind != ScopeChat {
		return false
	}
	_, chat := p.Kinds[ForChat]
	_, meeting := p.Kinds[ForMeeting]
	return chat || meeting
}

// KindOf is the kind of scope whose rules hold in scope, given what Graph
// said of the chat (ignored outside chats).
func KindOf(scope Scope, chat Chat) ApproverKind {
	switch {
	case scope.Kind == ScopeTeam:
		return ForTeam
	case scope.Kind == ScopeUser:
		return ForPersonal
	case chat.Meeting:
		return ForMeeting
	}
	return ForChat
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
	// rules' groups, which Graph is asked next.
	IfInGroup
)

// NeedsMembership reports whether Judge needs who's member entries in
// scope: in a chat or team it does; in a personal scope nobody but its user
// takes part, and someone without an Entra object id is refused anyway.
func NeedsMembership(scope Scope, who Person) bool {
	return who.AADObjectID != "" && scope.Kind != ScopeUser
}

// Judge applies the policy to who in scope, given who's member entries in
// the scope as Graph returned them at click time (none: not a member) and,
// where NeedsChat says so, Graph's chat. A user consents for their own
// personal scope. In a chat or team, every rule is about a member of it
// from its own tenant who is not a guest: an external (federated)
// participant arrives with their home tenant's object id, which a named
// user or group must not match, and Graph makes every full member of a
// group chat an owner, so only the guest role sets anyone apart.
func (p ApproverPolicy) Judge(scope Scope, who Person, membership []Member, chat Chat) Judgement {
	if who.AADObjectID == "" {
		return Refused
	}
	if scope.Kind == ScopeUser {
		return judged(strings.EqualFold(scope.ID, who.AADObjectID))
	}
	i := slices.IndexFunc(membership, func(m Member) bool {
		return strings.EqualFold(m.UserID, who.AADObjectID) && scope.InTenant(m)
	})
	if i < 0 || membership[i].IsGuest() {
		return Refused
	}
	r := p.For(KindOf(scope, chat))
	switch {
	case slices.Contains(r.Users, strings.ToLower(who.AADObjectID)) || (r.Owners && membership[i].IsOwner()):
		return Allowed
	case r.Organizer && chat.Organizer != "" && strings.EqualFold(chat.Organizer, who.AADObjectID):
		return Allowed
	case len(r.Groups) > 0:
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

// AskReason says why someone asked an admin about a request instead of
// approving it, for the admins' card.
type AskReason string

const (
	// AskNeedsAdmin: nobody in the scope may consent; the request waits
	// for an admin.
	AskNeedsAdmin AskReason = "needsAdmin"
	// AskSecondOpinion: an approver asked before deciding.
	AskSecondOpinion AskReason = "secondOpinion"
	// AskNotApprover: a member the approver rule does not name.
	AskNotApprover AskReason = "notApprover"
	// AskGuest: a guest, never an approver.
	AskGuest AskReason = "guest"
	// AskOtherTenant: someone from another organization.
	AskOtherTenant AskReason = "otherTenant"
)

// WhyNotApprover says why who, whom Judge refused, may not approve in
// scope, from their member entries there as Graph returned them.
func WhyNotApprover(scope Scope, who Person, membership []Member) AskReason {
	var mine []Member
	for _, m := range membership {
		if strings.EqualFold(m.UserID, who.AADObjectID) {
			mine = append(mine, m)
		}
	}
	switch {
	case len(mine) > 0 && !slices.ContainsFunc(mine, scope.InTenant):
		return AskOtherTenant
	case len(mine) > 0 && slices.ContainsFunc(mine, Member.IsGuest):
		return AskGuest
	}
	return AskNotApprover
}
