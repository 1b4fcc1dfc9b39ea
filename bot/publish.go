package bot

import (
	"context"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

// publisher writes how an approval stands where people see it: its
// history line, each of its cards and each list it is in.
type publisher struct {
	*plumbing
	approvals ApprovalStore
	lists     *lists
	admins    *admins
}

// publish writes the outcome's audit event (its history line) and updates the approval's card for
// everyone, each step with its own deadline.
func (pb *publisher) publish(ctx context.Context, done approval.Approval) {
	ctx = context.WithoutCancel(ctx)
	pb.admins.approvalChanged(ctx, done)
	// The outcome is one event: the tenant's audit trail and this
	// conversation's history get it in one write, retried like the
	// other records.
	e := done.OutcomeEvent()
	var listed []string
	err := retryStore(ctx, auditRetry, func(ctx context.Context) error {
		var err error
		listed, err = pb.approvals.RecordOutcome(ctx, approval.BaseConversation(done.Conversation.ConversationID), e)
		return err
	})
	if err != nil {
		pb.log.ErrorContext(ctx, "cannot record an outcome; it is missing from the audit trail and the history",
			"operation", e.Operation, "approval", done.ID, "tenant", e.TenantID, "err", err)
		pb.updateCards(ctx, done) // reads the lists again
		return
	}
	// The lists read with the history line are as good as read after the
	// cards' updates: a list drawn since reads the approval as decided.
	pb.updateCardsAndLists(ctx, done, listed)
}

// publishEvent writes an event that is not how the approval ended (status:
// "Remind me later" by who at at) to the tenant's audit trail and the
// conversation's history, as publish writes an outcome, and updates its
// cards.
func (pb *publisher) publishEvent(ctx context.Context, a approval.Approval, status approval.Status, who approval.Person, at time.Time) {
	ctx = context.WithoutCancel(ctx)
	e := a.Event(approval.OperationOf(status), at, &who, "")
	e.Status = status // the history line says what happened, not how the approval stands
	err := retryStore(ctx, auditRetry, func(ctx context.Context) error {
		_, err := pb.approvals.RecordOutcome(ctx, approval.BaseConversation(a.Conversation.ConversationID), e)
		return err
	})
	if err != nil {
		pb.log.ErrorContext(ctx, "cannot record an event; it is missing from the audit trail and the history",
			"operation", e.Operation, "approval", a.ID, "tenant", e.TenantID, "err", err)
	}
	pb.updateCardsOnly(ctx, a)
}

// updateCards shows the approval as it stands on every card that shows it,
// and on every list it is in.
func (pb *publisher) updateCards(ctx context.Context, done approval.Approval) {
	pb.updateCardsOnly(ctx, done)
	pb.lists.redraws.Go(func() { pb.lists.updateLists(ctx, done.ID) })
}

// updateCardsAndLists is updateCards, given the lists the approval is in.
func (pb *publisher) updateCardsAndLists(ctx context.Context, done approval.Approval, listed []string) {
	pb.updateCardsOnly(ctx, done)
	if len(listed) == 0 {
		return
	}
	pb.lists.redraws.Go(func() {
		for _, id := range listed {
			pb.lists.updateList(context.WithoutCancel(ctx), id)
		}
	})
}

func (pb *publisher) updateCardsOnly(ctx context.Context, done approval.Approval) {
	if done.CardActivityID != "" {
		pb.updateCard(ctx, done.Conversation, done.CardActivityID, pb.cardFor(done, done.Locale), done.ID)
	}
	for _, c := range done.OtherCards {
		pb.updateCard(ctx, c.Conversation, c.ActivityID, pb.cardFor(done, c.Conversation.Locale), done.ID)
	}
}
