package bot

import "context"

type commandKey struct{}

// WithCommand names, for what ctx carries down to the adapters, the command
// being handled: "check", "history", "help", a card verb such as "approve",
// or a background job such as "scan". Adapters use it to count their
// requests per command (upgradebot_graph_requests_total{command}). Names
// must come from a fixed set, never from user input.
func WithCommand(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, commandKey{}, name)
}

// CommandFrom returns the command ctx was tagged with, or "".
func CommandFrom(ctx context.Context) string {
	s, _ := ctx.Value(commandKey{}).(string)
	return s
}

// ForAPerson reports whether ctx serves a person's message or click (it
// carries a command): a person is waiting, so its Graph calls go ahead of
// background work's in the tenant's budget rather than wait their turn.
// Background jobs carry none.
func ForAPerson(ctx context.Context) bool { return CommandFrom(ctx) != "" }
