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

// recordTimeout bounds each write after Graph has answered: the outcome,
// the history line and the card update each get their own, so that a slow
// step (or Teams hanging up on the invoke) cannot cost the next one.
const recordTimeout = 5 * time.Second

// claimLease is how long an upgrade claim is untouchable: the upgrade call
// and a quarter more for recording it. Past it, the reaper reconciles.
func (b *Bot) claimLease() time.Duration { return b.opts.UpgradeTimeout + b.opts.UpgradeTimeout/4 }

// onDecide handles approve, reject and retry: the approver's decision. An
// approval upgrades in the background; the clicker gets its outcome if
// Graph answers within InvokeWait, else the "upgrading…" card, which the
// outcome then replaces for everyone.
func (b *Bot) onDecide(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	a, resp, err := b.loadApproval(ctx, t)
	if resp != nil || err != nil {
		return resp, err
	}
	locale := t.Activity.Locale
	who := t.person()
	if !a.Decidable() {
		return InvokeCard(b.cardFor(a, locale)), nil // double clicks and redeliveries change nothing
	}
	ok, err := b.mayApprove(ctx, a.Upgrade.Installation.Scope, who)
	if err != nil {
		return b.invokeFailed(ctx, err), nil
	}
	if !ok {
		return b.notAllowed(a, locale), nil
	}
	var claimed bool
	deadline := time.Now().Add(b.opts.UpgradeTimeout) // set before the claim: it ends inside the lease
	if t.CardAction.Verb == cards.VerbReject {
		// A request past its time is expired, whoever rejects it: its
		// record and history must not say an approver decided it.
		if now := b.opts.Now(); a.Expired(now) {
			a, err = b.conclude(ctx, a, approval.Outcome{Status: approval.StatusExpired, At: now})
		} else {
			a, err = b.conclude(ctx, a, approval.Outcome{Status: approval.StatusRejected, By: &who, At: now})
		}
	} else {
		a, claimed, err = b.claim(ctx, a, who, b.claimLease())
	}
	if err != nil {
		return b.storeFailed(ctx, err)
	}
	if !claimed {
		return InvokeCard(b.cardFor(a, locale)), nil
	}
	if d, ok := b.goUpgrade(ctx, a, deadline, t.Ref, t.Activity.ReplyToID).wait(ctx, b.opts.InvokeWait); ok {
		return InvokeCard(b.cardFor(d, locale)), nil
	}
	return InvokeCard(b.cardFor(a, locale)), nil // upgrading…, "still working"
}

// claim expires an approval past its time, or claims it for an upgrade
// for lease: of concurrent clicks (on any replica) exactly one claim wins.
func (b *Bot) claim(ctx context.Context, a approval.Approval, who approval.Person, lease time.Duration) (approval.Approval, bool, error) {
	now := b.opts.Now()
	if a.Expired(now) {
		a, err := b.conclude(ctx, a, approval.Outcome{Status: approval.StatusExpired, At: now})
		return a, false, err
	}
	c, err := b.opts.Approvals.ClaimUpgrade(ctx, a.ID, who, now, lease)
	if ErrorCode(err) == CodeConflict {
		return c, false, nil // someone else was first
	}
	if err != nil {
		return a, false, err
	}
	return c, true, nil
}

// conclude closes an approval without a Graph call (a reject, an expiry,
// what a follow-up saw) and publishes it. One decided meanwhile is
// returned as it stands.
func (b *Bot) conclude(ctx context.Context, a approval.Approval, o approval.Outcome) (approval.Approval, error) {
	done, err := b.record(ctx, a, o)
	if ErrorCode(err) == CodeConflict {
		return done, nil
	}
	if err != nil {
		return a, err
	}
	b.publish(ctx, done)
	return done, nil
}

