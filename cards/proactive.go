package cards

import (
	"strings"
	"time"
)

// Sentences about quiet mode ("notifications off").
const (
	SentenceNotificationsOn          Sentence = "NotificationsOn"
	SentenceNotificationsOff         Sentence = "NotificationsOff"
	SentenceNotificationsOnButOff    Sentence = "NotificationsOnButOff"    // on here, but off for the whole bot
	SentenceNotificationsNotAllowed  Sentence = "NotificationsNotAllowed"  // only an approver may
	SentenceNotificationsUnavailable Sentence = "NotificationsUnavailable" // the bot runs without proactive state
)

// Welcome is the card the bot posts once when it is added to a chat, team or
// personal scope.
type Welcome struct {
	Locale    string
	Place     Place
	Approvers ApproverPolicy
	// Quiet: the bot posts nothing unprompted here (BOT_PROACTIVE=off or
	// notifications off), so the card offers "check" instead of promising
	// cards.
	Quiet bool
}

// Welcome says what the bot does here, who may approve, and how to get help
// or silence it.
func (c *Cards) Welcome(w Welcome) Card {
	t := c.tr(w.Locale)
	place := string(placeKind(w.Place))
	what, help := "WelcomeWhat_"+place, "WelcomeHelp"
	if w.Quiet {
		what, help = "WelcomeWhatAsk_"+place, "WelcomeHelpAsk"
	}
	body := []Element{
		heading(t.T("WelcomeTitle")),
		text(t.T(what)),
		text(t.T(whoMayApprove(w.Approvers, w.Place))),
		subtle(t.T(help)),
	}
	card := newCard(t.cardLang(), body)
	card.FallbackText = t.T("WelcomeTitle")
	return card
}

// Approver is someone named (and @mentioned) in a reminder.
type Approver struct {
	// ID is what Teams mentions: the user's Entra object id or "29:" id.
	ID   string
	Name string
}

// Reminder nudges the approvers once about a request still pending.
type Reminder struct {
	Locale      string
	App         App
	Place       Place
	Approvers   ApproverPolicy
	People      []Approver // named and @mentioned; empty: the policy sentence alone
	RequestedAt time.Time
	ExpiresAt   time.Time
}

// maxMentions keeps a reminder short in a chat with many owners.
const maxMentions = 10

// Reminder is a reply under the pending card. People are @mentioned through
// msteams.entities, which Teams resolves to a notification for each.
func (c *Cards) Reminder(r Reminder) Card {
	t := c.tr(r.Locale)
	data := map[string]any{"App": r.App.Name, "From": r.App.FromVersion, "To": r.App.ToVersion,
		"When": when(r.RequestedAt), "Expires": when(r.ExpiresAt)}
	body := []Element{heading(t.T("ReminderTitle", data))}
	var entities []Entity
	if len(r.People) > 0 {
		var names []string
		for _, p := range r.People[:min(len(r.People), maxMentions)] {
			tag := "<at>" + literal(p.Name) + "</at>"
			names = append(names, tag)
			entities = append(entities, Entity{Type: "mention", Text: tag, Mentioned: Mentioned(p)})
		}
		body = append(body, text(t.T("ReminderPeople", map[string]any{"Names": strings.Join(names, t.T("ListSeparator"))})))
	} else {
		body = append(body, text(t.T(whoMayApprove(r.Approvers, r.Place))))
	}
	body = append(body, text(t.T("ReminderBody", data)), subtle(t.T("ReminderQuiet")))
	card := newCard(t.cardLang(), body)
	card.MSTeams.Entities = entities
	card.FallbackText = t.T("ReminderTitle", data)
	return card
}

// Verification is what the bot found when it re-read an upgraded
// installation and the RSC grants in force in its chat, team or user.
type Verification struct {
	// Missing are consented permissions with no grant in force.
	Missing []Permission
	// Problem, when set, is why the bot could not verify.
	Problem Problem
}

func (v *Verification) ok() bool { return v.Problem == (Problem{}) && len(v.Missing) == 0 }

// verification renders the check under an upgraded outcome.
func (c *Cards) verification(t tr, v *Verification) []Element {
	if v.ok() {
		return []Element{container("good", text(t.T("VerifiedOK")))}
	}
	if v.Problem != (Problem{}) {
		items := append([]Element{text(t.T("VerifyFailed"))}, t.problemElements(v.Problem)...)
		return []Element{container("warning", items...)}
	}
	items := []Element{{Type: "TextBlock", Text: t.T("VerifyWarningTitle"), Weight: "Bolder", Wrap: true}}
	if len(v.Missing) > 0 {
		items = append(items, text(t.N("VerifyMissing", len(v.Missing), nil)))
		for _, p := range v.Missing {
			items = append(items, c.permissionLines(t, p)...)
		}
		items = append(items, text(t.T("WhatAdminCanDo", map[string]any{"Action": t.T("VerifyMissingAction")})))
	}
	return []Element{container("attention", items...)}
}
