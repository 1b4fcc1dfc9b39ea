package bot

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/upgradeapprovals/bot/approval"
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
	installed, err := b.opts.Installations.Installed(ctx, *t.Ref.Scope)
	var ups []approval.PendingUpgrade
	if err == nil {
		ups, err = b.behind(ctx, *t.Ref.Scope, installed)
	}
	if err != nil {
		b.opts.Logger.WarnContext(ctx, "check failed", "scope", t.Ref.Scope.Kind, "err", err)
		return say(cards.SentenceCheckFailed, map[string]any{"Problem": problemView(approval.ProblemOf(err))})
	}
	place := placeOf(t.Ref)
	if len(ups) == 0 {
		_, err := t.Reply(ctx, CardMessage(b.cards.UpToDate(cards.UpToDate{Locale: locale, Place: place, Apps: installedView(installed)})))
		return err
	}
	approvals := make([]approval.Approval, 0, len(ups))
	for _, u := range ups {
		a, err := b.open(ctx, t.Ref, u, locale)
		if err != nil {
			return err
		}
		approvals = append(approvals, a)
	}
	if len(approvals) == 1 {
		_, err := b.postCard(ctx, t.Ref, t.Activity.ID, approvals[0], locale)
		return err
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

// listView lists approvals as posted in ref's conversation, in its locale.
func (b *Bot) listView(ref approval.ConversationRef, approvals []approval.Approval, batch string) cards.PendingList {
	items := make([]cards.PendingItem, len(approvals))
	for i, a := range approvals {
		items[i] = cards.PendingItem{ApprovalID: a.ID, App: appView(a.Upgrade), Diff: diffView(a.Upgrade.Diff)}
	}
	return cards.PendingList{Locale: ref.Locale, Place: placeOf(ref), Approvers: b.approverView(ref.Scope),
		BatchID: batch, Items: items}
}

func (b *Bot) listSize(t *Turn, approvals []approval.Approval) int {
	j, _ := json.Marshal(b.listCard(t.Ref, "bat_"+strings.Repeat("0", 24), approvals))
	return len(j)
}

// postList posts approvals as one list, with Approve all, and records the
// message with its batch, so that it is kept true as they are decided
// (on their own cards too) before anyone clicks Approve all. It is drawn
// as its redraws are: an open request already upgrading (or decided, with
// Graph slow to show it) is listed as it stands, not as one to review.
func (b *Bot) postList(ctx context.Context, t *Turn, approvals []approval.Approval) error {
	ids := make([]string, len(approvals))
	for i, a := range approvals {
		ids[i] = a.ID
	}
	batch, err := b.opts.Approvals.SaveBatch(ctx, ids)
	if err != nil {
		return err
	}
	id, err := t.Reply(ctx, CardMessage(b.listCard(t.Ref, batch, approvals)))
	if err != nil || id == "" {
		return err
	}
	posted := approval.PostedCard{Conversation: t.Ref, ActivityID: id}
	b.recordList(ctx, batch, posted)
	// An approval decided between the list's drawing and its record
	// redrew no list (none was recorded yet): look once more, after the
	// record, and redraw if one moved, after the turn like every redraw.
	drawn := listState(approval.Batch{ID: batch, Lists: []approval.PostedCard{posted}}, approvals)
	b.redraws.Go(func() { b.updateListFrom(context.WithoutCancel(ctx), batch, drawn) })
	return nil
}

// open returns the open approval for this upgrade here, or a new one.
func (b *Bot) open(ctx context.Context, ref approval.ConversationRef, u approval.PendingUpgrade, locale string) (approval.Approval, error) {
	a, _, err := b.opts.Approvals.OpenApproval(ctx, b.newApproval(ref, u, locale))
	return a, err
}

// newApproval is a request for u in ref, open for ApprovalTTL from now.
func (b *Bot) newApproval(ref approval.ConversationRef, u approval.PendingUpgrade, locale string) approval.Approval {
	return approval.New(u, ref, locale, b.opts.Now(), b.opts.ApprovalTTL)
}

// postCard posts the card of approval a into ref's conversation (as a
// reply to activity replyTo, when set) and records the message on the
// approval, so that deciding updates it for everyone. The first card is the
// approval's own; another one (a second "check", another channel of the
// team, a post racing it on another replica) is kept true too, up to
// maxOtherCards. It returns the new message's id ("" when the channel gave
// none: then there is nothing to record).
func (b *Bot) postCard(ctx context.Context, ref approval.ConversationRef, replyTo string, a approval.Approval, locale string) (string, error) {
	m := CardMessage(b.cardFor(a, locale))
	var id string
	var err error
	if replyTo != "" {
		m.Locale = locale
		id, err = b.opts.Connector.Reply(ctx, ref, replyTo, m)
	} else {
		id, err = b.opts.Connector.Send(ctx, ref, m)
	}
	if err != nil || id == "" {
		return id, err
	}
	// The card is out: failing now would make Teams deliver the message
	// again and post a second card. Without the record the card still
	// works (its buttons carry the approval id); only its update for
	// everyone is lost, so the write is retried a little, then logged.
	err = b.retryStore(ctx, recordRetry, func(ctx context.Context) error {
		// Recording it twice (an earlier try whose answer was lost) changes nothing.
		_, err := b.opts.Approvals.Transition(ctx, a.ID, approval.Statuses(), func(a *approval.Approval) {
			a.RecordCard(approval.PostedCard{Conversation: ref, ActivityID: id})
		})
		return err
	})
	if err != nil {
		b.opts.Logger.WarnContext(ctx, "posted a card but cannot record it; it will not be updated for everyone",
			"approval", a.ID, "activity_id", id, "err", err)
	}
	return id, nil
}

// recordRetry is how long recording a posted card is retried while Redis
// is unavailable: short, as the turn's answer waits for it.
const recordRetry = 3 * time.Second

// history answers "history".
func (b *Bot) history(ctx context.Context, t *Turn) error {
	// A channel's threads (";messageid=…") share the channel's history.
	events, err := b.opts.Approvals.Audit(ctx, approval.BaseConversation(t.Ref.ConversationID), 10)
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

// approvalID is the approval (or, for approve all, the batch) the clicked
// card names.
func (t *Turn) approvalID() string {
	if t.CardAction == nil {
		return ""
	}
	return t.CardAction.Data.ApprovalID
}

func (t *Turn) person() approval.Person {
	f := t.Activity.From
	return approval.Person{ID: f.ID, AADObjectID: f.AadObjectID, Name: f.Name}
}

// invokeFailed shows the clicker why nothing happened (Graph refused to
// list members…) instead of Teams' generic error.
func (b *Bot) invokeFailed(ctx context.Context, err error) *InvokeResponse {
	b.opts.Logger.WarnContext(ctx, "card action failed", "err", err)
	return Refuse(ErrorCode(err), "", err.Error())
}

// storeFailed answers a failed read or write of the store: unavailable is
// an error (the channel delivers the action again), anything else is shown
// to the clicker.
func (b *Bot) storeFailed(ctx context.Context, err error) (*InvokeResponse, error) {
	if ErrorCode(err) == CodeUnavailable {
		return nil, err
	}
	return b.invokeFailed(ctx, err), nil
}

// notAllowed answers, to the clicker alone, who may approve instead.
func (b *Bot) notAllowed(a approval.Approval, locale string) *InvokeResponse {
	resp := InvokeCard(b.cards.Outcome(cards.Outcome{Locale: locale, Kind: cards.OutcomeNotAllowed,
		App: appView(a.Upgrade), Place: placeOf(a.Conversation), Approvers: b.approverView(&a.Upgrade.Installation.Scope)}))
	resp.ForClicker = true
	return resp
}

// mayApprove applies the approver policy (BOT_APPROVERS) to who in scope,
// asking Graph what the rule needs: who's membership of the chat or team,
// then, if it comes to that, the policy's groups one by one.
func (b *Bot) mayApprove(ctx context.Context, scope approval.Scope, who approval.Person) (bool, error) {
	p := b.opts.Approvers
	var membership []approval.Member
	if approval.NeedsMembership(scope, who) {
		var err error
		if membership, err = b.opts.Directory.Membership(ctx, scope, who.AADObjectID); err != nil {
			return false, err
		}
	}
	switch p.Judge(scope, who, membership) {
	case approval.Allowed:
		return true, nil
	case approval.Refused:
		return false, nil
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
	return false, nil
}

// loadApproval finds the approval a card action names, or the answer to
// give when there is none.
// A store that cannot answer is an error (the channel delivers the action
// again), not an answer.
func (b *Bot) loadApproval(ctx context.Context, t *Turn) (approval.Approval, *InvokeResponse, error) {
	if b.opts.Installations == nil {
		return approval.Approval{}, Refuse(CodeUnavailable, "NotConfigured", b.cards.Sentence(t.Activity.Locale, cards.SentenceNoGraph, nil)), nil
	}
	a, err := b.opts.Approvals.Approval(ctx, t.approvalID())
	if err == nil && !a.BelongsTo(t.Ref) {
		b.opts.Logger.WarnContext(ctx, "card action names an approval from elsewhere", "approval", a.ID,
			"conversation", t.Ref.ConversationID, "tenant", t.Ref.TenantID)
		err = Errorf(CodeNotFound, "bot: approval %s is not from here", a.ID)
	}
	if ErrorCode(err) == CodeUnavailable {
		return approval.Approval{}, nil, err
	}
	if err != nil {
		if ErrorCode(err) != CodeNotFound {
			b.opts.Logger.WarnContext(ctx, "cannot read approval", "err", err)
		}
		return approval.Approval{}, b.unknownAction(t), nil
	}
	return a, nil, nil
}

func (b *Bot) unknownAction(t *Turn) *InvokeResponse {
	return Refuse(CodeNotFound, "NotFound", b.cards.Sentence(t.Activity.Locale, cards.SentenceUnknownAction, nil))
}

// onReview shows one approval from a list, with its card as it stands.
func (b *Bot) onReview(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	a, resp, err := b.loadApproval(ctx, t)
	if resp != nil || err != nil {
		return resp, err
	}
	return InvokeCard(b.cardFor(a, t.Activity.Locale)), nil
}

// onSubmit handles the Action.Submit twin of a card action, sent by
// clients without Universal Actions as a message whose value names the
// verb. The same handler decides as for the invoke; only the answer
// travels differently: a card replaces the clicked one through the
// connector, and what speaks to the clicker alone is a reply.
func (b *Bot) onSubmit(ctx context.Context, t *Turn, d cards.SubmitData) error {
	t.CardAction = &CardAction{Verb: d.Verb, Data: cards.ActionData{ApprovalID: d.ApprovalID}, Submit: true}
	resp, err := b.router.act(ctx, t)
	if err != nil || resp == nil {
		return err
	}
	switch {
	case resp.Card != nil && !resp.ForClicker && t.Activity.ReplyToID != "":
		return t.conn.Update(ctx, t.Ref, t.Activity.ReplyToID, CardMessage(*resp.Card))
	case resp.Card != nil:
		_, err = t.Reply(ctx, CardMessage(*resp.Card))
	case resp.Refusal != nil:
		_, err = t.Reply(ctx, Message{Text: resp.Refusal.Message})
	}
	return err
}

// cardFor is the card that shows an approval as it stands.
func (b *Bot) cardFor(a approval.Approval, locale string) cards.Card {
	place, app := placeOf(a.Conversation), appView(a.Upgrade)
	kind, decided := outcomeKind[a.Status]
	if a.Status == approval.StatusUpgrading {
		kind, decided = cards.OutcomeUpgrading, true
	}
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
	if a.Status == approval.StatusFailed {
		o.Problem = problemView(a.WhatWentWrong())
	}
	o.Verification = verificationView(a.Verification)
	return b.cards.Outcome(o)
}

var outcomeKind = map[approval.Status]cards.OutcomeKind{
	approval.StatusUpgraded: cards.OutcomeUpgraded, approval.StatusRejected: cards.OutcomeRejected, approval.StatusFailed: cards.OutcomeFailed,
	approval.StatusExpired: cards.OutcomeExpired, approval.StatusSuperseded: cards.OutcomeSuperseded, approval.StatusUpToDate: cards.OutcomeUpToDate,
	approval.StatusUpgradedOutside: cards.OutcomeUpgradedOutside,
}

func appView(u approval.PendingUpgrade) cards.App {
	in := u.Installation
	desc := u.Target.ShortDescription
	if desc == "" {
		desc = in.Definition.ShortDescription
	}
	return cards.App{Name: in.DisplayName, ShortDescription: desc, FromVersion: in.Definition.Version, ToVersion: u.Target.Version}
}

// installedView lists what "check" found up to date, by name.
func installedView(installed []approval.Installation) []cards.InstalledApp {
	apps := make([]cards.InstalledApp, len(installed))
	for i, in := range installed {
		apps[i] = cards.InstalledApp{Name: in.DisplayName, Version: in.Definition.Version}
	}
	slices.SortStableFunc(apps, func(a, b cards.InstalledApp) int {
		return cmp.Or(strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), strings.Compare(a.Name, b.Name))
	})
	return apps
}

func diffView(d approval.PermissionDiff) cards.Diff {
	conv := func(ps []approval.Permission) []cards.Permission {
		out := make([]cards.Permission, len(ps))
		for i, p := range ps {
			out[i] = cards.Permission{Value: p.Value, Type: p.Type}
		}
		return out
	}
	return cards.Diff{Added: conv(d.Added), Removed: conv(d.Removed), Kept: conv(d.Kept)}
}

func placeOf(ref approval.ConversationRef) cards.Place {
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

func (b *Bot) approverView(scope *approval.Scope) cards.ApproverPolicy {
	p := b.opts.Approvers
	switch {
	case scope != nil && scope.Kind == approval.ScopeUser:
		return cards.ApproversSelf
	case p.Owners:
		return cards.ApproversOwners
	case len(p.Groups) > 0:
		return cards.ApproversGroup
	}
	return cards.ApproversNamed
}
