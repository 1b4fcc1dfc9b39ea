package bot

import (
	"context"
	"slices"
	"time"

	"github.com/upgradeapprovals/bot/approval"
)

// requests opens approvals for what is behind the catalog and posts their
// cards: for check, for a scan and for a superseded request's successor.
type requests struct {
	*plumbing
	approvals     ApprovalStore
	installations Installations
	catalog       Catalog
	ttl           time.Duration // Options.ApprovalTTL
	quorum        int           // Options.ApprovalQuorum
	reads         CatalogReads  // Options.CatalogReads
	readMaxAge    time.Duration // Options.CatalogMaxAge
	consent       *consent
	admins        *admins
}

// open returns the open approval for this upgrade here, or a new one
// (created true), which whoever opened it then follows. A new one is an
// AppUpgradeRequested event, by who asked (nil: the bot, unprompted). One
// its approvers may not consent to, as the tenant's consent policy says,
// needs an admin; one that needed an admin and that the policy now allows
// is pending again (consent.apply tells the admins' card either way).
func (rq *requests) open(ctx context.Context, ref approval.ConversationRef, u approval.PendingUpgrade, locale string, by *approval.Person) (approval.Approval, bool, error) {
	a, created, err := rq.approvals.OpenApproval(ctx, rq.newApproval(ref, u, locale))
	if err != nil {
		return a, created, err
	}
	if created {
		rq.audit(ctx, rq.approvals, a.Event(approval.OpRequested, a.CreatedAt, by, ""))
		rq.admins.approvalChanged(ctx, a)
	}
	return rq.consent.apply(ctx, a), created, nil
}

// newApproval is a request for u in ref, open for ApprovalTTL from now.
func (rq *requests) newApproval(ref approval.ConversationRef, u approval.PendingUpgrade, locale string) approval.Approval {
	a := approval.New(u, ref, locale, rq.now(), rq.ttl)
	a.Quorum = approval.QuorumFor(u.Installation.Scope, rq.quorum)
	return a
}

// postCard posts the card of approval a into ref's conversation (as a
// reply to activity replyTo, when set) and records the message on the
// approval, so that deciding updates it for everyone. The first card is the
// approval's own; another one (a second "check", another channel of the
// team, a post racing it on another replica) is kept true too, up to
// maxOtherCards. It returns the new message's id ("" when the channel gave
// none: then there is nothing to record).
func (rq *requests) postCard(ctx context.Context, ref approval.ConversationRef, replyTo string, a approval.Approval, locale string) (string, error) {
	m := CardMessage(rq.cardFor(a, locale))
	var id string
	var err error
	if replyTo != "" {
		m.Locale = locale
		id, err = rq.conn.Reply(ctx, ref, replyTo, m)
	} else {
		id, err = rq.conn.Send(ctx, ref, m)
	}
	if err != nil || id == "" {
		return id, err
	}
	// The card is out: failing now would make Teams deliver the message
	// again and post a second card. Without the record the card still
	// works (its buttons carry the approval id); only its update for
	// everyone is lost, so the write is retried a little, then logged.
	err = retryStore(ctx, recordRetry, func(ctx context.Context) error {
		// Recording it twice (an earlier try whose answer was lost) changes nothing.
		_, err := rq.approvals.Transition(ctx, a.ID, approval.Statuses(), func(a *approval.Approval) {
			a.RecordCard(approval.PostedCard{Conversation: ref, ActivityID: id})
		})
		return err
	})
	if err != nil {
		rq.log.WarnContext(ctx, "posted a card but cannot record it; it will not be updated for everyone",
			"approval", a.ID, "activity_id", id, "err", err)
	}
	return id, nil
}

// pendingUpgrades is what is installed in scope and behind the catalog:
// the installations, then the catalog definitions of exactly those apps —
// two reads however many apps there are ("check" makes the same two).
func (rq *requests) pendingUpgrades(ctx context.Context, scope approval.Scope) ([]approval.PendingUpgrade, error) {
	installed, err := rq.installations.Installed(ctx, scope)
	if err != nil {
		return nil, err
	}
	return rq.behind(ctx, scope, installed)
}

// behind reads the catalog definitions of the installed apps and returns
// the installations behind them.
func (rq *requests) behind(ctx context.Context, scope approval.Scope, installed []approval.Installation) ([]approval.PendingUpgrade, error) {
	ids := make([]string, 0, len(installed))
	for _, in := range installed {
		if in.TeamsAppID != "" && !slices.Contains(ids, in.TeamsAppID) {
			ids = append(ids, in.TeamsAppID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	defs, err := rq.catalog.Definitions(ctx, scope.TenantID, ids)
	if err != nil {
		return nil, err
	}
	return approval.Behind(installed, defs), nil
}
