package bot_test

import (
	"context"
	"sync"
	"testing"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/bot/memstore"
)

// pipelinedState is a memstore.Store that also claims and saves in one call, and
// counts which calls the bot makes.
type pipelinedState struct {
	*memstore.Store
	mu                     sync.Mutex
	combined, claims, refs int
}

func (p *pipelinedState) ClaimAndSaveReference(ctx context.Context, key string, ref approval.ConversationRef) (bool, error) {
	p.mu.Lock()
	p.combined++
	p.mu.Unlock()
	_ = p.Store.SaveReference(ctx, ref)
	return p.Store.Claim(ctx, key)
}

func (p *pipelinedState) Claim(ctx context.Context, key string) (bool, error) {
	p.mu.Lock()
	p.claims++
	p.mu.Unlock()
	return p.Store.Claim(ctx, key)
}

func (p *pipelinedState) SaveReference(ctx context.Context, ref approval.ConversationRef) error {
	p.mu.Lock()
	p.refs++
	p.mu.Unlock()
	return p.Store.SaveReference(ctx, ref)
}

func TestActivityClaimAndReferenceGoTogether(t *testing.T) {
	conn, st := &fakeConnector{}, &pipelinedState{Store: memstore.New()}
	b, err := bot.New(bot.Options{Connector: conn, Conversations: st, Activities: st, Approvals: st})
	if err != nil {
		t.Fatal(err)
	}
	a := decode(t, groupMessage)
	for range 2 { // the second is Teams delivering it again
		if _, err := b.Handle(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	if st.combined != 2 || st.claims != 0 || st.refs != 0 {
		t.Errorf("%d combined calls, %d claims, %d saves; want 2 combined only", st.combined, st.claims, st.refs)
	}
	if len(conn.replies) != 1 {
		t.Errorf("%d replies, want one (the redelivery is ignored)", len(conn.replies))
	}
	if _, err := st.Reference(context.Background(), a.Conversation.ID); err != nil {
		t.Errorf("reference not saved: %v", err)
	}
}
