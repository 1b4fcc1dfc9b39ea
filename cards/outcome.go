package cards

import "time"

// OutcomeKind is how an approval ended.
type OutcomeKind string

const (
	OutcomeUpgrading  OutcomeKind = "upgrading" // approved; Graph's upgrade is in flight
	OutcomeUpgraded   OutcomeKind = "upgraded"
	OutcomeRejected   OutcomeKind = "rejected"
	OutcomeFailed     OutcomeKind = "failed"
	OutcomeExpired    OutcomeKind = "expired"
	OutcomeSuperseded OutcomeKind = "superseded" // the catalog changed; a new card follows
	OutcomeUpToDate   OutcomeKind = "uptodate"   // already at the catalog version
	OutcomeNotAllowed OutcomeKind = "notallowed" // the clicker may not approve
	// OutcomeUpgradedOutside: someone upgraded the app another way (Teams'
	// Update button, the admin center) while the request was open.
	OutcomeUpgradedOutside OutcomeKind = "upgradedoutside"
	// OutcomeSkipped: an approver skipped this version.
	OutcomeSkipped OutcomeKind = "skipped"
	// OutcomeSnoozed is a history line only: someone asked to be reminded
	// later.
	OutcomeSnoozed OutcomeKind = "snoozed"
)

// Outcome is the view of a finished (or refused) approval.
type Outcome struct {
	Locale     string
	Kind       OutcomeKind
	ApprovalID string // lets a failed upgrade be retried
	App        App
	Diff       Diff      // upgraded: what was consented
	By         string    // who approved or rejected
	At         time.Time // when
	// Failed: what went wrong; the card says what can be done about it.
	Problem Problem
	// NotAllowed: who may approve instead.
	Place     Place
	Approvers ApproverPolicy
	// Upgraded: whether the new version runs with exactly the consented
	// permissions; nil until the bot has checked.
	Verification *Verification
	// ApprovedBy names every approver when more than one approved (a
	// quorum): the card names them all instead of By alone.
	ApprovedBy []string
	// Upgrading, when Graph's answer was lost: when Retry is offered if
	// Graph still does not show the upgrade. Zero while the call runs.
	RetryAt time.Time
}

var outcomeStyle = map[OutcomeKind]string{
	OutcomeUpgrading: "accent", OutcomeUpgraded: "good", OutcomeRejected: "default", OutcomeFailed: "attention", OutcomeExpired: "default",
	OutcomeSuperseded: "warning", OutcomeUpToDate: "good", OutcomeNotAllowed: "warning",
	OutcomeUpgradedOutside: "good", OutcomeSkipped: "default",
}

// Outcome is the card that replaces a pending one when it is decided, or
// answers a click that changed nothing.
func (c *Cards) Outcome(o Outcome) Card {
	t := c.tr(o.Locale)
	data := map[string]any{"App": o.App.Name, "From": o.App.FromVersion, "To": o.App.ToVersion, "By": o.By}
	if !o.At.IsZero() {
		data["When"] = when(o.At)
	}
	status := []Element{{Type: "TextBlock", Text: t.T("Outcome_"+string(o.Kind)+"_Title", data),
		Weight: "Bolder", Size: "Medium", Wrap: true, Style: "heading"}}
	var body []Element
	var actions []Action
	switch o.Kind {
	case OutcomeUpgraded, OutcomeRejected:
		switch {
		case o.Kind == OutcomeUpgraded && len(o.ApprovedBy) > 1 && !o.At.IsZero():
			status = append(status, text(t.approvedByMany(o, data)))
		case o.By != "" && !o.At.IsZero():
			status = append(status, text(t.T("Outcome_"+string(o.Kind)+"_By", data)))
		}
	case OutcomeSkipped:
		if o.By != "" && !o.At.IsZero() {
			status = append(status, text(t.T("Outcome_skipped_By", data)))
		}
		status = append(status, text(t.T("Outcome_skipped_Body", data)))
	case OutcomeFailed:
		if o.Problem != (Problem{}) {
			status = append(status, t.problemElements(o.Problem)...)
		}
		if o.ApprovalID != "" {
			actions = append(actions, execute(t.T("Retry"), VerbRetry, o.ApprovalID, "positive"))
		}
	case OutcomeNotAllowed:
		status = append(status, text(t.T(whoMayApprove(o.Approvers, o.Place))))
	case OutcomeUpgrading:
		switch {
		case len(o.ApprovedBy) > 1 && !o.At.IsZero():
			status = append(status, text(t.approvedByMany(o, data)))
		case o.By != "" && !o.At.IsZero():
			status = append(status, text(t.T("Outcome_upgraded_By", data)))
		}
		status = append(status, text(t.T("Outcome_upgrading_Body", data)))
		if !o.RetryAt.IsZero() {
			status = append(status, text(t.T("Outcome_upgrading_RetryAt", map[string]any{"When": when(o.RetryAt)})))
		}
	default:
		status = append(status, text(t.T("Outcome_"+string(o.Kind)+"_Body", data)))
	}
	body = append(body, container(outcomeStyle[o.Kind], status...))
	body = append(body, heading(o.App.Name))
	body = append(body, Element{Type: "FactSet", Facts: []Fact{
		{Title: t.T("InstalledVersion"), Value: literal(o.App.FromVersion)},
		{Title: t.T("CatalogVersion"), Value: literal(o.App.ToVersion)},
	}})
	if o.Kind == OutcomeUpgraded {
		if o.Verification != nil {
			body = append(body, c.verification(t, o.Verification)...)
		}
		body = append(body, c.diffSections(t, o.Diff, o.ApprovalID, true)...)
	}
	card := newCard(t.cardLang(), body, actions...)
	card.FallbackText = t.T("Outcome_"+string(o.Kind)+"_Title", data)
	return card
}

// approvedByMany names every approver of an upgrade a quorum approved.
func (t tr) approvedByMany(o Outcome, data map[string]any) string {
	return t.T("ApprovedByMany", map[string]any{"Names": t.names(o.ApprovedBy), "When": data["When"]})
}
