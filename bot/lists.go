package bot

import (
	"context"
	"encoding/json"
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

// lists are the replies to check that list several pending upgrades, with
// Approve all: posted, recorded with their batch, and redrawn from the store
// as their approvals change.
type lists struct {
	*plumbing
	approvals ApprovalStore
	// redraws are list redraws: a change of one approval redraws every
	// list it is in (up to Approvals' bounds), which no click's answer,
	// and no approve-all slot, should wait for.
	redraws background
}

// recordList remembers a message listing a batch. Like a posted card's
// record, it is retried a little, then logged: the list still works without
// it, it is only not kept true.
func (ls *lists) recordList(ctx context.Context, batchID string, list approval.PostedCard) {
	err := retryStore(ctx, recordRetry, func(ctx context.Context) error {
		return ls.approvals.RecordList(ctx, batchID, list)
	})
	if err != nil {
		ls.log.WarnContext(ctx, "cannot record a list; it will not be kept true",
			"batch", batchID, "activity_id", list.ActivityID, "err", err)
	}
}

// postList posts approvals as one list, with Approve all, and records the
// message with its batch, so that it is kept true as they are decided
// (on their own cards too) before anyone clicks Approve all. It is drawn
// as its redraws are: an open request already upgrading (or decided, with
// Graph slow to show it) is listed as it stands, not as one to review.
func (ls *lists) postList(ctx context.Context, t *Turn, approvals []approval.Approval) error {
	ids := make([]string, len(approvals))
	for i, a := range approvals {
		ids[i] = a.ID
	}
	batch, err := ls.approvals.SaveBatch(ctx, ids)
	if err != nil {
		return err
	}
	id, err := t.Reply(ctx, CardMessage(ls.listCard(t.Ref, batch, approvals)))
	if err != nil || id == "" {
		return err
	}
	posted := approval.PostedCard{Conversation: t.Ref, ActivityID: id}
	ls.recordList(ctx, batch, posted)
	// An approval decided between the list's drawing and its record
	// redrew no list (none was recorded yet): look once more, after the
	// record, and redraw if one moved, after the turn like every redraw.
	drawn := listState(approval.Batch{ID: batch, Lists: []approval.PostedCard{posted}}, approvals)
	ls.redraws.Go(func() { ls.updateListFrom(context.WithoutCancel(ctx), batch, drawn) })
	return nil
}

// maxCardBytes keeps a card, with the activity around it, under Teams'
// 28 KB message limit.
const maxCardBytes = 26 << 10

func (ls *lists) listSize(t *Turn, approvals []approval.Approval) int {
	j, _ := json.Marshal(ls.listCard(t.Ref, "bat_"+strings.Repeat("0", 24), approvals))
	return len(j)
}

// listView lists approvals as posted in ref's conversation, in its locale.
func (ls *lists) listView(ref approval.ConversationRef, approvals []approval.Approval, batch string) cards.PendingList {
	items := make([]cards.PendingItem, len(approvals))
	for i, a := range approvals {
		items[i] = cards.PendingItem{ApprovalID: a.ID, App: appView(a.Upgrade), Diff: diffView(a.Upgrade.Diff)}
	}
	return cards.PendingList{Locale: ref.Locale, Place: placeOf(ref), Approvers: ls.approverView(ref.Scope),
		BatchID: batch, Items: items}
}

// listCard shows a batch's approvals, as posted in ref's conversation, as
// they stand: one upgrading or decided shows how it stands instead of
// Review, and Approve all stays while any is still pending.
func (ls *lists) listCard(ref approval.ConversationRef, batchID string, list []approval.Approval) cards.Card {
	if !slices.ContainsFunc(list, func(a approval.Approval) bool { return a.Status == approval.StatusPending }) {
		batchID = ""
	}
	v := ls.listView(ref, list, batchID)
	for i, a := range list {
		v.Items[i].Status = outcomeKind[a.Status] // none while pending: Review
		if a.Status == approval.StatusUpgrading {
			v.Items[i].Status = cards.OutcomeUpgrading
		}
	}
	return ls.cards.PendingList(v)
}

// readList reads a batch and its approvals as they stand now, leaving out
// the ones gone past their retention.
func (ls *lists) readList(ctx context.Context, batchID string) (approval.Batch, []approval.Approval, error) {
	batch, err := ls.approvals.Batch(ctx, batchID)
	if err != nil {
		return batch, nil, err
	}
	list := make([]approval.Approval, 0, len(batch.Approvals))
	for _, id := range batch.Approvals {
		a, err := ls.approvals.Approval(ctx, id)
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
func (ls *lists) updateLists(ctx context.Context, approvalID string) {
	ctx = context.WithoutCancel(ctx)
	rctx, cancel := context.WithTimeout(ctx, recordTimeout)
	batches, err := ls.approvals.ListedIn(rctx, approvalID)
	cancel()
	if err != nil {
		ls.log.WarnContext(ctx, "cannot read the lists an approval is in", "approval", approvalID, "err", err)
		return
	}
	for _, id := range batches {
		ls.updateList(ctx, id)
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
func (ls *lists) updateList(ctx context.Context, batchID string) { ls.updateListFrom(ctx, batchID, "") }

// updateListFrom is updateList for lists known to show shown (listState),
// which are not drawn again unless that changed.
func (ls *lists) updateListFrom(ctx context.Context, batchID, shown string) {
	for range maxListPasses {
		rctx, cancel := context.WithTimeout(ctx, recordTimeout)
		batch, list, err := ls.readList(rctx, batchID)
		cancel()
		if ErrorCode(err) == CodeNotFound {
			return // the batch is past its retention
		}
		if err != nil {
			ls.log.WarnContext(ctx, "cannot read a list to update it", "batch", batchID, "err", err)
			return
		}
		now := listState(batch, list)
		if len(batch.Lists) == 0 || len(list) == 0 || now == shown {
			return
		}
		for _, l := range batch.Lists {
			ls.updateCard(ctx, l.Conversation, l.ActivityID, ls.listCard(l.Conversation, batch.ID, list), batchID)
		}
		shown = now
	}
	ls.log.WarnContext(ctx, "a list kept changing while it was updated", "batch", batchID)
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
func (ls *lists) listsShow(ctx context.Context, approvalID, activityID string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	batches, err := ls.approvals.ListedIn(ctx, approvalID)
	if err != nil {
		return false
	}
	for _, id := range batches {
		batch, err := ls.approvals.Batch(ctx, id)
		if err == nil && slices.ContainsFunc(batch.Lists, func(l approval.PostedCard) bool { return l.ActivityID == activityID }) {
			return true
		}
	}
	return false
}
