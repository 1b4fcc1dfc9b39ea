package cards

import (
	"fmt"
	"strings"
	"time"
)

// Permission is an RSC permission as the card shows it.
type Permission struct {
	Value string // e.g. "ChatMessage.Read.Chat"
	Type  string // "application" or "delegated", any case
}

// Diff is what an upgrade changes in the consented RSC permissions.
type Diff struct {
	Added, Removed, Kept []Permission
}

func (d Diff) changed() bool { return len(d.Added) > 0 || len(d.Removed) > 0 }

// App is the app an upgrade is about.
type App struct {
	Name             string
	ShortDescription string
	FromVersion      string // installed
	ToVersion        string // catalog
}

// Place says where the app is installed, which decides the wording.
type Place string

const (
	PlaceChat     Place = "chat"
	PlaceMeeting  Place = "meeting"
	PlaceTeam     Place = "team"
	PlacePersonal Place = "personal"
)

// ApproverPolicy says who may approve, for the sentence the card shows.
type ApproverPolicy string

const (
	ApproversOwners ApproverPolicy = "owners" // chat or team owners
	ApproversGroup  ApproverPolicy = "group"  // members of an approver group
	ApproversNamed  ApproverPolicy = "named"  // named people
	ApproversSelf   ApproverPolicy = "self"   // personal scope: the user
	// ApproversOrganizer: a meeting's organizer.
	ApproversOrganizer ApproverPolicy = "organizer"
)

// PendingUpgrade is the view of one upgrade awaiting approval.
type PendingUpgrade struct {
	Locale      string
	ApprovalID  string
	App         App
	Diff        Diff
	Place       Place
	Approvers   ApproverPolicy
	RequestedAt time.Time
	// Needed is how many distinct approvers must approve (0 or 1: one,
	// and the card says nothing about it); ApprovedBy names those who
	// approved so far.
	Needed     int
	ApprovedBy []string
	// SnoozedUntil, when set, is when the reminder someone (SnoozedBy)
	// put off with "Remind me later" is due.
	SnoozedUntil time.Time
	SnoozedBy    string
	// NeedsAdmin, when set, says that the approvers here may not consent to
	// the upgrade: the card says who can allow it and how, and offers no
	// button that would fail.
	NeedsAdmin *WaitsForAdmin
	// AskAdmin offers "Ask an admin" (there is an admins' conversation);
	// AdminAskedBy names who asked so far.
	AskAdmin     bool
	AdminAskedBy []string
}

// WaitsForAdmin is why an upgrade waits for an admin: Problem's reason is
// ReasonConsentPolicy (the tenant's consent setting), ReasonConsentNotAllowed
// (Graph refused the consent) or ReasonAppBlocked (an admin blocked the app).
type WaitsForAdmin struct {
	Problem Problem
}

// Pending is the card asking to approve one upgrade.
func (c *Cards) Pending(v PendingUpgrade) Card {
	t := c.tr(v.Locale)
	body := c.appHeader(t, v.App)
	body = append(body, Element{Type: "FactSet", Facts: []Fact{
		{Title: t.T("InstalledVersion"), Value: literal(v.App.FromVersion)},
		{Title: t.T("CatalogVersion"), Value: literal(v.App.ToVersion)},
	}})
	body = append(body, c.diffSections(t, v.Diff, v.ApprovalID, true)...)
	if v.NeedsAdmin != nil {
		return c.needsAdmin(t, v, body)
	}
	body = append(body, subtle(t.T(whoMayApprove(v.Approvers, v.Place))))
	if q := t.quorum(v.Needed, v.ApprovedBy); len(q) > 0 {
		body = append(body, container("emphasis", q...))
	}
	if !v.RequestedAt.IsZero() {
		body = append(body, subtle(t.T("RequestedAt", map[string]any{"When": when(v.RequestedAt)})))
	}
	if !v.SnoozedUntil.IsZero() {
		body = append(body, subtle(t.T("SnoozedUntil", map[string]any{"By": v.SnoozedBy, "When": when(v.SnoozedUntil)})))
	}
	body = append(body, t.adminAsked(v.AdminAskedBy)...)
	// Skip, Remind me later and Ask an admin are in the overflow menu
	// ("…"): the decision stays two buttons.
	actions := []Action{
		execute(t.T("Approve"), VerbApprove, v.ApprovalID, "positive"),
		execute(t.T("Reject"), VerbReject, v.ApprovalID, "destructive"),
		secondary(execute(t.T("SkipVersion"), VerbSkip, v.ApprovalID, "")),
		secondary(execute(t.T("RemindLater"), VerbSnooze, v.ApprovalID, "")),
	}
	if v.AskAdmin {
		actions = append(actions, secondary(execute(t.T("AskAdmin"), VerbAskAdmin, v.ApprovalID, "")))
	}
	card := newCard(t.cardLang(), body, actions...)
	card.FallbackText = t.T("PendingFallback", map[string]any{"App": v.App.Name, "From": v.App.FromVersion, "To": v.App.ToVersion})
	return card
}

