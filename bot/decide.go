package bot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// decisions answers clicks on an approval's card or on a list: approve,
// reject, retry, review and approve all.
type decisions struct {
	*plumbing
	approvals      ApprovalStore
	haveGraph      bool // Installations, Catalog and Directory are configured
	approvers      *approvers
	upgrades       *upgrades
	lists          *lists
	snooze         time.Duration // Options.Snooze
	afterReminder  time.Duration // Options.ApprovalTTL - Options.RemindAfter
	invokeWait     time.Duration // Options.InvokeWait
	upgradeTimeout time.Duration // Options.UpgradeTimeout
	parallel       int           // Options.Parallel
	admins         *admins
	// inflight counts decisions still running after their invoke was
	// answered; Drain waits for them before the store goes away.
	inflight sync.WaitGroup
}

// onDecide handles approve, reject, retry and skip: the approver's decision. An
// approval upgrades in the background; the clicker gets its outcome if
// Graph answers within InvokeWait, else the "upgrading…" card, which the
// outcome then replaces for everyone.
func (dc *decisions) onDecide(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	a, resp, err := dc.loadApproval(ctx, t)
	if resp != nil || err != nil {
		return resp, err
	}
	locale := t.Activity.Locale
	who := t.person()
	if !a.Decidable() {
		return InvokeCard(dc.cardFor(a, locale)), nil // double clicks and redeliveries change nothing
	}
	if refused := dc.unlessApprover(ctx, a, who, locale); refused != nil {
		return refused, nil
	}
	var claimed bool
	deadline := time.Now().Add(dc.upgradeTimeout) // set before the claim: it ends inside the lease
	if verb := t.CardAction.Verb; verb == cards.VerbReject || verb == cards.VerbSkip {
		// A request past its time is expired, whoever rejects or skips
		// it: its record and history must not say an approver decided it.
		closeAs := approval.StatusRejected
		if verb == cards.VerbSkip {
			closeAs = approval.StatusSkipped // stays the request for its version: nothing reopens it
		}
		if now := dc.now(); a.Expired(now) {
			a, err = dc.upgrades.conclude(ctx, a, approval.Outcome{Status: approval.StatusExpired, At: now})
		} else {
			a, err = dc.upgrades.conclude(ctx, a, approval.Outcome{Status: closeAs, By: &who, At: now})
		}
	} else {
		if a, err = dc.recheckApprovers(ctx, a, who); err != nil {
			return dc.invokeFailed(ctx, locale, err), nil
		}
		a, claimed, err = dc.upgrades.claim(ctx, a, who, dc.upgrades.claimLease())
	}
	if err != nil {
		return dc.storeFailed(ctx, locale, err)
	}
	if !claimed {
		if a.Decidable() && a.Approvals.Include(who) {
			// Counted, more approvers needed: every card shows who
			// approved so far (a second click by the same person
			// counted once).
			dc.upgrades.publisher.updateCardsOnly(context.WithoutCancel(ctx), a)
		}
		return InvokeCard(dc.cardFor(a, locale)), nil
	}
	if d, ok := dc.goUpgrade(ctx, a, deadline, t.Ref, t.Activity.ReplyToID).wait(ctx, dc.invokeWait); ok {
		return InvokeCard(dc.cardFor(d, locale)), nil
	}
	return InvokeCard(dc.cardFor(a, locale)), nil // upgrading…, "still working"
}

// unlessApprover is the answer to give who, asked of Graph now, when they
// may not decide a (or Graph cannot tell); nil when they may.
func (dc *decisions) unlessApprover(ctx context.Context, a approval.Approval, who approval.Person, locale string) *InvokeResponse {
	ok, err := dc.approvers.mayApprove(ctx, a.Upgrade.Installation.Scope, who)
	if err != nil {
		return dc.invokeFailed(ctx, locale, err)
	}
	if !ok {
		return dc.notAllowed(a, locale)
	}
	return nil
}

