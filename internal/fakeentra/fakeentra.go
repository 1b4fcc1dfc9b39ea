// Package fakeentra is a fake Entra ID token endpoint for client
// credentials, served over TLS (azidentity insists on https): it issues
// tokens in the real wire format, records what each request asked for, and
// can refuse a credential the way Entra does.
package fakeentra

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Authority is an Entra ID token endpoint for client credentials, served over TLS.
type Authority struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []TokenRequest
	refuse   func(TokenRequest) bool
	roles    func(TokenRequest) []string
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

// New starts the token endpoint.
func New(tb testing.TB) *Authority {
	tb.Helper()
	a := &Authority{}
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
		refuse, roles := a.refuse, a.roles
		a.mu.Unlock()
		if refuse != nil && refuse(req) {
			writeJSON(w, http.StatusUnauthorized, invalidSecret(req))
			return
		}
		if req.Grant != "client_credentials" || req.ClientID == "" || (req.Secret == "" && req.Assertion == "") {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
			return
		}
		token := a.AccessToken(req.Tenant, req.Scope, n)
		if roles != nil {
			token = jwtAccessToken(req, roles(req))
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"token_type":     "Bearer",
			"expires_in":     3599,
			"ext_expires_in": 3599,
			"access_token":   token,
		})
	})
	a.srv = httptest.NewTLSServer(mux)
	tb.Cleanup(a.srv.Close)
	return a
}

// Refuse makes the endpoint refuse the requests f picks as Entra ID refuses
// a wrong or expired client secret: 401 invalid_client, AADSTS7000215.
func (a *Authority) Refuse(f func(TokenRequest) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refuse = f
}

// GrantRoles makes the endpoint issue access tokens shaped as Entra ID's
// app-only tokens, JWTs whose roles claim lists roles(req): the application
// permissions granted to the app in the request's tenant. Their signature is
// not a real one; nothing that reads them here verifies it.
func (a *Authority) GrantRoles(roles func(TokenRequest) []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.roles = roles
}

func jwtAccessToken(req TokenRequest, roles []string) string {
	part := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	claims := map[string]any{
		"aud":   strings.TrimSuffix(req.Scope, "/.default"),
		"iss":   "https://sts.windows.net/" + req.Tenant + "/",
		"tid":   req.Tenant,
		"appid": req.ClientID,
		"idtyp": "app",
		"iat":   1795000000,
		"exp":   1795003599,
	}
	if roles != nil {
		claims["roles"] = roles
	}
	return part(map[string]any{"typ": "JWT", "alg": "RS256", "kid": "fakeentra"}) + "." + part(claims) + "." +
		base64.RawURLEncoding.EncodeToString([]byte("not a real signature"))
}

// RefusalTraceID is the trace id in Refuse's answers.
const RefusalTraceID = "0b5d7e2a-6c1f-4a52-9f3e-1c2d3e4f5a00"

// invalidSecret is Entra ID's answer to a wrong client secret, with the
// app and the trace ids it names (the error text adds the tenant's token URL).
func invalidSecret(req TokenRequest) map[string]any {
	const correlation = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	return map[string]any{
		"error": "invalid_client",
		"error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request " +
			"is the client secret value, not the client secret ID, for a secret added to app '" + req.ClientID + "'." +
			"\r\nTrace ID: " + RefusalTraceID + "\r\nCorrelation ID: " + correlation +
			"\r\nTimestamp: 2026-11-30 12:00:00Z",
		"error_codes":    []int{7000215},
		"timestamp":      "2026-11-30 12:00:00Z",
		"trace_id":       RefusalTraceID,
		"correlation_id": correlation,
		"error_uri":      "https://login.microsoftonline.com/error?code=7000215",
	}
}

// AccessToken is the token the endpoint issues as its n-th, so tests can tell
// which token was sent where.
func (a *Authority) AccessToken(tenant, scope string, n int) string {
	return fmt.Sprintf("aad-token-%d-%s-%s", n, tenant, scope)
}

// AuthorityHost is the value for AZURE_AUTHORITY_HOST.
func (a *Authority) AuthorityHost() string { return a.srv.URL + "/" }

// Client trusts the endpoint's certificate; give it to azcore as Transport.
func (a *Authority) Client() *http.Client { return a.srv.Client() }

// Requests returns the token requests received so far.
func (a *Authority) Requests() []TokenRequest {
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
