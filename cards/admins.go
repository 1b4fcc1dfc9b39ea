package cards

import (
	"strconv"
	"time"
)

// Sentences of the admins' conversation.
const (
	// SentenceInventoryElsewhere: "inventory" is answered only in the
	// admins' conversation (BOT_ADMIN_CONVERSATION).
	SentenceInventoryElsewhere Sentence = "InventoryElsewhere"
	// SentenceInventoryNotAllowed: only an admin (BOT_ADMINS) may ask.
	SentenceInventoryNotAllowed Sentence = "InventoryNotAllowed"
)

// ScopeCounts are how many installations are in each kind of scope.
type ScopeCounts struct {
	Chats, Teams, Personal int
}

// Total is the sum of the counts.
func (s ScopeCounts) Total() int { return s.Chats + s.Teams + s.Personal }

// AdminNeeded is one app version whose upgrade waits for an admin across
// the tenant: the tenant's consent setting does not let the approvers of
// these installations consent to its permissions.
type AdminNeeded struct {
	Locale      string
	App         string // display name
	TeamsAppID  string // the catalog id, for the Teams admin center link
	ToVersion   string
	Waiting     ScopeCounts // installations waiting, by kind of scope
	Permissions []Permission
	// Since is when the oldest of them started waiting.
	Since time.Time
}

// adminCenterApp is the app's page in the Teams admin center.
func adminCenterApp(teamsAppID string) string {
	return "https://admin.teams.microsoft.com/policies/manage-apps/" + teamsAppID
}

// AdminNeeded is the admins' card for one app version: how many
// installations wait, where, for which permissions, and what an admin can
// do. With nothing waiting any more it says so (the card is updated in
// place, never posted again).
func (c *Cards) AdminNeeded(a AdminNeeded) Card {
	t := c.tr(a.Locale)
	data := map[string]any{"App": literal(a.App), "To": a.ToVersion, "Count": a.Waiting.Total(), "When": when(a.Since)}
	if a.Waiting.Total() == 0 {
		body := []Element{heading(t.T("AdminNeededTitle", data)), container("good", text(t.T("AdminNeededDone", data)))}
		card := newCard(t.cardLang(), body)
		card.FallbackText = t.T("AdminNeededDone", data)
		return card
	}
	body := []Element{
		heading(t.T("AdminNeededTitle", data)),
		text(t.N("AdminNeededWaiting", a.Waiting.Total(), data)),
		{Type: "FactSet", Facts: scopeFacts(t, a.Waiting)},
		subtle(t.T("AdminNeededSince", data)),
	}
	if len(a.Permissions) > 0 {
		body = append(body, c.adminPermissions(t, a.Permissions)...)
	}
	body = append(body, container("emphasis",
		Element{Type: "TextBlock", Text: t.T("AdminCanDo"), Weight: "Bolder", Wrap: true},
		text("• "+t.T("AdminPreApprove")),
		text("• "+t.T("AdminConsentSetting")),
		subtle(t.T("AdminThen")),
	))
	card := newCard(t.cardLang(), body, Action{Type: "Action.OpenUrl", Title: t.T("AdminOpenCenter"), URL: adminCenterApp(a.TeamsAppID)})
	card.FallbackText = t.N("AdminNeededWaiting", a.Waiting.Total(), data)
	return card
}

// maxAdminPermissions keeps the admins' card short: the app's page in the
// admin center lists them all.
const maxAdminPermissions = 12

func scopeFacts(t tr, s ScopeCounts) []Fact {
	var facts []Fact
	for _, f := range []struct {
		id string
		n  int
	}{{"ScopeChats", s.Chats}, {"ScopeTeams", s.Teams}, {"ScopePersonal", s.Personal}} {
		if f.n > 0 {
			facts = append(facts, Fact{Title: t.T(f.id), Value: strconv.Itoa(f.n)})
		}
	}
	return facts
}

// VersionCount is how many installations run one version.
type VersionCount struct {
	Version string
	Count   int
}

// InventoryApp is one app of the catalog with installations behind it.
type InventoryApp struct {
	Name           string
	CatalogVersion string
	Installed      []VersionCount // behind, most installations first
	Scopes         ScopeCounts
	// Requests by how they stand; Waiting is open (pending or failed, not
	// yet upgraded) plus needing an admin.
	Open, Expired, Failed, NeedsAdmin int
	OldestWaiting                     time.Time // zero: none waits
}

