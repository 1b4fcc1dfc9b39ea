package graph

import (
	"context"
	"slices"

	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.Directory = (*Client)(nil)

// Members lists the members of a chat or team with their roles. Personal
// scope has no members to ask about.
func (c *Client) Members(ctx context.Context, scope bot.Scope) ([]bot.Member, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return nil, err
	}
	var items []models.ConversationMemberable
	var op, permission string
	switch scope.Kind {
	case bot.ScopeChat:
		op, permission = "list chat members", "ChatMember.Read.All"
		var first models.ConversationMemberCollectionResponseable
		if first, err = g.Chats().ByChatId(scope.ID).Members().Get(ctx, nil); err == nil {
			items, err = all[models.ConversationMemberable](ctx, g, first, models.CreateConversationMemberCollectionResponseFromDiscriminatorValue)
		}
	case bot.ScopeTeam:
		op, permission = "list team members", "TeamMember.Read.All"
		var first models.ConversationMemberCollectionResponseable
		if first, err = g.Teams().ByTeamId(scope.ID).Members().Get(ctx, nil); err == nil {
			items, err = all[models.ConversationMemberable](ctx, g, first, models.CreateConversationMemberCollectionResponseFromDiscriminatorValue)
		}
	default:
		return nil, bot.Errorf(bot.CodeInvalid, "graph: a %s scope has no members", scope.Kind)
	}
	if err != nil {
		return nil, translate(err, op, permission)
	}
	out := make([]bot.Member, 0, len(items))
	for _, it := range items {
		m := bot.Member{DisplayName: deref(it.GetDisplayName()), Roles: slices.Clone(it.GetRoles())}
		if m.Roles == nil {
			m.Roles = []string{}
		}
		if u, ok := it.(models.AadUserConversationMemberable); ok {
			m.UserID = deref(u.GetUserId())
			m.Email = deref(u.GetEmail())
			m.TenantID = deref(u.GetTenantId())
		}
		out = append(out, m)
	}
	return out, nil
}

// InGroup reports whether the user belongs to the group, directly or
// through nested groups (checkMemberGroups is transitive).
func (c *Client) InGroup(ctx context.Context, tenantID, groupID, userID string) (bool, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(tenantID)
	if err != nil {
		return false, err
	}
	body := users.NewItemCheckMemberGroupsPostRequestBody()
	body.SetGroupIds([]string{groupID})
	resp, err := g.Users().ByUserId(userID).CheckMemberGroups().PostAsCheckMemberGroupsPostResponse(ctx, body, nil)
	if err != nil {
		return false, translate(err, "check group membership", "GroupMember.Read.All")
	}
	return slices.Contains(resp.GetValue(), groupID), nil
}
