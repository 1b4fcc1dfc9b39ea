package bot

import (
	"context"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// installedKey dedupes the welcome: Teams sends both conversationUpdate and
// installationUpdate when the bot is added.
func installedKey(conversationID string) string { return "installed|" + conversationID }

// onInstallationUpdate: add welcomes and posts what is pending; remove
// forgets. The other actions (add-upgrade, remove-upgrade, upgrade and
// whatever Teams adds) are accepted and logged.
func (pr *proactive) onInstallationUpdate(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	pr.log.InfoContext(ctx, "installation update", "action", t.Activity.Action,
		"conversation_type", t.Ref.ConversationType, "tenant", t.Ref.TenantID)
	switch t.Activity.Action {
	case "add":
		return nil, pr.installed(ctx, t)
	case "remove":
		return nil, pr.removed(ctx, t.Ref)
	}
	return nil, nil
}

// onConversationUpdate: the bot among membersAdded is an install,
// among membersRemoved a removal.
func (pr *proactive) onConversationUpdate(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	for _, m := range t.Activity.MembersRemoved {
		if m.ID == t.Activity.Recipient.ID {
			return nil, pr.removed(ctx, t.Ref)
		}
	}
	for _, m := range t.Activity.MembersAdded {
		if m.ID == t.Activity.Recipient.ID {
			return nil, pr.installed(ctx, t)
		}
	}
	return nil, nil
}

// installed posts one welcome per installation, however many events Teams
// sends for it, then the cards of what is pending, unless unprompted posts
// are off (BOT_PROACTIVE=off, or quiet mode kept for this conversation):
// the welcome answers being added, but nobody asked for those cards.
func (pr *proactive) installed(ctx context.Context, t *Turn) error {
	if pr.store == nil {
		return nil
	}
	first, err := pr.activities.Claim(ctx, installedKey(t.Ref.ConversationID))
	if err != nil || !first {
		return err
	}
	// Where nothing comes unprompted, the welcome offers "check" instead
	// of promising cards.
	on, err := pr.postsOn(ctx, t.Ref.ConversationID)
	if err == nil {
		welcome := pr.cards.Welcome(cards.Welcome{Locale: t.Activity.Locale, Place: placeOf(t.Ref),
			Approvers: pr.approverView(t.Ref.Scope), Quiet: !on})
		_, err = pr.conn.Send(ctx, t.Ref, CardMessage(welcome))
	}
	if err != nil {
		if rerr := pr.activities.Release(ctx, installedKey(t.Ref.ConversationID)); rerr != nil {
			pr.log.WarnContext(ctx, "cannot release the welcome claim", "err", rerr)
		}
		return err
	}
	if pr.installations == nil || t.Ref.Scope == nil {
		return nil
	}
	_, err = pr.scan(ctx, t.Ref, true, false)
	return err
}

// removed forgets the conversation and closes its open approvals, saying
// why in their record. Nothing is posted: the bot can no longer post there.
func (pr *proactive) removed(ctx context.Context, ref approval.ConversationRef) error {
	if pr.store == nil {
		return nil
	}
	p := pr.store
	if err := p.Forget(ctx, ref); err != nil {
		return err
	}
	if ref.Scope != nil {
		pr.admins.saveScope(ctx, *ref.Scope, nil) // the inventory forgets it
	}
	if err := pr.activities.Release(ctx, installedKey(ref.ConversationID)); err != nil {
		return err
	}
	ids, err := p.Followed(ctx, ref.ConversationID)
	if err != nil {
		return err
	}
	now := pr.now().UTC()
	for _, id := range ids {
		// Only the id is at hand: the record is closed if it may still be decided.
		_, err := pr.upgrades.record(ctx, approval.Approval{ID: id}, approval.Outcome{Status: approval.StatusExpired, At: now,
			Problem: approval.Problem{Reason: approval.ReasonBotRemoved}})
		if err != nil && ErrorCode(err) != CodeConflict && ErrorCode(err) != CodeNotFound {
			return err
		}
		if err := p.Unfollow(ctx, ref.ConversationID, id); err != nil {
			return err
		}
	}
	return p.Due(ctx, ref.TenantID, ref.ConversationID, time.Time{}, false)
}
