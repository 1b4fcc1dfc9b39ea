package state_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/upgradeapprovals/bot/state"
)

// Azure Cache for Redis access keys are base64: "/" and "+" are common, and
// people paste them into REDIS_URL unescaped.
func TestParseURLTakesPasswordsWithSlashAndAt(t *testing.T) {
	for _, tc := range []struct{ url, user, pass, addr string }{
		{"rediss://:abc/def+gh=@contoso.redis.cache.windows.net:6380/0", "", "abc/def+gh=", "contoso.redis.cache.windows.net:6380"},
		{"redis://bot:p@ss/w?rd#1@127.0.0.1:6379", "bot", "p@ss/w?rd#1", "127.0.0.1:6379"},
		{"redis://:plain@localhost:6379/2", "", "plain", "localhost:6379"},
		{"redis://:a%2Fb@localhost:6379", "", "a/b", "localhost:6379"},
	} {
		o, err := state.ParseURL(tc.url)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if o.Username != tc.user || o.Password != tc.pass || len(o.Addrs) != 1 || o.Addrs[0] != tc.addr {
			t.Errorf("%s: user %q password %q addrs %v", tc.url, o.Username, o.Password, o.Addrs)
		}
	}
	o, err := state.ParseURL("rediss://:k/e@y@h1:6380?cluster=true&addr=h2:6380")
	if err != nil || !o.IsClusterMode || o.Password != "k/e@y" || len(o.Addrs) != 2 {
		t.Errorf("cluster: %+v %v", o, err)
	}
}

func TestParseURLErrorsNeverShowThePassword(t *testing.T) {
	for _, u := range []string{
		"redis://:s3cr/et@localhost:notaport",
		"redis://:s3cr@et@localhost:notaport",
		"redis://user:s3cr/et@host:6379/notadb",
		"http://:s3cr/et@localhost:6379",
		"redis://:s3cr%zzet@localhost:6379",
		"rediss://:s3cr/et@h:6380?cluster=true&addr=:::",
	} {
		_, err := state.ParseURL(u)
		if err == nil {
			t.Errorf("%s: accepted", u)
			continue
		}
		if strings.Contains(err.Error(), "s3cr") {
			t.Errorf("%s: the password leaked into %q", u, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		`dial "redis://:p/w@h:1" failed`:           `dial "redis://xxxxx@h:1" failed`,
		"redis://u:p@w/x@h:1/0 and rediss://:k@h2": "redis://xxxxx@h:1/0 and rediss://xxxxx@h2",
		"redis://h:6379/0":                         "redis://h:6379/0",
	} {
		if got := state.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// go-redis's own warnings join the JSON log stream.
func TestRedisLoggerWritesJSON(t *testing.T) {
	var buf bytes.Buffer
	l := state.RedisLogger{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	l.Printf(context.Background(), "redis: failed to dial %s: %v\n", "redis://:pa/ss@h:1", "refused")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not JSON: %q", buf.String())
	}
	if rec["level"] != "WARN" || rec["component"] != "go-redis" || strings.Contains(buf.String(), "pa/ss") ||
		!strings.HasPrefix(rec["msg"].(string), "redis: failed to dial redis://xxxxx@h:1") {
		t.Errorf("record %v", rec)
	}
}