// record stores the end of an approval as approval.Approval.Close computes
// it: every path that ends one comes through here. A claimed approval is
// ended by the claim's holder (held is the approval as it holds it); any
// other only from a status that may be decided, else CodeConflict.
func (b *Bot) record(ctx context.Context, held approval.Approval, o approval.Outcome) (approval.Approval, error) {
	end := func(a *approval.Approval) { *a = a.Close(o) }
	if held.Claimed() {
		return b.opts.Approvals.Settle(ctx, held, end)
	}
	return b.opts.Approvals.Transition(ctx, held.ID, approval.DecidableStatuses(), end)
}

// goUpgrade upgrades a claimed approval in the background, counted for
// Drain. The invoke waits on the returned handoff for the outcome; if it
// stops waiting first, the outcome updates the clicked card (alsoID, when
// it is neither one of the approval's own cards nor a list it is in, which
// settle updates anyway).
func (b *Bot) goUpgrade(ctx context.Context, c approval.Approval, deadline time.Time, ref approval.ConversationRef, alsoID string) *handoff {
	h := &handoff{ready: make(chan struct{})}
	ctx = context.WithoutCancel(ctx)
	b.inflight.Add(1)
	go func() {
		defer b.inflight.Done()
		d := b.runUpgrade(ctx, c, deadline)
		h.mu.Lock()
		abandoned := h.abandoned
		h.result = d
		close(h.ready)
		h.mu.Unlock()
		if abandoned && alsoID != "" && !d.ShowsOn(alsoID) && !b.listsShow(ctx, d.ID, alsoID) {
			b.updateCard(ctx, ref, alsoID, b.cardFor(d, d.Locale), d.ID)
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

// runUpgrade calls Graph's upgrade for a claim and records the outcome. The
// call ends by deadline, which falls inside the claim's lease, so nobody
// reconciles a claim whose Graph call may still be running.
func (b *Bot) runUpgrade(ctx context.Context, c approval.Approval, deadline time.Time) approval.Approval {
	sent := b.opts.Now().UTC()
	// The mark must be true: Graph is called only once it is written. A
	// write that fails may still have landed, so it is retried (Redis
	// may be back) while there is time left to call Graph.
	err := b.retryStore(ctx, time.Until(deadline)/2, func(ctx context.Context) error {
		marked, err := b.opts.Approvals.Amend(ctx, c, func(a *approval.Approval) { a.UpgradeSentAt = sent })
		if err == nil {
			c = marked // what settle writes against
		}
		return err
	})
	if err != nil {
		// No Graph call without the mark: the reaper upgrades a claim that
		// certainly never reached Graph, once its lease ends.
		b.opts.Logger.WarnContext(ctx, "cannot mark the upgrade as sent; leaving it to the reaper", "approval", c.ID, "err", err)
		return c
	}
	gctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	uerr := b.upgrade(gctx, c.Upgrade)
	cancel()
	if errors.Is(uerr, ErrUpgradeUncertain) {
		if !b.upgradeTook(ctx, c.Upgrade) {
			return b.awaitConfirmation(ctx, c, sent, uerr)
		}
		b.opts.Logger.WarnContext(ctx, "the upgrade failed but took effect", "approval", c.ID, "err", uerr)
		uerr = nil
	}
	status, problem := approval.StatusUpgraded, approval.Problem{}
	switch {
	case errors.Is(uerr, approval.ErrAlreadyUpgraded):
		status = approval.StatusUpToDate
	case errors.Is(uerr, approval.ErrSuperseded):
		status = approval.StatusSuperseded
	case uerr != nil:
		status, problem = approval.StatusFailed, approval.ProblemOf(uerr)
		b.opts.Logger.WarnContext(ctx, "upgrade failed", "approval", c.ID, "err", uerr)
	}
	return b.settle(ctx, c, status, problem)
}

// upgradeTook reads the installation back, a few times (Graph may briefly
// show the old version), to learn whether an upgrade whose answer was a 5xx
// or was lost took effect: it is never sent again to find out.
func (b *Bot) upgradeTook(ctx context.Context, u approval.PendingUpgrade) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.opts.UpgradeTimeout)
	defer cancel()
	pause := min(2*time.Second, b.opts.UpgradeTimeout/10)
	for i := range 3 {
		if i > 0 {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(pause):
			}
		}
		in, err := b.opts.Installations.Installation(ctx, u.Installation.Scope, u.Installation.ID)
		if err == nil && approval.CompareVersions(in.Definition.Version, u.Target.Version) >= 0 {
			return true
		}
	}
	return false
}

