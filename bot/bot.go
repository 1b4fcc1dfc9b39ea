// Package bot is the domain of the upgrade-approval bot: the activity router,
// the approval flow, its types, and the small interfaces it needs from the
// Bot Framework connector, Microsoft Graph and the state store.
package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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
	// Jobs queues background work (the post-upgrade check); Grants reads
	// what an upgrade actually granted. Without them nothing is verified.
	Jobs   JobQueue
	Grants GrantChecker
	// ClaimStale is how long a proactive post may look in flight before
	// another replica takes it over (its replica died). Default 2 min.
	ClaimStale time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Bot handles authenticated activities.
type Bot struct {
	opts   Options
	router *Router
	cards  *cards.Cards
	// inflight counts decisions still running after their invoke was
	// answered; Drain waits for them before the store goes away.
	inflight sync.WaitGroup
	// redraws are list redraws: a change of one approval redraws every
	// list it is in (up to Approvals' bounds), which no click's answer,
	// and no approve-all slot, should wait for.
	redraws background
	// help holds the help card rendered as JSON per locale (see helpCard).
	help      sync.Map // string → json.RawMessage
	helpCount atomic.Int32
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
	if opts.FollowEvery <= 0 {
		opts.FollowEvery = 15 * time.Minute
	}
	if opts.ClaimStale <= 0 {
		opts.ClaimStale = 2 * time.Minute
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
	b := &Bot{opts: opts, router: NewRouter(), cards: c}
	if opts.Proactive != nil {
		b.opts.Approvals = followedApprovals{ApprovalStore: opts.Approvals, b: b}
	}
	b.router.OnType("message", b.onMessage)
	// Teams sends both when the bot is added; the welcome is deduped.
	b.router.OnType("conversationUpdate", b.onConversationUpdate)
	b.router.OnType("installationUpdate", b.onInstallationUpdate)
	b.router.OnVerb(cards.VerbApprove, b.onDecide)
	b.router.OnVerb(cards.VerbReject, b.onDecide)
	b.router.OnVerb(cards.VerbRetry, b.onDecide)
	b.router.OnVerb(cards.VerbReview, b.onReview)
	b.router.OnVerb(cards.VerbApproveAll, b.onApproveAll)
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

// Handle handles one authenticated activity: at most once per activity id,
// after remembering the conversation it came from. On error the claim on the
// activity is released so that the channel's redelivery is handled again.
func (b *Bot) Handle(ctx context.Context, a *Activity) (*InvokeResponse, error) {
	ref := a.Reference(b.opts.Now())
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
		if rc, ok := b.opts.Activities.(ReferenceClaimer); ok && saveRef {
			first, err = rc.ClaimAndSaveReference(ctx, key, ref)
			saveRef = false
		} else {
			first, err = b.opts.Activities.Claim(ctx, key)
		}
		if err != nil {
			return nil, err
		}
		if !first {
			b.opts.Logger.DebugContext(ctx, "duplicate activity ignored", "activity_id", a.ID, "type", a.Type)
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
	if err := b.opts.Activities.Release(ctx, key); err != nil {
		b.opts.Logger.WarnContext(ctx, "cannot release activity claim", "activity_id", activityID, "err", err)
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
		if err := b.opts.Conversations.SaveReference(ctx, ref); err != nil {
			return nil, err
		}
	}
	t := &Turn{Activity: a, Text: a.TextWithoutMention(), Ref: ref, conn: b.opts.Connector}
	return b.router.Route(ctx, t)
}

func (b *Bot) onMessage(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	var submit cards.SubmitData
	if len(t.Activity.Value) > 0 && json.Unmarshal(t.Activity.Value, &submit) == nil && submit.Verb != "" {
		if _, ok := b.router.verbs[submit.Verb]; !ok {
			return nil, nil // a button of some other card
		}
		return nil, b.onSubmit(ctx, t, submit)
	}
	if t.Text == "" {
		return nil, nil // an attachment without words
	}
	if on, ok := notificationsCommand(t.Text); ok {
		return nil, b.setNotifications(ctx, t, on)
	}
	ctx = WithCommand(ctx, command(t.Text))
	switch command(t.Text) {
	case "check":
		return nil, b.check(ctx, t)
	case "history":
		return nil, b.history(ctx, t)
	}
	// Anything else answers with help, so a typo is never met with silence.
	_, err := t.Reply(ctx, Message{Attachments: []schema.Attachment{{ContentType: cards.ContentType, Content: b.helpCard(t.Activity.Locale)}}})
	return nil, err
}

// maxHelpLocales bounds the help cards kept: locales come from activities.
const maxHelpLocales = 64

// helpCard is the help card for locale as JSON, rendered once per locale:
// help is the most common answer, and translating and encoding its card
// was the largest share of the memory a help costs.
func (b *Bot) helpCard(locale string) any {
	if c, ok := b.help.Load(locale); ok {
		return c
	}
	card := b.cards.Help(locale)
	raw, err := json.Marshal(card)
	if err != nil {
		return card
	}
	if b.helpCount.Add(1) <= maxHelpLocales {
		b.help.Store(locale, json.RawMessage(raw))
	}
	return json.RawMessage(raw)
}

// CardMessage is a message holding one Adaptive Card and no text: Teams (and
// the Agents Playground) return the activity id, needed to update the card
// later, only for a single-attachment message.
func CardMessage(card cards.Card) Message {
	return Message{Attachments: []schema.Attachment{{ContentType: cards.ContentType, Content: card}}}
}
