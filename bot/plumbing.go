package bot

import (
	"context"
	"log/slog"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// plumbing is what every part of the bot writes with: the cards renderer,
// the connector, the logger and the clock, and the approver policy every
// card names. Each part embeds the one plumbing New builds.
type plumbing struct {
	cards  *cards.Cards
	conn   Connector
	log    *slog.Logger
	now    func() time.Time
	policy approval.ApproverPolicy
	// askAdmin: there is an admins' conversation, so cards offer "Ask an
	// admin".
	askAdmin bool
}

// updateCard replaces a posted card for everyone; a failure is logged, as
// the change it shows is recorded already.
func (pl *plumbing) updateCard(ctx context.Context, ref approval.ConversationRef, activityID string, card cards.Card, approvalID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := pl.conn.Update(ctx, ref, activityID, CardMessage(card)); err != nil {
		pl.log.WarnContext(ctx, "cannot update the card for everyone", "approval", approvalID, "err", err)
	}
}

// recordTimeout bounds each write after Graph has answered: the outcome,
// the history line and the card update each get their own, so that a slow
// step (or Teams hanging up on the invoke) cannot cost the next one.
const recordTimeout = 5 * time.Second

// retryStore runs f, each attempt with its own deadline, again while it
// fails with CodeUnavailable, for up to total.
func retryStore(ctx context.Context, total time.Duration, f func(context.Context) error) error {
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

// recordRetry is how long recording a posted card is retried while Redis
// is unavailable: short, as the turn's answer waits for it.
const recordRetry = 3 * time.Second
