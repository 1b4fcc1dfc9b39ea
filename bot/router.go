package bot

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/upgradeapprovals/bot/cards"
)

// Handler handles one turn. For a card action its response is the bot's
// answer (see InvokeResponse); for other activities it is ignored and may
// be nil.
type Handler func(ctx context.Context, t *Turn) (*InvokeResponse, error)

// InvokeAdaptiveCardAction is the invoke name of an Adaptive Card Action.Execute.
const InvokeAdaptiveCardAction = "adaptiveCard/action"

// Router dispatches by activity type, then invoke name, then card verb; a
// message carrying a card verb is the Action.Submit twin of a click. An
// activity nobody handles gets 200 and is ignored: Teams keeps adding types
// and actions, and rejecting them only makes it retry.
type Router struct {
	types   map[string]Handler
	verbs   map[string]Handler
	unknown Handler
}

// NewRouter returns an empty router.
func NewRouter() *Router {
	return &Router{types: map[string]Handler{}, verbs: map[string]Handler{}}
}

// OnType registers h for an activity type other than invoke. It panics on a
// duplicate registration, which is a programming error.
func (r *Router) OnType(activityType string, h Handler) { register(r.types, "type", activityType, h) }

// OnVerb registers h for a card verb, whether the click arrives as an
// Action.Execute invoke or as its Action.Submit twin.
func (r *Router) OnVerb(verb string, h Handler) { register(r.verbs, "verb", verb, h) }

// OnUnknownVerb registers h for a card action no verb matches: a button of
// a card an earlier release posted, or an invoke without a verb. Without
// it, such an action is refused with CodeInvalid.
func (r *Router) OnUnknownVerb(h Handler) { r.unknown = h }

func register(m map[string]Handler, kind, key string, h Handler) {
	if _, dup := m[key]; dup {
		panic(fmt.Sprintf("bot: %s %q registered twice", kind, key))
	}
	m[key] = h
}

// CardAction is a click on one of the bot's cards, however it arrived: as
// an adaptiveCard/action invoke (Action.Execute) or, from clients without
// Universal Actions, as a message carrying the Action.Submit twin's data.
type CardAction struct {
	Verb string
	// Data is what the card put on the button: only an opaque id, so a
	// card reveals nothing and decides nothing.
	Data cards.ActionData
	// Submit: the click came as a message. Its answer is not the invoke
	// response but a card update or a reply through the connector.
	Submit bool
}

// invokeValue is the value of an adaptiveCard/action invoke.
type invokeValue struct {
	Action struct {
		Type string          `json:"type"`
		Verb string          `json:"verb"`
		Data json.RawMessage `json:"data,omitempty"`
	} `json:"action"`
}

// Route runs the handler that matches the turn's activity.
func (r *Router) Route(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	a := t.Activity
	if string(a.Type) != "invoke" {
		if d, ok := submitted(a); ok {
			if _, known := r.verbs[d.Verb]; !known {
				return nil, nil // a button of some other card
			}
			t.CardAction = &CardAction{Verb: d.Verb, Data: cards.ActionData{ApprovalID: d.ApprovalID}, Submit: true}
			return nil, r.submit(ctx, t)
		}
		if h, ok := r.types[string(a.Type)]; ok {
			return h(ctx, t)
		}
		return nil, nil
	}
	if a.Name == InvokeAdaptiveCardAction {
		var v invokeValue
		_ = json.Unmarshal(a.Value, &v) // an unreadable value has no verb: act refuses it
		t.CardAction = &CardAction{Verb: v.Action.Verb}
		// Data the bot did not write names no approval: the lookup says so.
		_ = json.Unmarshal(v.Action.Data, &t.CardAction.Data)
		return r.act(ctx, t)
	}
	return nil, nil
}

// submitted reads the Action.Submit twin of a card action: a message whose
// value names a verb, sent by clients without Universal Actions.
func submitted(a *Activity) (cards.SubmitData, bool) {
	var d cards.SubmitData
	if a.Type != "message" || len(a.Value) == 0 || json.Unmarshal(a.Value, &d) != nil || d.Verb == "" {
		return d, false
	}
	return d, true
}

// submit decides the Action.Submit twin of a card action with the same
// handler as the invoke; only the answer travels differently: a card
// replaces the clicked one through the connector, and what speaks to the
// clicker alone is a reply.
func (r *Router) submit(ctx context.Context, t *Turn) error {
	resp, err := r.act(ctx, t)
	if err != nil || resp == nil {
		return err
	}
	switch {
	case resp.Card != nil && !resp.ForClicker && t.Activity.ReplyToID != "":
		return t.conn.Update(ctx, t.Ref, t.Activity.ReplyToID, CardMessage(*resp.Card))
	case resp.Card != nil:
		_, err = t.Reply(ctx, CardMessage(*resp.Card))
	case resp.Refusal != nil:
		_, err = t.Reply(ctx, Message{Text: resp.Refusal.Message})
	}
	return err
}

// act decides a card action: the one path for both ways a click arrives.
func (r *Router) act(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	h, ok := r.verbs[t.CardAction.Verb]
	switch {
	case !ok && r.unknown != nil:
		// The verb is the clicker's to choose: the command (a metric
		// label) is not.
		return r.unknown(WithCommand(ctx, "unknown"), t)
	case !ok:
		return Refuse(CodeInvalid, "NotSupported", fmt.Sprintf("unknown card action %q", t.CardAction.Verb)), nil
	}
	return h(WithCommand(ctx, t.CardAction.Verb), t)
}

// InvokeResponse is the bot's answer to a card action: the card that
// replaces the one clicked, or a refusal only the clicker sees. It says
// nothing about HTTP: botframework renders it as the invoke's synchronous
// answer, and the bot itself as a card update or a reply when the click
// came as an Action.Submit. Nil is no answer (for an invoke, a bare 200).
type InvokeResponse struct {
	Card *cards.Card
	// ForClicker: the card speaks to the clicker alone ("you can't
	// approve"). An invoke's card is the clicker's view anyway; a submit
	// must reply with it rather than replace the card everyone shares.
	ForClicker bool
	Refusal    *Refusal
}

// Refusal is a card action the bot did not carry out, and why.
type Refusal struct {
	// Code classifies it; the transport derives its status from the code.
	Code Code
	// Reason is a short name for machines ("NotFound"); default the code.
	Reason string
	// Message is shown to the clicker.
	Message string
}

// InvokeCard answers a card action with a card that replaces the one clicked.
func InvokeCard(card cards.Card) *InvokeResponse { return &InvokeResponse{Card: &card} }

// Refuse answers a card action with a refusal the clicker sees.
func Refuse(code Code, reason, message string) *InvokeResponse {
	if reason == "" {
		reason = string(code)
	}
	return &InvokeResponse{Refusal: &Refusal{Code: code, Reason: reason, Message: message}}
}
