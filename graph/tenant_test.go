package graph_test

import (
	"context"
	"testing"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/graph"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

// A MultiTenant app asks Graph as the tenant the chat lives in, where it
// was consented; a SingleTenant (or managed identity) app exists only in
// its own tenant and asks as that one, whatever the chat's.
func TestGraphIsAskedAsTheTenantTheAppTypeAllows(t *testing.T) {
	const guestTenant = "aaaaaaaa-1111-4222-8333-444444444444"
	for _, c := range []struct {
		single bool
		want   string
	}{{false, guestTenant}, {true, tenantID}} {
		e := newEnv(t, func(o *graph.Options) { o.SingleTenant = c.single })
		seedPolls(e.tenant)
		e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", nil)
		if _, err := e.client.Installed(context.Background(), approval.Scope{Kind: approval.ScopeChat, ID: chatID, TenantID: guestTenant}); err != nil {
			t.Fatal(err)
		}
		reqs := e.aad.Requests()
		if len(reqs) != 1 || reqs[0].Tenant != c.want {
			t.Errorf("SingleTenant %v: token requests %+v, want one in %s", c.single, reqs, c.want)
		}
	}
}
