// Package fakechannel fakes the Teams side of the Bot Framework: a channel
// that signs real RS256 tokens and serves its OpenID metadata and JWKS, and a
// connector that records what the bot sends. Each speaks the real wire
// format, so tests drive the production code paths unchanged.
package fakechannel

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Channel plays the Bot Framework channel's token service.
type Channel struct {
	AppID      string
	Issuer     string
	ServiceURL string // put into the serviceurl claim by Claims

	srv *httptest.Server

	mu           sync.Mutex
	key          *rsa.PrivateKey
	kid          string
	endorsements []string
	fetches      int
}

// NewChannel starts a channel whose tokens are for appID, endorsed for msteams.
func NewChannel(tb testing.TB, appID string) *Channel {
	tb.Helper()
	c := &Channel{AppID: appID, Issuer: "https://api.botframework.com", endorsements: []string{"msteams"}}
	c.Rotate(tb)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/.well-known/openidconfiguration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                c.Issuer,
			"authorization_endpoint":                "https://invalid.botframework.com",
			"jwks_uri":                              c.srv.URL + "/v1/.well-known/keys",
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
		})
	})
	mux.HandleFunc("GET /v1/.well-known/keys", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.fetches++
		pub := c.key.PublicKey
		writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]any{{
			"kty":          "RSA",
			"use":          "sig",
			"kid":          c.kid,
			"n":            base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			"e":            base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
			"endorsements": c.endorsements,
		}}})
	})
	c.srv = httptest.NewServer(mux)
	tb.Cleanup(c.srv.Close)
	return c
}

// Handler serves the channel's metadata and keys in process: a client whose
// transport calls it directly makes no network I/O (testing/synctest needs
// that to know when a fetch is over).
func (c *Channel) Handler() http.Handler { return c.srv.Config.Handler }

// MetadataURL is the channel's OpenID metadata document.
func (c *Channel) MetadataURL() string { return c.srv.URL + "/v1/.well-known/openidconfiguration" }

// KeyFetches counts how often the JWKS was fetched.
func (c *Channel) KeyFetches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

// Rotate replaces the signing key with a new one under a new kid.
func (c *Channel) Rotate(tb testing.TB) {
	tb.Helper()
	key := NewKey(tb)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.key = key
	c.kid = fmt.Sprintf("kid-%d", time.Now().UnixNano())
}

// Endorse sets the channels the current key is endorsed for.
func (c *Channel) Endorse(channels ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endorsements = channels
}

// Claims returns valid claims for a token sent to the bot.
func (c *Channel) Claims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":        c.Issuer,
		"aud":        c.AppID,
		"exp":        now.Add(time.Hour).Unix(),
		"nbf":        now.Add(-time.Minute).Unix(),
		"iat":        now.Add(-time.Minute).Unix(),
		"serviceurl": c.ServiceURL,
	}
}

// Sign signs claims RS256 with the channel's current key.
func (c *Channel) Sign(tb testing.TB, claims jwt.Claims) string {
	tb.Helper()
	c.mu.Lock()
	key, kid := c.key, c.kid
	c.mu.Unlock()
	return SignRS256(tb, key, kid, claims)
}

// Token is a valid bearer token for the bot.
func (c *Channel) Token(tb testing.TB) string {
	tb.Helper()
	return c.Sign(tb, c.Claims())
}

// NewKey generates an RSA signing key.
func NewKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// SignRS256 signs claims with key under kid.
func SignRS256(tb testing.TB, key *rsa.PrivateKey, kid string, claims jwt.Claims) string {
	tb.Helper()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = kid
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