// recheckApprovers asks Graph again, when who's approval would meet a
// quorum of more than one, whether each earlier approver still may
// approve: one removed from the chat or made a guest since no longer
// counts, and the upgrade waits for another. Their approvals are withdrawn
// from the record. An error is Graph's.
func (dc *decisions) recheckApprovers(ctx context.Context, a approval.Approval, who approval.Person) (approval.Approval, error) {
	if !a.Completes(who) {
		return a, nil
	}
	var gone []approval.Person
	for _, p := range a.Approvals.Except(who) {
		ok, err := dc.approvers.mayApprove(ctx, a.Upgrade.Installation.Scope, p)
		if err != nil {
			return a, err
		}
		if !ok {
			gone = append(gone, p)
		}
	}
	if len(gone) == 0 {
		return a, nil
	}
	dc.log.InfoContext(ctx, "earlier approvers may no longer approve; their approvals no longer count", "approval", a.ID, "withdrawn", len(gone))
	kept, err := dc.approvals.Transition(ctx, a.ID, approval.DecidableStatuses(), func(x *approval.Approval) { x.Approvals = x.Approvals.Without(gone) })
	switch {
	case err == nil:
		return kept, nil
	case ErrorCode(err) != CodeConflict:
		// The claim that follows meets the same store, and fails the
		// click if it is down.
		dc.log.WarnContext(ctx, "cannot withdraw approvals that no longer count", "approval", a.ID, "err", err)
	}
	return a, nil // decided meanwhile: the claim says so
}

// onSnooze handles "Remind me later": an approver may put the request's
// reminder (and any expiry notice) off for Snooze, once at a time (it
// moves the expiry for everyone, so nobody else may, and clicking on
// while snoozed moves nothing). The card says until when, for everyone,
// and the history records who asked.
func (dc *decisions) onSnooze(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	a, resp, err := dc.loadApproval(ctx, t)
	if resp != nil || err != nil {
		return resp, err
	}
	locale, who, now := t.Activity.Locale, t.person(), dc.now()
	if !a.Decidable() || a.Expired(now) || a.Snoozed(now) {
		return InvokeCard(dc.cardFor(a, locale)), nil
	}
	if refused := dc.unlessApprover(ctx, a, who, locale); refused != nil {
		return refused, nil
	}
	snoozed, err := dc.approvals.Transition(ctx, a.ID, approval.DecidableStatuses(), func(x *approval.Approval) {
		*x, _ = x.Snooze(who, now, now.Add(dc.snooze), dc.afterReminder)
	})
	if ErrorCode(err) == CodeConflict {
		return InvokeCard(dc.cardFor(snoozed, locale)), nil // decided meanwhile
	}
	if err != nil {
		return dc.storeFailed(ctx, locale, err)
	}
	dc.upgrades.publisher.publishEvent(ctx, snoozed, approval.StatusSnoozed, who, now)
	return InvokeCard(dc.cardFor(snoozed, locale)), nil
}

// onReview shows one approval from a list, with its card as it stands.
func (dc *decisions) onReview(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	a, resp, err := dc.loadApproval(ctx, t)
	if resp != nil || err != nil {
		return resp, err
	}
	return InvokeCard(dc.cardFor(a, t.Activity.Locale)), nil
}

// loadApproval finds the approval a card action names, or the answer to
// give when there is none.
// A store that cannot answer is an error (the channel delivers the action
// again), not an answer.
func (dc *decisions) loadApproval(ctx context.Context, t *Turn) (approval.Approval, *InvokeResponse, error) {
	if !dc.haveGraph {
		return approval.Approval{}, Refuse(CodeUnavailable, "NotConfigured", dc.cards.Sentence(t.Activity.Locale, cards.SentenceNoGraph, nil)), nil
	}
	a, err := dc.approvals.Approval(ctx, t.approvalID())
	if err == nil && !a.BelongsTo(t.Ref) {
		dc.log.WarnContext(ctx, "card action names an approval from elsewhere", "approval", a.ID,
			"conversation", t.Ref.ConversationID, "tenant", t.Ref.TenantID)
		err = Errorf(CodeNotFound, "bot: approval %s is not from here", a.ID)
	}
	if ErrorCode(err) == CodeUnavailable {
		return approval.Approval{}, nil, err
	}
	if err != nil {
		if ErrorCode(err) != CodeNotFound {
			dc.log.WarnContext(ctx, "cannot read approval", "err", err)
		}
		return approval.Approval{}, dc.unknownAction(t), nil
	}
	return a, nil, nil
}

