package memstore

import (
	"context"
	"sync"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
)

// Conversations keeps conversation references, the activities handled
// and each conversation's check window.
type Conversations struct {
	mu     sync.Mutex
	refs   map[string]approval.ConversationRef // by top-level conversation id
	claims map[string]bool
	checks map[string][2]time.Time // check windows by conversation: began, ends
}

func newConversations() *Conversations {
	return &Conversations{refs: map[string]approval.ConversationRef{}, claims: map[string]bool{}, checks: map[string][2]time.Time{}}
}

// SaveReference implements bot.ConversationStore: a thread's reference is
// stored as its channel's.
func (s *Conversations) SaveReference(_ context.Context, ref approval.ConversationRef) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref = clone(ref.TopLevel())
	s.refs[ref.ConversationID] = ref
	return nil
}

// Reference implements bot.ConversationStore.
func (s *Conversations) Reference(_ context.Context, conversationID string) (approval.ConversationRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref, ok := s.refs[approval.BaseConversation(conversationID)]
	if !ok {
		return ref, bot.Errorf(bot.CodeNotFound, "memstore: no conversation reference for %q", conversationID)
	}
	ref = clone(ref)
	ref.ConversationID = conversationID
	return ref, nil
}

// Claim implements bot.ActivityLog.
func (s *Conversations) Claim(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.claims[key] {
		return false, nil
	}
	s.claims[key] = true
	return true, nil
}

// Release implements bot.ActivityLog.
func (s *Conversations) Release(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.claims, key)
	return nil
}

// ClaimCheck claims a conversation's check window, by the times given.
func (s *Conversations) ClaimCheck(_ context.Context, conversationID string, at time.Time, window time.Duration) (bool, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.checks[conversationID]; ok && at.Before(w[1]) {
		return false, w[0], nil
	}
	s.checks[conversationID] = [2]time.Time{at, at.Add(window)}
	return true, at, nil
}

// ReleaseCheck forgets the window claimed at at.
func (s *Conversations) ReleaseCheck(_ context.Context, conversationID string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.checks[conversationID]; ok && w[0].Equal(at) {
		delete(s.checks, conversationID)
	}
	return nil
}
