package bot

import (
	"context"
	"time"

	"github.com/upgradeapprovals/bot/approval"
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

// proactive is what the bot does unprompted: it welcomes and forgets as it
// is added and removed, posts cards for new catalog versions, keeps the
// cards it follows true, reminds, and runs the scan jobs that do it.
type proactive struct {
	*plumbing
	store         ProactiveStore // nil: the bot only answers
	off           bool           // Options.ProactiveOff
	approvals     ApprovalStore
	conversations ConversationStore
	activities    ActivityLog
	installations Installations // nil without Graph
	directory     Directory     // nil without Graph
	requests      *requests
	upgrades      *upgrades
	approvers     *approvers
	followups     *followups
	verifier      *verifier
	claimStale    time.Duration // Options.ClaimStale
	ttl           time.Duration // Options.ApprovalTTL
	admins        *admins
}

// ScanResult is what one look at a conversation did.
type ScanResult struct {
	Posted   int // new approval cards
	Updated  int // cards updated: upgraded outside, superseded, expired
	Reminded int
}

// scanConversation looks at one conversation the bot is in: it posts a card
// for each pending upgrade never posted before (in a channel, as a new
// post of the channel, not in the thread scanned), and keeps the cards it
// follows true. A conversation the bot no longer knows is skipped.
func (pr *proactive) scanConversation(ctx context.Context, j ScanJob) (ScanResult, error) {
	if pr.store == nil || pr.installations == nil {
		return ScanResult{}, nil
	}
	ref, err := pr.conversations.Reference(ctx, j.ConversationID)
	if ErrorCode(err) == CodeNotFound {
		return ScanResult{}, nil
	}
	if err != nil {
		return ScanResult{}, err
	}
	if ref.Scope == nil {
		return ScanResult{}, nil
	}
	return pr.scan(ctx, ref, false, sharesCatalogRead(j.Reason))
}

// postsOn reports whether the bot may post unprompted in a conversation.
// Quiet mode belongs to a channel, not to the thread it was asked in:
// unprompted cards go to the channel itself.
func (pr *proactive) postsOn(ctx context.Context, conversationID string) (bool, error) {
	if pr.off {
		return false, nil
	}
	return pr.store.NotificationsOn(ctx, approval.BaseConversation(conversationID))
}

// scan looks at a conversation; shared lets it use the watcher's read of
// the catalog (behindShared).
func (pr *proactive) scan(ctx context.Context, ref approval.ConversationRef, install, shared bool) (ScanResult, error) {
	var res ScanResult
	installed, err := pr.installations.Installed(ctx, *ref.Scope)
	if err != nil {
		return res, err
	}
	behind := pr.requests.behind
	if shared {
		behind = pr.requests.behindShared
	}
	ups, err := behind(ctx, *ref.Scope, installed)
	if err != nil {
		return res, err
	}
	pr.admins.saveScope(ctx, *ref.Scope, ups)
	on, err := pr.postsOn(ctx, ref.ConversationID)
	if err != nil {
		return res, err
	}
	if on && len(ups) > 0 {
		// An unprompted card starts a thread of its own in the channel,
		// whichever thread the bot was last talked to in; the cards that
		// thread already shows are still followed there (below).
		to, ok, err := pr.standardChannel(ctx, ref.TopLevel())
		if err != nil {
			return res, err
		}
		if ok && to.ConversationID != approval.BaseConversation(ref.ConversationID) {
			ok, err = pr.postsOn(ctx, to.ConversationID) // General may be quiet
			if err != nil {
				return res, err
			}
		}
		for i := 0; ok && i < len(ups); i++ {
			posted, err := pr.postOnce(ctx, to, ups[i], install)
			if err != nil {
				return res, err
			}
			if posted {
				res.Posted++
			}
		}
	}
	if err := pr.followUp(ctx, ref, installed, ups, on, &res); err != nil {
		return res, err
	}
	return res, nil
}

// standardChannel is where a team's unprompted cards go: the channel the
// bot was last talked to in if Graph says it is a standard one, which the
// team's members all see, else the team's General channel; never a private
// or shared channel, whoever talked there last. A card posted to General
// makes General the team's channel for cards (its reference is saved), so
// the card is kept true from there. Outside teams: ref. ok is false when
// there is nowhere to post yet: the channel is not known to be standard
// and the reference, saved before it knew its team, does not say which
// channel is General (the next activity in the team does).
func (pr *proactive) standardChannel(ctx context.Context, ref approval.ConversationRef) (to approval.ConversationRef, ok bool, err error) {
	if ref.Scope == nil || ref.Scope.Kind != approval.ScopeTeam || ref.ConversationID == ref.TeamConversationID {
		return ref, true, nil
	}
	kind, err := pr.directory.ChannelMembershipType(ctx, *ref.Scope, ref.ConversationID)
	if err == nil && kind == "standard" {
		return ref, true, nil
	}
	if err != nil {
		pr.log.WarnContext(ctx, "cannot tell whether a channel is standard; its team's cards go to General", "err", err)
	}
	general, ok := ref.General()
	if !ok {
		pr.log.InfoContext(ctx, "no standard channel known for a team's cards yet", "membership_type", kind)
		return ref, false, nil
	}
	if err := pr.conversations.SaveReference(ctx, general); err != nil {
		return ref, false, err
	}
	return general, true, nil
}

// postOnce posts the card for one pending upgrade unless it was posted
// before (here or in another conversation of the same installation) or an
// approval is already open for it. Being added answers like "check" does
// (force): what is pending gets a card unless one is open, and the post
// counts as the one for that installation and target.
func (pr *proactive) postOnce(ctx context.Context, ref approval.ConversationRef, u approval.PendingUpgrade, force bool) (bool, error) {
	p, tenant, inst, target := pr.store, ref.TenantID, u.Installation.ID, u.Target.ID
	ok, held, err := p.ClaimPost(ctx, tenant, inst, target, pr.claimStale)
	// Not even when forced while another holds the claim: it posts the open
	// request it finds without a card, so one opened (and posted) here too
	// would be a second card.
	if err != nil || held || !(ok || force) {
		return false, err
	}
	posted, approvalID, err := pr.postApproval(ctx, ref, u, ok)
	if !ok {
		return posted, err // not our claim: leave it to its holder
	}
	if err != nil {
		if rerr := p.ReleasePost(ctx, tenant, inst, target); rerr != nil {
			pr.log.WarnContext(ctx, "cannot release the post claim", "err", rerr)
		}
		return false, err
	}
	return posted, p.PostDone(ctx, tenant, inst, target, approvalID)
}

// postApproval posts the card of the approval open for u, unless it is
// already shown; claimed says this replica holds the post claim, else only
// a request it opens itself is posted (a scan holding the claim may be
// posting the open one right now).
func (pr *proactive) postApproval(ctx context.Context, ref approval.ConversationRef, u approval.PendingUpgrade, claimed bool) (bool, string, error) {
	a, created, err := pr.requests.open(ctx, ref, u, ref.Locale, nil)
	if err != nil {
		return false, "", err
	}
	if created {
		pr.followups.follow(ctx, a)
	}
	if !created && (a.CardActivityID != "" || !claimed || a.Status == approval.StatusSkipped) {
		return false, a.ID, nil // someone's "check" or scan shows it, or an approver skipped this version
	}
	if id, err := pr.requests.postCard(ctx, ref, "", a, ref.Locale); err != nil {
		if id != "" {
			return true, a.ID, err // posted; only the record failed
		}
		return false, "", err
	}
	pr.log.InfoContext(ctx, "proactive card posted", "approval", a.ID, "app", u.Installation.DisplayName,
		"to", u.Target.Version, "conversation_type", ref.ConversationType)
	return true, a.ID, nil
}
