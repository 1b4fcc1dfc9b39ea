package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/state"
)

// tripCounter counts round trips to Redis: a command alone, or a pipeline;
// not a new connection's handshake (HELLO, CLIENT SETINFO).
type tripCounter struct{ n atomic.Int64 }

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.count(cmd); return next(ctx, cmd) }
}
func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.count(cmds[0]); return next(ctx, cmds) }
}
func (c *tripCounter) count(first redis.Cmder) {
	if first.Name() != "hello" && first.Name() != "client" {
		c.n.Add(1)
	}
}

// countingWriter counts what `audit` prints.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// BenchmarkAudit is a tenant's audit trail over many installations: one
// event each (an upgrade, by an approver, one permission added), appended
// as the bot appends it (AppendAudit, one round trip), then printed by
// `upgradebot audit` as CSV and as JSON lines (without --tenant: the
// tenants are listed first). It reports the time, the Redis round trips
// and the bytes each event costs in Redis (MEMORY USAGE of the stream) and
// in the output. It fails unless both outputs have every event. Redis at
// REDIS_URL, under a key prefix of its own, deleted afterwards.
//
//	BENCH_AUDIT_EVENTS  events, one per installation (default 10000)
func BenchmarkAudit(b *testing.B) {
	n := benchEnvInt(b, "BENCH_AUDIT_EVENTS", 10000)
	ctx := context.Background()
	rdb, closeFn, err := state.Connect(ctx, redisURL(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer closeFn()
	trips := &tripCounter{}
	rdb.AddHook(trips)
	for range b.N {
		b.StopTimer()
		prefix := fmt.Sprintf("bench:audit:%d:", time.Now().UnixNano())
		s := state.New(rdb, state.Options{Prefix: prefix})
		tenant := "72f988bf-86f1-41af-91ab-2d7cd011db47"
		at := time.Now().Add(-time.Hour)
		events := make([]approval.AuditEvent, n)
		for i := range events {
			events[i] = approval.AuditEvent{At: at.Add(time.Duration(i) * time.Millisecond), Operation: approval.OpUpgraded,
				Status: approval.StatusUpgraded, Actor: "Megan Bowen", ActorID: fmt.Sprintf("%08d-1111-1111-1111-111111111111", i%500),
				TenantID: tenant, ScopeKind: approval.ScopeChat, ScopeID: fmt.Sprintf("19:%032x@thread.v2", i),
				AppID: "0d820ecd-def2-4297-adad-78056cde7c78", App: "Polls", From: "1.0.0", To: "1.1.0",
				Added: []approval.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}, ApprovalID: "apr_" + approval.NewToken()}
		}
		b.StartTimer()

		trips.n.Store(0)
		start := time.Now()
		for _, e := range events {
			if err := s.Approvals().AppendAudit(ctx, e); err != nil {
				b.Fatal(err)
			}
		}
		appendWall, appendTrips := time.Since(start), trips.n.Load()

		read := func(json bool) (time.Duration, int64, int64) {
			trips.n.Store(0)
			var out countingWriter
			start := time.Now()
			lines := 0
			counted := &lineCounter{w: &out, lines: &lines}
			if err := printAudit(ctx, s.Trail(), auditOptions{since: 24 * time.Hour, json: json}, time.Now(), counted); err != nil {
				b.Fatal(err)
			}
			wall := time.Since(start)
			if want := n + map[bool]int{false: 1}[json]; lines != want {
				b.Fatalf("audit printed %d lines, want %d", lines, want)
			}
			return wall, trips.n.Load(), out.n
		}
		csvWall, csvTrips, csvBytes := read(false)
		jsonWall, jsonTrips, jsonBytes := read(true)
		b.StopTimer()

		mem, err := rdb.MemoryUsage(ctx, prefix+"trail:{"+tenant+"}", 0).Result()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(appendWall.Seconds(), "append-s")
		b.ReportMetric(float64(appendTrips)/float64(n), "append-trips/event")
		b.ReportMetric(csvWall.Seconds(), "csv-s")
		b.ReportMetric(float64(csvTrips), "csv-trips")
		b.ReportMetric(jsonWall.Seconds(), "json-s")
		b.ReportMetric(float64(jsonTrips), "json-trips")
		b.ReportMetric(float64(mem)/float64(n), "redis-B/event")
		b.ReportMetric(float64(csvBytes)/float64(n), "csv-B/event")
		b.ReportMetric(float64(jsonBytes)/float64(n), "json-B/event")
		b.Logf("%d events: append %s (%d round trips), csv %s (%d round trips, %d B), json %s (%d round trips, %d B), "+
			"stream %d B in Redis", n, appendWall, appendTrips, csvWall, csvTrips, csvBytes, jsonWall, jsonTrips, jsonBytes, mem)
		for _, k := range []string{prefix + "trail:{" + tenant + "}", prefix + "trail:tenants"} {
			rdb.Del(ctx, k)
		}
		b.StartTimer()
	}
}

// lineCounter counts the lines written through it.
type lineCounter struct {
	w     io.Writer
	lines *int
}

func (c *lineCounter) Write(p []byte) (int, error) {
	for _, ch := range p {
		if ch == '\n' {
			*c.lines++
		}
	}
	return c.w.Write(p)
}
