package graph

import (
	"context"
	"slices"
	"strings"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/teams"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

var _ bot.Directory = (*Client)(nil)

// Members lists the members of a chat or team with their roles. Personal
// scope has no members to ask about.
func (c *Client) Members(ctx context.Context, scope approval.Scope) ([]approval.Member, error) {
	return c.members(ctx, scope, "")
}

// Membership returns the member entries of one user in a chat or team. A
// team may have thousands of members (pages of 100): Graph is asked for
// that user alone, so an approver check fits in Teams' invoke window. A
// chat has at most 250 and its member list takes no filter.
func (c *Client) Membership(ctx context.Context, scope approval.Scope, userID string) ([]approval.Member, error) {
	// The id goes into an OData filter: hex digits and dashes only. (Not
	// approval.IsEntraID: the Agents Playground's user has a 13-digit last group.)
	if userID == "" || strings.Trim(strings.ToLower(userID), "0123456789abcdef-") != "" {
		return nil, bot.Errorf(bot.CodeInvalid, "graph: %q is not an Entra user id", userID)
	}
	filter := ""
	if scope.Kind == approval.ScopeTeam {
		filter = "(microsoft.graph.aadUserConversationMember/userId eq '" + strings.ToLower(userID) + "')"
	}
	all, err := c.members(ctx, scope, filter)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(m approval.Member) bool { return !strings.EqualFold(m.UserID, userID) }), nil
}

func (c *Client) members(ctx context.Context, scope approval.Scope, teamFilter string) ([]approval.Member, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return nil, err
	}
	var ri *abstractions.RequestInformation
	var op, permission string
	switch scope.Kind {
	case approval.ScopeChat:
		op, permission = "list chat members", "ChatMember.Read.All"
		ri, err = g.Chats().ByChatId(scope.ID).Members().ToGetRequestInformation(ctx, nil)
	case approval.ScopeTeam:
		op, permission = "list team members", "TeamMember.Read.All"
		var conf *teams.ItemMembersRequestBuilderGetRequestConfiguration
		if teamFilter != "" {
			conf = &teams.ItemMembersRequestBuilderGetRequestConfiguration{
				QueryParameters: &teams.ItemMembersRequestBuilderGetQueryParameters{Filter: &teamFilter}}
		}
		ri, err = g.Teams().ByTeamId(scope.ID).Members().ToGetRequestInformation(ctx, conf)
	default:
		return nil, bot.Errorf(bot.CodeInvalid, "graph: a %s scope has no members", scope.Kind)
	}
	var items []memberJSON
	if err == nil {
		items, err = list[memberJSON](ctx, g, ri)
	}
	if err != nil {
		return nil, translate(err, op, permission)
	}
	out := make([]approval.Member, 0, len(items))
	for _, it := range items {
		m := approval.Member{DisplayName: it.DisplayName, Roles: it.Roles}
		if m.Roles == nil {
			m.Roles = []string{}
		}
		// Only Entra ID users carry the ids approvers are matched on; other
		// kinds of member (anonymous guests, Skype users) are never approvers.
		if it.ODataType == aadUserMember {
			m.UserID, m.Email, m.TenantID = it.UserID, it.Email, it.TenantID
		}
		out = append(out, m)
	}
	return out, nil
}

// aadUserMember is the @odata.type of a member who is an Entra ID user.
const aadUserMember = "#microsoft.graph.aadUserConversationMember"

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
		err = translate(err, "check group membership", "GroupMember.Read.All")
		if bot.ErrorCode(err) == bot.CodeNotFound {
			return false, nil // not a user of this tenant (an external participant): in none of its groups
		}
		return false, err
	}
	return slices.Contains(resp.GetValue(), groupID), nil
}

// Chat reads whether a chat is a meeting's and, if so, its organizer
// (onlineMeetingInfo.organizer, a teamworkUserIdentity).
func (c *Client) Chat(ctx context.Context, scope approval.Scope) (approval.Chat, error) {
	if scope.Kind != approval.ScopeChat {
		return approval.Chat{}, bot.Errorf(bot.CodeInvalid, "graph: a %s scope is not a chat", scope.Kind)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(scope.TenantID)
	if err != nil {
		return approval.Chat{}, err
	}
	var chat chatJSON
	ri, err := g.Chats().ByChatId(scope.ID).ToGetRequestInformation(ctx, nil)
	if err == nil {
		err = getJSON(ctx, g, ri, &chat)
	}
	if err != nil {
		return approval.Chat{}, translate(err, "read the chat", "Chat.ReadBasic.WhereInstalled")
	}
	out := approval.Chat{Meeting: chat.ChatType == "meeting"}
	if m := chat.OnlineMeetingInfo; m != nil && m.Organizer != nil && m.Organizer.UserIdentityType == "aadUser" {
		out.Organizer = m.Organizer.ID
	}
	return out, nil
}

// chatJSON is what Chat reads of Graph's chat.
type chatJSON struct {
	ChatType          string `json:"chatType"`
	OnlineMeetingInfo *struct {
		Organizer *struct {
			ID               string `json:"id"`
			UserIdentityType string `json:"userIdentityType"`
		} `json:"organizer"`
	} `json:"onlineMeetingInfo"`
}

// ChannelMembershipType reads a team channel's membershipType: standard,
// private or shared.
func (c *Client) ChannelMembershipType(ctx context.Context, team approval.Scope, channelID string) (string, error) {
	if team.Kind != approval.ScopeTeam {
		return "", bot.Errorf(bot.CodeInvalid, "graph: a %s scope has no channels", team.Kind)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	g, err := c.sdk(team.TenantID)
	if err != nil {
		return "", err
	}
	var ch struct {
		MembershipType string `json:"membershipType"`
	}
	ri, err := g.Teams().ByTeamId(team.ID).Channels().ByChannelId(channelID).ToGetRequestInformation(ctx, nil)
	if err == nil {
		err = getJSON(ctx, g, ri, &ch)
	}
	if err != nil {
		return "", translate(err, "read the channel", "Channel.ReadBasic.All")
	}
	return ch.MembershipType, nil
}
