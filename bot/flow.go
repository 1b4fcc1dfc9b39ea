package bot

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/upgradeapprovals/bot/cards"
)

// command reads a message as one of the bot's commands, in English or
// Chinese; anything else is help.
func command(text string) string {
	switch strings.ToLower(strings.Trim(text, " .!?。！？/")) {
	case "check", "检查":
		return "check"
	case "history", "历史":
		return "history"
	}
	return "help"
}

// check answers "check": every pending upgrade here, each as an approval.
func (b *Bot) check(ctx context.Context, t *Turn) error {
	locale := t.Activity.Locale
	say := func(s cards.Sentence, data map[string]any) error {
		_, err := t.Reply(ctx, Message{Text: b.cards.Sentence(locale, s, data)})
		return err
	}
	if b.opts.Installations == nil {
		return say(cards.SentenceNoGraph, nil)
	}
	if t.Ref.Scope == nil {
		return say(cards.SentenceNoScope, nil)
	}
	ups, err := b.pendingUpgrades(ctx, *t.Ref.Scope)
	if err != nil {
		b.opts.Logger.WarnContext(ctx, "check failed", "scope", t.Ref.Scope.Kind, "err", err)
		return say(cards.SentenceCheckFailed, map[string]any{"Problem": err.Error()})
	}
	place := placeOf(t.Ref)
	if len(ups) == 0 {
		_, err := t.Reply(ctx, CardMessage(b.cards.UpToDate(cards.UpToDate{Locale: locale, Place: place})))
		return err
	}
	approvals := make([]Approval, 0, len(ups))
	for _, u := range ups {
		a, err := b.open(ctx, t.Ref, u, locale)
		if err != nil {
			return err
		}
		approvals = append(approvals, a)
	}
	if len(approvals) == 1 {
		return b.post(ctx, t, approvals[0])
	}
	// Several: lists, each as many apps as fit in one Teams message.
	for len(approvals) > 0 {
		n := len(approvals)
		for n > 1 && b.listSize(t, approvals[:n]) > maxCardBytes {
			n--
		}
		if err := b.postList(ctx, t, approvals[:n]); err != nil {
			return err
		}
		approvals = approvals[n:]
	}
	return nil
}

// maxCardBytes keeps a card, with the activity around it, under Teams'
// 28 KB message limit.
const maxCardBytes = 26 << 10

func (b *Bot) listView(t *Turn, approvals []Approval, batch string) cards.PendingList {
	items := make([]cards.PendingItem, len(approvals))
	for i, a := range approvals {
		items[i] = cards.PendingItem{ApprovalID: a.ID, App: appView(a.Upgrade), Diff: diffView(a.Upgrade.Diff)}
	}
	return cards.PendingList{Locale: t.Activity.Locale, Place: placeOf(t.Ref), Approvers: b.approverView(t.Ref.Scope),
		BatchID: batch, Items: items}
}

func (b *Bot) listSize(t *Turn, approvals []Approval) int {
	j, _ := json.Marshal(b.cards.PendingList(b.listView(t, approvals, "bat_"+strings.Repeat("0", 24))))
	return len(j)
}

func (b *Bot) postList(ctx context.Context, t *Turn, approvals []Approval) error {
	ids := make([]string, len(approvals))
	for i, a := range approvals {
		ids[i] = a.ID
	}
	batch, err := b.opts.Approvals.SaveBatch(ctx, ids)
	if err != nil {
		return err
	}
	_, err = t.Reply(ctx, CardMessage(b.cards.PendingList(b.listView(t, approvals, batch))))
	return err
}

// open returns the open approval for this upgrade here, or a new one.
func (b *Bot) open(ctx context.Context, ref ConversationRef, u PendingUpgrade, locale string) (Approval, error) {
	now := b.opts.Now().UTC()
	a, _, err := b.opts.Approvals.OpenApproval(ctx, Approval{
		ID: NewApprovalID(), Status: StatusPending, Upgrade: u, Conversation: ref, Locale: locale,
		CreatedAt: now, ExpiresAt: now.Add(b.opts.ApprovalTTL),
	})
	return a, err
}

