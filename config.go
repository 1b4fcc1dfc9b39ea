package main

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/bot/botframework"
	"github.com/upgradeapprovals/bot/state"
)

// App types, as Azure Bot registrations name them.
const (
	appTypeMultiTenant     = "MultiTenant"
	appTypeSingleTenant    = "SingleTenant"
	appTypeUserAssignedMSI = "UserAssignedMSI"
)

// config is the process configuration, read from the environment. The
// variable names are a contract with the docs, the tests and deployments.
type config struct {
	Port int    // PORT, default 3978
	Host string // HOST: the interface to listen on; default all, or loopback when auth is off

	AppID       string // MicrosoftAppId; empty turns authentication off (loopback only)
	AppPassword string // MicrosoftAppPassword
	AppTenantID string // MicrosoftAppTenantId
	AppType     string // MicrosoftAppType, default MultiTenant

	CertificatePath     string // MicrosoftAppCertificatePath: PEM or PKCS#12 with the private key, instead of a secret
	CertificatePassword string // MicrosoftAppCertificatePassword, for an encrypted PKCS#12
	FederatedTokenFile  string // AZURE_FEDERATED_TOKEN_FILE: workload identity federation, instead of a secret

	Cloud             botframework.Cloud // BOT_CLOUD, default public
	OpenIDMetadataURL string             // BOT_OPENID_METADATA_URL, default the cloud's
	AuthorityHost     string             // AZURE_AUTHORITY_HOST, default the cloud's
	CustomAuthority   bool               // AZURE_AUTHORITY_HOST was set
	GraphBaseURL      string             // GRAPH_BASE_URL, default the cloud's Graph

	RedisURL       string             // REDIS_URL; empty runs an embedded Redis
	RedisPrefix    string             // REDIS_PREFIX, default "upgradebot:"
	AllowedTenants []string           // BOT_ALLOWED_TENANTS; default the app's tenant for SingleTenant and UserAssignedMSI
	Approvers      bot.ApproverPolicy // BOT_APPROVERS, default "owners"

	Proactive     bool          // BOT_PROACTIVE: on (default) or off, unprompted posts everywhere
	ScanInterval  time.Duration // BOT_SCAN_INTERVAL: how often the catalog is read per tenant, default 15m
	SweepInterval time.Duration // BOT_SWEEP_INTERVAL: how often every conversation is scanned, default 24h
	RemindAfter   time.Duration // BOT_REMIND_AFTER: one reminder after, default 72h
	ApprovalTTL   time.Duration // BOT_APPROVAL_TTL: a request expires after, default 168h
}

// configError names the variable at fault, so the one line an operator
// sees says what to fix.
type configError struct {
	Var string
	Msg string
}

func (e *configError) Error() string { return "config: " + e.Var + ": " + e.Msg }

func bad(name, format string, args ...any) error {
	return &configError{Var: name, Msg: fmt.Sprintf(format, args...)}
}

