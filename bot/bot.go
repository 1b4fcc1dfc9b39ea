// Package bot is the application of the upgrade-approval bot: the activity
// router, the commands, the approval flow, the lists, the background work,
// and the small interfaces it needs from the Bot Framework connector,
// Microsoft Graph and the state store. The rules it applies are the
// domain's (package approval).
package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/infracloudio/msbotbuilder-go/schema"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// Connector writes to Teams conversations through the Bot Framework connector.
type Connector interface {
	// Reply posts m into the conversation as a reply to activity replyToID and
	// returns the new activity's id.
	Reply(ctx context.Context, ref approval.ConversationRef, replyToID string, m Message) (string, error)
	// Send posts m into the conversation and returns the new activity's id.
	Send(ctx context.Context, ref approval.ConversationRef, m Message) (string, error)
	// Update replaces the activity activityID with m.
	Update(ctx context.Context, ref approval.ConversationRef, activityID string, m Message) error
}

// ConversationStore keeps conversation references. A channel's threads
// share the channel's: saving a thread's saves the channel's, and Reference
// of any thread of the channel returns it with the thread's id.
type ConversationStore interface {
	SaveReference(ctx context.Context, ref approval.ConversationRef) error
	// Reference returns an error with CodeNotFound for an unknown conversation.
	Reference(ctx context.Context, conversationID string) (approval.ConversationRef, error)
}

// ActivityLog makes each activity handled once although the channel may
// deliver it more than once.
type ActivityLog interface {
	// Claim reports whether key was not claimed before, and claims it.
	Claim(ctx context.Context, key string) (bool, error)
	// Release forgets a claim so a redelivery is handled again.
	Release(ctx context.Context, key string) error
}