// post shows one approval's card and remembers the message, so deciding
// updates it for everyone.
func (b *Bot) post(ctx context.Context, t *Turn, a Approval) error {
	id, err := t.Reply(ctx, CardMessage(b.cardFor(a, t.Activity.Locale)))
	if err != nil || id == "" {
		return err
	}
	_, err = b.opts.Approvals.Transition(ctx, a.ID, allStatuses, func(a *Approval) { a.CardActivityID = id })
	return err
}

var allStatuses = []ApprovalStatus{StatusPending, StatusUpgrading, StatusUpgraded, StatusRejected,
	StatusFailed, StatusExpired, StatusSuperseded, StatusUpToDate}

// history answers "history".
func (b *Bot) history(ctx context.Context, t *Turn) error {
	events, err := b.opts.Approvals.Audit(ctx, t.Ref.ConversationID, 10)
	if err != nil {
		return err
	}
	h := cards.History{Locale: t.Activity.Locale}
	for _, e := range events {
		h.Events = append(h.Events, cards.HistoryEvent{At: e.At, Kind: outcomeKind[e.Status], Actor: e.Actor,
			App: e.App, From: e.From, To: e.To})
	}
	_, err = t.Reply(ctx, CardMessage(b.cards.History(h)))
	return err
}

// actionData is what every card action carries.
type actionData struct {
	ApprovalID string `json:"approvalId"`
}

func (t *Turn) approvalID() string {
	if t.CardAction == nil {
		return ""
	}
	var d actionData
	_ = json.Unmarshal(t.CardAction.Action.Data, &d)
	return d.ApprovalID
}

func (t *Turn) person() Person {
	f := t.Activity.From
	return Person{ID: f.ID, AADObjectID: f.AadObjectID, Name: f.Name}
}

// onDecide handles approve, reject and retry: the approver's decision.
func (b *Bot) onDecide(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	a, resp := b.loadApproval(ctx, t)
	if resp != nil {
		return resp, nil
	}
	verb := t.CardAction.Action.Verb
	a, err := b.decide(ctx, a, t.person(), verb == cards.VerbReject)
	if errors.Is(err, errNotAllowed) {
		return b.notAllowed(a, t.Activity.Locale), nil
	}
	if err != nil {
		return b.invokeFailed(ctx, err), nil
	}
	return InvokeCard(b.cardFor(a, t.Activity.Locale)), nil
}

// invokeFailed shows the clicker why nothing happened (Graph refused to
// list members, Redis is down…) instead of Teams' generic error.
func (b *Bot) invokeFailed(ctx context.Context, err error) *InvokeResponse {
	b.opts.Logger.WarnContext(ctx, "card action failed", "err", err)
	return InvokeError(ErrorCode(err).HTTPStatus(), string(ErrorCode(err)), err.Error())
}

var errNotAllowed = errors.New("bot: not allowed to approve")

// notAllowed answers, to the clicker alone, who may approve instead.
func (b *Bot) notAllowed(a Approval, locale string) *InvokeResponse {
	return InvokeCard(b.cards.Outcome(cards.Outcome{Locale: locale, Kind: cards.OutcomeNotAllowed,
		App: appView(a.Upgrade), Place: placeOf(a.Conversation), Approvers: b.approverView(&a.Upgrade.Installation.Scope)}))
}