// Inventory is the answer to "inventory" in the admins' conversation: every
// known installation behind the catalog across the tenant, by app.
type Inventory struct {
	Locale string
	Apps   []InventoryApp // the apps shown, most installations behind first
	// More is how many apps are not shown; Installations counts every
	// installation behind, shown or not.
	More          int
	Installations int
	Scopes        ScopeCounts
}

// maxInventoryVersions bounds the installed versions listed per app.
const maxInventoryVersions = 4

// Inventory summarizes what is behind the catalog; it stays one short card
// however many installations there are (the export lists each).
func (c *Cards) Inventory(inv Inventory) Card {
	t := c.tr(inv.Locale)
	data := map[string]any{"Count": inv.Installations, "Apps": len(inv.Apps) + inv.More}
	body := []Element{heading(t.T("InventoryTitle"))}
	if inv.Installations == 0 {
		body = append(body, text(t.T("InventoryEmpty")))
		card := newCard(t.cardLang(), body)
		card.FallbackText = t.T("InventoryEmpty")
		return card
	}
	summary := append([]Fact{{Title: t.T("InventoryApps"), Value: strconv.Itoa(len(inv.Apps) + inv.More)}}, scopeFacts(t, inv.Scopes)...)
	body = append(body, text(t.N("InventorySummary", inv.Installations, data)), Element{Type: "FactSet", Facts: summary})
	for _, a := range inv.Apps {
		var versions []string
		for i, v := range a.Installed {
			if i == maxInventoryVersions {
				versions = append(versions, t.T("AndMore", map[string]any{"Count": len(a.Installed) - i}))
				break
			}
			versions = append(versions, t.T("InventoryVersion", map[string]any{"Version": v.Version, "Count": v.Count}))
		}
		ad := map[string]any{"App": literal(a.Name), "To": a.CatalogVersion, "Count": a.Scopes.Total()}
		facts := []Fact{{Title: t.T("InventoryInstalled"), Value: joinList(t, versions)}}
		facts = append(facts, scopeFacts(t, a.Scopes)...)
		facts = append(facts, Fact{Title: t.T("InventoryRequests"), Value: t.T("InventoryRequestCounts",
			map[string]any{"Open": a.Open, "Expired": a.Expired, "Failed": a.Failed, "NeedsAdmin": a.NeedsAdmin})})
		if !a.OldestWaiting.IsZero() {
			facts = append(facts, Fact{Title: t.T("InventoryOldest"), Value: when(a.OldestWaiting)})
		}
		body = append(body, Element{Type: "TextBlock", Text: t.T("InventoryApp", ad), Weight: "Bolder", Wrap: true, Separator: true,
			Spacing: "Medium"}, Element{Type: "FactSet", Facts: facts})
	}
	if inv.More > 0 {
		body = append(body, subtle(t.T("InventoryMoreApps", map[string]any{"Count": inv.More})))
	}
	body = append(body, subtle(t.T("InventoryExport")))
	card := newCard(t.cardLang(), body)
	card.FallbackText = t.N("InventorySummary", inv.Installations, data)
	return card
}

func joinList(t tr, items []string) string {
	out := ""
	for i, s := range items {
		if i > 0 {
			out += t.T("ListSeparator")
		}
		out += s
	}
	return out
}

// Digest is what happened to upgrade requests across the tenant since the
// last digest, posted in the admins' conversation.
type Digest struct {
	Locale                    string
	Since                     time.Time
	Upgraded, Expired, Failed int
	Waiting, NeedsAdmin       int
	OldestWaiting             time.Time // zero: none waits
}

// Digest is the periodic summary for admins.
func (c *Cards) Digest(d Digest) Card {
	t := c.tr(d.Locale)
	body := []Element{heading(t.T("DigestTitle")), subtle(t.T("DigestSince", map[string]any{"When": when(d.Since)}))}
	facts := []Fact{
		{Title: t.T("DigestUpgraded"), Value: strconv.Itoa(d.Upgraded)},
		{Title: t.T("DigestWaiting"), Value: strconv.Itoa(d.Waiting)},
		{Title: t.T("DigestNeedsAdmin"), Value: strconv.Itoa(d.NeedsAdmin)},
		{Title: t.T("DigestExpired"), Value: strconv.Itoa(d.Expired)},
		{Title: t.T("DigestFailed"), Value: strconv.Itoa(d.Failed)},
	}
	if !d.OldestWaiting.IsZero() {
		facts = append(facts, Fact{Title: t.T("InventoryOldest"), Value: when(d.OldestWaiting)})
	}
	body = append(body, Element{Type: "FactSet", Facts: facts}, subtle(t.T("DigestMore")))
	card := newCard(t.cardLang(), body)
	card.FallbackText = t.T("DigestTitle")
	return card
}