func (dc *decisions) unknownAction(t *Turn) *InvokeResponse {
	return Refuse(CodeNotFound, "NotFound", dc.cards.Sentence(t.Activity.Locale, cards.SentenceUnknownAction, nil))
}

// onUnknownVerb answers a button no handler knows (a card an earlier
// release posted, a malformed invoke) as a request no longer known: a
// fresh check gives a card whose buttons work.
func (dc *decisions) onUnknownVerb(_ context.Context, t *Turn) (*InvokeResponse, error) {
	return Refuse(CodeInvalid, "NotSupported", dc.cards.Sentence(t.Activity.Locale, cards.SentenceUnknownAction, nil)), nil
}

// notAllowed answers, to the clicker alone, who may approve instead.
func (dc *decisions) notAllowed(a approval.Approval, locale string) *InvokeResponse {
	resp := InvokeCard(dc.cards.Outcome(cards.Outcome{Locale: locale, Kind: cards.OutcomeNotAllowed,
		App: appView(a.Upgrade), Place: placeOf(a.Conversation), Approvers: dc.approverView(&a.Upgrade.Installation.Scope)}))
	resp.ForClicker = true
	return resp
}

// invokeFailed shows the clicker, in their language, why nothing happened
// (Graph refused to list members…) and what can be done, instead of
// Teams' generic error; the log keeps the technical story.
func (dc *decisions) invokeFailed(ctx context.Context, locale string, err error) *InvokeResponse {
	dc.log.WarnContext(ctx, "card action failed", "err", err)
	return Refuse(ErrorCode(err), "", dc.cards.Sentence(locale, cards.SentenceActionFailed,
		map[string]any{"Problem": problemView(approval.ProblemOf(err))}))
}

// storeFailed answers a failed read or write of the store: unavailable is
// an error (the channel delivers the action again), anything else is shown
// to the clicker.
func (dc *decisions) storeFailed(ctx context.Context, locale string, err error) (*InvokeResponse, error) {
	if ErrorCode(err) == CodeUnavailable {
		return nil, err
	}
	return dc.invokeFailed(ctx, locale, err), nil
}

// goUpgrade upgrades a claimed approval in the background, counted for
// Drain. The invoke waits on the returned handoff for the outcome; if it
// stops waiting first, the outcome updates the clicked card (alsoID, when
// it is neither one of the approval's own cards nor a list it is in, which
// settle updates anyway).
func (dc *decisions) goUpgrade(ctx context.Context, c approval.Approval, deadline time.Time, ref approval.ConversationRef, alsoID string) *handoff {
	h := &handoff{ready: make(chan struct{})}
	ctx = context.WithoutCancel(ctx)
	dc.inflight.Add(1)
	go func() {
		defer dc.inflight.Done()
		d := dc.upgrades.runUpgrade(ctx, c, deadline)
		h.mu.Lock()
		abandoned := h.abandoned
		h.result = d
		close(h.ready)
		h.mu.Unlock()
		if abandoned && alsoID != "" && !d.ShowsOn(alsoID) && !dc.lists.listsShow(ctx, d.ID, alsoID) {
			dc.updateCard(ctx, ref, alsoID, dc.cardFor(d, d.Locale), d.ID)
		}
	}()
	return h
}

// handoff passes a background upgrade's outcome to the invoke waiting for
// it, or records that nobody waits any more.
type handoff struct {
	mu        sync.Mutex
	ready     chan struct{}
	result    approval.Approval
	abandoned bool
}

// wait returns the outcome if it comes before timeout or ctx ends.
func (h *handoff) wait(ctx context.Context, timeout time.Duration) (approval.Approval, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-h.ready:
	case <-t.C:
	case <-ctx.Done():
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.ready:
		return h.result, true
	default:
		h.abandoned = true
		return approval.Approval{}, false
	}
}

