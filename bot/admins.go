package bot

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// AppVersion is one catalog app version in a tenant: what an admin allows.
type AppVersion struct {
	TeamsAppID string `json:"app"`
	Version    string `json:"version"`
}

// NeedsAdminEntry is one request waiting for an admin (its approval is in
// approval.StatusNeedsAdmin).
type NeedsAdminEntry struct {
	ApprovalID  string                `json:"id"`
	App         string                `json:"name"` // display name
	Kind        approval.ScopeKind    `json:"kind"`
	Permissions []approval.Permission `json:"perms,omitempty"`
	Since       time.Time             `json:"since"`
}

// NeedsAdminIndex is, per tenant and app version, the requests waiting for
// an admin: what the admins' card counts.
type NeedsAdminIndex interface {
	// SetNeedsAdmin records e under v (add), or drops it; changed reports
	// whether the index changed.
	SetNeedsAdmin(ctx context.Context, tenantID string, v AppVersion, e NeedsAdminEntry, add bool) (changed bool, err error)
	// NeedsAdmin lists the requests waiting under v.
	NeedsAdmin(ctx context.Context, tenantID string, v AppVersion) ([]NeedsAdminEntry, error)
	// AdminVersions lists the app versions with requests waiting, or whose
	// card still shows some.
	AdminVersions(ctx context.Context, tenantID string) ([]AppVersion, error)
}

// AdminCard is the admins' card of one app version, once posted.
type AdminCard struct {
	ActivityID string `json:"activityId"`
	App        string `json:"name"`
	// Drawn fingerprints the requests the card shows: a redraw that would
	// show the same is skipped. "" asks for a redraw.
	Drawn string `json:"drawn"`
	// Rev counts the card's recorded drawings: SaveAdminCard records one
	// over the revision its drawer read, or over anything with -1.
	Rev int64 `json:"-"`
	// Claim is the claim to post the card, as ClaimAdminCard granted it.
	Claim string `json:"-"`
}

// AdminCards make the admins' card of an app version posted once across
// replicas and restarts, and updated in place after.
type AdminCards interface {
	// ClaimAdminCard returns the card posted for v, or grants posting it:
	// once, unless a claim older than stale was never saved (its replica
	// died mid-post). Neither: someone else is posting it now.
	ClaimAdminCard(ctx context.Context, tenantID string, v AppVersion, stale time.Duration) (card AdminCard, granted bool, err error)
	// SaveAdminCard records the card as drawn, at the next revision, if
	// what is stored is still what its drawer read: the claim card.Claim
	// it posted under, or the card at revision card.Rev (-1: whatever card
	// is stored, and v is listed in AdminVersions again). Otherwise it changes nothing and reports false: another
	// replica drew the card meanwhile, and either drawing may have reached
	// Teams last, so the caller draws again. done (it shows nothing
	// waiting) takes v off AdminVersions, unless a request waits under v
	// again by then.
	SaveAdminCard(ctx context.Context, tenantID string, v AppVersion, card AdminCard, done bool) (saved bool, err error)
	// ReleaseAdminCard gives back the claim that posted nothing, if it is
	// still held (another replica may have taken a stale one over); done
	// as for SaveAdminCard.
	ReleaseAdminCard(ctx context.Context, tenantID string, v AppVersion, claim string, done bool) error
}

// DigestLog makes the admins' digest go out once per interval across
// replicas and restarts.
type DigestLog interface {
	// LastDigest is when the last digest was sent (zero: never).
	LastDigest(ctx context.Context, tenantID string) (time.Time, error)
	// ClaimDigest moves the last digest from prev to at, if it still is
	// prev; only the replica that moved it sends the digest.
	ClaimDigest(ctx context.Context, tenantID string, prev, at time.Time) (bool, error)
}

// NotedAsk is one ask of an admin listed before it was recorded: the
// approval, who asked (AskerKey) and when it was noted.
type NotedAsk struct {
	ApprovalID string
	Asker      string
	At         time.Time
}

// PendingAsks are, per tenant, the asks of an admin not yet known to be
// posted (approval.Approval.AsksUnposted), one entry per ask, so that an
// ask whose replica died before posting it is posted by another.
type PendingAsks interface {
	// NoteAsk lists an ask at at; it is noted before it is recorded.
	NoteAsk(ctx context.Context, tenantID, approvalID, asker string, at time.Time) error
	// Asks lists the asks noted.
	Asks(ctx context.Context, tenantID string) ([]NotedAsk, error)
	// DropAsk takes an ask off the list if it was noted at notedAt (zero:
	// whenever): a sync that read it before the same person asked again
	// leaves the new note.
	DropAsk(ctx context.Context, tenantID, approvalID, asker string, notedAt time.Time) error
}

