package bot

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// InventoryItem is one installation behind the catalog, as a scan saw it.
type InventoryItem struct {
	InstallationID string `json:"id"`
	TeamsAppID     string `json:"app"`
	App            string `json:"name"`
	Version        string `json:"v"`
	CatalogVersion string `json:"to"`
}

// InventoryScope is what the last scan of one scope saw behind the catalog.
type InventoryScope struct {
	Kind  approval.ScopeKind `json:"kind"`
	ID    string             `json:"scope"`
	Seen  time.Time          `json:"seen"`
	Items []InventoryItem    `json:"items"`
}

// RequestNote is how the newest request of one installation stands.
type RequestNote struct {
	InstallationID string          `json:"inst"`
	ApprovalID     string          `json:"id"`
	TeamsAppID     string          `json:"app"`
	Target         string          `json:"to"`
	Status         approval.Status `json:"status"`
	Created        time.Time       `json:"created"`
	At             time.Time       `json:"at"` // when it came to this status
}

// InventoryData is a tenant's inventory as kept: each scope's
// installations behind the catalog, and the requests, by installation.
type InventoryData struct {
	Scopes   []InventoryScope
	Requests map[string]RequestNote
}

// InventoryStore keeps, per tenant, every installation behind the catalog
// that a scan saw, and how each one's request stands.
type InventoryStore interface {
	// SaveScope replaces what is kept of one scope; no items forgets it.
	SaveScope(ctx context.Context, tenantID string, s InventoryScope) error
	// NoteRequest records how an installation's request stands.
	NoteRequest(ctx context.Context, tenantID string, r RequestNote) error
	// Inventory reads a tenant's inventory.
	Inventory(ctx context.Context, tenantID string) (InventoryData, error)
}

// saveScope records what a scan saw behind the catalog in one scope, when
// there is an admins' conversation to show it.
func (ad *admins) saveScope(ctx context.Context, scope approval.Scope, ups []approval.PendingUpgrade) {
	if !ad.on() {
		return
	}
	s := InventoryScope{Kind: scope.Kind, ID: scope.ID, Seen: ad.now().UTC()}
	for _, u := range ups {
		s.Items = append(s.Items, InventoryItem{InstallationID: u.Installation.ID, TeamsAppID: u.Installation.TeamsAppID,
			App: u.Installation.DisplayName, Version: u.Installation.Definition.Version, CatalogVersion: u.Target.Version})
	}
	if err := ad.store.SaveScope(ctx, strings.ToLower(scope.TenantID), s); err != nil {
		ad.log.WarnContext(ctx, "cannot record the scope's installations for the inventory", "err", err)
	}
}

// InventoryRow is one line of the inventory export.
type InventoryRow struct {
	TeamsAppID     string             `json:"teamsAppId"`
	App            string             `json:"app"`
	ScopeKind      approval.ScopeKind `json:"scopeKind"`
	ScopeID        string             `json:"scopeId"`
	InstallationID string             `json:"installationId"`
	Version        string             `json:"installedVersion"`
	CatalogVersion string             `json:"catalogVersion"`
	RequestID      string             `json:"requestId,omitempty"`
	RequestStatus  approval.Status    `json:"requestStatus,omitempty"`
	RequestedAt    time.Time          `json:"requestedAt,omitzero"`
	SeenAt         time.Time          `json:"seenAt"`
}

// request is the installation's request for the catalog version it is
// behind, if one was noted.
func (d InventoryData) request(it InventoryItem) (RequestNote, bool) {
	r, ok := d.Requests[it.InstallationID]
	return r, ok && r.Target == it.CatalogVersion
}

// Rows lists every installation, by app, scope kind and scope.
func (d InventoryData) Rows() []InventoryRow {
	var rows []InventoryRow
	for _, s := range d.Scopes {
		for _, it := range s.Items {
			row := InventoryRow{TeamsAppID: it.TeamsAppID, App: it.App, ScopeKind: s.Kind, ScopeID: s.ID,
				InstallationID: it.InstallationID, Version: it.Version, CatalogVersion: it.CatalogVersion, SeenAt: s.Seen}
			if r, ok := d.request(it); ok {
				row.RequestID, row.RequestStatus, row.RequestedAt = r.ApprovalID, r.Status, r.Created
			}
			rows = append(rows, row)
		}
	}
	slices.SortFunc(rows, func(a, b InventoryRow) int {
		return cmp.Or(cmp.Compare(a.App, b.App), cmp.Compare(a.TeamsAppID, b.TeamsAppID), cmp.Compare(a.ScopeKind, b.ScopeKind),
			cmp.Compare(a.ScopeID, b.ScopeID), cmp.Compare(a.InstallationID, b.InstallationID))
	})
	return rows
}

// waiting reports whether a request in status s still waits to be
// upgraded: open, including needing an admin.
func waiting(s approval.Status) bool {
	return s == approval.StatusPending || s == approval.StatusFailed || s == approval.StatusUpgrading || s == approval.StatusNeedsAdmin
}

func count(c *cards.ScopeCounts, kind approval.ScopeKind) {
	switch kind {
	case approval.ScopeTeam:
		c.Teams++
	case approval.ScopeUser:
		c.Personal++
	default:
		c.Chats++
	}
}

