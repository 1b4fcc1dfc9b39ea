package graph_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/upgradeapprovals/bot/graph/graphtest"
)

// BenchmarkPendingUpgrades reports the Graph calls one "check" costs in a
// chat with one pending upgrade among five installed apps. The target is at
// most 2 with a warm catalog cache (the list, and the pending app's
// consented permissions).
func BenchmarkPendingUpgrades(b *testing.B) {
	for _, warm := range []bool{false, true} {
		b.Run(fmt.Sprintf("warm=%v", warm), func(b *testing.B) {
			e := newEnv(b)
			seedPolls(e.tenant)
			e.tenant.Install(graphtest.Chat, chatID, pollsID, "1.0.0", []graphtest.Permission{chatRead, settings})
			for i := range 4 {
				id := fmt.Sprintf("22222222-0000-4000-8000-00000000000%d", i)
				e.tenant.AddApp(graphtest.App{ID: id, DisplayName: "App", Definitions: []graphtest.Definition{{Version: "1.0"}}})
				e.tenant.Install(graphtest.Chat, chatID, id, "1.0", nil)
			}
			ctx := context.Background()
			if warm {
				if _, err := e.client.PendingUpgrades(ctx, chat()); err != nil {
					b.Fatal(err)
				}
			}
			e.tenant.ResetCalls()
			b.ResetTimer()
			for b.Loop() {
				c := e.client
				if !warm {
					b.StopTimer()
					c = newClient(b, e, nil)
					b.StartTimer()
				}
				ups, err := c.PendingUpgrades(ctx, chat())
				if err != nil || len(ups) != 1 {
					b.Fatalf("pending %v, err %v", ups, err)
				}
			}
			b.ReportMetric(float64(len(e.tenant.Calls()))/float64(b.N), "graph-calls/op")
		})
	}
}