// awaitConfirmation keeps an uncertain upgrade "upgrading…" until its
// grace period ends: the claim is held that long, then the reaper reads the
// installation and records upgraded, or failed with Retry. Offering Retry
// sooner could send a second upgrade for one Graph was slow to show.
func (b *Bot) awaitConfirmation(ctx context.Context, c approval.Approval, sent time.Time, cause error) approval.Approval {
	b.opts.Logger.WarnContext(ctx, "Microsoft Graph did not confirm the upgrade; waiting before offering Retry",
		"approval", c.ID, "until", sent.Add(b.opts.UpgradeGrace), "err", cause)
	err := b.retryStore(ctx, recordTimeout, func(ctx context.Context) error {
		var err error
		c, err = b.opts.Approvals.HoldClaim(ctx, c.ID, c.ClaimToken, b.graceLeft(sent))
		return err
	})
	if err != nil {
		// The claim's own lease ends soon: the reaper then holds it again
		// for what is left of the grace period.
		b.opts.Logger.WarnContext(ctx, "cannot hold the claim for the grace period", "approval", c.ID, "err", err)
	}
	return c
}

// graceLeft is how long a claim whose upgrade was sent at sent still
// waits for Graph to show it.
func (b *Bot) graceLeft(sent time.Time) time.Duration {
	return max(sent.Add(b.opts.UpgradeGrace).Sub(b.opts.Now()), time.Second)
}

// settle records the outcome of a claim, then its history line and card.
// If the record cannot be written (Redis is down for half the upgrade
// timeout) the claim stays upgrading and the reaper reconciles it from
// Graph once its lease ends.
func (b *Bot) settle(ctx context.Context, c approval.Approval, status approval.Status, problem approval.Problem) approval.Approval {
	now := b.opts.Now().UTC()
	var done approval.Approval
	failed := false // a write failed: a later conflict may be our own write having landed
	err := b.retryStore(ctx, b.opts.UpgradeTimeout/2, func(ctx context.Context) error {
		var err error
		done, err = b.record(ctx, c, approval.Outcome{Status: status, At: now, Problem: problem})
		failed = failed || ErrorCode(err) == CodeUnavailable
		return err
	})
	if ErrorCode(err) == CodeConflict {
		if !failed || done.Status != status || !done.DecidedAt.Equal(now) {
			return done // settled by someone else: the reaper after our lease ended
		}
		err = nil // our write landed though its answer was lost
	}
	if err != nil {
		b.opts.Logger.ErrorContext(ctx, "cannot record an upgrade's outcome; the reaper will reconcile it",
			"approval", c.ID, "outcome", status, "err", err)
		return c
	}
	b.publish(ctx, done)
	if status == approval.StatusUpgraded {
		b.queueVerify(ctx, done)
	}
	if status == approval.StatusSuperseded {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.opts.UpgradeTimeout)
		b.reopen(rctx, done)
		cancel()
	}
	return done
}

// retryStore runs f, each attempt with its own deadline, again while it
// fails with CodeUnavailable, for up to total.
func (b *Bot) retryStore(ctx context.Context, total time.Duration, f func(context.Context) error) error {
	ctx = context.WithoutCancel(ctx)
	end := time.Now().Add(total)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		actx, cancel := context.WithTimeout(ctx, recordTimeout)
		err := f(actx)
		cancel()
		if ErrorCode(err) != CodeUnavailable || time.Now().Add(wait).After(end) {
			return err
		}
		time.Sleep(wait)
	}
}