// Options configures a Bot.
type Options struct {
	Connector     Connector
	Conversations ConversationStore
	Activities    ActivityLog
	Approvals     ApprovalStore
	// Installations, Catalog and Directory are Microsoft Graph. Without
	// them (no app identity configured) "check" says Graph is not configured.
	Installations Installations
	Catalog       Catalog
	Directory     Directory
	// Approvers is who may approve (BOT_APPROVERS).
	Approvers approval.ApproverPolicy
	// ApprovalQuorum is how many distinct approvers must approve before an
	// upgrade runs (BOT_APPROVAL_QUORUM); a personal scope always needs one
	// (approval.QuorumFor). Default 1.
	ApprovalQuorum int
	// ApprovalTTL is how long a request stays open (BOT_APPROVAL_TTL).
	// Default 7 days.
	ApprovalTTL time.Duration
	// InvokeWait is how long a card action waits for Graph's upgrade before
	// it answers "upgrading…" (Teams gives up on an invoke after about 15 s);
	// the upgrade goes on and updates the card when it ends. Default 8 s.
	InvokeWait time.Duration
	// UpgradeTimeout bounds one upgrade call to Graph, retries included.
	// An upgrade claim's lease outlives it by a margin, after which the
	// reaper reconciles the claim. Default 60 s.
	UpgradeTimeout time.Duration
	// UpgradeGrace is how long an upgrade whose answer was lost or a 5xx,
	// and whose installation still shows the old version, stays
	// "upgrading…" before the card offers Retry: Graph may show an upgrade
	// that took only minutes later, and a Retry sent meanwhile would
	// upgrade twice. Default 10 min.
	UpgradeGrace time.Duration
	// Parallel bounds how many upgrades of one "approve all" run at once.
	// Default 4.
	Parallel int
	// Proactive, when set, lets the bot act unprompted: welcome when added,
	// forget when removed, post cards for new catalog versions (see
	// ScanConversation) and keep every card true. Nil: it only answers.
	Proactive ProactiveStore
	// ProactiveOff stops unprompted posts everywhere (BOT_PROACTIVE=off);
	// cards are still kept true.
	ProactiveOff bool
	// FollowEvery is how often a conversation with open cards is looked at
	// again, so a card whose app was upgraded elsewhere is updated soon.
	// Default 15 min (the serve command passes BOT_SCAN_INTERVAL).
	FollowEvery time.Duration
	// RemindAfter is when a pending request gets its one reminder
	// (BOT_REMIND_AFTER). Default 72h.
	RemindAfter time.Duration
	// Snooze is how long "Remind me later" puts a request's reminder and
	// any expiry notice off (BOT_SNOOZE). Default 72h.
	Snooze time.Duration
	// Jobs queues background work (the post-upgrade check); Grants reads
	// what an upgrade actually granted. Without them nothing is verified.
	Jobs   JobQueue
	Grants GrantChecker
	// CatalogReads, if set, shares the watcher's read of each tenant's
	// catalog with the sweep and new-version scans it queues; they use it
	// while it is no older than CatalogMaxAge (default 15 min; the serve
	// command passes BOT_SCAN_INTERVAL). Nil: every scan reads the catalog.
	CatalogReads  CatalogReads
	CatalogMaxAge time.Duration
	// Checks limits "check" to one Graph read per conversation per
	// CheckWindow; a repeat within it points at the answer given. Nil:
	// every check reads Graph.
	Checks CheckWindows
	// CheckWindow is how long a check's answer stands for its
	// conversation. Default 30 s.
	CheckWindow time.Duration
	// Consent reads each tenant's consent policy (who may consent to
	// resource-specific permissions); ConsentCache keeps what it read for
	// ConsentMaxAge (default 15 min; the serve command passes
	// BOT_SCAN_INTERVAL), shared by every replica. Nil Consent: nothing is
	// known of the policy, and approvers get every card as before; an
	// upgrade Graph refuses for consent still waits for an admin.
	Consent       ConsentPolicies
	ConsentCache  ConsentCache
	ConsentMaxAge time.Duration
	// ClaimStale is how long a proactive post may look in flight before
	// another replica takes it over (its replica died). Default 2 min.
	ClaimStale time.Duration
	// AdminConversation is the admins' conversation (BOT_ADMIN_CONVERSATION):
	// one card per app version needing an admin, "inventory", the digest.
	// Empty, or AdminStore nil: there is none.
	AdminConversation string
	AdminStore        AdminStore
	// Admins is who may ask there (BOT_ADMINS); the zero policy: nobody.
	Admins approval.ApproverPolicy
	// DigestEvery is how often the admins get a digest (BOT_DIGEST_INTERVAL);
	// 0: never.
	DigestEvery time.Duration
	// InventoryTop is how many apps the inventory card shows. Default 10.
	InventoryTop int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Bot handles authenticated activities: the front the wiring and the Bot
// Framework endpoint use. Each capability is a part of its own, given only
// the options it uses; Bot routes activities to them and runs their
// background work.
type Bot struct {
	router        *Router
	conn          Connector
	conversations ConversationStore
	activities    ActivityLog
	log           *slog.Logger
	now           func() time.Time

	decisions *decisions
	upgrades  *upgrades
	lists     *lists
	proactive *proactive
	verifier  *verifier
	admins    *admins
}

// New returns a Bot. Connector, Conversations, Activities and Approvals are
// required; Installations, Catalog and Directory come together.
func New(opts Options) (*Bot, error) {
	if opts.Connector == nil || opts.Conversations == nil || opts.Activities == nil || opts.Approvals == nil {
		return nil, errors.New("bot: Connector, Conversations, Activities and Approvals are required")
	}
	if (opts.Installations == nil) != (opts.Directory == nil) || (opts.Installations == nil) != (opts.Catalog == nil) {
		return nil, errors.New("bot: Installations, Catalog and Directory come together")
	}
	if opts.ApprovalTTL <= 0 {
		opts.ApprovalTTL = 7 * 24 * time.Hour
	}
	if opts.InvokeWait <= 0 {
		opts.InvokeWait = 8 * time.Second
	}
	if opts.UpgradeTimeout <= 0 {
		opts.UpgradeTimeout = time.Minute
	}
	if opts.UpgradeGrace <= 0 {
		opts.UpgradeGrace = 10 * time.Minute
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	if opts.RemindAfter <= 0 {
		opts.RemindAfter = 72 * time.Hour
	}
	if opts.Snooze <= 0 {
		opts.Snooze = 72 * time.Hour
	}
	if opts.FollowEvery <= 0 {
		opts.FollowEvery = 15 * time.Minute
	}
	if opts.CatalogMaxAge <= 0 {
		opts.CatalogMaxAge = 15 * time.Minute
	}
	if opts.ConsentMaxAge <= 0 {
		opts.ConsentMaxAge = 15 * time.Minute
	}
	if opts.CheckWindow <= 0 {
		opts.CheckWindow = 30 * time.Second
	}
	if opts.ClaimStale <= 0 {
		opts.ClaimStale = 2 * time.Minute
	}
	if opts.InventoryTop <= 0 {
		opts.InventoryTop = 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c, err := cards.New()
	if err != nil {
		return nil, fmt.Errorf("bot: %w", err)
	}
	pl := &plumbing{cards: c, conn: opts.Connector, log: opts.Logger, now: opts.Now, policy: opts.Approvers}
	ad := &admins{plumbing: pl, conversationID: opts.AdminConversation, store: opts.AdminStore, conversations: opts.Conversations, approvals: opts.Approvals,
		approvers: &approvers{policy: opts.Admins, directory: opts.Directory, log: opts.Logger}, claimStale: opts.ClaimStale,
		digestEvery: opts.DigestEvery, topApps: opts.InventoryTop}
	pl.askAdmin = ad.on()
	ls := &lists{plumbing: pl, approvals: opts.Approvals}
	pb := &publisher{plumbing: pl, approvals: opts.Approvals, lists: ls, admins: ad}
	cs := &consent{plumbing: pl, policies: opts.Consent, cache: opts.ConsentCache, maxAge: opts.ConsentMaxAge,
		approvals: opts.Approvals, publisher: pb}
	rq := &requests{plumbing: pl, approvals: opts.Approvals, installations: opts.Installations, catalog: opts.Catalog,
		ttl: opts.ApprovalTTL, quorum: opts.ApprovalQuorum, reads: opts.CatalogReads, readMaxAge: opts.CatalogMaxAge, consent: cs,
		admins: ad}
	fu := &followups{store: opts.Proactive, every: opts.FollowEvery, remindAfter: opts.RemindAfter, log: opts.Logger}
	ap := &approvers{policy: opts.Approvers, directory: opts.Directory, log: opts.Logger}
	vf := &verifier{plumbing: pl, approvals: opts.Approvals, installations: opts.Installations, grants: opts.Grants,
		jobs: opts.Jobs, publisher: pb}
	up := &upgrades{plumbing: pl, approvals: opts.Approvals, installations: opts.Installations, catalog: opts.Catalog,
		requests: rq, followups: fu, publisher: pb, verifier: vf, timeout: opts.UpgradeTimeout, grace: opts.UpgradeGrace}
	dc := &decisions{plumbing: pl, approvals: opts.Approvals, haveGraph: opts.Installations != nil, approvers: ap,
		upgrades: up, lists: ls, snooze: opts.Snooze, afterReminder: max(opts.ApprovalTTL-opts.RemindAfter, 0), invokeWait: opts.InvokeWait, upgradeTimeout: opts.UpgradeTimeout, parallel: opts.Parallel,
		admins: ad}
	cm := &commands{plumbing: pl, approvals: opts.Approvals, installations: opts.Installations, requests: rq, lists: ls,
		approvers: ap, followups: fu, off: opts.ProactiveOff, checks: opts.Checks, checkWindow: opts.CheckWindow, admins: ad}
	pr := &proactive{plumbing: pl, store: opts.Proactive, off: opts.ProactiveOff, approvals: opts.Approvals,
		conversations: opts.Conversations, activities: opts.Activities, installations: opts.Installations, directory: opts.Directory,
		requests: rq, upgrades: up, approvers: ap, followups: fu, verifier: vf, claimStale: opts.ClaimStale,
		ttl: opts.ApprovalTTL, admins: ad}
	if opts.Proactive != nil {
		cm.notifications = opts.Proactive
	}
	b := &Bot{router: NewRouter(), conn: opts.Connector, conversations: opts.Conversations, activities: opts.Activities,
		log: opts.Logger, now: opts.Now, decisions: dc, upgrades: up, lists: ls, proactive: pr, verifier: vf, admins: ad}
	b.router.OnType("message", cm.onMessage)
	// Teams sends both when the bot is added; the welcome is deduped.
	b.router.OnType("conversationUpdate", pr.onConversationUpdate)
	b.router.OnType("installationUpdate", pr.onInstallationUpdate)
	b.router.OnVerb(cards.VerbApprove, dc.onDecide)
	b.router.OnVerb(cards.VerbReject, dc.onDecide)
	b.router.OnVerb(cards.VerbRetry, dc.onDecide)
	b.router.OnVerb(cards.VerbSkip, dc.onDecide)
	b.router.OnVerb(cards.VerbSnooze, dc.onSnooze)
	b.router.OnVerb(cards.VerbAskAdmin, dc.onAskAdmin)
	b.router.OnVerb(cards.VerbReview, dc.onReview)
	b.router.OnVerb(cards.VerbApproveAll, dc.onApproveAll)
	b.router.OnUnknownVerb(dc.onUnknownVerb)
	return b, nil
}

// Turn is one activity being handled.
type Turn struct {
	Activity *Activity
	// Text is the message text without the bot's @mention, trimmed.
	Text string
	// Ref is the conversation the activity came from.
	Ref approval.ConversationRef
	// CardAction is set for a click on a card (invoke or submit).
	CardAction *CardAction

	conn Connector
}

// Reply answers the turn's activity in its conversation.
func (t *Turn) Reply(ctx context.Context, m Message) (string, error) {
	if m.Locale == "" {
		m.Locale = t.Activity.Locale
	}
	return t.conn.Reply(ctx, t.Ref, t.Activity.ID, m)
}

// approvalID is the approval (or, for approve all, the batch) the clicked
// card names.
func (t *Turn) approvalID() string {
	if t.CardAction == nil {
		return ""
	}
	return t.CardAction.Data.ApprovalID
}

func (t *Turn) person() approval.Person {
	f := t.Activity.From
	return approval.Person{ID: f.ID, AADObjectID: f.AadObjectID, Name: f.Name}
}

// Handle handles one authenticated activity: at most once per activity id,
// after remembering the conversation it came from. On error the claim on the
// activity is released so that the channel's redelivery is handled again.
func (b *Bot) Handle(ctx context.Context, a *Activity) (*InvokeResponse, error) {
	ref := a.Reference(b.now())
	saveRef := ref.ConversationID != "" && ref.ServiceURL != ""
	key := ""
	// Invokes are not deduplicated: Teams waits for their answer, so a
	// redelivered card action must get one, and every card action is
	// idempotent through the approval's own state (one claim wins). A
	// dedupe claim left behind by a failure would otherwise swallow the
	// redelivery of an approval.
	if a.ID != "" && a.Conversation.ID != "" && a.Type != "invoke" {
		key = a.Conversation.ID + "|" + a.ID
		var first bool
		var err error
		if rc, ok := b.activities.(ReferenceClaimer); ok && saveRef {
			first, err = rc.ClaimAndSaveReference(ctx, key, ref)
			saveRef = false
		} else {
			first, err = b.activities.Claim(ctx, key)
		}
		if err != nil {
			return nil, err
		}
		if !first {
			b.log.DebugContext(ctx, "duplicate activity ignored", "activity_id", a.ID, "type", a.Type)
			return nil, nil
		}
	}
	if key != "" {
		// A panic (recovered further up as a 500) must not leave the claim
		// behind, or Teams' redelivery would be dropped as a duplicate.
		defer func() {
			if p := recover(); p != nil {
				b.release(ctx, key, a.ID)
				panic(p)
			}
		}()
	}
	resp, err := b.handle(ctx, a, ref, saveRef)
	if err != nil && key != "" {
		b.release(ctx, key, a.ID)
	}
	return resp, err
}

func (b *Bot) release(ctx context.Context, key, activityID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := b.activities.Release(ctx, key); err != nil {
		b.log.WarnContext(ctx, "cannot release activity claim", "activity_id", activityID, "err", err)
	}
}

// ReferenceClaimer is an ActivityLog that claims an activity and saves its
// conversation's reference in one round trip, as every activity needs both;
// Handle uses it when the ActivityLog offers it.
type ReferenceClaimer interface {
	ClaimAndSaveReference(ctx context.Context, key string, ref approval.ConversationRef) (bool, error)
}

func (b *Bot) handle(ctx context.Context, a *Activity, ref approval.ConversationRef, saveRef bool) (*InvokeResponse, error) {
	if saveRef {
		if err := b.conversations.SaveReference(ctx, ref); err != nil {
			return nil, err
		}
	}
	t := &Turn{Activity: a, Text: a.TextWithoutMention(), Ref: ref, conn: b.conn}
	return b.router.Route(ctx, t)
}

// Drain waits until the decisions still running after their invoke was
// answered have ended, then for the list redraws they started, or until ctx
// ends. Call it after the HTTP server stopped and before the store closes.
func (b *Bot) Drain(ctx context.Context) error {
	if err := b.decisions.drain(ctx); err != nil {
		return err
	}
	if err := b.lists.redraws.Wait(ctx); err != nil {
		return fmt.Errorf("bot: lists still being redrawn: %w", err)
	}
	return nil
}

// DrainTimeout is how long Drain may need: one upgrade and its records.
func (b *Bot) DrainTimeout() time.Duration { return b.upgrades.timeout + 3*recordTimeout }

// RunScans consumes scan jobs until ctx ends. A job is acknowledged only
// after its work and records are written; a throttled tenant delays the
// job by what Graph's Retry-After asked (10 s when it did not say), or by
// the budget's wait, and never drops it.
func (b *Bot) RunScans(ctx context.Context, o WorkerOptions) error {
	return b.proactive.runScans(ctx, o)
}

// ScanConversation looks at one conversation the bot is in: it posts a card
// for each pending upgrade never posted before (in a channel, as a new
// post of the channel, not in the thread scanned), and keeps the cards it
// follows true. A conversation the bot no longer knows is skipped.
func (b *Bot) ScanConversation(ctx context.Context, j ScanJob) (ScanResult, error) {
	return b.proactive.scanConversation(ctx, j)
}

// VerifyUpgrade re-reads an upgraded installation and the RSC grants in its
// scope and says on the card whether the new version runs with exactly the
// consented permissions, naming any that did not take.
func (b *Bot) VerifyUpgrade(ctx context.Context, approvalID string) error {
	return b.verifier.verifyUpgrade(ctx, approvalID)
}

// Reap reconciles upgrade claims whose lease has ended (see upgrades.reap)
// and returns how many it settled.
func (b *Bot) Reap(ctx context.Context) (int, error) { return b.upgrades.reap(ctx) }

// RunReaper runs Reap every interval on whichever replica holds the reaper
// lease, until ctx ends. A claim is thus reconciled within its lease plus
// about two intervals of its replica dying.
func (b *Bot) RunReaper(ctx context.Context, leases Leases, every time.Duration) {
	b.upgrades.runReaper(ctx, leases, every)
}

// CardMessage is a message holding one Adaptive Card and no text: Teams (and
// the Agents Playground) return the activity id, needed to update the card
// later, only for a single-attachment message.
func CardMessage(card cards.Card) Message {
	return Message{Attachments: []schema.Attachment{{ContentType: cards.ContentType, Content: card}}}
}
