package graph_test

import (
	"context"
	"testing"
	"time"

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

// A MultiTenant bot asks Graph as many tenants; one it stopped hearing from
// (removed there) has its client and token cache released after a day
// idle, and is asked again as a fresh one if it comes back. A tenant in use
// keeps its client and its token.
func TestIdleTenantClientsAreReleased(t *testing.T) {
	const other = "aaaaaaaa-1111-4222-8333-444444444444"
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	var released []string
	e := newEnv(t, func(o *graph.Options) {
		o.Now = func() time.Time { return now }
		o.Released = func(tenant string) { released = append(released, tenant) }
	})
	seedPolls(e.tenant)
	e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", nil)
	ask := func(tenant string) {
		t.Helper()
		if _, err := e.client.Installed(context.Background(), approval.Scope{Kind: approval.ScopeChat, ID: chatID, TenantID: tenant}); err != nil {
			t.Fatal(err)
		}
	}
	tokens := func(tenant string) int {
		n := 0
		for _, r := range e.aad.Requests() {
			if r.Tenant == tenant {
				n++
			}
		}
		return n
	}
	ask(tenantID)
	ask(other)
	for range 25 { // the home tenant is asked every hour; the other is not
		now = now.Add(time.Hour)
		ask(tenantID)
	}
	if len(released) != 1 || released[0] != other {
		t.Errorf("released %v after a day, want only the idle %s", released, other)
	}
	if n := tokens(tenantID); n != 1 {
		t.Errorf("%d tokens for the tenant in use, want its one cached token", n)
	}
	ask(other)
	if n := tokens(other); n != 2 {
		t.Errorf("%d tokens for the tenant asked again after release, want a fresh one (2 in all)", n)
	}
}

// Each request, each page of a list, is told as the tenant Graph is asked
// as, with the caller's context (which says whose command it serves).
func TestEachRequestIsToldWithItsTenant(t *testing.T) {
	type key struct{}
	var told []string
	e := newEnv(t, func(o *graph.Options) {
		o.OnRequest = func(ctx context.Context, tenant string) {
			if ctx.Value(key{}) == "check" {
				told = append(told, tenant)
			}
		}
	})
	seedPolls(e.tenant)
	e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", nil)
	ctx := context.WithValue(context.Background(), key{}, "check")
	if _, err := e.client.Installed(ctx, chat()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Definitions(ctx, tenantID, []string{pollsID}); err != nil {
		t.Fatal(err)
	}
	if len(told) != 2 || told[0] != tenantID || told[1] != tenantID {
		t.Errorf("told %v, want two requests as %s", told, tenantID)
	}
}
