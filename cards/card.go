// Package cards turns view data into Adaptive Cards (version 1.5, the
// highest Teams renders) in English or Simplified Chinese. It is pure: no
// I/O, no clock, nothing of the bot's own; the bot maps its types to the
// view structs here.
package cards

import "strings"

// Version is the Adaptive Card schema version every card declares.
const Version = "1.5"

// ContentType is the attachment content type of an Adaptive Card.
const ContentType = "application/vnd.microsoft.card.adaptive"

// Card verbs. The bot's router registers handlers under these names, so the
// cards and the router cannot drift apart.
const (
	VerbApprove    = "approve"
	VerbReject     = "reject"
	VerbRetry      = "retry"
	VerbReview     = "review"
	VerbApproveAll = "approveAll"
	VerbSkip       = "skip"     // skip this version: no reminder, no new card for it
	VerbSnooze     = "snooze"   // remind me later
	VerbAskAdmin   = "askAdmin" // ask the admins' conversation about a request
)

// Card is an Adaptive Card.
type Card struct {
	Type         string    `json:"type"`
	Schema       string    `json:"$schema"`
	Version      string    `json:"version"`
	Lang         string    `json:"lang,omitempty"`
	FallbackText string    `json:"fallbackText,omitempty"`
	Body         []Element `json:"body"`
	Actions      []Action  `json:"actions,omitempty"`
	MSTeams      *MSTeams  `json:"msteams,omitempty"`
}

// MSTeams holds Teams-only card properties.
type MSTeams struct {
	Width string `json:"width,omitempty"` // "Full"
	// Entities carries @mentions: Teams notifies each mentioned person.
	Entities []Entity `json:"entities,omitempty"`
}

// Entity is a Teams mention inside a card: Text ("<at>Name</at>") appears
// verbatim in a TextBlock.
type Entity struct {
	Type      string    `json:"type"` // "mention"
	Text      string    `json:"text"`
	Mentioned Mentioned `json:"mentioned"`
}

// Mentioned is who a mention names: an Entra object id or a "29:" id.
type Mentioned struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Element is any card element; Type says which fields apply.
type Element struct {
	Type      string `json:"type"`
	ID        string `json:"id,omitempty"`
	IsVisible *bool  `json:"isVisible,omitempty"`
	Spacing   string `json:"spacing,omitempty"`
	Separator bool   `json:"separator,omitempty"`

	// TextBlock
	Text     string `json:"text,omitempty"`
	Size     string `json:"size,omitempty"`
	Weight   string `json:"weight,omitempty"`
	Color    string `json:"color,omitempty"`
	IsSubtle bool   `json:"isSubtle,omitempty"`
	Wrap     bool   `json:"wrap,omitempty"`
	MaxLines int    `json:"maxLines,omitempty"`
	Style    string `json:"style,omitempty"` // TextBlock "heading"; Container "emphasis", "good", "attention", …

	// Image
	URL     string `json:"url,omitempty"`
	AltText string `json:"altText,omitempty"`
	// Column width, or Image "width"
	Width string `json:"width,omitempty"`

	// Containers
	Items                    []Element `json:"items,omitempty"`
	Columns                  []Element `json:"columns,omitempty"`
	Facts                    []Fact    `json:"facts,omitempty"`
	Actions                  []Action  `json:"actions,omitempty"`
	VerticalContentAlignment string    `json:"verticalContentAlignment,omitempty"`
	Bleed                    bool      `json:"bleed,omitempty"`
}

// Fact is a FactSet row.
type Fact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

// Action is a card action.
type Action struct {
	Type           string   `json:"type"`
	Title          string   `json:"title,omitempty"`
	Verb           string   `json:"verb,omitempty"`
	Data           any      `json:"data,omitempty"`
	Style          string   `json:"style,omitempty"` // "positive", "destructive"
	TargetElements []string `json:"targetElements,omitempty"`
	// Mode "secondary" puts the action in the card's overflow menu ("…").
	Mode     string  `json:"mode,omitempty"`
	Fallback *Action `json:"fallback,omitempty"`
	URL      string  `json:"url,omitempty"` // Action.OpenUrl
}

// ActionData is the data of every Action.Execute: only an opaque id, so a
// card reveals nothing and decides nothing; the server looks it up.
type ActionData struct {
	ApprovalID string `json:"approvalId"`
}

// SubmitData is what the Action.Submit twin of an Action.Execute sends, for
// clients without Universal Actions: a message whose value names the verb.
type SubmitData struct {
	Verb       string `json:"verb"`
	ApprovalID string `json:"approvalId"`
}

func newCard(lang string, body []Element, actions ...Action) Card {
	return Card{
		Type: "AdaptiveCard", Schema: "http://adaptivecards.io/schemas/adaptive-card.json", Version: Version,
		Lang: lang, Body: body, Actions: actions, MSTeams: &MSTeams{Width: "Full"},
	}
}

// execute is an Action.Execute with an Action.Submit twin as its fallback.
func execute(title, verb, approvalID, style string) Action {
	return Action{
		Type: "Action.Execute", Title: title, Verb: verb, Style: style,
		Data: ActionData{ApprovalID: approvalID},
		Fallback: &Action{Type: "Action.Submit", Title: title, Style: style,
			Data: SubmitData{Verb: verb, ApprovalID: approvalID}},
	}
}

// secondary puts an action (and its fallback) in the overflow menu.
func secondary(a Action) Action {
	a.Mode = "secondary"
	if a.Fallback != nil {
		f := *a.Fallback
		f.Mode = "secondary"
		a.Fallback = &f
	}
	return a
}

// literal keeps text from outside (an app's name and description from the
// catalog, a person's name, Graph's error) from becoming a markdown link in
// a card: anyone who may upload a custom app could name it "[Approve
// here](https://…)". Teams' clients disagree on backslash escapes, so an
// invisible zero-width space breaks the link syntax instead.
func literal(s string) string { return strings.ReplaceAll(s, "](", "]\u200b(") }

func text(s string) Element { return Element{Type: "TextBlock", Text: s, Wrap: true} }

func subtle(s string) Element {
	return Element{Type: "TextBlock", Text: literal(s), Wrap: true, IsSubtle: true, Size: "Small", Spacing: "None"}
}

func heading(s string) Element {
	return Element{Type: "TextBlock", Text: literal(s), Wrap: true, Size: "Large", Weight: "Bolder", Style: "heading", MaxLines: 2}
}

func container(style string, items ...Element) Element {
	return Element{Type: "Container", Style: style, Items: items}
}

func hidden() *bool { f := false; return &f }