// quorum says, when more than one approver must approve, how many, who
// approved so far and how many more are needed.
func (t tr) quorum(needed int, approvedBy []string) []Element {
	if needed <= 1 {
		return nil
	}
	out := []Element{text(t.N("ApprovalsNeeded", needed, nil))}
	if len(approvedBy) > 0 {
		out = append(out, text(t.T("ApprovalsSoFar", map[string]any{"Names": t.names(approvedBy),
			"Done": len(approvedBy), "Needed": needed})))
	}
	if more := needed - len(approvedBy); more > 0 {
		out = append(out, Element{Type: "TextBlock", Text: t.N("ApprovalsStillNeeded", more, nil), Wrap: true, Weight: "Bolder"})
	}
	return out
}

// names joins people's names as the language lists them.
func (t tr) names(ns []string) string { return strings.Join(ns, t.T("NameSeparator")) }

// adminAsked says who asked an admin about the request, if anyone did.
func (t tr) adminAsked(names []string) []Element {
	if len(names) == 0 {
		return nil
	}
	return []Element{subtle(t.T("AdminAskedBy", map[string]any{"Names": literal(t.names(names))}))}
}

// needsAdmin ends the card of an upgrade that waits for an admin: what
// stops it, who can allow it and how, and no button that would fail; Ask
// an admin, when there is an admins' conversation.
func (c *Cards) needsAdmin(t tr, v PendingUpgrade, body []Element) Card {
	p := v.NeedsAdmin.Problem
	w := t.word(p)
	who := t.T("NeedsAdminWho_" + string(placeKind(v.Place)))
	if p.Reason == ReasonAppBlocked {
		who = t.T("NeedsAdminWhoBlocked")
	}
	items := []Element{{Type: "TextBlock", Text: t.T("NeedsAdminTitle"), Weight: "Bolder", Wrap: true}, text(w.what), text(who)}
	if w.detail != "" {
		items = append(items, subtle(w.detail))
	}
	note := container("attention", items...)
	note.Spacing = "Medium"
	body = append(body, note)
	if !v.RequestedAt.IsZero() {
		body = append(body, subtle(t.T("RequestedAt", map[string]any{"When": when(v.RequestedAt)})))
	}
	body = append(body, t.adminAsked(v.AdminAskedBy)...)
	var actions []Action
	if v.AskAdmin {
		actions = append(actions, execute(t.T("AskAdmin"), VerbAskAdmin, v.ApprovalID, ""))
	}
	card := newCard(t.cardLang(), body, actions...)
	card.FallbackText = t.T("NeedsAdminFallback", map[string]any{"App": v.App.Name, "From": v.App.FromVersion, "To": v.App.ToVersion})
	return card
}

// placeKind folds a meeting chat into a chat (owners are chat owners
// there); no place means a chat.
func placeKind(p Place) Place {
	if p == PlaceMeeting || p == "" {
		return PlaceChat
	}
	return p
}

