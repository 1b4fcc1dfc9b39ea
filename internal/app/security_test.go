package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/graph/fakegraph"
	"github.com/upgradeapprovals/bot/internal/logtest"
)

// keysUnder lists the Redis keys the bot under test wrote.
func keysUnder(t *testing.T, prefix string) []string {
	t.Helper()
	opts, err := redis.ParseURL(redisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		if keys, _ := rdb.Keys(context.Background(), prefix+"*").Result(); len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
	})
	return keys
}

// A Web Chat user who saw a card claims to be the chat's owner and clicks
// Approve. The Bot Framework signed the token and its key is endorsed for
// webchat, so only the channel check stands between them and the upgrade:
// they get 403 and the bot touches neither Redis nor Graph.
func TestWebChatCannotImpersonateAnOwner(t *testing.T) {
	h := newHarness(t)
	const pollsID = "0d820ecd-def2-4297-adad-78056cde7c78"
	owner := "11111111-1111-1111-1111-111111111111"
	h.graph.AddApp(fakegraph.App{ID: pollsID, DisplayName: "Polls", Definitions: []fakegraph.Definition{{Version: "1.0.0"}, {Version: "1.1.0"}}})
	h.graph.Install(fakegraph.Chat, "19:abc@thread.v2", pollsID, "1.0.0", nil)
	h.graph.AddMembers(fakegraph.Chat, "19:abc@thread.v2",
		fakegraph.Member{UserID: owner, DisplayName: "Megan Bowen", TenantID: testTenant, Roles: []string{"owner"}})
	h.channel.Endorse("msteams", "webchat", "directline")
	h.start(t)

	for i, channel := range []string{"webchat", "directline"} {
		for _, a := range []map[string]any{h.message("1700000000100"+string(rune('0'+i)), "check"), h.message("1700000000200"+string(rune('0'+i)), "")} {
			a["channelId"] = channel
			if a["text"] == "<at>Upgrade Approvals</at> " {
				delete(a, "text")
				a["type"], a["name"], a["replyToId"] = "invoke", "adaptiveCard/action", "activity-1"
				a["value"] = map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "approve",
					"data": map[string]any{"approvalId": "any"}}}
			}
			if code, body := h.exchange(t, a); code != http.StatusForbidden {
				t.Fatalf("%s %s: status %d %s, want 403", channel, a["type"], code, body)
			}
		}
	}
	// The reaper's lease and the proactive workers' keys are background
	// work, not the activities'.
	keys := slices.DeleteFunc(activityKeys(keysUnder(t, h.env["REDIS_PREFIX"]), h.env["REDIS_PREFIX"]),
		func(k string) bool { return strings.HasSuffix(k, "lease:{reaper}") })
	if len(keys) != 0 {
		t.Errorf("refused activities wrote to Redis: %v", keys)
	}
	if calls := h.graph.Calls(); len(calls) != 0 {
		t.Errorf("refused activities reached Graph: %+v", calls)
	}
	if calls := h.connector.Calls(); len(calls) != 0 {
		t.Errorf("refused activities got replies: %+v", calls)
	}

	// The same token with channelId msteams goes through.
	if code := h.post(t, h.message("1700000000300", "help")); code != http.StatusOK {
		t.Fatalf("msteams: status %d", code)
	}
	h.connector.WaitCalls(t, 1)
}

// A production bot (it has an app id) on the embedded Redis would lose
// every approval on restart and share nothing between replicas.
func TestAppIDWithoutRedisURLRefusesToStart(t *testing.T) {
	env := map[string]string{"MicrosoftAppId": testAppID, "MicrosoftAppPassword": "x", "BOT_ALLOWED_TENANTS": "*"}
	var stderr bytes.Buffer
	code := Run(context.Background(), nil, func(k string) string { return env[k] }, &stderr, &stderr)
	out := stderr.String()
	if code != 2 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "config: REDIS_URL:") {
		t.Fatalf("exit %d, stderr %q; want 2 and one line naming REDIS_URL", code, out)
	}
	// Local runs (no app id) still start on the embedded Redis.
	if _, err := loadConfig(func(string) string { return "" }); err != nil {
		t.Fatalf("local run refused: %v", err)
	}
}

// go-redis logs some trouble itself (a TTL below its resolution, pool and
// cluster problems); those lines must join the JSON stream, not break it.
func TestRedisLogLinesAreJSON(t *testing.T) {
	var buf logtest.Buffer
	newLogger(&buf)
	opts, err := redis.ParseURL(redisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	key := fmt.Sprintf("test:logs:%d", time.Now().UnixNano())
	defer rdb.Del(context.Background(), key)
	if err := rdb.Set(context.Background(), key, "v", 500*time.Microsecond).Err(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "truncating to 1ms") {
		t.Fatalf("go-redis's warning is not in the process log: %q", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
}

// activityKeys leaves out what the background workers keep whatever
// arrives: the scan job streams and the watcher's lease.
func activityKeys(keys []string, prefix string) []string {
	var out []string
	for _, k := range keys {
		rest := strings.TrimPrefix(k, prefix)
		if !strings.HasPrefix(rest, "jobs:{") && !strings.HasPrefix(rest, "jobs-delayed:{") && !strings.HasSuffix(rest, ":{watcher}") {
			out = append(out, k)
		}
	}
	return out
}