// SentenceAdminsUnreachable: Ask an admin found no way into the admins'
// conversation yet (the bot has no reference for it); nobody was asked.
const SentenceAdminsUnreachable Sentence = "AdminsUnreachable"

// AskReason says why someone asked an admin instead of approving.
type AskReason string

const (
	AskNeedsAdmin    AskReason = "needsAdmin"    // nobody there may consent
	AskSecondOpinion AskReason = "secondOpinion" // an approver wants a second opinion
	AskNotApprover   AskReason = "notApprover"   // the approver rule does not name them
	AskGuest         AskReason = "guest"         // a guest, never an approver
	AskOtherTenant   AskReason = "otherTenant"   // from another organization
)

// AdminAsked is one request someone asked the admins about ("Ask an
// admin"): who, why they could not approve it, and what it is.
type AdminAsked struct {
	Locale       string
	App          App
	TeamsAppID   string // the catalog id, for the Teams admin center link
	Place        Place
	Conversation string // the conversation's id, where the request's card is
	AskedBy      string
	Reason       AskReason
	Permissions  []Permission // added by the upgrade
	RequestedAt  time.Time
}

// AdminAsked is the card posted in the admins' conversation when someone
// asks an admin about a request.
func (c *Cards) AdminAsked(a AdminAsked) Card {
	t := c.tr(a.Locale)
	reason := a.Reason
	switch reason {
	case AskNeedsAdmin, AskSecondOpinion, AskNotApprover, AskGuest, AskOtherTenant:
	default:
		reason = AskNotApprover
	}
	data := map[string]any{"Asker": literal(a.AskedBy), "App": literal(a.App.Name), "From": a.App.FromVersion, "To": a.App.ToVersion}
	body := []Element{
		heading(t.T("AdminAskedTitle", data)),
		text(t.T("UpgradeFromTo", data)),
		{Type: "FactSet", Facts: []Fact{
			{Title: t.T("AdminAskedWho"), Value: literal(a.AskedBy)},
			{Title: t.T("AdminAskedWhere"), Value: t.T("AdminAskedPlace_" + string(placeOrChat(a.Place)))},
			{Title: t.T("AdminAskedConversation"), Value: literal(a.Conversation)},
		}},
		container("emphasis", Element{Type: "TextBlock", Text: t.T("AdminAskedWhy"), Weight: "Bolder", Wrap: true},
			text(t.T("AskReason_"+string(reason), data))),
	}
	if len(a.Permissions) > 0 {
		body = append(body, c.adminPermissions(t, a.Permissions)...)
	} else {
		body = append(body, text(t.T("NoPermissionChange")))
	}
	if !a.RequestedAt.IsZero() {
		body = append(body, subtle(t.T("RequestedAt", map[string]any{"When": when(a.RequestedAt)})))
	}
	var actions []Action
	if a.TeamsAppID != "" {
		actions = append(actions, Action{Type: "Action.OpenUrl", Title: t.T("AdminOpenCenter"), URL: adminCenterApp(a.TeamsAppID)})
	}
	card := newCard(t.cardLang(), body, actions...)
	card.FallbackText = t.T("AdminAskedTitle", data)
	return card
}

// placeOrChat keeps a meeting apart (its words differ); no place is a chat.
func placeOrChat(p Place) Place {
	if p == "" {
		return PlaceChat
	}
	return p
}

// adminPermissions lists the permissions an app version asks for on an
// admins' card, the first maxAdminPermissions and how many more.
func (c *Cards) adminPermissions(t tr, ps []Permission) []Element {
	out := []Element{{Type: "TextBlock", Text: t.N("AdminNeededPermissions", len(ps), nil), Weight: "Bolder", Wrap: true, Spacing: "Medium"}}
	shown := ps[:min(len(ps), maxAdminPermissions)]
	for _, p := range shown {
		out = append(out, c.permissionLines(t, p)...)
	}
	if more := len(ps) - len(shown); more > 0 {
		out = append(out, subtle(t.T("AndMore", map[string]any{"Count": more})))
	}
	return out
}