// Summary is the inventory by app, the top apps (most installations
// behind) shown and the rest counted.
func (d InventoryData) Summary(locale string, top int) cards.Inventory {
	type app struct {
		cards.InventoryApp
		id       string
		versions map[string]int
	}
	byApp := map[string]*app{}
	inv := cards.Inventory{Locale: locale}
	for _, s := range d.Scopes {
		for _, it := range s.Items {
			a := byApp[it.TeamsAppID]
			if a == nil {
				a = &app{id: it.TeamsAppID, versions: map[string]int{}}
				byApp[it.TeamsAppID] = a
			}
			a.Name = cmp.Or(a.Name, it.App)
			if a.CatalogVersion == "" || approval.CompareVersions(it.CatalogVersion, a.CatalogVersion) > 0 {
				a.CatalogVersion = it.CatalogVersion
			}
			a.versions[it.Version]++
			count(&a.Scopes, s.Kind)
			count(&inv.Scopes, s.Kind)
			inv.Installations++
			r, ok := d.request(it)
			if !ok {
				continue
			}
			switch r.Status {
			case approval.StatusPending, approval.StatusUpgrading:
				a.Open++
			case approval.StatusFailed:
				a.Failed++
			case approval.StatusExpired:
				a.Expired++
			case approval.StatusNeedsAdmin:
				a.NeedsAdmin++
			}
			if waiting(r.Status) && (a.OldestWaiting.IsZero() || r.Created.Before(a.OldestWaiting)) {
				a.OldestWaiting = r.Created
			}
		}
	}
	apps := make([]*app, 0, len(byApp))
	for _, a := range byApp {
		for v, n := range a.versions {
			a.Installed = append(a.Installed, cards.VersionCount{Version: v, Count: n})
		}
		slices.SortFunc(a.Installed, func(x, y cards.VersionCount) int {
			return cmp.Or(cmp.Compare(y.Count, x.Count), -approval.CompareVersions(x.Version, y.Version))
		})
		apps = append(apps, a)
	}
	slices.SortFunc(apps, func(x, y *app) int {
		return cmp.Or(cmp.Compare(y.Scopes.Total(), x.Scopes.Total()), cmp.Compare(x.Name, y.Name), cmp.Compare(x.id, y.id))
	})
	for i, a := range apps {
		if i == top {
			inv.More = len(apps) - top
			break
		}
		inv.Apps = append(inv.Apps, a.InventoryApp)
	}
	return inv
}

// inventory answers "inventory": only in the admins' conversation, only to
// an admin (BOT_ADMINS, asked of Graph now).
func (ad *admins) inventory(ctx context.Context, t *Turn) error {
	locale := t.Activity.Locale
	say := func(s cards.Sentence) error {
		_, err := t.Reply(ctx, Message{Text: ad.cards.Sentence(locale, s, nil)})
		return err
	}
	if !ad.on() || approval.BaseConversation(t.Ref.ConversationID) != approval.BaseConversation(ad.conversationID) {
		return say(cards.SentenceInventoryElsewhere)
	}
	if ad.approvers.directory == nil {
		return say(cards.SentenceNoGraph)
	}
	if t.Ref.Scope == nil {
		return say(cards.SentenceNoScope)
	}
	ok, err := ad.approvers.mayApprove(ctx, *t.Ref.Scope, t.person())
	if err != nil {
		return err
	}
	if !ok {
		return say(cards.SentenceInventoryNotAllowed)
	}
	d, err := ad.store.Inventory(ctx, strings.ToLower(t.Ref.TenantID))
	if err != nil {
		return err
	}
	_, err = t.Reply(ctx, CardMessage(ad.cards.Inventory(d.Summary(locale, ad.topApps))))
	return err
}

// digest sends the digest when it is due and something changed since the
// last one: once across replicas (ClaimDigest moves the last digest's time
// before it is sent).
func (ad *admins) digest(ctx context.Context, ref approval.ConversationRef) error {
	tenant, now := strings.ToLower(ref.TenantID), ad.now().UTC()
	last, err := ad.store.LastDigest(ctx, tenant)
	if err != nil {
		return err
	}
	if last.IsZero() {
		// The first digest covers an interval from now.
		_, err := ad.store.ClaimDigest(ctx, tenant, last, now)
		return err
	}
	if now.Sub(last) < ad.digestEvery {
		return nil
	}
	d, err := ad.store.Inventory(ctx, tenant)
	if err != nil {
		return err
	}
	view, changed := digestOf(d, ref.Locale, last)
	claimed, err := ad.store.ClaimDigest(ctx, tenant, last, now)
	if err != nil || !claimed || !changed {
		return err
	}
	if _, err := ad.conn.Send(ctx, ref.TopLevel(), CardMessage(ad.cards.Digest(view))); err != nil {
		// Not sent: the interval is the next try's again (on whichever
		// replica), unless another digest went out meanwhile.
		if _, perr := ad.store.ClaimDigest(context.WithoutCancel(ctx), tenant, now, last); perr != nil {
			ad.log.WarnContext(ctx, "a digest that could not be sent is lost", "err", perr)
		}
		return err
	}
	ad.log.InfoContext(ctx, "admins' digest sent", "upgraded", view.Upgraded, "waiting", view.Waiting, "needs_admin", view.NeedsAdmin)
	return nil
}

// digestOf counts what happened to requests since, and what still waits;
// changed is false when no request changed since.
func digestOf(d InventoryData, locale string, since time.Time) (cards.Digest, bool) {
	view := cards.Digest{Locale: locale, Since: since}
	changed := false
	for _, r := range d.Requests {
		if waiting(r.Status) {
			view.Waiting++
			if r.Status == approval.StatusNeedsAdmin {
				view.NeedsAdmin++
			}
			if view.OldestWaiting.IsZero() || r.Created.Before(view.OldestWaiting) {
				view.OldestWaiting = r.Created
			}
		}
		if !r.At.After(since) {
			continue
		}
		changed = true
		switch r.Status {
		case approval.StatusUpgraded, approval.StatusUpgradedOutside, approval.StatusUpToDate:
			view.Upgraded++
		case approval.StatusExpired:
			view.Expired++
		case approval.StatusFailed:
			view.Failed++
		}
	}
	return view, changed
}