// AskerKey names who asked in the list of asks: "aad:" and their Entra
// object id (in any case, as Person compares it), else "id:" and their
// channel id, as it is.
func AskerKey(who approval.Person) string {
	if who.AADObjectID != "" {
		return "aad:" + strings.ToLower(who.AADObjectID)
	}
	return "id:" + who.ID
}

// askerOf is the person an AskerKey names, enough to find their ask.
func askerOf(key string) approval.Person {
	if id, ok := strings.CutPrefix(key, "aad:"); ok {
		return approval.Person{AADObjectID: id}
	}
	return approval.Person{ID: strings.TrimPrefix(key, "id:")}
}

// AdminStore is everything the admins' conversation needs kept.
type AdminStore interface {
	NeedsAdminIndex
	AdminCards
	InventoryStore
	DigestLog
	PendingAsks
}

// admins is the admins' conversation (BOT_ADMIN_CONVERSATION): one card per
// app version that needs an admin, the inventory, the digest.
type admins struct {
	*plumbing
	conversationID string     // "" or nil store: there is none
	store          AdminStore // nil: there is none
	conversations  ConversationStore
	approvals      ApprovalStore
	approvers      *approvers // BOT_ADMINS
	claimStale     time.Duration
	digestEvery    time.Duration // 0: no digest
	topApps        int
	warned         atomic.Bool
}

func (ad *admins) on() bool { return ad.store != nil && ad.conversationID != "" }

// ref is the admins' conversation; ok is false while the bot has no
// reference for it (said once in the log: nothing is posted there until
// someone talks to the bot there, or adds it).
func (ad *admins) ref(ctx context.Context) (approval.ConversationRef, bool, error) {
	ref, err := ad.conversations.Reference(ctx, ad.conversationID)
	if ErrorCode(err) == CodeNotFound {
		if !ad.warned.Swap(true) {
			ad.log.WarnContext(ctx, "BOT_ADMIN_CONVERSATION: the bot has no reference for this conversation yet; "+
				"admin cards are posted once the bot is added there or someone talks to it there", "conversation", ad.conversationID)
		}
		return ref, false, nil
	}
	if err != nil {
		return ref, false, err
	}
	return ref, true, nil
}

// approvalChanged keeps what the admins see true after an approval's
// status changed: the inventory's request line and, when it entered or
// left approval.StatusNeedsAdmin, its app version's card.
func (ad *admins) approvalChanged(ctx context.Context, a approval.Approval) {
	if !ad.on() || a.ID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	tenant := a.OpenKey().TenantID
	u := a.Upgrade
	at := a.DecidedAt
	if at.IsZero() {
		at = ad.now()
	}
	if err := ad.store.NoteRequest(ctx, tenant, RequestNote{InstallationID: u.Installation.ID, ApprovalID: a.ID,
		TeamsAppID: u.Installation.TeamsAppID, Target: u.Target.Version, Status: a.Status, Created: a.CreatedAt, At: at.UTC()}); err != nil {
		ad.log.WarnContext(ctx, "cannot note a request for the inventory", "approval", a.ID, "err", err)
	}
	// Unknown yet (or unreadable), the requests are still indexed: the
	// admins' sync draws their cards once the bot has the reference.
	ref, known, rerr := ad.ref(ctx)
	if known && !strings.EqualFold(ref.TenantID, tenant) {
		return // the admins' conversation is another tenant's: no card of theirs counts it
	}
	v := appVersion(a)
	changed, err := ad.store.SetNeedsAdmin(ctx, tenant, v, NeedsAdminEntry{ApprovalID: a.ID, App: u.Installation.DisplayName,
		Kind: u.Installation.Scope.Kind, Permissions: u.Diff.Added, Since: a.CreatedAt}, a.Status == approval.StatusNeedsAdmin)
	if err != nil {
		ad.log.WarnContext(ctx, "cannot index a request needing an admin", "approval", a.ID, "err", err)
		return
	}
	if !changed {
		return
	}
	if known {
		rerr = ad.draw(ctx, ref, tenant, v)
	}
	if rerr != nil {
		ad.log.WarnContext(ctx, "cannot update the admins' card", "app", v.TeamsAppID, "version", v.Version, "err", rerr)
	}
}