// publish writes the history line and updates the approval's card for
// everyone, each step with its own deadline.
func (b *Bot) publish(ctx context.Context, done approval.Approval) {
	ctx = context.WithoutCancel(ctx)
	actor := ""
	if done.DecidedBy != nil {
		actor = done.DecidedBy.Name
	}
	in := done.Upgrade
	hctx, cancel := context.WithTimeout(ctx, recordTimeout)
	listed, err := b.opts.Approvals.AppendAudit(hctx, approval.BaseConversation(done.Conversation.ConversationID), approval.AuditEvent{At: done.DecidedAt,
		Status: done.Status, Actor: actor, App: in.Installation.DisplayName, From: in.Installation.Definition.Version,
		To: in.Target.Version, ApprovalID: done.ID})
	cancel()
	if err != nil {
		b.opts.Logger.WarnContext(ctx, "cannot record history", "approval", done.ID, "err", err)
		b.updateCards(ctx, done) // reads the lists again
		return
	}
	// The lists read with the history line are as good as read after the
	// cards' updates: a list drawn since reads the approval as decided.
	b.updateCardsAndLists(ctx, done, listed)
}

// updateCards shows the approval as it stands on every card that shows it,
// and on every list it is in.
func (b *Bot) updateCards(ctx context.Context, done approval.Approval) {
	b.updateCardsOnly(ctx, done)
	b.redraws.Go(func() { b.updateLists(ctx, done.ID) })
}

// updateCardsAndLists is updateCards, given the lists the approval is in.
func (b *Bot) updateCardsAndLists(ctx context.Context, done approval.Approval, listed []string) {
	b.updateCardsOnly(ctx, done)
	if len(listed) == 0 {
		return
	}
	b.redraws.Go(func() {
		for _, id := range listed {
			b.updateList(context.WithoutCancel(ctx), id)
		}
	})
}

func (b *Bot) updateCardsOnly(ctx context.Context, done approval.Approval) {
	if done.CardActivityID != "" {
		b.updateCard(ctx, done.Conversation, done.CardActivityID, b.cardFor(done, done.Locale), done.ID)
	}
	for _, c := range done.OtherCards {
		b.updateCard(ctx, c.Conversation, c.ActivityID, b.cardFor(done, c.Conversation.Locale), done.ID)
	}
}

func (b *Bot) updateCard(ctx context.Context, ref approval.ConversationRef, activityID string, card cards.Card, approvalID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := b.opts.Connector.Update(ctx, ref, activityID, CardMessage(card)); err != nil {
		b.opts.Logger.WarnContext(ctx, "cannot update the card for everyone", "approval", approvalID, "err", err)
	}
}

// reopen posts a new request when the catalog moved on since approval.
func (b *Bot) reopen(ctx context.Context, old approval.Approval) {
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
		if err == nil && a.Status == approval.StatusPending && a.CardActivityID == "" {
			_, err = b.postCard(ctx, old.Conversation, "", a, old.Locale)
		}
		if err != nil {
			b.opts.Logger.WarnContext(ctx, "cannot post the renewed request", "approval", old.ID, "err", err)
		}
	}
}