// decide applies one approver's decision and returns the approval as it then
// stands. A decided approval is returned unchanged, so double clicks and
// redeliveries are harmless: only one claim wins, and Upgrade refuses to
// upgrade twice.
func (b *Bot) decide(ctx context.Context, a Approval, who Person, reject bool) (Approval, error) {
	if !a.open(b.opts.Now()) {
		return a, nil
	}
	if b.opts.Now().After(a.ExpiresAt) {
		return b.finish(ctx, a, []ApprovalStatus{StatusPending, StatusFailed}, StatusExpired, nil, "")
	}
	ok, err := b.mayApprove(ctx, a, who)
	if err != nil {
		return a, err
	}
	if !ok {
		return a, errNotAllowed
	}
	if reject {
		return b.finish(ctx, a, []ApprovalStatus{StatusPending, StatusFailed}, StatusRejected, &who, "")
	}
	// Teams waits about 15 s for the invoke and may hang up first; the
	// upgrade and its record must finish regardless, so they run on a
	// context of their own. Everyone sees the result through the card update.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), upgradeTimeout)
	defer cancel()
	claimed, err := b.opts.Approvals.Transition(ctx, a.ID, a.claimableFrom(b.opts.Now()), func(c *Approval) {
		c.Status, c.DecidedBy, c.DecidedAt, c.Problem = StatusUpgrading, &who, b.opts.Now().UTC(), ""
	})
	if ErrorCode(err) == CodeConflict {
		return claimed, nil // someone else was first
	}
	if err != nil {
		return a, err
	}
	uerr := b.upgrade(ctx, claimed.Upgrade)
	status, problem := StatusUpgraded, ""
	switch {
	case errors.Is(uerr, ErrAlreadyUpgraded):
		status = StatusUpToDate
	case errors.Is(uerr, ErrSuperseded):
		status = StatusSuperseded
	case uerr != nil:
		status, problem = StatusFailed, uerr.Error()
		b.opts.Logger.WarnContext(ctx, "upgrade failed", "approval", a.ID, "err", uerr)
	}
	done, err := b.finish(ctx, claimed, []ApprovalStatus{StatusUpgrading}, status, &who, problem)
	if err == nil && status == StatusSuperseded {
		b.reopen(ctx, done)
	}
	return done, err
}

// open reports whether an approval can still be decided. An upgrade claim
// that never finished (its replica died mid-call) opens again after a while.
func (a Approval) open(now time.Time) bool {
	return a.Status == StatusPending || a.Status == StatusFailed ||
		(a.Status == StatusUpgrading && now.Sub(a.DecidedAt) > staleClaim)
}

// upgradeTimeout bounds one upgrade with its Graph retries; staleClaim is
// how long an upgrade may look in flight before another approver may try
// again (its replica may have died).
const (
	upgradeTimeout = 2 * time.Minute
	staleClaim     = 5 * time.Minute
)

func (a Approval) claimableFrom(now time.Time) []ApprovalStatus {
	from := []ApprovalStatus{StatusPending, StatusFailed}
	if a.Status == StatusUpgrading && now.Sub(a.DecidedAt) > staleClaim {
		from = append(from, StatusUpgrading)
	}
	return from
}

// finish records the outcome, writes the history and updates the card for
// everyone in the conversation.
func (b *Bot) finish(ctx context.Context, a Approval, from []ApprovalStatus, status ApprovalStatus, who *Person, problem string) (Approval, error) {
	now := b.opts.Now().UTC()
	done, err := b.opts.Approvals.Transition(ctx, a.ID, from, func(c *Approval) {
		c.Status, c.DecidedAt, c.Problem = status, now, problem
		if who != nil {
			c.DecidedBy = who
		}
	})
	if ErrorCode(err) == CodeConflict {
		return done, nil
	}
	if err != nil {
		return a, err
	}
	actor := ""
	if who != nil {
		actor = who.Name
	}
	in := done.Upgrade
	if err := b.opts.Approvals.AppendAudit(ctx, done.Conversation.ConversationID, AuditEvent{At: now, Status: status,
		Actor: actor, App: in.Installation.DisplayName, From: in.Installation.Definition.Version, To: in.Target.Version,
		ApprovalID: done.ID}); err != nil {
		b.opts.Logger.WarnContext(ctx, "cannot record history", "approval", done.ID, "err", err)
	}
	if done.CardActivityID != "" {
		// The clicker gets the new card in the invoke response; everyone
		// else through an update of the message.
		if err := b.opts.Connector.Update(ctx, done.Conversation, done.CardActivityID, CardMessage(b.cardFor(done, done.Locale))); err != nil {
			b.opts.Logger.WarnContext(ctx, "cannot update the card for everyone", "approval", done.ID, "err", err)
		}
	}
	return done, nil
}

// reopen posts a new request when the catalog moved on since approval.
func (b *Bot) reopen(ctx context.Context, old Approval) {
	ups, err := b.pendingUpgrades(ctx, old.Upgrade.Installation.Scope)
	if err != nil {
		b.opts.Logger.WarnContext(ctx, "cannot renew a superseded request", "approval", old.ID, "err", err)
		return
	}
	for _, u := range ups {
		if u.Installation.ID != old.Upgrade.Installation.ID {
			continue
		}
		a, err := b.open(ctx, old.Conversation, u, old.Locale)
		if err == nil {
			var id string
			id, err = b.opts.Connector.Send(ctx, old.Conversation, CardMessage(b.cardFor(a, old.Locale)))
			if err == nil && id != "" {
				_, err = b.opts.Approvals.Transition(ctx, a.ID, allStatuses, func(a *Approval) { a.CardActivityID = id })
			}
		}
		if err != nil {
			b.opts.Logger.WarnContext(ctx, "cannot post the renewed request", "approval", old.ID, "err", err)
		}
	}
}

