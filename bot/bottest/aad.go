package bottest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// AAD is an Entra ID token endpoint for client credentials, served over TLS.
type AAD struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []TokenRequest
}

// TokenRequest is what one token request asked for.
type TokenRequest struct {
	Tenant   string
	ClientID string
	Scope    string
	Grant    string
	// Secret is the client_secret, or Assertion the client_assertion (a JWT
	// signed with a certificate's key, or a federated token).
	Secret    string
	Assertion string
}

// NewAAD starts the token endpoint.
func NewAAD(tb testing.TB) *AAD {
	tb.Helper()
	a := &AAD{}
	mux := http.NewServeMux()
	// MSAL reads the tenant's metadata before its first token request.
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		base := a.srv.URL + "/" + r.PathValue("tenant")
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                 base + "/v2.0",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"token_endpoint":         base + "/oauth2/v2.0/token",
		})
	})
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := TokenRequest{
			Tenant:   r.PathValue("tenant"),
			ClientID: r.PostForm.Get("client_id"),
			Scope:    resourceScope(r.PostForm.Get("scope")),
			Grant:    r.PostForm.Get("grant_type"),
			Secret:   r.PostForm.Get("client_secret"),
		}
		if r.PostForm.Get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			req.Assertion = r.PostForm.Get("client_assertion")
		}
		a.mu.Lock()
		a.requests = append(a.requests, req)
		n := len(a.requests)
		a.mu.Unlock()
		if req.Grant != "client_credentials" || req.ClientID == "" || (req.Secret == "" && req.Assertion == "") {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"token_type":     "Bearer",
			"expires_in":     3599,
			"ext_expires_in": 3599,
			"access_token":   a.AccessToken(req.Tenant, req.Scope, n),
		})
	})
	a.srv = httptest.NewTLSServer(mux)
	tb.Cleanup(a.srv.Close)
	return a
}

// AccessToken is the token the endpoint issues as its n-th, so tests can tell
// which token was sent where.
func (a *AAD) AccessToken(tenant, scope string, n int) string {
	return fmt.Sprintf("aad-token-%d-%s-%s", n, tenant, scope)
}

// AuthorityHost is the value for AZURE_AUTHORITY_HOST.
func (a *AAD) AuthorityHost() string { return a.srv.URL + "/" }

// Client trusts the endpoint's certificate; give it to azcore as Transport.
func (a *AAD) Client() *http.Client { return a.srv.Client() }

// Requests returns the token requests received so far.
func (a *AAD) Requests() []TokenRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]TokenRequest(nil), a.requests...)
}

// resourceScope drops the OpenID scopes MSAL adds to every request.
func resourceScope(scope string) string {
	var out []string
	for _, s := range strings.Fields(scope) {
		switch s {
		case "openid", "offline_access", "profile":
		default:
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}