func loadConfig(getenv func(string) string) (config, error) {
	var c config
	env := func(name string) string { return strings.TrimSpace(getenv(name)) }

	c.Port = 3978
	if v := env("PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 0 || p > 65535 {
			return c, bad("PORT", "%q is not a port number", v)
		}
		c.Port = p
	}

	c.AppID = env("MicrosoftAppId")
	c.AppPassword = getenv("MicrosoftAppPassword") // a secret may legitimately contain spaces
	c.AppTenantID = env("MicrosoftAppTenantId")
	c.AppType = env("MicrosoftAppType")
	if c.AppType == "" {
		c.AppType = appTypeMultiTenant
	}
	c.CertificatePath = env("MicrosoftAppCertificatePath")
	c.CertificatePassword = getenv("MicrosoftAppCertificatePassword")
	c.FederatedTokenFile = env("AZURE_FEDERATED_TOKEN_FILE")
	hasSecret := c.AppPassword != "" || c.CertificatePath != "" || c.FederatedTokenFile != ""
	if c.AppID != "" && !bot.IsEntraID(c.AppID) {
		return c, bad("MicrosoftAppId", "%q is not a GUID", c.AppID)
	}
	if c.AppTenantID != "" && !bot.IsEntraID(c.AppTenantID) {
		return c, bad("MicrosoftAppTenantId", "%q is not a GUID", c.AppTenantID)
	}
	switch c.AppType {
	case appTypeMultiTenant:
		if c.AppID != "" && !hasSecret {
			return c, bad("MicrosoftAppPassword", "required for a MultiTenant bot (or MicrosoftAppCertificatePath, or AZURE_FEDERATED_TOKEN_FILE)")
		}
	case appTypeSingleTenant:
		if c.AppID != "" && !hasSecret {
			return c, bad("MicrosoftAppPassword", "required for a SingleTenant bot (or MicrosoftAppCertificatePath, or AZURE_FEDERATED_TOKEN_FILE)")
		}
		if c.AppID != "" && c.AppTenantID == "" {
			return c, bad("MicrosoftAppTenantId", "required for a SingleTenant bot")
		}
	case appTypeUserAssignedMSI:
		if c.AppID == "" {
			return c, bad("MicrosoftAppId", "required for UserAssignedMSI: the managed identity's client id")
		}
		if c.AppTenantID == "" {
			return c, bad("MicrosoftAppTenantId", "required for UserAssignedMSI")
		}
	default:
		return c, bad("MicrosoftAppType", "unknown value %q (want MultiTenant, SingleTenant or UserAssignedMSI)", c.AppType)
	}

	c.Host = env("HOST")
	if c.AppID == "" {
		// Without an app id nothing can be authenticated: only this machine
		// may talk to the bot.
		if c.Host == "" {
			c.Host = "127.0.0.1"
		}
		if !isLoopback(c.Host) {
			return c, bad("HOST", "%q is not a loopback address; without MicrosoftAppId authentication is off, "+
				"so the bot listens only on loopback (set MicrosoftAppId, or HOST=127.0.0.1)", c.Host)
		}
	}

	cloud, err := botframework.LookupCloud(env("BOT_CLOUD"))
	if err != nil {
		return c, bad("BOT_CLOUD", "unknown value %q (want public, usgov, usgovdod or china)", env("BOT_CLOUD"))
	}
	c.Cloud = cloud
	// Signing keys and the bot's own tokens come from these: plain http
	// would let anyone on the path swap them (loopback fakes excepted).
	if c.OpenIDMetadataURL, err = secureURLVar(env, "BOT_OPENID_METADATA_URL", cloud.OpenIDMetadataURL); err != nil {
		return c, err
	}
	c.CustomAuthority = env("AZURE_AUTHORITY_HOST") != ""
	if c.AuthorityHost, err = secureURLVar(env, "AZURE_AUTHORITY_HOST", cloud.AuthorityHost); err != nil {
		return c, err
	}
	if c.GraphBaseURL, err = secureURLVar(env, "GRAPH_BASE_URL", cloud.GraphBaseURL); err != nil {
		return c, err
	}

	c.RedisURL = env("REDIS_URL")
	if c.RedisURL != "" {
		if _, err := state.ParseURL(c.RedisURL); err != nil {
			return c, bad("REDIS_URL", "%v (want redis://[user:password@]host:port/db or rediss://…, with cluster=true for a cluster)",
				strings.TrimPrefix(err.Error(), "state: REDIS_URL: "))
		}
	}
	c.RedisPrefix = env("REDIS_PREFIX")

	c.AllowedTenants = list(env("BOT_ALLOWED_TENANTS"))
	for _, t := range c.AllowedTenants {
		if !bot.IsEntraID(t) {
			return c, bad("BOT_ALLOWED_TENANTS", "%q is not a tenant id (GUID)", t)
		}
	}
	if len(c.AllowedTenants) == 0 && c.AppType != appTypeMultiTenant && c.AppTenantID != "" {
		c.AllowedTenants = []string{c.AppTenantID}
	}

	// Last, so a deployment missing more than this hears about the rest first.
	if c.AppID != "" && c.RedisURL == "" {
		return c, bad("REDIS_URL", "required when MicrosoftAppId is set: the embedded Redis is lost on restart and "+
			"not shared between replicas, so it is for local runs only")
	}

	approvers := list(env("BOT_APPROVERS"))
	if len(approvers) == 0 {
		approvers = []string{"owners"}
	}
	if c.Approvers, err = bot.ParseApproverPolicy(approvers); err != nil {
		return c, bad("BOT_APPROVERS", "%v", err)
	}

	switch v := strings.ToLower(env("BOT_PROACTIVE")); v {
	case "", "on":
		c.Proactive = true
	case "off":
	default:
		return c, bad("BOT_PROACTIVE", "unknown value %q (want on or off)", env("BOT_PROACTIVE"))
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
		def  time.Duration
	}{
		{"BOT_SCAN_INTERVAL", &c.ScanInterval, 15 * time.Minute},
		{"BOT_SWEEP_INTERVAL", &c.SweepInterval, 24 * time.Hour},
		{"BOT_REMIND_AFTER", &c.RemindAfter, 72 * time.Hour},
		{"BOT_APPROVAL_TTL", &c.ApprovalTTL, 168 * time.Hour},
	} {
		if *d.dst, err = durationVar(env, d.name, d.def); err != nil {
			return c, err
		}
	}
	if c.RemindAfter >= c.ApprovalTTL {
		return c, bad("BOT_REMIND_AFTER", "%s is not shorter than BOT_APPROVAL_TTL (%s): the reminder would come after expiry",
			c.RemindAfter, c.ApprovalTTL)
	}
	return c, nil
}

// durationVar reads a positive Go duration such as 15m or 72h.
func durationVar(env func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := env(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, bad(name, "%q is not a positive duration (e.g. 15m, 24h)", v)
	}
	return d, nil
}

func urlVar(env func(string) string, name, def string) (string, error) {
	v := env(name)
	if v == "" {
		return def, nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", bad(name, "%q is not an absolute http(s) URL", v)
	}
	return v, nil
}

func secureURLVar(env func(string) string, name, def string) (string, error) {
	v, err := urlVar(env, name, def)
	if err != nil {
		return "", err
	}
	if err := botframework.CheckSecureURL(v); err != nil {
		return "", bad(name, "%q must be https (plain http only on loopback)", v)
	}
	return v, nil
}

func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// addr is the listen address.
func (c config) addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }
