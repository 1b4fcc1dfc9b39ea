package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infracloudio/msbotbuilder-go/schema"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// commands answers what people type: check, history, notifications on or
// off, and help for anything else.
type commands struct {
	*plumbing
	approvals     ApprovalStore
	installations Installations // nil without Graph
	requests      *requests
	lists         *lists
	approvers     *approvers
	followups     *followups
	notifications Notifications // nil: the bot only answers
	off           bool          // Options.ProactiveOff
	checks        CheckWindows  // nil: no limit
	checkWindow   time.Duration
	admins        *admins
	// help holds the help card rendered as JSON per locale (see helpCard).
	help      sync.Map // string → json.RawMessage
	helpCount atomic.Int32
}

// command reads a message as one of the bot's commands, in English or
// Chinese; anything else is help.
func command(text string) string {
	switch strings.ToLower(strings.Trim(text, " .!?。！？/")) {
	case "check", "检查":
		return "check"
	case "history", "历史":
		return "history"
	case "inventory", "清单":
		return "inventory"
	}
	return "help"
}

// onMessage answers a message: a command, or help for anything else.
func (cm *commands) onMessage(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	if t.Text == "" {
		return nil, nil // an attachment without words
	}
	if on, ok := notificationsCommand(t.Text); ok {
		return nil, cm.setNotifications(ctx, t, on)
	}
	ctx = WithCommand(ctx, command(t.Text))
	switch command(t.Text) {
	case "check":
		return nil, cm.check(ctx, t)
	case "history":
		return nil, cm.history(ctx, t)
	case "inventory":
		return nil, cm.admins.inventory(ctx, t)
	}
	// Anything else answers with help, so a typo is never met with silence.
	_, err := t.Reply(ctx, Message{Attachments: []schema.Attachment{{ContentType: cards.ContentType, Content: cm.helpCard(t.Activity.Locale)}}})
	return nil, err
}

// maxHelpLocales bounds the help cards kept: locales come from activities.
const maxHelpLocales = 64

// helpCard is the help card for locale as JSON, rendered once per locale:
// help is the most common answer, and translating and encoding its card
// was the largest share of the memory a help costs.
func (cm *commands) helpCard(locale string) any {
	if c, ok := cm.help.Load(locale); ok {
		return c
	}
	card := cm.cards.Help(locale)
	raw, err := json.Marshal(card)
	if err != nil {
		return card
	}
	if cm.helpCount.Add(1) <= maxHelpLocales {
		cm.help.Store(locale, json.RawMessage(raw))
	}
	return json.RawMessage(raw)
}

// check answers "check": every pending upgrade here, each as an approval.
func (cm *commands) check(ctx context.Context, t *Turn) error {
	locale := t.Activity.Locale
	say := func(s cards.Sentence, data map[string]any) error {
		_, err := t.Reply(ctx, Message{Text: cm.cards.Sentence(locale, s, data)})
		return err
	}
	if cm.installations == nil {
		return say(cards.SentenceNoGraph, nil)
	}
	if t.Ref.Scope == nil {
		return say(cards.SentenceNoScope, nil)
	}
	if cm.checks != nil {
		// A channel's threads are one conversation: one Graph read answers them all.
		conv, at := approval.BaseConversation(t.Ref.ConversationID), cm.now()
		claimed, since, err := cm.checks.ClaimCheck(ctx, conv, at, cm.checkWindow)
		if err != nil {
			return err
		}
		if !claimed {
			wait := max(time.Second, since.Add(cm.checkWindow).Sub(at)).Round(time.Second)
			return say(cards.SentenceCheckRecent, map[string]any{"Seconds": int(wait / time.Second)})
		}
		ok, err := cm.checkGraph(ctx, t, say)
		if err != nil || !ok {
			// What failed is worth retrying at once.
			if rerr := cm.checks.ReleaseCheck(context.WithoutCancel(ctx), conv, at); rerr != nil {
				cm.log.WarnContext(ctx, "cannot release a check's window", "err", rerr)
			}
		}
		return err
	}
	_, err := cm.checkGraph(ctx, t, say)
	return err
}

// checkGraph reads the installations here from Graph and answers with
// their pending upgrades; ok is false when Graph could not say.
func (cm *commands) checkGraph(ctx context.Context, t *Turn, say func(cards.Sentence, map[string]any) error) (ok bool, err error) {
	locale := t.Activity.Locale
	installed, err := cm.installations.Installed(ctx, *t.Ref.Scope)
	var ups []approval.PendingUpgrade
	if err == nil {
		ups, err = cm.requests.behind(ctx, *t.Ref.Scope, installed)
	}
	if err != nil {
		cm.log.WarnContext(ctx, "check failed", "scope", t.Ref.Scope.Kind, "err", err)
		return false, say(cards.SentenceCheckFailed, map[string]any{"Problem": problemView(approval.ProblemOf(err))})
	}
	place := placeOf(t.Ref)
	if len(ups) == 0 {
		_, err := t.Reply(ctx, CardMessage(cm.cards.UpToDate(cards.UpToDate{Locale: locale, Place: place, Apps: installedView(installed)})))
		return true, err
	}
	approvals := make([]approval.Approval, 0, len(ups))
	who := t.person()
	for _, u := range ups {
		a, created, err := cm.requests.open(ctx, t.Ref, u, locale, &who)
		if err != nil {
			return false, err
		}
		if created {
			cm.followups.follow(ctx, a)
		}
		approvals = append(approvals, a)
	}
	if len(approvals) == 1 {
		_, err := cm.requests.postCard(ctx, t.Ref, t.Activity.ID, approvals[0], locale)
		return true, err
	}
	// Several: lists, each as many apps as fit in one Teams message.
	for len(approvals) > 0 {
		n := len(approvals)
		for n > 1 && cm.lists.listSize(t, approvals[:n]) > maxCardBytes {
			n--
		}
		if err := cm.lists.postList(ctx, t, approvals[:n]); err != nil {
			return true, err
		}
		approvals = approvals[n:]
	}
	return true, nil
}

// history answers "history".
func (cm *commands) history(ctx context.Context, t *Turn) error {
	// A channel's threads (";messageid=…") share the channel's history.
	events, err := cm.approvals.Audit(ctx, approval.BaseConversation(t.Ref.ConversationID), 10)
	if err != nil {
		return err
	}
	h := cards.History{Locale: t.Activity.Locale}
	for _, e := range events {
		if _, ended := outcomeKind[e.Status]; !ended {
			continue // waiting for an admin: not a decision
		}
		h.Events = append(h.Events, cards.HistoryEvent{At: e.At, Kind: outcomeKind[e.Status], Actor: e.Actor,
			App: e.App, From: e.From, To: e.To})
	}
	_, err = t.Reply(ctx, CardMessage(cm.cards.History(h)))
	return err
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
func (cm *commands) setNotifications(ctx context.Context, t *Turn, on bool) error {
	locale := t.Activity.Locale
	say := func(s cards.Sentence) error {
		_, err := t.Reply(ctx, Message{Text: cm.cards.Sentence(locale, s, nil)})
		return err
	}
	if cm.notifications == nil {
		return say(cards.SentenceNotificationsUnavailable)
	}
	if t.Ref.Scope == nil {
		return say(cards.SentenceNoScope)
	}
	// Without Graph (Installations come with Directory) only a personal
	// scope's user is known to be its approver.
	if cm.installations == nil && t.Ref.Scope.Kind != approval.ScopeUser {
		return say(cards.SentenceNoGraph)
	}
	ok, err := cm.approvers.mayApprove(ctx, *t.Ref.Scope, t.person())
	if err != nil {
		return fmt.Errorf("bot: notifications: %w", err)
	}
	if !ok {
		return say(cards.SentenceNotificationsNotAllowed)
	}
	if err := cm.notifications.SetNotifications(ctx, approval.BaseConversation(t.Ref.ConversationID), on); err != nil {
		return err
	}
	switch {
	case on && cm.off:
		return say(cards.SentenceNotificationsOnButOff)
	case on:
		return say(cards.SentenceNotificationsOn)
	}
	return say(cards.SentenceNotificationsOff)
}