// onApproveAll approves every open approval of a list at once. Teams waits
// only about 15 s for the answer, so it claims them all, answers at once
// with the list showing each as upgrading…, and upgrades them in the
// background, at most Parallel at a time; each outcome redraws the list
// from the store (updateCards), so the list ends true even when this
// replica dies and the reaper finishes them.
func (dc *decisions) onApproveAll(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	locale := t.Activity.Locale
	if !dc.haveGraph {
		return Refuse(CodeUnavailable, "NotConfigured", dc.cards.Sentence(locale, cards.SentenceNoGraph, nil)), nil
	}
	batch, list, err := dc.lists.readList(ctx, t.approvalID())
	if ErrorCode(err) == CodeNotFound {
		return dc.unknownAction(t), nil
	}
	if err != nil {
		return dc.storeFailed(ctx, locale, err)
	}
	if slices.ContainsFunc(list, func(a approval.Approval) bool { return !a.BelongsTo(t.Ref) }) {
		dc.log.WarnContext(ctx, "approve all names a batch from elsewhere", "batch", t.approvalID(),
			"conversation", t.Ref.ConversationID, "tenant", t.Ref.TenantID)
		return dc.unknownAction(t), nil
	}
	who := t.person()
	// Every approval of a batch is in this one place: one approver check
	// covers them all, and it comes before anything is claimed.
	for _, a := range list {
		if !a.Decidable() {
			continue
		}
		if refused := dc.unlessApprover(ctx, a, who, locale); refused != nil {
			return refused, nil
		}
		break
	}
	// An upgrade may wait for one of Parallel slots: its claim lasts until
	// its wave would end, and is renewed, with its own deadline, once its
	// upgrade starts. Otherwise the last waves would fail on a deadline
	// spent waiting, or lose their claims to the reaper.
	waves := (len(list) + dc.parallel - 1) / dc.parallel
	lease := time.Duration(waves) * dc.upgrades.claimLease()
	var claimed []approval.Approval
	for i, a := range list {
		if !a.Decidable() {
			continue
		}
		c, ok, err := dc.upgrades.claim(ctx, a, who, lease)
		if err != nil {
			dc.log.WarnContext(ctx, "approve all: cannot claim", "approval", a.ID, "err", err)
			continue
		}
		list[i] = c
		if ok {
			claimed = append(claimed, c)
		}
	}
	if len(claimed) == 0 && !slices.ContainsFunc(list, approval.Approval.Decidable) {
		return InvokeCard(dc.cards.UpToDate(cards.UpToDate{Locale: locale, Place: placeOf(t.Ref)})), nil
	}
	if r := t.Activity.ReplyToID; r != "" && len(claimed) > 0 {
		// Recorded before the upgrades start, so that their outcomes
		// update it; a list posted before lists were recorded is too.
		dc.lists.recordList(ctx, batch.ID, approval.PostedCard{Conversation: t.Ref, ActivityID: r})
	}
	dc.goUpgradeAll(ctx, claimed)
	return InvokeCard(dc.lists.listCard(t.Ref, batch.ID, list)), nil
}

// goUpgradeAll runs the claimed upgrades of a list, Parallel at a time.
func (dc *decisions) goUpgradeAll(ctx context.Context, claimed []approval.Approval) {
	ctx = context.WithoutCancel(ctx)
	sem := make(chan struct{}, dc.parallel)
	dc.inflight.Add(len(claimed))
	for _, c := range claimed {
		go func() {
			defer dc.inflight.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			dc.startQueuedUpgrade(ctx, c)
		}()
	}
}

// startQueuedUpgrade runs a claimed upgrade that waited for its slot: it
// holds the claim afresh and gives the Graph call a deadline from now. A
// claim lost meanwhile (its lease ran out and the reaper took it) is left
// to its new holder.
func (dc *decisions) startQueuedUpgrade(ctx context.Context, c approval.Approval) {
	held, err := dc.approvals.HoldClaim(ctx, c.ID, c.ClaimToken, dc.upgrades.claimLease())
	if err != nil {
		dc.log.WarnContext(ctx, "approve all: the claim is no longer ours", "approval", c.ID, "err", err)
		return
	}
	dc.upgrades.runUpgrade(ctx, held, time.Now().Add(dc.upgradeTimeout))
}