func appVersion(a approval.Approval) AppVersion {
	u := a.Upgrade
	return AppVersion{TeamsAppID: cmp.Or(u.Target.TeamsAppID, u.Installation.TeamsAppID), Version: strings.TrimSpace(u.Target.Version)}
}

// draw posts or updates, in the admins' conversation ref (of tenant), the
// card of v to show the requests waiting now: posted once (the claim),
// updated in place after, left alone when it already shows them.
func (ad *admins) draw(ctx context.Context, ref approval.ConversationRef, tenant string, v AppVersion) error {
	// Again when another replica drew the card meanwhile: the last drawing
	// to reach Teams must be from the requests as they are now, so a
	// drawer that lost the race draws again even when the record says the
	// card already shows them (its own drawing may have landed last).
	lost := false
	var last AdminCard
	for range 4 {
		entries, err := ad.store.NeedsAdmin(ctx, tenant, v)
		if err != nil {
			return err
		}
		drawn := fingerprint(entries)
		card, granted, err := ad.store.ClaimAdminCard(ctx, tenant, v, ad.claimStale)
		if err != nil {
			return err
		}
		view := adminView(ref.Locale, v, entries, card.App)
		done := len(entries) == 0
		switch {
		case card.ActivityID != "":
			if card.Drawn == drawn && !lost {
				if done {
					_, err := ad.store.SaveAdminCard(ctx, tenant, v, card, true)
					return err
				}
				return nil
			}
			if err := ad.conn.Update(ctx, ref.TopLevel(), card.ActivityID, CardMessage(ad.cards.AdminNeeded(view))); err != nil {
				return err
			}
			card.Drawn, card.App = drawn, view.App
			saved, err := ad.store.SaveAdminCard(ctx, tenant, v, card, done)
			if err != nil || saved {
				return err
			}
			lost, last = true, card
			continue
		case !granted:
			return nil // another replica is posting it; the next round redraws
		case done:
			return ad.store.ReleaseAdminCard(ctx, tenant, v, card.Claim, true)
		}
		id, err := ad.conn.Send(ctx, ref.TopLevel(), CardMessage(ad.cards.AdminNeeded(view)))
		if err != nil || id == "" {
			if rerr := ad.store.ReleaseAdminCard(ctx, tenant, v, card.Claim, false); rerr != nil {
				ad.log.WarnContext(ctx, "cannot release the admins' card claim", "err", rerr)
			}
			return err
		}
		ad.log.InfoContext(ctx, "admins' card posted", "app", view.App, "version", v.Version, "waiting", len(entries))
		saved, err := ad.store.SaveAdminCard(ctx, tenant, v, AdminCard{ActivityID: id, App: view.App, Drawn: drawn, Claim: card.Claim}, false)
		if err != nil {
			return err
		}
		if !saved {
			// Our claim went stale and another replica posted the card
			// too: theirs is the one kept up to date.
			ad.log.WarnContext(ctx, "another replica posted this app version's admins' card too; this one is no longer updated",
				"app", view.App, "version", v.Version, "activity", id)
			return nil
		}
		// The requests may have changed while the card was posted: the
		// next round redraws it if so.
	}
	if lost {
		// Still losing the race: have the card drawn again by whoever
		// comes next (the admins' sync at the latest), whatever it shows.
		last.Drawn, last.Rev = "", -1
		if _, err := ad.store.SaveAdminCard(ctx, tenant, v, last, false); err != nil {
			return err
		}
	}
	return nil
}

// fingerprint names a set of waiting requests.
func fingerprint(entries []NeedsAdminEntry) string {
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ApprovalID
	}
	slices.Sort(ids)
	sum := sha256.Sum256([]byte(strings.Join(ids, ",")))
	return hex.EncodeToString(sum[:8])
}