// mayApprove applies the approver policy. Owners count only from our own
// tenant: a federated guest can show up as an owner of a chat.
func (b *Bot) mayApprove(ctx context.Context, a Approval, who Person) (bool, error) {
	if who.AADObjectID == "" {
		return false, nil
	}
	scope := a.Upgrade.Installation.Scope
	if scope.Kind == ScopeUser && strings.EqualFold(scope.ID, who.AADObjectID) {
		return true, nil // a user consents for their own personal scope
	}
	p := b.opts.Approvers
	if p.namesUser(who.AADObjectID) {
		return true, nil
	}
	for _, g := range p.Groups {
		in, err := b.opts.Directory.InGroup(ctx, scope.TenantID, g, who.AADObjectID)
		if err != nil {
			return false, err
		}
		if in {
			return true, nil
		}
	}
	if !p.Owners || scope.Kind == ScopeUser {
		return false, nil
	}
	members, err := b.opts.Directory.Members(ctx, scope)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(members, func(m Member) bool {
		return strings.EqualFold(m.UserID, who.AADObjectID) && m.IsOwner() &&
			(scope.TenantID == "" || strings.EqualFold(m.TenantID, scope.TenantID))
	}), nil
}

// loadApproval finds the approval a card action names, or the answer to
// give when there is none.
func (b *Bot) loadApproval(ctx context.Context, t *Turn) (Approval, *InvokeResponse) {
	if b.opts.Installations == nil {
		return Approval{}, InvokeError(http.StatusServiceUnavailable, "NotConfigured", b.cards.Sentence(t.Activity.Locale, cards.SentenceNoGraph, nil))
	}
	a, err := b.opts.Approvals.Approval(ctx, t.approvalID())
	if err != nil {
		if ErrorCode(err) != CodeNotFound {
			b.opts.Logger.WarnContext(ctx, "cannot read approval", "err", err)
		}
		return Approval{}, InvokeError(http.StatusNotFound, "NotFound", b.cards.Sentence(t.Activity.Locale, cards.SentenceUnknownAction, nil))
	}
	return a, nil
}

// onRefresh answers Teams' automatic refresh, and onReview shows one
// approval from a list: both with the approval's card as it stands.
func (b *Bot) onRefresh(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	a, resp := b.loadApproval(ctx, t)
	if resp != nil {
		return resp, nil
	}
	return InvokeCard(b.cardFor(a, t.Activity.Locale)), nil
}

// onApproveAll decides every approval of a list, then shows what is left.
func (b *Bot) onApproveAll(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	locale := t.Activity.Locale
	if b.opts.Installations == nil {
		return InvokeError(http.StatusServiceUnavailable, "NotConfigured", b.cards.Sentence(locale, cards.SentenceNoGraph, nil)), nil
	}
	ids, err := b.opts.Approvals.Batch(ctx, t.approvalID())
	if err != nil {
		return InvokeError(http.StatusNotFound, "NotFound", b.cards.Sentence(locale, cards.SentenceUnknownAction, nil)), nil
	}
	var left []Approval
	for _, id := range ids {
		a, err := b.opts.Approvals.Approval(ctx, id)
		if err != nil {
			continue
		}
		a, err = b.decide(ctx, a, t.person(), false)
		if errors.Is(err, errNotAllowed) {
			return b.notAllowed(a, locale), nil
		}
		if err != nil {
			return b.invokeFailed(ctx, err), nil
		}
		if a.open(b.opts.Now()) {
			left = append(left, a)
		}
	}
	if len(left) == 0 {
		return InvokeCard(b.cards.UpToDate(cards.UpToDate{Locale: locale, Place: placeOf(t.Ref)})), nil
	}
	return InvokeCard(b.cards.PendingList(b.listView(t, left, ""))), nil
}

