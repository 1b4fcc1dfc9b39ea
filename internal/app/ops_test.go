package app

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/state"
)

// With OPS_PORT each port serves its own paths, and after SIGTERM the ops
// port says not ready while it still says alive.
func TestOpsPortSplitsPathsAndDrains(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	var draining atomic.Bool
	bot, ops := portHandler{next: next, draining: &draining}, portHandler{next: next, ops: true, draining: &draining}
	status := func(h http.Handler, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	for _, tc := range []struct {
		h    http.Handler
		path string
		want int
	}{
		{bot, "/api/messages", 200}, {bot, "/healthz", 404}, {bot, "/readyz", 404}, {bot, "/metrics", 404},
		{ops, "/api/messages", 404}, {ops, "/healthz", 200}, {ops, "/readyz", 200}, {ops, "/metrics", 200},
	} {
		if got := status(tc.h, tc.path); got != tc.want {
			t.Errorf("ops=%v %s: %d, want %d", tc.h.(portHandler).ops, tc.path, got, tc.want)
		}
	}
	draining.Store(true)
	if got := status(ops, "/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: %d", got)
	}
	if got := status(ops, "/healthz"); got != http.StatusOK {
		t.Errorf("/healthz while draining: %d", got)
	}
}

func TestOpsPortConfig(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want int
		err  string
	}{
		{map[string]string{}, 0, ""},
		{map[string]string{"OPS_PORT": "9090"}, 9090, ""},
		{map[string]string{"OPS_PORT": "nine"}, 0, `config: OPS_PORT: "nine" is not a port number`},
		{map[string]string{"OPS_PORT": "3978"}, 0, "config: OPS_PORT: 3978 is PORT too; unset OPS_PORT to serve everything on PORT"},
	} {
		cfg, err := loadConfig(func(k string) string { return tc.env[k] })
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%v: error %v, want %s", tc.env, err, tc.err)
			}
			continue
		}
		if err != nil || cfg.OpsPort != tc.want {
			t.Errorf("%v: OpsPort %d, err %v", tc.env, cfg.OpsPort, err)
		}
	}
}

func TestConfigNamesAreWhatLoadConfigReads(t *testing.T) {
	names := ConfigNames()
	for _, want := range []string{"PORT", "OPS_PORT", "MicrosoftAppId", "MicrosoftAppPassword", "REDIS_URL", "BOT_APPROVAL_TTL"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("ConfigNames %v lacks %s", names, want)
		}
	}
}

// StopTimeout covers the bot's own drain as serve builds the bot.
func TestStopTimeoutCoversTheDrain(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled: only timeouts are read
	defer rdb.Close()
	store := state.New(rdb, state.Options{})
	queue, err := store.Queue(state.QueueOptions{Consumer: "stop-timeout"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := botframework.NewConnector(botframework.ConnectorOptions{Trust: botframework.NewServiceURLs(botframework.ServiceURLOptions{Records: store.Conversations()})})
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBot(config{}, deps{}, conn, store, queue, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.DrainTimeout(); got != upgradeDrain {
		t.Errorf("the bot drains for up to %s, StopTimeout counts %s", got, upgradeDrain)
	}
	if StopTimeout() != shutdownGrace+b.DrainTimeout()+opsShutdownGrace {
		t.Errorf("StopTimeout %s", StopTimeout())
	}
}