// adminView counts the requests waiting for v by kind of scope and
// gathers the permissions they need consented.
func adminView(locale string, v AppVersion, entries []NeedsAdminEntry, name string) cards.AdminNeeded {
	view := cards.AdminNeeded{Locale: locale, App: name, TeamsAppID: v.TeamsAppID, ToVersion: v.Version}
	seen := map[string]bool{}
	for _, e := range entries {
		view.App = cmp.Or(e.App, view.App)
		switch e.Kind {
		case approval.ScopeTeam:
			view.Waiting.Teams++
		case approval.ScopeUser:
			view.Waiting.Personal++
		default:
			view.Waiting.Chats++
		}
		if view.Since.IsZero() || e.Since.Before(view.Since) {
			view.Since = e.Since
		}
		for _, p := range e.Permissions {
			k := strings.ToLower(p.Value + "|" + p.Type)
			if !seen[k] {
				seen[k] = true
				view.Permissions = append(view.Permissions, cards.Permission{Value: p.Value, Type: p.Type})
			}
		}
	}
	view.App = cmp.Or(view.App, v.TeamsAppID)
	return view
}

// sync redraws every app version's card that may be out of date: those
// the bot could not post while it had no reference for the conversation,
// and those changed on a replica that died before it drew them.
func (ad *admins) sync(ctx context.Context) error {
	ref, ok, err := ad.ref(ctx)
	if err != nil || !ok {
		return err
	}
	tenant := strings.ToLower(ref.TenantID)
	versions, err := ad.store.AdminVersions(ctx, tenant)
	if err != nil {
		return err
	}
	for _, v := range versions {
		if err := ad.draw(ctx, ref, tenant, v); err != nil {
			return err
		}
	}
	// A failing ask does not hold the digest up.
	err = ad.postUnposted(ctx, ref, tenant)
	if ad.digestEvery > 0 {
		err = errors.Join(err, ad.digest(ctx, ref))
	}
	return err
}

// askPostedWithin is how long the replica an ask was made on has to post
// it before the admins' sync takes it for lost and posts it: far longer
// than a post takes, so a live replica's ask is not posted twice.
const askPostedWithin = 2 * time.Minute

