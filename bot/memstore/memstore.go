// Package memstore is an in-memory, concurrency-safe implementation of the
// application's stores (bot.ApprovalStore with its Claims and AuditTrail,
// bot.ConversationStore, bot.ActivityLog and bot.CheckWindows) for tests.
// It passes the same conformance suite as the Redis store (bot/storetest),
// and can be made to fail as Redis does.
package memstore

import (
	"encoding/json"

	"github.com/upgradeapprovals/bot/bot"
)

var (
	_ bot.ApprovalStore     = (*Store)(nil)
	_ bot.ConversationStore = (*Store)(nil)
	_ bot.ActivityLog       = (*Store)(nil)
	_ bot.CheckWindows      = (*Store)(nil)
)

// Store is every store the application uses, kept in process memory, in
// the parts the Redis store has: approval records (with each tenant's
// audit trail and each conversation's history) and conversations. What it
// returns is a copy, as encoded and decoded in JSON as the Redis store
// does, so nothing a caller does to it changes what is stored. Leases run
// on the wall clock, as Redis's TTLs do. The zero value is not usable:
// call New.
type Store struct {
	*ApprovalRecords
	*Conversations
}

// New returns an empty Store.
func New() *Store {
	return &Store{ApprovalRecords: newApprovalRecords(), Conversations: newConversations()}
}

// clone returns v encoded and decoded in JSON, as the Redis store keeps
// it: what the store holds and what it hands out share nothing, and
// anything JSON would drop is dropped here too.
func clone[T any](v T) T {
	b, err := json.Marshal(v)
	if err != nil {
		panic("memstore: encode: " + err.Error()) // the domain's types always encode
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		panic("memstore: decode: " + err.Error())
	}
	return out
}
