package bot

import (
	"context"
	"log/slog"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// Directory answers who may approve: members and their roles, and group
// membership for an explicit approver group.
type Directory interface {
	// Members lists the members of a chat or team scope.
	Members(ctx context.Context, scope approval.Scope) ([]approval.Member, error)
	// Membership returns the member entries of one user (an Entra object
	// id) in a chat or team scope: none when they are not a member. It
	// asks Graph for that user, not for a whole team.
	Membership(ctx context.Context, scope approval.Scope, userID string) ([]approval.Member, error)
	// InGroup reports whether the user is a member, directly or through
	// nested groups, of the Entra group.
	InGroup(ctx context.Context, tenantID, groupID, userID string) (bool, error)
	// Chat says whether a chat is a meeting's and who organized it.
	Chat(ctx context.Context, scope approval.Scope) (approval.Chat, error)
	// ChannelMembershipType is Graph's membershipType of a team's channel:
	// "standard", "private" or "shared".
	ChannelMembershipType(ctx context.Context, team approval.Scope, channelID string) (string, error)
}

// approvers applies the approver policy (BOT_APPROVERS), asking Graph's
// directory what it needs.
type approvers struct {
	policy    approval.ApproverPolicy
	directory Directory // nil without Graph
	log       *slog.Logger
}

// mayApprove applies the approver policy (BOT_APPROVERS) to who in scope,
// asking Graph what the rule needs: who's membership of the chat or team,
// the chat itself when a rule is for chats or meetings alone, then, if it
// comes to that, the rules' groups one by one.
func (ap *approvers) mayApprove(ctx context.Context, scope approval.Scope, who approval.Person) (bool, error) {
	p := ap.policy
	var membership []approval.Member
	if approval.NeedsMembership(scope, who) {
		var err error
		if membership, err = ap.directory.Membership(ctx, scope, who.AADObjectID); err != nil {
			return false, err
		}
	}
	var chat approval.Chat
	if p.NeedsChat(scope) && len(membership) > 0 {
		var err error
		if chat, err = ap.directory.Chat(ctx, scope); err != nil {
			return false, err
		}
	}
	switch p.Judge(scope, who, membership, chat) {
	case approval.Allowed:
		return true, nil
	case approval.Refused:
		return false, nil
	}
	for _, g := range p.For(approval.KindOf(scope, chat)).Groups {
		in, err := ap.directory.InGroup(ctx, scope.TenantID, g, who.AADObjectID)
		if err != nil {
			return false, err
		}
		if in {
			return true, nil
		}
	}
	return false, nil
}

// people names who may approve, for @mentions: the owners from our
// tenant who are not guests, when owners approve there. Without names (a
// group, an organizer, Graph failing) the reminder says who may approve in
// words.
func (ap *approvers) people(ctx context.Context, scope approval.Scope) []cards.Approver {
	if scope.Kind == approval.ScopeUser || ap.directory == nil {
		return nil
	}
	var chat approval.Chat
	if ap.policy.NeedsChat(scope) {
		var err error
		if chat, err = ap.directory.Chat(ctx, scope); err != nil {
			ap.log.WarnContext(ctx, "cannot read the chat for a reminder", "err", err)
			return nil
		}
	}
	if !ap.policy.For(approval.KindOf(scope, chat)).Owners {
		return nil
	}
	members, err := ap.directory.Members(ctx, scope)
	if err != nil {
		ap.log.WarnContext(ctx, "cannot list approvers for a reminder", "err", err)
		return nil
	}
	var out []cards.Approver
	for _, m := range members {
		if m.IsOwner() && !m.IsGuest() && m.DisplayName != "" && scope.InTenant(m) {
			out = append(out, cards.Approver{ID: m.UserID, Name: m.DisplayName})
		}
	}
	return out
}

// whyAsk says why who asks an admin about a rather than approve it, from
// the approver policy applied afresh (Graph at click time): nobody may
// consent there, they may approve (a second opinion), or why not.
func (ap *approvers) whyAsk(ctx context.Context, a approval.Approval, who approval.Person) (approval.AskReason, error) {
	if a.Status == approval.StatusNeedsAdmin {
		return approval.AskNeedsAdmin, nil
	}
	scope := a.Upgrade.Installation.Scope
	ok, err := ap.mayApprove(ctx, scope, who)
	if err != nil {
		return "", err
	}
	if ok {
		return approval.AskSecondOpinion, nil
	}
	var membership []approval.Member
	if approval.NeedsMembership(scope, who) {
		if membership, err = ap.directory.Membership(ctx, scope, who.AADObjectID); err != nil {
			return "", err
		}
	}
	return approval.WhyNotApprover(scope, who, membership), nil
}

var askReasonView = map[approval.AskReason]cards.AskReason{
	approval.AskNeedsAdmin: cards.AskNeedsAdmin, approval.AskSecondOpinion: cards.AskSecondOpinion,
	approval.AskNotApprover: cards.AskNotApprover, approval.AskGuest: cards.AskGuest, approval.AskOtherTenant: cards.AskOtherTenant,
}