// drain waits until the decisions still running after their invoke was
// answered have ended, or ctx ends.
func (dc *decisions) drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() { dc.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("bot: decisions still running: %w", ctx.Err())
	}
}

// onAskAdmin handles "Ask an admin": anyone who sees the card, approver or
// not, asks the admins' conversation about the request, once per person.
// The ask is recorded on the approval first, in one compare-and-set, so a
// redelivered click or another replica posts no second card; a card that
// could not be posted takes the record back. Every card then says who
// asked.
func (dc *decisions) onAskAdmin(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	a, resp, err := dc.loadApproval(ctx, t)
	if resp != nil || err != nil {
		return resp, err
	}
	locale, who, now := t.Activity.Locale, t.person(), dc.now()
	if !dc.admins.on() || !a.Status.AdminAskable() || a.Expired(now) || a.AdminAsked(who) {
		return InvokeCard(dc.cardFor(a, locale)), nil
	}
	ref, err := dc.admins.reachable(ctx, a.OpenKey().TenantID)
	if errors.Is(err, errAdminsUnreachable) {
		return Refuse(CodeUnavailable, "AdminsUnreachable", dc.cards.Sentence(locale, cards.SentenceAdminsUnreachable, nil)), nil
	}
	if err != nil {
		return dc.storeFailed(ctx, locale, err)
	}
	why, err := dc.approvers.whyAsk(ctx, a, who)
	if err != nil {
		return dc.invokeFailed(ctx, locale, err), nil
	}
	// Listed first: should this replica die before posting, the admins'
	// sync finds the ask and posts it.
	tenant, key, at := a.OpenKey().TenantID, AskerKey(who), dc.now()
	if err := dc.admins.store.NoteAsk(ctx, tenant, a.ID, key, at); err != nil {
		return dc.storeFailed(ctx, locale, err)
	}
	var added bool
	asked, err := dc.approvals.Transition(ctx, a.ID, approval.AdminAskableStatuses(), func(x *approval.Approval) {
		*x, added = x.AskAdmin(who, at, why)
	})
	if ErrorCode(err) == CodeConflict {
		return InvokeCard(dc.cardFor(asked, locale)), nil // decided meanwhile
	}
	if err != nil {
		return dc.storeFailed(ctx, locale, err)
	}
	if !added {
		return InvokeCard(dc.cardFor(asked, locale)), nil // asked already, on another replica or an earlier delivery
	}
	if err := dc.admins.postAsked(ctx, ref, asked, who, why); err != nil {
		dc.log.WarnContext(ctx, "cannot post in the admins' conversation", "approval", a.ID, "err", err)
		if back, uerr := dc.admins.settleAsk(context.WithoutCancel(ctx), tenant, a.ID, who, at, true); back.ID == "" {
			dc.log.WarnContext(ctx, "cannot take back an ask that was not posted", "approval", a.ID, "err", uerr)
		} else if uerr != nil {
			dc.log.WarnContext(ctx, "cannot take an ask off the admins' list; the sync will", "approval", a.ID, "err", uerr)
		}
		return dc.invokeFailed(ctx, locale, err), nil
	}
	dc.log.InfoContext(ctx, "an admin was asked", "approval", a.ID, "reason", why)
	posted, err := dc.admins.settleAsk(context.WithoutCancel(ctx), tenant, a.ID, who, at, false)
	if posted.ID == "" {
		dc.log.WarnContext(ctx, "cannot record an ask as posted; the admins' sync may post it again", "approval", a.ID, "err", err)
	} else {
		asked = posted
		if err != nil {
			dc.log.WarnContext(ctx, "cannot take an ask off the admins' list; the sync will", "approval", a.ID, "err", err)
		}
	}
	dc.audit(ctx, dc.approvals, asked.Event(approval.OpAdminAsked, at, &who, string(why)))
	dc.upgrades.publisher.updateCardsOnly(context.WithoutCancel(ctx), asked)
	return InvokeCard(dc.cardFor(asked, locale)), nil
}
