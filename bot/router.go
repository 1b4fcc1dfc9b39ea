package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Handler handles one turn. For an invoke its response is the synchronous
// invoke response; for other activities it is ignored and may be nil.
type Handler func(ctx context.Context, t *Turn) (*InvokeResponse, error)

// InvokeAdaptiveCardAction is the invoke name of an Adaptive Card Action.Execute.
const InvokeAdaptiveCardAction = "adaptiveCard/action"

// Router dispatches by activity type, then invoke name, then card verb. An
// activity nobody handles gets 200 and is ignored: Teams keeps adding types
// and actions, and rejecting them only makes it retry.
type Router struct {
	types map[string]Handler
	verbs map[string]Handler
}

// NewRouter returns an empty router.
func NewRouter() *Router {
	return &Router{types: map[string]Handler{}, verbs: map[string]Handler{}}
}

// OnType registers h for an activity type other than invoke. It panics on a
// duplicate registration, which is a programming error.
func (r *Router) OnType(activityType string, h Handler) { register(r.types, "type", activityType, h) }

// OnVerb registers h for the verb of an adaptiveCard/action invoke.
func (r *Router) OnVerb(verb string, h Handler) { register(r.verbs, "verb", verb, h) }

func register(m map[string]Handler, kind, key string, h Handler) {
	if _, dup := m[key]; dup {
		panic(fmt.Sprintf("bot: %s %q registered twice", kind, key))
	}
	m[key] = h
}

// CardAction is the value of an adaptiveCard/action invoke.
type CardAction struct {
	Action struct {
		Type string          `json:"type"`
		Verb string          `json:"verb"`
		Data json.RawMessage `json:"data,omitempty"`
	} `json:"action"`
	Trigger string `json:"trigger,omitempty"` // "manual" or "automatic" (a refresh)
}

// Route runs the handler that matches the turn's activity.
func (r *Router) Route(ctx context.Context, t *Turn) (*InvokeResponse, error) {
	a := t.Activity
	if string(a.Type) != "invoke" {
		if h, ok := r.types[string(a.Type)]; ok {
			return h(ctx, t)
		}
		return nil, nil
	}
	if a.Name == InvokeAdaptiveCardAction {
		var v CardAction
		if err := json.Unmarshal(a.Value, &v); err != nil || v.Action.Verb == "" {
			return InvokeError(http.StatusBadRequest, "BadRequest", "the card action has no verb"), nil
		}
		t.CardAction = &v
		if h, ok := r.verbs[v.Action.Verb]; ok {
			return h(WithCommand(ctx, v.Action.Verb), t)
		}
		return InvokeError(http.StatusBadRequest, "NotSupported", fmt.Sprintf("unknown card action %q", v.Action.Verb)), nil
	}
	return &InvokeResponse{Status: http.StatusOK}, nil
}

// Universal Actions response types.
const (
	ResponseTypeCard  = "application/vnd.microsoft.card.adaptive"
	ResponseTypeError = "application/vnd.microsoft.error"
)

// InvokeCard answers an Action.Execute with a card that replaces the one clicked.
func InvokeCard(card any) *InvokeResponse {
	return &InvokeResponse{Status: http.StatusOK, Body: map[string]any{
		"statusCode": http.StatusOK, "type": ResponseTypeCard, "value": card,
	}}
}

// InvokeError answers an Action.Execute with an error Teams shows to the user.
// The HTTP status stays 200: the error travels in the body.
func InvokeError(status int, code, message string) *InvokeResponse {
	return &InvokeResponse{Status: http.StatusOK, Body: map[string]any{
		"statusCode": status, "type": ResponseTypeError,
		"value": map[string]string{"code": code, "message": message},
	}}
}
