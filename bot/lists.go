package bot

import (
	"context"
	"slices"
	"strings"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// A list (the reply to check with several pending upgrades) is recorded
// with its batch in the store, and every change that updates an approval's
// cards redraws the lists it is in from the store, so that they stay true
// whichever replica decides, reaps or verifies, and after the one running
// "approve all" died.

// recordList remembers a message listing a batch. Like a posted card's
// record, it is retried a little, then logged: the list still works without
// it, it is only not kept true.
func (b *Bot) recordList(ctx context.Context, batchID string, list approval.PostedCard) {
	err := b.retryStore(ctx, recordRetry, func(ctx context.Context) error {
		return b.opts.Approvals.RecordList(ctx, batchID, list)
	})
	if err != nil {
		b.opts.Logger.WarnContext(ctx, "cannot record a list; it will not be kept true",
			"batch", batchID, "activity_id", list.ActivityID, "err", err)
	}
}

// listCard shows a batch's approvals, as posted in ref's conversation, as
// they stand: one upgrading or decided shows how it stands instead of
// Review, and Approve all stays while any is still pending.
func (b *Bot) listCard(ref approval.ConversationRef, batchID string, list []approval.Approval) cards.Card {
	if !slices.ContainsFunc(list, func(a approval.Approval) bool { return a.Status == approval.StatusPending }) {
		batchID = ""
	}
	v := b.listView(ref, list, batchID)
	for i, a := range list {
		v.Items[i].Status = outcomeKind[a.Status] // none while pending: Review
		if a.Status == approval.StatusUpgrading {
			v.Items[i].Status = cards.OutcomeUpgrading
		}
	}
	return b.cards.PendingList(v)
}

// readList reads a batch and its approvals as they stand now, leaving out
// the ones gone past their retention.
func (b *Bot) readList(ctx context.Context, batchID string) (approval.Batch, []approval.Approval, error) {
	batch, err := b.opts.Approvals.Batch(ctx, batchID)
	if err != nil {
		return batch, nil, err
	}
	list := make([]approval.Approval, 0, len(batch.Approvals))
	for _, id := range batch.Approvals {
		a, err := b.opts.Approvals.Approval(ctx, id)
		if ErrorCode(err) == CodeNotFound {
			continue
		}
		if err != nil {
			return batch, nil, err
		}
		list = append(list, a)
	}
	return batch, list, nil
}

// updateLists shows an approval as it stands on every list it is in.
func (b *Bot) updateLists(ctx context.Context, approvalID string) {
	ctx = context.WithoutCancel(ctx)
	rctx, cancel := context.WithTimeout(ctx, recordTimeout)
	batches, err := b.opts.Approvals.ListedIn(rctx, approvalID)
	cancel()
	if err != nil {
		b.opts.Logger.WarnContext(ctx, "cannot read the lists an approval is in", "approval", approvalID, "err", err)
		return
	}
	for _, id := range batches {
		b.updateList(ctx, id)
	}
}

// maxListPasses bounds the redraws of one list for one change, should its
// approvals keep changing under it (each change redraws it anyway).
const maxListPasses = 10

// updateList draws every message listing a batch from all of its approvals
// as read now, never from what this replica remembers: any replica can do
// it, and redraws made in any order end on the same card. As one redraw's
// update can still reach Teams after a newer one's, each reads the
// approvals again once its updates are done and draws again while they
// changed since: the last redraw to land is one that read them after the
// last change.
func (b *Bot) updateList(ctx context.Context, batchID string) { b.updateListFrom(ctx, batchID, "") }

// updateListFrom is updateList for lists known to show shown (listState),
// which are not drawn again unless that changed.
func (b *Bot) updateListFrom(ctx context.Context, batchID, shown string) {
	for range maxListPasses {
		rctx, cancel := context.WithTimeout(ctx, recordTimeout)
		batch, list, err := b.readList(rctx, batchID)
		cancel()
		if ErrorCode(err) == CodeNotFound {
			return // the batch is past its retention
		}
		if err != nil {
			b.opts.Logger.WarnContext(ctx, "cannot read a list to update it", "batch", batchID, "err", err)
			return
		}
		now := listState(batch, list)
		if len(batch.Lists) == 0 || len(list) == 0 || now == shown {
			return
		}
		for _, l := range batch.Lists {
			b.updateCard(ctx, l.Conversation, l.ActivityID, b.listCard(l.Conversation, batch.ID, list), batchID)
		}
		shown = now
	}
	b.opts.Logger.WarnContext(ctx, "a list kept changing while it was updated", "batch", batchID)
}

// listState is what a batch's lists show: which messages, and how each
// approval stands.
func listState(batch approval.Batch, list []approval.Approval) string {
	var s strings.Builder
	for _, l := range batch.Lists {
		s.WriteString(l.ActivityID + " ")
	}
	for _, a := range list {
		s.WriteString(a.ID + "=" + string(a.Status) + " ")
	}
	return s.String()
}

// listsShow reports whether activityID is a list the approval is in, which
// its redraw keeps true: an approval reviewed from a list is decided on the
// list's message.
func (b *Bot) listsShow(ctx context.Context, approvalID, activityID string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	batches, err := b.opts.Approvals.ListedIn(ctx, approvalID)
	if err != nil {
		return false
	}
	for _, id := range batches {
		batch, err := b.opts.Approvals.Batch(ctx, id)
		if err == nil && slices.ContainsFunc(batch.Lists, func(l approval.PostedCard) bool { return l.ActivityID == activityID }) {
			return true
		}
	}
	return false
}