// onApproveAll approves every open approval of a list at once. Teams waits
// only about 15 s for the answer, so it claims them all, answers at once
// with the list showing each as upgrading…, and upgrades them in the
// background, at most Parallel at a time; each outcome redraws the list
// from the store (updateCards), so the list ends true even when this
// replica dies and the reaper finishes them.
func (b *Bot) onApproveAll(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	locale := t.Activity.Locale
	if b.opts.Installations == nil {
		return Refuse(CodeUnavailable, "NotConfigured", b.cards.Sentence(locale, cards.SentenceNoGraph, nil)), nil
	}
	batch, list, err := b.readList(ctx, t.approvalID())
	if ErrorCode(err) == CodeNotFound {
		return b.unknownAction(t), nil
	}
	if err != nil {
		return b.storeFailed(ctx, err)
	}
	if slices.ContainsFunc(list, func(a approval.Approval) bool { return !a.BelongsTo(t.Ref) }) {
		b.opts.Logger.WarnContext(ctx, "approve all names a batch from elsewhere", "batch", t.approvalID(),
			"conversation", t.Ref.ConversationID, "tenant", t.Ref.TenantID)
		return b.unknownAction(t), nil
	}
	who := t.person()
	// Every approval of a batch is in this one place: one approver check
	// covers them all, and it comes before anything is claimed.
	for _, a := range list {
		if !a.Decidable() {
			continue
		}
		ok, err := b.mayApprove(ctx, a.Upgrade.Installation.Scope, who)
		if err != nil {
			return b.invokeFailed(ctx, err), nil
		}
		if !ok {
			return b.notAllowed(a, locale), nil
		}
		break
	}
	// An upgrade may wait for one of Parallel slots: its claim lasts until
	// its wave would end, and is renewed, with its own deadline, once its
	// upgrade starts. Otherwise the last waves would fail on a deadline
	// spent waiting, or lose their claims to the reaper.
	waves := (len(list) + b.opts.Parallel - 1) / b.opts.Parallel
	lease := time.Duration(waves) * b.claimLease()
	var claimed []approval.Approval
	for i, a := range list {
		if !a.Decidable() {
			continue
		}
		c, ok, err := b.claim(ctx, a, who, lease)
		if err != nil {
			b.opts.Logger.WarnContext(ctx, "approve all: cannot claim", "approval", a.ID, "err", err)
			continue
		}
		list[i] = c
		if ok {
			claimed = append(claimed, c)
		}
	}
	if len(claimed) == 0 && !slices.ContainsFunc(list, approval.Approval.Decidable) {
		return InvokeCard(b.cards.UpToDate(cards.UpToDate{Locale: locale, Place: placeOf(t.Ref)})), nil
	}
	if r := t.Activity.ReplyToID; r != "" && len(claimed) > 0 {
		// Recorded before the upgrades start, so that their outcomes
		// update it; a list posted before lists were recorded is too.
		b.recordList(ctx, batch.ID, approval.PostedCard{Conversation: t.Ref, ActivityID: r})
	}
	b.goUpgradeAll(ctx, claimed)
	return InvokeCard(b.listCard(t.Ref, batch.ID, list)), nil
}

// goUpgradeAll runs the claimed upgrades of a list, Parallel at a time.
func (b *Bot) goUpgradeAll(ctx context.Context, claimed []approval.Approval) {
	ctx = context.WithoutCancel(ctx)
	sem := make(chan struct{}, b.opts.Parallel)
	b.inflight.Add(len(claimed))
	for _, c := range claimed {
		go func() {
			defer b.inflight.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			b.startQueuedUpgrade(ctx, c)
		}()
	}
}

// startQueuedUpgrade runs a claimed upgrade that waited for its slot: it
// holds the claim afresh and gives the Graph call a deadline from now. A
// claim lost meanwhile (its lease ran out and the reaper took it) is left
// to its new holder.
func (b *Bot) startQueuedUpgrade(ctx context.Context, c approval.Approval) {
	held, err := b.opts.Approvals.HoldClaim(ctx, c.ID, c.ClaimToken, b.claimLease())
	if err != nil {
		b.opts.Logger.WarnContext(ctx, "approve all: the claim is no longer ours", "approval", c.ID, "err", err)
		return
	}
	b.runUpgrade(ctx, held, time.Now().Add(b.opts.UpgradeTimeout))
}

// Drain waits until the decisions still running after their invoke was
// answered have ended, or ctx ends. Call it after the HTTP server stopped
// and before the store closes.
func (b *Bot) Drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() { b.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("bot: decisions still running: %w", ctx.Err())
	}
	// Decisions that ended started redraws of their lists.
	if err := b.redraws.Wait(ctx); err != nil {
		return fmt.Errorf("bot: lists still being redrawn: %w", err)
	}
	return nil
}

// DrainTimeout is how long Drain may need: one upgrade and its records.
func (b *Bot) DrainTimeout() time.Duration { return b.opts.UpgradeTimeout + 3*recordTimeout }
