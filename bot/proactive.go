package bot

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// ReferenceIndex is "where the bot is": the installation scopes (chats,
// teams, users' personal scopes) it was talked to in, per tenant.
// ConversationStore.SaveReference adds to it.
type ReferenceIndex interface {
	// Forget removes a conversation the bot was removed from, and its
	// installation scope.
	Forget(ctx context.Context, ref approval.ConversationRef) error
	// Tenants lists the tenants the bot is in.
	Tenants(ctx context.Context) ([]string, error)
	// Conversations calls fn once for each installation scope of a tenant
	// with the conversation its unprompted cards go to (for a team, a
	// channel it was talked to in lately), however many threads and
	// channels of it the bot was talked to in: a scan reads a scope from
	// Graph, so a sweep reads each once. A conversation whose scope is not
	// known comes on its own.
	Conversations(ctx context.Context, tenantID string, fn func(conversationID string) error) error
}

// Followups remembers open approvals whose cards must be kept true after
// they are posted (upgraded outside, reminded, expired), and when each
// conversation next needs a look.
type Followups interface {
	Follow(ctx context.Context, a approval.Approval, due time.Time) error
	Unfollow(ctx context.Context, conversationID, approvalID string) error
	Followed(ctx context.Context, conversationID string) ([]string, error)
	// Due sets when a conversation next needs a look; earlier keeps an
	// earlier time already set; a zero time clears it.
	Due(ctx context.Context, tenantID, conversationID string, at time.Time, earlier bool) error
	// DueConversations hands out up to n conversations due by now, and
	// pushes each back by retry in case the look never happens.
	DueConversations(ctx context.Context, tenantID string, now time.Time, retry time.Duration, n int) ([]string, error)
}

// PostLog makes unprompted posts happen once across replicas and restarts.
type PostLog interface {
	// ClaimPost grants posting the card for one installation and target
	// once, ever; a claim older than stale never marked done may be taken
	// over (its replica died mid-post). held reports a claim of someone
	// else's still in progress: its holder is posting.
	ClaimPost(ctx context.Context, tenantID, installationID, targetID string, stale time.Duration) (granted, held bool, err error)
	PostDone(ctx context.Context, tenantID, installationID, targetID, approvalID string) error
	ReleasePost(ctx context.Context, tenantID, installationID, targetID string) error
	// ClaimReminder grants an approval's one reminder.
	ClaimReminder(ctx context.Context, approvalID string, keep time.Duration) (bool, error)
	ReleaseReminder(ctx context.Context, approvalID string) error
}

// Notifications is each conversation's quiet mode.
type Notifications interface {
	SetNotifications(ctx context.Context, conversationID string, on bool) error
	NotificationsOn(ctx context.Context, conversationID string) (bool, error)
}

// ProactiveStore is everything the bot keeps to act unprompted.
type ProactiveStore interface {
	ReferenceIndex
	Followups
	PostLog
	Notifications
}

// followedApprovals follows every approval opened, by "check" or by a scan,
// so that its card is kept true afterwards.
type followedApprovals struct {
	ApprovalStore
	b *Bot
}

func (f followedApprovals) OpenApproval(ctx context.Context, a approval.Approval) (approval.Approval, bool, error) {
	stored, created, err := f.ApprovalStore.OpenApproval(ctx, a)
	if err == nil && created {
		due := earliest(f.b.nextLook(stored, false), stored.CreatedAt.Add(f.b.opts.FollowEvery))
		if ferr := f.b.opts.Proactive.Follow(ctx, stored, due); ferr != nil {
			f.b.opts.Logger.WarnContext(ctx, "cannot follow approval", "approval", stored.ID, "err", ferr)
		}
	}
	return stored, created, err
}

// nextLook is when an open approval next needs attention: its reminder, or
// its expiry.
func (b *Bot) nextLook(a approval.Approval, reminded bool) time.Time {
	if remind := a.CreatedAt.Add(b.opts.RemindAfter); !reminded && remind.Before(a.ExpiresAt) {
		return remind
	}
	return a.ExpiresAt
}

// installedKey dedupes the welcome: Teams sends both conversationUpdate and
// installationUpdate when the bot is added.
func installedKey(conversationID string) string { return "installed|" + conversationID }