// whoMayApprove is the message saying who may approve; owners by default.
func whoMayApprove(a ApproverPolicy, p Place) string {
	if a == "" {
		a = ApproversOwners
	}
	return "WhoMayApprove_" + string(a) + "_" + string(placeKind(p))
}

func (c *Cards) appHeader(t tr, a App) []Element {
	title := []Element{heading(a.Name)}
	if a.ShortDescription != "" {
		title = append(title, subtle(a.ShortDescription))
	}
	return append(title, text(t.T("UpgradeFromTo", map[string]any{"From": a.FromVersion, "To": a.ToVersion})))
}

// diffSections shows added, removed and kept permissions. Kept ones are
// folded behind a toggle when collapseKept, to keep the decision in view.
func (c *Cards) diffSections(t tr, d Diff, idPrefix string, collapseKept bool) []Element {
	if len(d.Added)+len(d.Removed)+len(d.Kept) == 0 {
		return []Element{text(t.T("NoPermissions"))}
	}
	var out []Element
	if !d.changed() {
		out = append(out, text(t.T("NoPermissionChange")))
	}
	if len(d.Added) > 0 {
		out = append(out, c.permissionGroup(t, "attention", t.N("AddedPermissions", len(d.Added), nil), d.Added))
	}
	if len(d.Removed) > 0 {
		out = append(out, c.permissionGroup(t, "default", t.N("RemovedPermissions", len(d.Removed), nil), d.Removed))
	}
	if len(d.Kept) > 0 {
		kept := c.permissionGroup(t, "default", t.N("KeptPermissions", len(d.Kept), nil), d.Kept)
		if collapseKept && d.changed() {
			id := "kept-" + idPrefix
			kept.ID, kept.IsVisible = id, hidden()
			out = append(out, Element{Type: "ActionSet", Actions: []Action{{
				Type: "Action.ToggleVisibility", Title: t.N("ShowKept", len(d.Kept), nil), TargetElements: []string{id},
			}}}, kept)
		} else {
			out = append(out, kept)
		}
	}
	out = append(out, subtle(t.T("TypesLegend")))
	return out
}

func (c *Cards) permissionGroup(t tr, style, title string, ps []Permission) Element {
	items := []Element{{Type: "TextBlock", Text: title, Weight: "Bolder", Wrap: true}}
	for _, p := range ps {
		items = append(items, c.permissionLines(t, p)...)
	}
	g := container(style, items...)
	g.Spacing = "Medium"
	return g
}

// permissionLines says what a permission allows, its type, and, for a
// high-risk one, says so in words (not in colour alone).
func (c *Cards) permissionLines(t tr, p Permission) []Element {
	info, known := c.perms[strings.ToLower(p.Value)]
	// A permission this bot does not know is named by the manifest that
	// asks for it: text from outside, like an app's name.
	meaning := literal(p.Value)
	if known {
		meaning = info.Meaning[t.lang]
	}
	line := Element{Type: "TextBlock", Wrap: true, Spacing: "Small", Text: "• " + meaning}
	if known && info.Risk == "high" {
		line.Text = "• " + t.T("HighRisk") + " " + meaning
		line.Color = "Attention"
	}
	detail := p.Value + " · " + t.T("Type_"+normType(p.Type))
	if !known {
		detail = t.T("UnknownPermission") + " · " + t.T("Type_"+normType(p.Type))
	}
	return []Element{line, subtle(detail)}
}

func normType(s string) string {
	switch strings.ToLower(s) {
	case "application":
		return "application"
	case "delegated":
		return "delegated"
	}
	return "other"
}

// when renders a time in the viewer's locale and time zone: Teams evaluates
// DATE() and TIME() on the client.
func when(ts time.Time) string {
	u := ts.UTC().Format("2006-01-02T15:04:05Z")
	return fmt.Sprintf("{{DATE(%s, SHORT)}} {{TIME(%s)}}", u, u)
}
