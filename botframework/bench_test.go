package botframework_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/botframework/fakechannel"
)

// BenchmarkVerifyToken is the inbound check most activities pay: the
// channel reuses a token for about an hour, so its signature was verified
// with an earlier activity; the claims are checked again.
func BenchmarkVerifyToken(b *testing.B) {
	v, auth := verifier(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyToken(ctx, auth); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyNewToken is the check a token's first activity pays: parse
// the RS256 JWT, find its key, verify the signature and the claims.
func BenchmarkVerifyNewToken(b *testing.B) {
	v, auth := verifier(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		v.ForgetTokens()
		if _, err := v.VerifyToken(ctx, auth); err != nil {
			b.Fatal(err)
		}
	}
}

func verifier(b *testing.B) (*botframework.Verifier, string) {
	b.Helper()
	ch := fakechannel.NewChannel(b, appID)
	ch.ServiceURL = svcURL
	v, err := botframework.NewVerifier(botframework.VerifierOptions{AppID: appID, Issuer: ch.Issuer, OpenIDMetadataURL: ch.MetadataURL()})
	if err != nil {
		b.Fatal(err)
	}
	if err := v.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	return v, "Bearer " + ch.Token(b)
}

// nopBot answers every activity with nothing, as a message does.
type nopBot struct{}

func (nopBot) Handle(context.Context, *bot.Activity) (*bot.InvokeResponse, error) { return nil, nil }

// BenchmarkMessages is one activity through /api/messages as the endpoint
// alone serves it: the token (verified with an earlier activity), the
// body, the channel and claims checks and the service URL's trust, without
// the bot's own work. With authentication off it is a local run's path.
func BenchmarkMessages(b *testing.B) {
	body, err := json.Marshal(activity())
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		auth bool
	}{{"token", true}, {"local", false}} {
		b.Run(tc.name, func(b *testing.B) {
			opts := botframework.ServerOptions{Bot: nopBot{}, Trust: &memTrust{},
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			var authorization string
			if tc.auth {
				opts.Verifier, authorization = verifier(b)
			}
			h, err := botframework.NewServer(opts)
			if err != nil {
				b.Fatal(err)
			}
			r := bytes.NewReader(body)
			req := httptest.NewRequest(http.MethodPost, "/api/messages", r)
			req.Header.Set("Content-Type", "application/json")
			if authorization != "" {
				req.Header.Set("Authorization", authorization)
			}
			w := &statusWriter{header: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(body)
				clear(w.header)
				w.status = 0
				h.ServeHTTP(w, req)
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}

// statusWriter is a ResponseWriter that keeps only the status, so that a
// benchmark counts the endpoint's allocations rather than a recorder's.
type statusWriter struct {
	header http.Header
	status int
}

func (w *statusWriter) Header() http.Header { return w.header }

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}