// onSubmit handles the Action.Submit twins, sent by clients without
// Universal Actions as a message whose value names the verb: the answer
// replaces the card through the connector.
func (b *Bot) onSubmit(ctx context.Context, t *Turn, verb, approvalID string) error {
	raw, _ := json.Marshal(actionData{ApprovalID: approvalID})
	t.CardAction = &CardAction{}
	t.CardAction.Action.Type, t.CardAction.Action.Verb, t.CardAction.Action.Data = "Action.Submit", verb, raw
	h, ok := b.router.verbs[verb]
	if !ok {
		return nil
	}
	resp, err := h(ctx, t)
	if err != nil || resp == nil {
		return err
	}
	body, _ := resp.Body.(map[string]any)
	switch body["type"] {
	case ResponseTypeCard:
		card, _ := body["value"].(cards.Card)
		if t.Activity.ReplyToID != "" {
			return t.conn.Update(ctx, t.Ref, t.Activity.ReplyToID, CardMessage(card))
		}
		_, err = t.Reply(ctx, CardMessage(card))
	case ResponseTypeError:
		v, _ := body["value"].(map[string]string)
		_, err = t.Reply(ctx, Message{Text: v["message"]})
	}
	return err
}

// cardFor is the card that shows an approval as it stands.
func (b *Bot) cardFor(a Approval, locale string) cards.Card {
	place, app := placeOf(a.Conversation), appView(a.Upgrade)
	kind, decided := outcomeKind[a.Status]
	if !decided {
		return b.cards.Pending(cards.PendingUpgrade{Locale: locale, ApprovalID: a.ID, App: app,
			Diff: diffView(a.Upgrade.Diff), Place: place, Approvers: b.approverView(&a.Upgrade.Installation.Scope),
			RequestedAt: a.CreatedAt})
	}
	o := cards.Outcome{Locale: locale, Kind: kind, ApprovalID: a.ID, App: app, Diff: diffView(a.Upgrade.Diff),
		At: a.DecidedAt, Place: place, Approvers: b.approverView(&a.Upgrade.Installation.Scope)}
	if a.DecidedBy != nil {
		o.By = a.DecidedBy.Name
	}
	if a.Status == StatusFailed {
		o.Problem = a.Problem
	}
	return b.cards.Outcome(o)
}

var outcomeKind = map[ApprovalStatus]cards.OutcomeKind{
	StatusUpgraded: cards.OutcomeUpgraded, StatusRejected: cards.OutcomeRejected, StatusFailed: cards.OutcomeFailed,
	StatusExpired: cards.OutcomeExpired, StatusSuperseded: cards.OutcomeSuperseded, StatusUpToDate: cards.OutcomeUpToDate,
}

func appView(u PendingUpgrade) cards.App {
	in := u.Installation
	desc := u.Target.ShortDescription
	if desc == "" {
		desc = in.Definition.ShortDescription
	}
	return cards.App{Name: in.DisplayName, ShortDescription: desc, FromVersion: in.Definition.Version, ToVersion: u.Target.Version}
}

func diffView(d PermissionDiff) cards.Diff {
	conv := func(ps []Permission) []cards.Permission {
		out := make([]cards.Permission, len(ps))
		for i, p := range ps {
			out[i] = cards.Permission{Value: p.Value, Type: p.Type}
		}
		return out
	}
	return cards.Diff{Added: conv(d.Added), Removed: conv(d.Removed), Kept: conv(d.Kept)}
}

func placeOf(ref ConversationRef) cards.Place {
	switch {
	case ref.ConversationType == "personal":
		return cards.PlacePersonal
	case ref.ConversationType == "channel":
		return cards.PlaceTeam
	case strings.HasPrefix(ref.ConversationID, "19:meeting_"):
		return cards.PlaceMeeting
	}
	return cards.PlaceChat
}

func (b *Bot) approverView(scope *Scope) cards.ApproverPolicy {
	p := b.opts.Approvers
	switch {
	case scope != nil && scope.Kind == ScopeUser:
		return cards.ApproversSelf
	case p.Owners:
		return cards.ApproversOwners
	case len(p.Groups) > 0:
		return cards.ApproversGroup
	}
	return cards.ApproversNamed
}
