package bot

import (
	"encoding/json"
	"html"
	"strings"
	"time"

	"github.com/infracloudio/msbotbuilder-go/schema"
	"github.com/upgradeapprovals/bot/approval"
)

// Activity is an inbound Bot Framework activity. It embeds the schema type and
// shadows three of its fields: schema.Entity keeps only "type" (a mention's
// text and target would be lost), and channelData and value stay raw until a
// route knows what they hold.
type Activity struct {
	schema.Activity
	Entities    []Entity        `json:"entities,omitempty"`
	ChannelData json.RawMessage `json:"channelData,omitempty"`
	Value       json.RawMessage `json:"value,omitempty"`
}

// Entity is an activity entity; only mentions are read.
type Entity struct {
	Type      string                 `json:"type"`
	Text      string                 `json:"text,omitempty"`
	Mentioned *schema.ChannelAccount `json:"mentioned,omitempty"`
}

// TeamsChannelData is the part of Teams' channelData the bot reads.
type TeamsChannelData struct {
	Tenant *struct {
		ID string `json:"id"`
	} `json:"tenant,omitempty"`
	Team *struct {
		ID         string `json:"id"`
		Name       string `json:"name,omitempty"`
		AADGroupID string `json:"aadGroupId,omitempty"`
	} `json:"team,omitempty"`
	Channel *struct {
		ID   string `json:"id"`
		Name string `json:"name,omitempty"`
	} `json:"channel,omitempty"`
	Meeting *struct {
		ID string `json:"id"`
	} `json:"meeting,omitempty"`
	EventType string `json:"eventType,omitempty"`
}

// Teams decodes channelData. Activities from other channels, or with no
// channelData, give a zero value.
func (a *Activity) Teams() TeamsChannelData {
	var cd TeamsChannelData
	if len(a.ChannelData) > 0 {
		_ = json.Unmarshal(a.ChannelData, &cd) // a foreign shape is not an error: it carries nothing we read
	}
	return cd
}

// TenantID is the Entra tenant the activity comes from: conversation.tenantId,
// else channelData.tenant.id (older Teams payloads carry only the latter).
func (a *Activity) TenantID() string {
	if a.Conversation.TenantID != "" {
		return a.Conversation.TenantID
	}
	if t := a.Teams().Tenant; t != nil {
		return t.ID
	}
	return ""
}

// TextWithoutMention returns the message text with the bot's own @mentions
// removed, tags and entities decoded, and whitespace trimmed. Mentions are
// found through the activity's entities, not by guessing at the bot's name.
func (a *Activity) TextWithoutMention() string {
	text := a.Text
	for _, e := range a.Entities {
		if !strings.EqualFold(e.Type, "mention") || e.Mentioned == nil || e.Text == "" {
			continue
		}
		if e.Mentioned.ID != a.Recipient.ID {
			continue
		}
		text = strings.ReplaceAll(text, e.Text, " ")
	}
	text = html.UnescapeString(text)
	// Teams separates a mention from the text with a non-breaking space.
	text = strings.ReplaceAll(text, "\u00a0", " ")
	return strings.Join(strings.Fields(text), " ")
}

// Scope maps the activity's conversation to the Graph installation scope.
// Personal conversation ids ("a:…") are not Graph ids, so the personal scope is
// the user's; a channel's is its team's Entra group. It returns false when the
// activity lacks what the mapping needs.
func (a *Activity) Scope() (approval.Scope, bool) {
	s, ok := a.scope()
	s.TenantID = a.TenantID()
	return s, ok
}

func (a *Activity) scope() (approval.Scope, bool) {
	switch a.Conversation.ConversationType {
	case "personal":
		if a.From.AadObjectID == "" {
			return approval.Scope{}, false
		}
		return approval.Scope{Kind: approval.ScopeUser, ID: a.From.AadObjectID}, true
	case "channel":
		if t := a.Teams().Team; t != nil && t.AADGroupID != "" {
			return approval.Scope{Kind: approval.ScopeTeam, ID: t.AADGroupID}, true
		}
		return approval.Scope{}, false
	case "groupChat":
		// Group and meeting chat ids (19:…@thread.v2, 19:meeting_…@thread.v2)
		// are Graph chat ids.
		return approval.Scope{Kind: approval.ScopeChat, ID: a.Conversation.ID}, true
	}
	return approval.Scope{}, false
}

// Reference builds the conversation reference of an inbound activity.
func (a *Activity) Reference(now time.Time) approval.ConversationRef {
	ref := approval.ConversationRef{
		ConversationID:   a.Conversation.ID,
		ConversationType: a.Conversation.ConversationType,
		ServiceURL:       a.ServiceURL,
		ChannelID:        a.ChannelID,
		TenantID:         a.TenantID(),
		BotID:            a.Recipient.ID,
		BotName:          a.Recipient.Name,
		Locale:           a.Locale,
		UpdatedAt:        now.UTC(),
	}
	if s, ok := a.Scope(); ok {
		ref.Scope = &s
		if t := a.Teams().Team; s.Kind == approval.ScopeTeam && t != nil {
			ref.TeamConversationID = t.ID
		}
	}
	return ref
}

// Message is an outbound message: text, cards, or both.
type Message struct {
	Text        string
	TextFormat  string // "markdown" (default), "plain" or "xml"
	Attachments []schema.Attachment
	Summary     string
	Locale      string
}