// postUnposted posts the asks of an admin whose replica did not (it died
// between recording and posting one), once the asker's own replica would
// have, and records each as posted. One that cannot be posted is taken
// back, as on the click (the asker may ask again), unless the connector is
// only unavailable for now. An ask noted but never recorded (its click
// failed) leaves the list once it would have been.
func (ad *admins) postUnposted(ctx context.Context, ref approval.ConversationRef, tenant string) error {
	noted, err := ad.store.Asks(ctx, tenant)
	if err != nil {
		return err
	}
	due := ad.now().Add(-askPostedWithin)
	var errs []error
	for _, n := range noted {
		who := askerOf(n.Asker)
		a, err := ad.approvals.Approval(ctx, n.ApprovalID)
		if err != nil && ErrorCode(err) != CodeNotFound {
			errs = append(errs, err)
			continue
		}
		ask, unposted := a.AsksUnposted.Of(who)
		switch {
		case err == nil && a.Claimed():
			continue // upgrading: asked about again if it fails; the list keeps it
		case err != nil || !a.Status.AdminAskable() || !unposted && n.At.Before(due):
			// Gone, decided or closed, or posted (or never recorded).
			if err := ad.store.DropAsk(ctx, tenant, n.ApprovalID, n.Asker, n.At); err != nil {
				errs = append(errs, err)
			}
			continue
		case !unposted || !ask.At.Before(due):
			continue // its own replica may still be posting it
		}
		if err := ad.postOneUnposted(ctx, ref, tenant, a, ask); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// postOneUnposted claims an unposted ask (moving its time to now, by
// compare-and-set, so no other sync posts it too), posts it, records it
// posted and takes it off the list.
func (ad *admins) postOneUnposted(ctx context.Context, ref approval.ConversationRef, tenant string, a approval.Approval, ask approval.AdminAsk) error {
	now := ad.now().UTC()
	claimed, err := ad.approvals.Transition(ctx, a.ID, approval.AdminAskableStatuses(), func(x *approval.Approval) {
		for i, o := range x.AsksUnposted {
			if o.Person == ask.Person && o.At.Equal(ask.At) {
				x.AsksUnposted = slices.Clone(x.AsksUnposted)
				x.AsksUnposted[i].At = now
			}
		}
	})
	if ErrorCode(err) == CodeConflict {
		return nil // decided meanwhile: the next round drops it
	}
	if err != nil {
		return err
	}
	if mine, ok := claimed.AsksUnposted.Of(ask.Person); !ok || !mine.At.Equal(now) {
		return nil // another replica's sync took it
	}
	if err := ad.postAsked(ctx, ref, claimed, ask.Person, ask.Why); err != nil {
		if ErrorCode(err) == CodeUnavailable {
			return err // the next round tries again, once it is due again
		}
		ad.log.WarnContext(ctx, "cannot post an ask of an admin its replica did not post; taken back", "approval", a.ID, "err", err)
		_, err := ad.settleAsk(ctx, tenant, a.ID, ask.Person, time.Time{}, true)
		return err
	}
	ad.log.InfoContext(ctx, "an ask of an admin its replica did not post was posted", "approval", a.ID, "reason", ask.Why)
	ad.audit(ctx, ad.approvals, claimed.Event(approval.OpAdminAsked, ask.At, &ask.Person, string(ask.Why)))
	_, err = ad.settleAsk(ctx, tenant, a.ID, ask.Person, time.Time{}, false)
	return err
}

// settleAsk records who's ask of an admin about approval id as posted or,
// with takeBack, takes it back (they may ask again), then takes it off the
// list of asks if it was noted at notedAt (zero: whenever). settled is
// the approval as recorded, zero if that failed.
func (ad *admins) settleAsk(ctx context.Context, tenant, id string, who approval.Person, notedAt time.Time, takeBack bool) (settled approval.Approval, err error) {
	settled, err = ad.approvals.Transition(ctx, id, approval.Statuses(), func(x *approval.Approval) {
		if takeBack {
			*x = x.TakeBackAsk(who)
		} else {
			x.AsksUnposted = x.AsksUnposted.Without(who)
		}
	})
	if err != nil {
		return approval.Approval{}, err
	}
	return settled, ad.store.DropAsk(ctx, tenant, id, AskerKey(who), notedAt)
}

// adminsLease elects the replica that redraws the admins' cards and sends
// the digest.
const adminsLease = "admins"

// run syncs every interval on whichever replica holds the admins' lease.
func (ad *admins) run(ctx context.Context, leases Leases, holder string, every time.Duration) {
	if !ad.on() {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		held, err := leases.HoldLease(ctx, adminsLease, holder, 3*every)
		if err != nil {
			ad.log.WarnContext(ctx, "cannot hold the admins' lease", "err", err)
		}
		if held {
			if err := ad.sync(ctx); err != nil && ctx.Err() == nil {
				ad.log.WarnContext(ctx, "cannot bring the admins' conversation up to date", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunAdmins keeps the admins' conversation (Options.AdminConversation) up
// to date every interval on whichever replica holds its lease: cards the
// bot could not post yet, and the digest when it is due. Without an admins'
// conversation it returns at once.
func (b *Bot) RunAdmins(ctx context.Context, leases Leases, holder string, every time.Duration) {
	b.admins.run(ctx, leases, holder, every)
}

// NeedsAdminChanged is what moves an approval into or out of
// approval.StatusNeedsAdmin calls after the store applied the change, with
// the approval as stored: the admins' card of its app version counts it
// (or no longer does) at once, on whichever replica. Outcomes the bot
// records itself (upgraded, expired, …) call it already.
func (b *Bot) NeedsAdminChanged(ctx context.Context, a approval.Approval) {
	b.admins.approvalChanged(ctx, a)
}

// errAdminsUnreachable: the bot has no way into the admins' conversation
// for the approval's tenant yet.
var errAdminsUnreachable = Errorf(CodeUnavailable, "bot: the admins' conversation cannot be reached yet")

// reachable is the admins' conversation, if the bot can post there about
// an approval of tenant.
func (ad *admins) reachable(ctx context.Context, tenant string) (approval.ConversationRef, error) {
	ref, ok, err := ad.ref(ctx)
	if err != nil {
		return ref, err
	}
	if !ok || !strings.EqualFold(ref.TenantID, tenant) {
		return ref, errAdminsUnreachable
	}
	return ref, nil
}

// postAsked posts, in the admins' conversation ref, the card saying who
// asked an admin about a and why they could not approve it.
func (ad *admins) postAsked(ctx context.Context, ref approval.ConversationRef, a approval.Approval, who approval.Person, why approval.AskReason) error {
	u := a.Upgrade
	card := ad.cards.AdminAsked(cards.AdminAsked{Locale: ref.Locale, App: appView(u), TeamsAppID: appVersion(a).TeamsAppID,
		Place: placeOf(a.Conversation), Conversation: a.Conversation.ConversationID, AskedBy: who.Name, Reason: askReasonView[why],
		Permissions: diffView(u.Diff).Added, RequestedAt: a.CreatedAt})
	_, err := ad.conn.Send(ctx, ref.TopLevel(), CardMessage(card))
	return err
}
