package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ParseURL reads REDIS_URL: redis://[user:password@]host:port/db, or
// rediss:// for TLS. A Redis Cluster is named by cluster=true, or by more
// seed nodes as addr parameters:
// rediss://:key@host:6380?cluster=true, redis://h1:6379?addr=h2:6379&addr=h3:6379.
// Every key one operation touches shares a {hash tag}, so a cluster works.
//
// A password may contain "/", "@", "?" or "#" unescaped (Azure Cache for
// Redis access keys are base64, with "/" and "+"): everything up to the
// last "@" is the user and password. Errors never carry the password.
func ParseURL(rawURL string) (*redis.UniversalOptions, error) {
	opts, err := parseURL(escapeUserinfo(rawURL))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL, password included
		}
		return nil, fmt.Errorf("state: REDIS_URL: %s", redactSecret(RedactURL(err.Error()), rawURL))
	}
	return opts, nil
}

// redactSecret removes what looks like rawURL's credentials from msg, as a
// last line of defence for messages that quote parts of the URL; when a
// piece of the password still shows, only a generic message is left.
func redactSecret(msg, rawURL string) string {
	_, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		rest = rawURL
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return msg
	}
	info := rest[:at]
	secret := info
	if _, pass, ok := strings.Cut(info, ":"); ok {
		secret = pass
	}
	for _, s := range []string{info, url.PathEscape(info), secret} {
		if len(s) >= 3 {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	for i := 0; i+4 <= len(secret); i++ {
		if strings.Contains(msg, secret[i:i+4]) {
			return "cannot be parsed (percent-encode unusual characters in the password)"
		}
	}
	return msg
}

func parseURL(rawURL string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	if q.Get("cluster") == "true" || len(q["addr"]) > 0 {
		q.Del("cluster")
		u.RawQuery = q.Encode()
		c, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, err
		}
		return &redis.UniversalOptions{Addrs: c.Addrs, Username: c.Username, Password: c.Password,
			TLSConfig: c.TLSConfig, IsClusterMode: true}, nil
	}
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return &redis.UniversalOptions{Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password,
		DB: o.DB, TLSConfig: o.TLSConfig}, nil
}

// escapeUserinfo percent-encodes a user and password written raw.
func escapeUserinfo(rawURL string) string {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	at := strings.LastIndex(rest, "@")
	if !ok || at < 0 {
		return rawURL
	}
	info := rest[:at]
	if !strings.ContainsAny(info, "/?#@ ") {
		return rawURL
	}
	user, pass, hasPass := strings.Cut(info, ":")
	ui := url.User(user)
	if hasPass {
		ui = url.UserPassword(user, pass)
	}
	return scheme + "://" + ui.String() + "@" + rest[at+1:]
}

// RedactURL replaces the credentials of every URL in msg with "xxxxx",
// even when the password holds "/" or "@" or the URL is too broken to
// parse: everything from "://" to the last "@" of that word goes.
func RedactURL(msg string) string {
	var b strings.Builder
	for {
		i := strings.Index(msg, "://")
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		b.WriteString(msg[:i+3])
		msg = msg[i+3:]
		end := strings.IndexAny(msg, " \t\r\n\"'`<>")
		if end < 0 {
			end = len(msg)
		}
		if at := strings.LastIndex(msg[:end], "@"); at >= 0 {
			b.WriteString("xxxxx")
			msg = msg[at:]
		}
	}
}

// RedisLogger sends go-redis's own log lines (pool and cluster trouble) to
// slog, so they join the JSON log stream instead of breaking it. Install it
// once, in main, with redis.SetLogger: go-redis keeps it in a global.
type RedisLogger struct{ Logger *slog.Logger }

// Printf implements go-redis's logging interface.
func (l RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := RedactURL(strings.TrimSpace(fmt.Sprintf(format, v...)))
	l.Logger.WarnContext(ctx, msg, "component", "go-redis")
}
