package cards

import (
	"fmt"
	"time"
)

// PendingItem is one app in a list of pending upgrades.
type PendingItem struct {
	ApprovalID string
	App        App
	Diff       Diff
	// Status, once decided ("approve all" shows each upgrade as it goes),
	// replaces the Review button with how the item stands.
	Status OutcomeKind
}

// PendingList is the answer to "check" when upgrades are pending.
type PendingList struct {
	Locale    string
	Place     Place
	Approvers ApproverPolicy
	// BatchID identifies "approve all"; empty hides the button.
	BatchID string
	Items   []PendingItem
}

// PendingList lists every pending upgrade with its full permission change,
// so "Approve all" never hides what is being consented to.
func (c *Cards) PendingList(l PendingList) Card {
	t := c.tr(l.Locale)
	body := []Element{heading(t.N("PendingTitle", len(l.Items), nil))}
	for i, it := range l.Items {
		app := []Element{
			{Type: "TextBlock", Text: literal(it.App.Name), Weight: "Bolder", Size: "Medium", Wrap: true, MaxLines: 2},
			text(t.T("UpgradeFromTo", map[string]any{"From": it.App.FromVersion, "To": it.App.ToVersion})),
		}
		app = append(app, c.diffSections(t, it.Diff, fmt.Sprint(i), true)...)
		review := Element{Type: "ActionSet", Actions: []Action{execute(t.T("Review"), VerbReview, it.ApprovalID, "")}}
		if it.Status == "" {
			app = append(app, review)
		} else {
			data := map[string]any{"App": it.App.Name, "From": it.App.FromVersion, "To": it.App.ToVersion}
			app = append(app, container(outcomeStyle[it.Status], Element{Type: "TextBlock", Weight: "Bolder", Wrap: true,
				Text: t.T("Outcome_"+string(it.Status)+"_Title", data)}))
			if it.Status == OutcomeFailed {
				// Its own card offers Retry, but an app listed by check
				// may have no card of its own: Review opens it.
				app = append(app, review)
			}
		}
		section := container("emphasis", app...)
		section.Separator, section.Spacing = true, "Large"
		body = append(body, section)
	}
	body = append(body, subtle(t.T(whoMayApprove(l.Approvers, l.Place))))
	var actions []Action
	// The button counts what it would approve: the items still to review,
	// not those already upgrading or decided.
	pending := 0
	for _, it := range l.Items {
		if it.Status == "" {
			pending++
		}
	}
	if l.BatchID != "" && len(l.Items) > 1 && pending > 0 {
		actions = append(actions, execute(t.N("ApproveAll", pending, nil), VerbApproveAll, l.BatchID, "positive"))
	}
	card := newCard(t.cardLang(), body, actions...)
	card.FallbackText = t.N("PendingTitle", len(l.Items), nil)
	return card
}

// InstalledApp is an app that needs nothing.
type InstalledApp struct {
	Name    string
	Version string
}

// UpToDate is the answer to "check" when nothing is pending.
type UpToDate struct {
	Locale string
	Place  Place
	Apps   []InstalledApp
}

// maxUpToDateApps bounds the apps an up-to-date card lists, so that a
// scope with hundreds of apps still fits Teams' 28 KB message.
const maxUpToDateApps = 50

// UpToDate says every installed app runs the catalog's version.
func (c *Cards) UpToDate(u UpToDate) Card {
	t := c.tr(u.Locale)
	body := []Element{container("good", Element{Type: "TextBlock", Text: t.T("UpToDateTitle_" + string(placeKind(u.Place))),
		Weight: "Bolder", Size: "Medium", Wrap: true, Style: "heading"})}
	if len(u.Apps) > 0 {
		shown := u.Apps[:min(len(u.Apps), maxUpToDateApps)]
		facts := make([]Fact, 0, len(shown))
		for _, a := range shown {
			facts = append(facts, Fact{Title: literal(a.Name), Value: literal(a.Version)})
		}
		body = append(body, text(t.N("UpToDateCount", len(u.Apps), nil)), Element{Type: "FactSet", Facts: facts})
		if more := len(u.Apps) - len(shown); more > 0 {
			body = append(body, subtle(t.N("UpToDateMore", more, nil)))
		}
	}
	card := newCard(t.cardLang(), body)
	card.FallbackText = t.T("UpToDateTitle_" + string(placeKind(u.Place)))
	return card
}

// Help lists the commands.
func (c *Cards) Help(locale string) Card {
	t := c.tr(locale)
	body := []Element{heading(t.T("HelpTitle")), text(t.T("HelpIntro"))}
	var facts []Fact
	for _, cmd := range []string{"check", "history", "help"} {
		facts = append(facts, Fact{Title: t.T("Command_" + cmd), Value: t.T("Command_" + cmd + "_Help")})
	}
	body = append(body, Element{Type: "FactSet", Facts: facts}, subtle(t.T("HelpOwners")), subtle(t.T("HelpMention")))
	card := newCard(t.cardLang(), body)
	card.FallbackText = t.T("HelpTitle")
	return card
}

// HistoryEvent is one line of the audit trail.
type HistoryEvent struct {
	At    time.Time
	Kind  OutcomeKind // upgraded, rejected, failed, expired, superseded, uptodate
	Actor string      // who; empty for the bot itself
	App   string
	From  string
	To    string
}

// History is the answer to "history".
type History struct {
	Locale string
	Events []HistoryEvent // newest first
}

// History shows recent approvals and upgrades here.
func (c *Cards) History(h History) Card {
	t := c.tr(h.Locale)
	body := []Element{heading(t.T("HistoryTitle"))}
	if len(h.Events) == 0 {
		body = append(body, text(t.T("HistoryEmpty")))
	}
	for _, e := range h.Events {
		data := map[string]any{"App": e.App, "From": e.From, "To": e.To, "By": e.Actor, "When": when(e.At)}
		body = append(body, Element{Type: "ColumnSet", Spacing: "Small", Columns: []Element{
			{Type: "Column", Width: "auto", Items: []Element{subtle(when(e.At))}},
			{Type: "Column", Width: "stretch", Items: []Element{text(t.T("History_"+string(e.Kind), data))}},
		}})
	}
	card := newCard(t.cardLang(), body)
	card.FallbackText = t.T("HistoryTitle")
	return card
}