// onInstallationUpdate: add welcomes and posts what is pending; remove
// forgets. The other actions (add-upgrade, remove-upgrade, upgrade and
// whatever Teams adds) are accepted and logged.
func (b *Bot) onInstallationUpdate(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	b.opts.Logger.InfoContext(ctx, "installation update", "action", t.Activity.Action,
		"conversation_type", t.Ref.ConversationType, "tenant", t.Ref.TenantID)
	switch t.Activity.Action {
	case "add":
		return nil, b.installed(ctx, t)
	case "remove":
		return nil, b.removed(ctx, t.Ref)
	}
	return nil, nil
}

// onConversationUpdate: the bot among membersAdded is an install,
// among membersRemoved a removal.
func (b *Bot) onConversationUpdate(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	for _, m := range t.Activity.MembersRemoved {
		if m.ID == t.Activity.Recipient.ID {
			return nil, b.removed(ctx, t.Ref)
		}
	}
	for _, m := range t.Activity.MembersAdded {
		if m.ID == t.Activity.Recipient.ID {
			return nil, b.installed(ctx, t)
		}
	}
	return nil, nil
}

// installed posts one welcome per installation, however many events Teams
// sends for it, then the cards of what is pending, unless unprompted posts
// are off (BOT_PROACTIVE=off, or quiet mode kept for this conversation):
// the welcome answers being added, but nobody asked for those cards.
func (b *Bot) installed(ctx context.Context, t *Turn) error {
	if b.opts.Proactive == nil {
		return nil
	}
	first, err := b.opts.Activities.Claim(ctx, installedKey(t.Ref.ConversationID))
	if err != nil || !first {
		return err
	}
	// Where nothing comes unprompted, the welcome offers "check" instead
	// of promising cards.
	on, err := b.postsOn(ctx, t.Ref.ConversationID)
	if err == nil {
		welcome := b.cards.Welcome(cards.Welcome{Locale: t.Activity.Locale, Place: placeOf(t.Ref),
			Approvers: b.approverView(t.Ref.Scope), Quiet: !on})
		_, err = b.opts.Connector.Send(ctx, t.Ref, CardMessage(welcome))
	}
	if err != nil {
		if rerr := b.opts.Activities.Release(ctx, installedKey(t.Ref.ConversationID)); rerr != nil {
			b.opts.Logger.WarnContext(ctx, "cannot release the welcome claim", "err", rerr)
		}
		return err
	}
	if b.opts.Installations == nil || t.Ref.Scope == nil {
		return nil
	}
	_, err = b.scan(ctx, t.Ref, true)
	return err
}

