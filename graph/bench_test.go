package graph_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

// BenchmarkCheckReads is what one "check" reads from Graph in a chat with 30
// installed apps, one of them behind: the installed apps with their
// definitions and consented sets, then the catalog definitions of exactly
// those apps. It reports graph-calls/op, which must stay 2.
func BenchmarkCheckReads(b *testing.B) {
	e := newEnv(b)
	seedPolls(e.tenant)
	e.tenant.Install(fakegraph.Chat, chatID, pollsID, "1.0.0", []fakegraph.Permission{chatRead, settings})
	for i := range 29 {
		id := fmt.Sprintf("22222222-0000-4000-8000-%012d", i)
		e.tenant.AddApp(fakegraph.App{ID: id, DisplayName: "App", Definitions: []fakegraph.Definition{{Version: "1.0"}}})
		e.tenant.Install(fakegraph.Chat, chatID, id, "1.0", nil)
	}
	ctx := context.Background()
	e.tenant.ResetCalls()
	for b.Loop() {
		ins, err := e.client.Installed(ctx, chat())
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]string, len(ins))
		for i, in := range ins {
			ids[i] = in.TeamsAppID
		}
		defs, err := e.client.Definitions(ctx, tenantID, ids)
		if err != nil {
			b.Fatal(err)
		}
		if ups := approval.Behind(ins, defs); len(ups) != 1 {
			b.Fatalf("pending %v", ups)
		}
	}
	b.ReportMetric(float64(len(e.tenant.Calls()))/float64(b.N), "graph-calls/op")
}
