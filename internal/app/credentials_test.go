package app

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/golang-jwt/jwt/v5"

	"github.com/upgradeapprovals/bot/internal/fakeentra"
)

// token gets one token through the configured credential from the fake
// Entra ID and returns what the token endpoint was sent.
func token(t *testing.T, env map[string]string) fakeentra.TokenRequest {
	t.Helper()
	aad := fakeentra.New(t)
	env["AZURE_AUTHORITY_HOST"] = aad.AuthorityHost()
	env["MicrosoftAppId"] = testAppID
	env["MicrosoftAppTenantId"] = testTenant
	env["MicrosoftAppType"] = "SingleTenant"
	env["REDIS_URL"] = redisURL()
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cred, err := newCredentials(cfg, aad.Client()).forTenant("11111111-2222-3333-4444-555555555555")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://graph.microsoft.com/.default"}}); err != nil {
		t.Fatal(err)
	}
	reqs := aad.Requests()
	if len(reqs) != 1 || reqs[0].Tenant != "11111111-2222-3333-4444-555555555555" || reqs[0].ClientID != testAppID ||
		reqs[0].Scope != "https://graph.microsoft.com/.default" {
		t.Fatalf("token requests %+v", reqs)
	}
	return reqs[0]
}

func TestClientSecretCredential(t *testing.T) {
	if r := token(t, map[string]string{"MicrosoftAppPassword": "s3cret"}); r.Secret != "s3cret" || r.Assertion != "" {
		t.Errorf("request %+v", r)
	}
}

func TestCertificateCredential(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upgradebot"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bot.pem")
	pemData := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})...)
	if err := os.WriteFile(path, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	r := token(t, map[string]string{"MicrosoftAppCertificatePath": path})
	if r.Secret != "" || r.Assertion == "" {
		t.Fatalf("request %+v, want a client assertion", r)
	}
	// The assertion is a JWT signed with the certificate's key.
	if _, err := jwt.Parse(r.Assertion, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256", "PS256"})); err != nil {
		t.Errorf("assertion not signed with the certificate's key: %v", err)
	}
}

func TestWorkloadIdentityCredential(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("federated-token-from-kubernetes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := token(t, map[string]string{"AZURE_FEDERATED_TOKEN_FILE": path}); r.Assertion != "federated-token-from-kubernetes" {
		t.Errorf("request %+v, want the federated token as assertion", r)
	}
}

// singleTenant is the configuration of a SingleTenant bot proving itself
// with secret, one of its variables.
func singleTenant(t *testing.T, secret, value string) config {
	t.Helper()
	cfg, err := loadConfig(func(k string) string {
		return map[string]string{"MicrosoftAppId": testAppID, "MicrosoftAppTenantId": testTenant, "MicrosoftAppType": "SingleTenant",
			secret: value, "REDIS_URL": redisURL()}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestMissingCertificateFileIsAnError(t *testing.T) {
	cfg := singleTenant(t, "MicrosoftAppCertificatePath", "/nonexistent/bot.pem")
	if _, err := newCredentials(cfg, nil).connector(); err == nil {
		t.Error("a missing certificate file was accepted")
	}
}

// Credentials are built once per tenant: a SingleTenant bot's connector and
// Graph share one, and with it one token cache.
func TestCredentialsAreBuiltOncePerTenant(t *testing.T) {
	creds := newCredentials(singleTenant(t, "MicrosoftAppPassword", "s3cret"), nil)
	conn, err := creds.connector()
	if err != nil {
		t.Fatal(err)
	}
	home, _ := creds.forTenant(testTenant)
	other, _ := creds.forTenant("11111111-2222-3333-4444-555555555555")
	again, _ := creds.forTenant("11111111-2222-3333-4444-555555555555")
	if conn != home || other != again || other == home {
		t.Errorf("connector %p, home %p, other %p then %p: want one credential per tenant", conn, home, other, again)
	}
}

// A tenant whose Graph client was released for being idle gets a new
// credential when it comes back; the connector's is never released.
func TestReleasedTenantGetsANewCredential(t *testing.T) {
	creds := newCredentials(singleTenant(t, "MicrosoftAppPassword", "s3cret"), nil)
	const other = "11111111-2222-3333-4444-555555555555"
	conn, _ := creds.connector()
	before, _ := creds.forTenant(other)
	creds.release(other)
	creds.release(testTenant)
	after, _ := creds.forTenant(other)
	if conn2, _ := creds.connector(); conn2 != conn {
		t.Error("the connector's credential was released")
	}
	if after == before {
		t.Error("a released tenant kept its credential")
	}
}
