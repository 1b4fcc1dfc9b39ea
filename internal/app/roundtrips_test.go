package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

// tripLog records each round trip the bot makes to Redis on behalf of an
// HTTP request (contexts net/http made, and those derived from them, as a
// background upgrade's are): one command, or one pipeline or transaction.
// The reaper's and other background work's commands are not the request's.
type tripLog struct {
	mu    sync.Mutex
	trips []string
}

func (l *tripLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *tripLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		// A script's first run on a server costs a NOSCRIPT answer and an
		// EVAL, once per server: not the activity's.
		if err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
			l.record(ctx, []redis.Cmder{cmd})
		}
		return err
	}
}

func (l *tripLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.record(ctx, cmds)
		return next(ctx, cmds)
	}
}

func (l *tripLog) record(ctx context.Context, cmds []redis.Cmder) {
	if ctx.Value(http.LocalAddrContextKey) == nil || cmds[0].Name() == "hello" || cmds[0].Name() == "client" {
		return
	}
	var names []string
	for _, c := range cmds {
		names = append(names, commandText(c))
	}
	l.mu.Lock()
	l.trips = append(l.trips, strings.Join(names, " | "))
	l.mu.Unlock()
}

// commandText is a command's name and, for a script, its first key.
func commandText(c redis.Cmder) string {
	args := c.Args()
	name := strings.ToUpper(c.Name())
	switch {
	case (name == "EVALSHA" || name == "EVAL") && len(args) > 3:
		return fmt.Sprint(name, " ", args[3])
	case len(args) > 1:
		return fmt.Sprint(name, " ", args[1])
	}
	return name
}

func (l *tripLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.trips
	l.trips = nil
	return t
}

// An Approve click, from the invoke to its answer and the work it queues,
// costs a known number of Redis round trips.
func TestApproveRedisRoundTrips(t *testing.T) {
	h := newHarness(t)
	const chat = "19:abc@thread.v2"
	const pollsID = "0d820ecd-def2-4297-adad-78056cde7c78"
	h.graph.AddApp(fakegraph.App{ID: pollsID, DisplayName: "Polls", Definitions: []fakegraph.Definition{
		{Version: "1.0.0"},
		{Version: "1.1.0", RSC: []fakegraph.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}},
	}})
	h.graph.Install(fakegraph.Chat, chat, pollsID, "1.0.0", nil)
	h.graph.AddMembers(fakegraph.Chat, chat,
		fakegraph.Member{UserID: faultOwner, DisplayName: "Megan Bowen", TenantID: testTenant, Roles: []string{"owner"}})
	log := &tripLog{}
	h.tune = func(d *deps) { d.noBackground = true; d.redisHook = log }
	h.start(t)

	if code := h.post(t, h.message("1700000000030", "check")); code != http.StatusOK {
		t.Fatalf("check: status %d", code)
	}
	posted := h.connector.WaitCalls(t, 1)[0]
	approvalID := approvalIDOf(t, posted)
	t.Logf("check: %d round trips", len(log.take()))

	code, body := h.exchange(t, h.approve("1700000000031", chat, "activity-1", approvalID))
	if code != http.StatusOK || !strings.Contains(string(body), "was upgraded to 1.1.0") {
		t.Fatalf("approve: %d %s", code, body)
	}
	trips := log.take()
	for i, tr := range trips {
		t.Logf("%2d %s", i+1, tr)
	}
	// The conversation's reference and scope (1) and the approval (1) read;
	// the claim, indexed for the reaper in its read's round trip (2); the
	// approval's audit event (1); the mark that the upgrade is sent (1)
	// and the outcome (1), each written against the record the previous
	// step wrote; the claim's index entry dropped (1); the outcome's audit
	// event and history line, with the lists the approval is in (1); the
	// post-upgrade grant check queued (1). It was 16: each record
	// change was WATCH, read, MULTI/EXEC; the index entry, the history and
	// the lists each a round trip of their own.
	if len(trips) != approveRoundTrips {
		t.Errorf("an approval made %d Redis round trips, want %d", len(trips), approveRoundTrips)
	}
}

// approveRoundTrips is the budget of one approval's Redis round trips.
const approveRoundTrips = 10