// removed forgets the conversation and closes its open approvals, saying
// why in their record. Nothing is posted: the bot can no longer post there.
func (b *Bot) removed(ctx context.Context, ref approval.ConversationRef) error {
	if b.opts.Proactive == nil {
		return nil
	}
	p := b.opts.Proactive
	if err := p.Forget(ctx, ref); err != nil {
		return err
	}
	if err := b.opts.Activities.Release(ctx, installedKey(ref.ConversationID)); err != nil {
		return err
	}
	ids, err := p.Followed(ctx, ref.ConversationID)
	if err != nil {
		return err
	}
	now := b.opts.Now().UTC()
	for _, id := range ids {
		// Only the id is at hand: the record is closed if it may still be decided.
		_, err := b.record(ctx, approval.Approval{ID: id}, approval.Outcome{Status: approval.StatusExpired, At: now,
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

// ScanResult is what one look at a conversation did.
type ScanResult struct {
	Posted   int // new approval cards
	Updated  int // cards updated: upgraded outside, superseded, expired
	Reminded int
}

// ScanConversation looks at one conversation the bot is in: it posts a card
// for each pending upgrade never posted before (in a channel, as a new
// post of the channel, not in the thread scanned), and keeps the cards it
// follows true. A conversation the bot no longer knows is skipped.
func (b *Bot) ScanConversation(ctx context.Context, j ScanJob) (ScanResult, error) {
	if b.opts.Proactive == nil || b.opts.Installations == nil {
		return ScanResult{}, nil
	}
	ref, err := b.opts.Conversations.Reference(ctx, j.ConversationID)
	if ErrorCode(err) == CodeNotFound {
		return ScanResult{}, nil
	}
	if err != nil {
		return ScanResult{}, err
	}
	if ref.Scope == nil {
		return ScanResult{}, nil
	}
	return b.scan(ctx, ref, false)
}

// postsOn reports whether the bot may post unprompted in a conversation.
// Quiet mode belongs to a channel, not to the thread it was asked in:
// unprompted cards go to the channel itself.
func (b *Bot) postsOn(ctx context.Context, conversationID string) (bool, error) {
	if b.opts.ProactiveOff {
		return false, nil
	}
	return b.opts.Proactive.NotificationsOn(ctx, approval.BaseConversation(conversationID))
}

func (b *Bot) scan(ctx context.Context, ref approval.ConversationRef, install bool) (ScanResult, error) {
	var res ScanResult
	installed, err := b.opts.Installations.Installed(ctx, *ref.Scope)
	if err != nil {
		return res, err
	}
	ups, err := b.behind(ctx, *ref.Scope, installed)
	if err != nil {
		return res, err
	}
	on, err := b.postsOn(ctx, ref.ConversationID)
	if err != nil {
		return res, err
	}
	if on {
		// An unprompted card starts a thread of its own in the channel,
		// whichever thread the bot was last talked to in; the cards that
		// thread already shows are still followed there (below).
		to := ref.TopLevel()
		for _, u := range ups {
			posted, err := b.postOnce(ctx, to, u, install)
			if err != nil {
				return res, err
			}
			if posted {
				res.Posted++
			}
		}
	}
	if err := b.followUp(ctx, ref, installed, ups, on, &res); err != nil {
		return res, err
	}
	return res, nil
}

// postOnce posts the card for one pending upgrade unless it was posted
// before (here or in another conversation of the same installation) or an
// approval is already open for it. Being added answers like "check" does
// (force): what is pending gets a card unless one is open, and the post
// counts as the one for that installation and target.
func (b *Bot) postOnce(ctx context.Context, ref approval.ConversationRef, u approval.PendingUpgrade, force bool) (bool, error) {
	p, tenant, inst, target := b.opts.Proactive, ref.TenantID, u.Installation.ID, u.Target.ID
	ok, held, err := p.ClaimPost(ctx, tenant, inst, target, b.opts.ClaimStale)
	// Not even when forced while another holds the claim: it posts the open
	// request it finds without a card, so one opened (and posted) here too
	// would be a second card.
	if err != nil || held || !(ok || force) {
		return false, err
	}
	posted, approvalID, err := b.postApproval(ctx, ref, u, ok)
	if !ok {
		return posted, err // not our claim: leave it to its holder
	}
	if err != nil {
		if rerr := p.ReleasePost(ctx, tenant, inst, target); rerr != nil {
			b.opts.Logger.WarnContext(ctx, "cannot release the post claim", "err", rerr)
		}
		return false, err
	}
	return posted, p.PostDone(ctx, tenant, inst, target, approvalID)
}

// postApproval posts the card of the approval open for u, unless it is
// already shown; claimed says this replica holds the post claim, else only
// a request it opens itself is posted (a scan holding the claim may be
// posting the open one right now).
func (b *Bot) postApproval(ctx context.Context, ref approval.ConversationRef, u approval.PendingUpgrade, claimed bool) (bool, string, error) {
	a, created, err := b.opts.Approvals.OpenApproval(ctx, b.newApproval(ref, u, ref.Locale))
	if err != nil {
		return false, "", err
	}
	if !created && (a.CardActivityID != "" || !claimed) {
		return false, a.ID, nil // someone's "check" or scan shows it
	}
	if id, err := b.postCard(ctx, ref, "", a, ref.Locale); err != nil {
		if id != "" {
			return true, a.ID, err // posted; only the record failed
		}
		return false, "", err
	}
	b.opts.Logger.InfoContext(ctx, "proactive card posted", "approval", a.ID, "app", u.Installation.DisplayName,
		"to", u.Target.Version, "conversation_type", ref.ConversationType)
	return true, a.ID, nil
}

// followUp keeps the followed cards of a conversation true: expired ones
// say so, ones upgraded elsewhere or superseded by a newer version say so,
// and ones pending long get their one reminder.
func (b *Bot) followUp(ctx context.Context, ref approval.ConversationRef, installed []approval.Installation, pending []approval.PendingUpgrade, postsOn bool, res *ScanResult) error {
	p := b.opts.Proactive
	ids, err := p.Followed(ctx, ref.ConversationID)
	if err != nil {
		return err
	}
	now := b.opts.Now()
	var next time.Time
	for _, id := range ids {
		a, err := b.opts.Approvals.Approval(ctx, id)
		if ErrorCode(err) == CodeNotFound {
			_ = p.Unfollow(ctx, ref.ConversationID, id)
			continue
		}
		if err != nil {
			return err
		}
		if a.Claimed() {
			next = earliest(next, now.Add(b.claimLease()))
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
			if err := b.close(ctx, a, closeAs, problem); err != nil {
				return err
			}
			res.Updated++
			if err := p.Unfollow(ctx, ref.ConversationID, id); err != nil {
				return err
			}
			continue
		}
		reminded := false
		if !now.Before(a.CreatedAt.Add(b.opts.RemindAfter)) {
			if postsOn && a.CardActivityID != "" {
				sent, err := b.remind(ctx, a)
				if err != nil {
					return err
				}
				if sent {
					res.Reminded++
				}
			}
			reminded = true // quiet conversations are not reminded later either
		}
		next = earliest(next, earliest(b.nextLook(a, reminded), now.Add(b.opts.FollowEvery)))
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
func (b *Bot) remind(ctx context.Context, a approval.Approval) (bool, error) {
	p := b.opts.Proactive
	ok, err := p.ClaimReminder(ctx, a.ID, time.Until(a.ExpiresAt)+b.opts.ApprovalTTL)
	if err != nil || !ok {
		return false, err
	}
	scope := a.Upgrade.Installation.Scope
	r := cards.Reminder{Locale: a.Locale, App: appView(a.Upgrade), Place: placeOf(a.Conversation),
		Approvers: b.approverView(&scope), People: b.approverPeople(ctx, scope),
		RequestedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt}
	if _, err := b.opts.Connector.Reply(ctx, a.Conversation, a.CardActivityID, CardMessage(b.cards.Reminder(r))); err != nil {
		if rerr := p.ReleaseReminder(ctx, a.ID); rerr != nil {
			b.opts.Logger.WarnContext(ctx, "cannot release the reminder claim", "err", rerr)
		}
		return false, err
	}
	return true, nil
}

// approverPeople names who may approve, for @mentions: the owners from our
// tenant when owners approve. Without names (a group, Graph failing) the
// reminder says who may approve in words.
func (b *Bot) approverPeople(ctx context.Context, scope approval.Scope) []cards.Approver {
	if !b.opts.Approvers.Owners || scope.Kind == approval.ScopeUser || b.opts.Directory == nil {
		return nil
	}
	members, err := b.opts.Directory.Members(ctx, scope)
	if err != nil {
		b.opts.Logger.WarnContext(ctx, "cannot list approvers for a reminder", "err", err)
		return nil
	}
	var out []cards.Approver
	for _, m := range members {
		if m.IsOwner() && m.DisplayName != "" && scope.InTenant(m) {
			out = append(out, cards.Approver{ID: m.UserID, Name: m.DisplayName})
		}
	}
	return out
}

// notificationsCommand reads "notifications off" / "notifications on" and
// their Chinese words.
func notificationsCommand(text string) (on bool, ok bool) {
	switch strings.ToLower(strings.Join(strings.Fields(strings.Trim(text, " .!?。！？/")), " ")) {
	case "notifications off", "关闭通知":
		return false, true
	case "notifications on", "开启通知", "打开通知":
		return true, true
	}
	return false, false
}

// setNotifications turns unprompted posts here on or off; only an approver
// may.
func (b *Bot) setNotifications(ctx context.Context, t *Turn, on bool) error {
	locale := t.Activity.Locale
	say := func(s cards.Sentence) error {
		_, err := t.Reply(ctx, Message{Text: b.cards.Sentence(locale, s, nil)})
		return err
	}
	if b.opts.Proactive == nil {
		return say(cards.SentenceNotificationsUnavailable)
	}
	if t.Ref.Scope == nil {
		return say(cards.SentenceNoScope)
	}
	if b.opts.Directory == nil && t.Ref.Scope.Kind != approval.ScopeUser {
		return say(cards.SentenceNoGraph)
	}
	ok, err := b.mayApprove(ctx, *t.Ref.Scope, t.person())
	if err != nil {
		return fmt.Errorf("bot: notifications: %w", err)
	}
	if !ok {
		return say(cards.SentenceNotificationsNotAllowed)
	}
	if err := b.opts.Proactive.SetNotifications(ctx, approval.BaseConversation(t.Ref.ConversationID), on); err != nil {
		return err
	}
	switch {
	case on && b.opts.ProactiveOff:
		return say(cards.SentenceNotificationsOnButOff)
	case on:
		return say(cards.SentenceNotificationsOn)
	}
	return say(cards.SentenceNotificationsOff)
}

// close records that an open approval ended without a decision (expired,
// upgraded outside the bot, superseded) and updates its cards for everyone;
// a superseded one's successor is posted by the scan itself.
func (b *Bot) close(ctx context.Context, a approval.Approval, status approval.Status, problem approval.Problem) error {
	_, err := b.conclude(ctx, a, approval.Outcome{Status: status, At: b.opts.Now(), Problem: problem})
	return err
}
