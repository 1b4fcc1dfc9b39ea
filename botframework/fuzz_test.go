package botframework_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"

	"github.com/upgradeapprovals/bot/botframework"
)

// The fuzz targets verify against a fixed key (testdata/fuzz-key.pem, a
// test key only) at a fixed time, so the committed seed tokens stay valid.
var fuzzNow = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

func fuzzKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	pemBytes, err := os.ReadFile("testdata/fuzz-key.pem")
	if err != nil {
		tb.Fatal(err)
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM(pemBytes)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// fuzzVerifier serves the fixed key as the channel's JWKS, endorsed for
// msteams, and returns a loaded Verifier.
func fuzzVerifier(tb testing.TB, key *rsa.PrivateKey) *botframework.Verifier {
	tb.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/keys") {
			json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]any{{
				"kty": "RSA", "use": "sig", "kid": "fuzz-kid", "endorsements": []string{"msteams"},
				"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
				"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
			}}})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"jwks_uri": srv.URL + "/keys"})
	}))
	tb.Cleanup(srv.Close)
	v, err := botframework.NewVerifier(botframework.VerifierOptions{AppID: appID, Issuer: "https://api.botframework.com",
		OpenIDMetadataURL: srv.URL + "/meta", Now: func() time.Time { return fuzzNow }, UnknownKeyInterval: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	if err := v.Load(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return v
}

// FuzzVerifyToken feeds Authorization headers to the verifier. Whatever
// comes in, it answers with claims or an *AuthError, never panics, and
// accepts only an RS256 token that really is signed by the channel's key,
// for this bot, from the channel's issuer, within its lifetime.
func FuzzVerifyToken(f *testing.F) {
	key := fuzzKey(f)
	v := fuzzVerifier(f, key)
	f.Add("Bearer eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, authorization string) {
		claims, err := v.VerifyToken(context.Background(), authorization)
		if err != nil {
			var ae *botframework.AuthError
			if !errors.As(err, &ae) || ae.Reason == "" {
				t.Fatalf("error %v is not an AuthError with a reason", err)
			}
			return
		}
		raw := strings.TrimSpace(authorization[strings.IndexByte(authorization, ' ')+1:])
		tok, perr := jwt.Parse(raw, func(tok *jwt.Token) (any, error) { return &key.PublicKey, nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(func() time.Time { return fuzzNow }),
			jwt.WithIssuer("https://api.botframework.com"), jwt.WithAudience(appID), jwt.WithExpirationRequired(),
			jwt.WithLeeway(5*time.Minute))
		if perr != nil || !tok.Valid {
			t.Fatalf("accepted a token an independent check refuses: %v", perr)
		}
		if claims.Issuer != "https://api.botframework.com" {
			t.Fatalf("accepted issuer %q", claims.Issuer)
		}
	})
}

// FuzzActivity posts arbitrary bodies to /api/messages (authentication off,
// as in local runs) and strips mentions from whatever decodes. The endpoint
// answers 200, 400, 403 or 413 — never a 5xx or a panic — and a stripped
// text is trimmed, single-spaced and free of non-breaking spaces.
func FuzzActivity(f *testing.F) {
	rec := &recorder{}
	h, err := botframework.NewServer(botframework.ServerOptions{Bot: rec, Trust: &memTrust{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	seed, _ := json.Marshal(activity())
	f.Add(seed)
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, jsonPost(bytes.NewReader(body)))
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
		rec.mu.Lock()
		got := rec.got
		rec.got = nil
		rec.mu.Unlock()
		for _, a := range got {
			if a.ChannelID != botframework.ChannelMSTeams {
				t.Fatalf("a %q activity reached the bot", a.ChannelID)
			}
			text := a.TextWithoutMention()
			if text != strings.TrimFunc(text, unicode.IsSpace) || strings.Contains(text, "  ") || strings.ContainsRune(text, '\u00a0') {
				t.Fatalf("stripped text %q is not trimmed and single-spaced", text)
			}
			for _, e := range a.Entities {
				// Replacing with a space and splitting on spaces cannot
				// rebuild a mention without spaces; unescaping could.
				plain := e.Text != "" && !strings.ContainsFunc(e.Text, unicode.IsSpace) && !strings.Contains(a.Text, "&")
				if plain && strings.EqualFold(e.Type, "mention") && e.Mentioned != nil && e.Mentioned.ID == a.Recipient.ID &&
					strings.Contains(text, e.Text) {
					t.Fatalf("mention %q of the bot survives in %q", e.Text, text)
				}
			}
			a.TenantID()
			a.Scope()
			a.Reference(time.Now())
		}
	})
}
