package approval

import (
	"strings"
	"time"
)

// ScopeKind names where a Teams app is installed, in Graph's terms.
type ScopeKind string

const (
	ScopeChat ScopeKind = "chat" // group and meeting chats: /chats/{id}/installedApps
	ScopeTeam ScopeKind = "team" // a team and its channels: /teams/{aadGroupId}/installedApps
	ScopeUser ScopeKind = "user" // personal scope: /users/{aadObjectId}/teamwork/installedApps
)

// Scope is a Graph installation scope: the kind and the Graph id of the chat,
// team or user, and the tenant it lives in (Graph is asked as that tenant).
type Scope struct {
	Kind     ScopeKind `json:"kind"`
	ID       string    `json:"id"`
	TenantID string    `json:"tenantId,omitempty"`
}

// ConversationRef is what the bot keeps to write to a conversation later:
// where the connector lives and who the bot is there.
type ConversationRef struct {
	ConversationID   string `json:"conversationId"`
	ConversationType string `json:"conversationType,omitempty"`
	ServiceURL       string `json:"serviceUrl"`
	ChannelID        string `json:"channelId"`
	TenantID         string `json:"tenantId,omitempty"`
	BotID            string `json:"botId"`
	BotName          string `json:"botName,omitempty"`
	Scope            *Scope `json:"scope,omitempty"`
	// TeamConversationID is, for a team's channel, the team's conversation
	// id (Teams' channelData.team.id), which is its General channel's.
	TeamConversationID string    `json:"teamConversationId,omitempty"`
	Locale             string    `json:"locale,omitempty"`
	UpdatedAt          time.Time `json:"updatedAt"`
}

// BaseConversation drops a channel thread's ";messageid=…" suffix: every
// thread of a channel is the channel's conversation, with the channel's
// connector, quiet mode and history.
func BaseConversation(id string) string {
	base, _, _ := strings.Cut(id, ";")
	return base
}

// TopLevel is the reference of the channel a thread is in (of the
// conversation itself outside channels): a post there starts a new thread
// rather than replying in an old one.
func (r ConversationRef) TopLevel() ConversationRef {
	r.ConversationID = BaseConversation(r.ConversationID)
	return r
}

// InTenant reports whether m is a member from the scope's own tenant: a
// federated participant can show up as an owner of a chat, with their home
// tenant's object id.
func (s Scope) InTenant(m Member) bool {
	return s.TenantID == "" || strings.EqualFold(m.TenantID, s.TenantID)
}

// General is the reference of the team's General channel, from one of any
// channel of the team: the same connector and bot, the team's conversation.
// A team's members all see it, and it is neither private nor shared. ok is
// false when the reference does not know its team.
func (r ConversationRef) General() (ConversationRef, bool) {
	if r.TeamConversationID == "" {
		return r, false
	}
	r.ConversationID, r.ConversationType = r.TeamConversationID, "channel"
	return r, true
}
