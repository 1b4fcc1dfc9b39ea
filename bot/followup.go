package bot

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// followups remembers the approvals whose cards a scan keeps true, and when
// each next needs a look.
type followups struct {
	store       Followups     // nil: nothing is followed (the bot only answers)
	every       time.Duration // Options.FollowEvery
	remindAfter time.Duration // Options.RemindAfter
	log         *slog.Logger
}

// follow keeps the card of an approval just opened true from now on: a
// scan looks at its conversation again when it is due (its reminder, its
// expiry, or FollowEvery from its creation, whichever comes first). A
// failure is logged: the card still works, it is only not kept true.
func (f *followups) follow(ctx context.Context, a approval.Approval) {
	if f.store == nil {
		return
	}
	due := earliest(f.nextLook(a, false), a.CreatedAt.Add(f.every))
	if err := f.store.Follow(ctx, a, due); err != nil {
		f.log.WarnContext(ctx, "cannot follow approval", "approval", a.ID, "err", err)
	}
}

// nextLook is when an open approval next needs attention: its reminder, or
// its expiry.
func (f *followups) nextLook(a approval.Approval, reminded bool) time.Time {
	if remind := a.RemindAt(f.remindAfter); !reminded && remind.Before(a.ExpiresAt) {
		return remind
	}
	return a.ExpiresAt
}

// followUp keeps the followed cards of a conversation true: expired ones
// say so, ones upgraded elsewhere or superseded by a newer version say so,
// and ones pending long get their one reminder.
func (pr *proactive) followUp(ctx context.Context, ref approval.ConversationRef, installed []approval.Installation, pending []approval.PendingUpgrade, postsOn bool, res *ScanResult) error {
	p := pr.store
	ids, err := p.Followed(ctx, ref.ConversationID)
	if err != nil {
		return err
	}
	now := pr.now()
	var next time.Time
	for _, id := range ids {
		a, err := pr.approvals.Approval(ctx, id)
		if ErrorCode(err) == CodeNotFound {
			_ = p.Unfollow(ctx, ref.ConversationID, id)
			continue
		}
		if err != nil {
			return err
		}
		if a.Claimed() {
			next = earliest(next, now.Add(pr.upgrades.claimLease()))
			continue
		}
		if !a.Decidable() {
			if err := p.Unfollow(ctx, ref.ConversationID, id); err != nil {
				return err
			}
			continue
		}
		closeAs, problem := approval.Status(""), approval.Problem{}
		switch i := slices.IndexFunc(pending, func(u approval.PendingUpgrade) bool { return u.Installation.ID == a.Upgrade.Installation.ID }); {
		case a.Expired(now):
			closeAs = approval.StatusExpired
		case i >= 0 && pending[i].Target.ID != a.Upgrade.Target.ID:
			closeAs = approval.StatusSuperseded
		case i < 0:
			j := slices.IndexFunc(installed, func(in approval.Installation) bool { return in.ID == a.Upgrade.Installation.ID })
			switch {
			case j < 0:
				closeAs, problem = approval.StatusExpired, approval.Problem{Reason: approval.ReasonAppUninstalled}
			case approval.CompareVersions(installed[j].Definition.Version, a.Upgrade.Target.Version) >= 0:
				closeAs = approval.StatusUpgradedOutside
			}
		}
		if closeAs != "" {
			if err := pr.close(ctx, a, closeAs, problem); err != nil {
				return err
			}
			res.Updated++
			if err := p.Unfollow(ctx, ref.ConversationID, id); err != nil {
				return err
			}
			continue
		}
		reminded := false
		if !now.Before(a.RemindAt(pr.followups.remindAfter)) { // not before a snooze ends
			if postsOn && a.CardActivityID != "" {
				sent, err := pr.remind(ctx, a)
				if err != nil {
					return err
				}
				if sent {
					res.Reminded++
				}
			}
			reminded = true // quiet conversations are not reminded later either
		}
		next = earliest(next, earliest(pr.followups.nextLook(a, reminded), now.Add(pr.followups.every)))
	}
	return p.Due(ctx, ref.TenantID, ref.ConversationID, next, false)
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// remind replies once under an approval's card, naming the approvers.
func (pr *proactive) remind(ctx context.Context, a approval.Approval) (bool, error) {
	p := pr.store
	// A snooze earns the request one reminder after it: its own claim.
	claim := a.ID
	if !a.SnoozedUntil.IsZero() {
		claim += ":snoozed:" + strconv.FormatInt(a.SnoozedUntil.Unix(), 10)
	}
	ok, err := p.ClaimReminder(ctx, claim, time.Until(a.ExpiresAt)+pr.ttl)
	if err != nil || !ok {
		return false, err
	}
	scope := a.Upgrade.Installation.Scope
	r := cards.Reminder{Locale: a.Locale, App: appView(a.Upgrade), Place: placeOf(a.Conversation),
		Approvers: pr.approverView(&scope), People: pr.approvers.people(ctx, scope),
		RequestedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt}
	if _, err := pr.conn.Reply(ctx, a.Conversation, a.CardActivityID, CardMessage(pr.cards.Reminder(r))); err != nil {
		if rerr := p.ReleaseReminder(ctx, claim); rerr != nil {
			pr.log.WarnContext(ctx, "cannot release the reminder claim", "err", rerr)
		}
		return false, err
	}
	return true, nil
}

// close records that an open approval ended without a decision (expired,
// upgraded outside the bot, superseded) and updates its cards for everyone;
// a superseded one's successor is posted by the scan itself.
func (pr *proactive) close(ctx context.Context, a approval.Approval, status approval.Status, problem approval.Problem) error {
	_, err := pr.upgrades.conclude(ctx, a, approval.Outcome{Status: status, At: pr.now(), Problem: problem})
	return err
}
