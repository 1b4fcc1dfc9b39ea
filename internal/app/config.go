package app

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/botframework"
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
	// OpsPort (OPS_PORT) serves /healthz, /readyz and /metrics instead of
	// Port, so what exposes Port to Teams (an Ingress) exposes
	// /api/messages alone. Default 0: they are served on Port.
	OpsPort int

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

	RedisURL       string                  // REDIS_URL; empty runs an embedded Redis
	RedisPrefix    string                  // REDIS_PREFIX, default "upgradebot:"
	AllowedTenants []string                // BOT_ALLOWED_TENANTS; default the app's tenant for SingleTenant and UserAssignedMSI
	Approvers      approval.ApproverPolicy // BOT_APPROVERS, default "owners"
	// ApprovalQuorum is BOT_APPROVAL_QUORUM: how many distinct approvers
	// must approve an upgrade (a personal scope: always one). Default 1.
	ApprovalQuorum int

	Proactive     bool          // BOT_PROACTIVE: on (default) or off, unprompted posts everywhere
	ScanInterval  time.Duration // BOT_SCAN_INTERVAL: how often the catalog is read per tenant, default 15m
	SweepInterval time.Duration // BOT_SWEEP_INTERVAL: how often every installation scope is scanned, default 24h
	RemindAfter   time.Duration // BOT_REMIND_AFTER: one reminder after, default 72h
	Snooze        time.Duration // BOT_SNOOZE: "Remind me later" puts the reminder off this long, default 72h
	ApprovalTTL   time.Duration // BOT_APPROVAL_TTL: a request expires after, default 168h
	UpgradeGrace  time.Duration // BOT_UPGRADE_GRACE: an unconfirmed upgrade waits this long before Retry, default 10m
	// CheckWindow is BOT_CHECK_WINDOW: a repeated check in one conversation
	// within it answers from the check before, without Graph. Default 30s;
	// 0 ("off") reads Graph for every check.
	CheckWindow time.Duration
	// AuditRetention is BOT_AUDIT_RETENTION: how long a tenant's audit
	// trail keeps an event (and an idle conversation's history). Default
	// 8760h.
	AuditRetention time.Duration

	// AdminConversation is BOT_ADMIN_CONVERSATION: a team channel
	// (19:…@thread.tacv2) or group chat (19:…@thread.v2) where the bot is
	// installed, for the admins; empty: none.
	AdminConversation string
	Admins            approval.ApproverPolicy // BOT_ADMINS: group:/user: entries or owners; default owners
	DigestInterval    time.Duration           // BOT_DIGEST_INTERVAL: default 168h; 0 ("off"): no digest
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

// environ reads configuration variables.
type environ func(string) string

// get is a variable's value, trimmed.
func (e environ) get(name string) string { return strings.TrimSpace(e(name)) }

// loadConfig reads the configuration. The first problem found is the error,
// naming its variable; the checks run in the order below, so a deployment
// hears about its identity before its Redis.
func loadConfig(getenv func(string) string) (config, error) {
	var c config
	for _, read := range []func(environ) error{
		c.readPort, c.readOpsPort, c.readIdentity, c.readHost, c.readEndpoints, c.readRedis, c.readTenants,
		// After the rest of the deployment's essentials, so a deployment
		// missing more than Redis hears about the rest first.
		c.requireRedis,
		c.readApprovers, c.readProactive, c.readAdmins,
	} {
		if err := read(environ(getenv)); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (c *config) readPort(e environ) error {
	c.Port = 3978
	if v := e.get("PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 0 || p > 65535 {
			return bad("PORT", "%q is not a port number", v)
		}
		c.Port = p
	}
	return nil
}

func (c *config) readOpsPort(e environ) error {
	v := e.get("OPS_PORT")
	if v == "" {
		return nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 1 || p > 65535 {
		return bad("OPS_PORT", "%q is not a port number", v)
	}
	if p == c.Port {
		return bad("OPS_PORT", "%d is PORT too; unset OPS_PORT to serve everything on PORT", p)
	}
	c.OpsPort = p
	return nil
}

// readIdentity reads who the bot is (its Entra app) and how it proves it.
func (c *config) readIdentity(e environ) error {
	c.AppID = e.get("MicrosoftAppId")
	c.AppPassword = e("MicrosoftAppPassword") // a secret may legitimately contain spaces
	c.AppTenantID = e.get("MicrosoftAppTenantId")
	c.AppType = e.get("MicrosoftAppType")
	if c.AppType == "" {
		c.AppType = appTypeMultiTenant
	}
	c.CertificatePath = e.get("MicrosoftAppCertificatePath")
	c.CertificatePassword = e("MicrosoftAppCertificatePassword")
	c.FederatedTokenFile = e.get("AZURE_FEDERATED_TOKEN_FILE")
	hasSecret := c.AppPassword != "" || c.CertificatePath != "" || c.FederatedTokenFile != ""
	if c.AppID != "" && !approval.IsEntraID(c.AppID) {
		return bad("MicrosoftAppId", "%q is not a GUID", c.AppID)
	}
	if c.AppTenantID != "" && !approval.IsEntraID(c.AppTenantID) {
		return bad("MicrosoftAppTenantId", "%q is not a GUID", c.AppTenantID)
	}
	switch c.AppType {
	case appTypeMultiTenant:
		if c.AppID != "" && !hasSecret {
			return bad("MicrosoftAppPassword", "required for a MultiTenant bot (or MicrosoftAppCertificatePath, or AZURE_FEDERATED_TOKEN_FILE)")
		}
	case appTypeSingleTenant:
		if c.AppID != "" && !hasSecret {
			return bad("MicrosoftAppPassword", "required for a SingleTenant bot (or MicrosoftAppCertificatePath, or AZURE_FEDERATED_TOKEN_FILE)")
		}
		if c.AppID != "" && c.AppTenantID == "" {
			return bad("MicrosoftAppTenantId", "required for a SingleTenant bot")
		}
	case appTypeUserAssignedMSI:
		if c.AppID == "" {
			return bad("MicrosoftAppId", "required for UserAssignedMSI: the managed identity's client id")
		}
		if c.AppTenantID == "" {
			return bad("MicrosoftAppTenantId", "required for UserAssignedMSI")
		}
	default:
		return bad("MicrosoftAppType", "unknown value %q (want MultiTenant, SingleTenant or UserAssignedMSI)", c.AppType)
	}
	return nil
}

// readHost reads the interface to listen on.
func (c *config) readHost(e environ) error {
	c.Host = e.get("HOST")
	if _, _, err := net.SplitHostPort(c.Host); err == nil {
		return bad("HOST", "%q holds a port; set the host in HOST and the port in PORT", c.Host)
	}
	if c.AppID != "" {
		return nil
	}
	// Without an app id nothing can be authenticated: only this machine
	// may talk to the bot.
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if !botframework.IsLoopback(c.Host) {
		return bad("HOST", "%q is not a loopback address; without MicrosoftAppId authentication is off, "+
			"so the bot listens only on loopback (set MicrosoftAppId, or HOST=127.0.0.1)", c.Host)
	}
	return nil
}

// readEndpoints reads the cloud and every outside endpoint it defaults.
func (c *config) readEndpoints(e environ) error {
	cloud, err := botframework.LookupCloud(e.get("BOT_CLOUD"))
	if err != nil {
		return bad("BOT_CLOUD", "unknown value %q (want public, usgov, usgovdod or china)", e.get("BOT_CLOUD"))
	}
	c.Cloud = cloud
	// Signing keys and the bot's own tokens come from these: plain http
	// would let anyone on the path swap them (loopback fakes excepted).
	if c.OpenIDMetadataURL, err = secureURLVar(e, "BOT_OPENID_METADATA_URL", cloud.OpenIDMetadataURL); err != nil {
		return err
	}
	c.CustomAuthority = e.get("AZURE_AUTHORITY_HOST") != ""
	if c.AuthorityHost, err = secureURLVar(e, "AZURE_AUTHORITY_HOST", cloud.AuthorityHost); err != nil {
		return err
	}
	c.GraphBaseURL, err = secureURLVar(e, "GRAPH_BASE_URL", cloud.GraphBaseURL)
	return err
}

func (c *config) readRedis(e environ) error {
	c.RedisURL = e.get("REDIS_URL")
	if c.RedisURL != "" {
		if _, err := state.ParseURL(c.RedisURL); err != nil {
			return bad("REDIS_URL", "%v (want redis://[user:password@]host:port/db or rediss://…, with cluster=true for a cluster)",
				strings.TrimPrefix(err.Error(), "state: REDIS_URL: "))
		}
	}
	c.RedisPrefix = e.get("REDIS_PREFIX")
	return nil
}

func (c *config) requireRedis(environ) error {
	if c.AppID != "" && c.RedisURL == "" {
		return bad("REDIS_URL", "required when MicrosoftAppId is set: the embedded Redis is lost on restart and "+
			"not shared between replicas, so it is for local runs only")
	}
	return nil
}

// readTenants reads which tenants may talk to the bot.
func (c *config) readTenants(e environ) error {
	c.AllowedTenants = list(e.get("BOT_ALLOWED_TENANTS"))
	// "*" says any tenant on purpose: a MultiTenant bot anyone can add to
	// their tenant would otherwise serve (and call Graph for) every tenant
	// by default.
	if slices.Equal(c.AllowedTenants, []string{"*"}) {
		c.AllowedTenants = nil
		return nil
	}
	for _, t := range c.AllowedTenants {
		if !approval.IsEntraID(t) {
			return bad("BOT_ALLOWED_TENANTS", "%q is not a tenant id (GUID, or * alone for any tenant)", t)
		}
	}
	if len(c.AllowedTenants) == 0 && c.AppType == appTypeMultiTenant && c.AppID != "" {
		return bad("BOT_ALLOWED_TENANTS", "required for a MultiTenant bot: set the customer tenant ids it serves, "+
			"or * to accept activities from any tenant")
	}
	if len(c.AllowedTenants) == 0 && c.AppType != appTypeMultiTenant && c.AppTenantID != "" {
		c.AllowedTenants = []string{c.AppTenantID}
	}
	return nil
}

// maxQuorum bounds BOT_APPROVAL_QUORUM: a card names everyone who
// approved, and a bigger number is surely a typo.
const maxQuorum = 20

func (c *config) readApprovers(e environ) error {
	approvers := list(e.get("BOT_APPROVERS"))
	if len(approvers) == 0 {
		approvers = []string{"owners"}
	}
	var err error
	if c.Approvers, err = approval.ParseApproverPolicy(approvers); err != nil {
		return bad("BOT_APPROVERS", "%v", err)
	}
	c.ApprovalQuorum = 1
	if v := e.get("BOT_APPROVAL_QUORUM"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxQuorum {
			return bad("BOT_APPROVAL_QUORUM", "%q is not a number of approvers from 1 to %d", v, maxQuorum)
		}
		c.ApprovalQuorum = n
	}
	return nil
}

// readProactive reads what the bot does unprompted, and when.
func (c *config) readProactive(e environ) error {
	var err error
	switch v := strings.ToLower(e.get("BOT_PROACTIVE")); v {
	case "", "on":
		c.Proactive = true
	case "off":
	default:
		return bad("BOT_PROACTIVE", "unknown value %q (want on or off)", e.get("BOT_PROACTIVE"))
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
		{"BOT_UPGRADE_GRACE", &c.UpgradeGrace, 10 * time.Minute},
		{"BOT_SNOOZE", &c.Snooze, 72 * time.Hour},
		{"BOT_AUDIT_RETENTION", &c.AuditRetention, 8760 * time.Hour},
	} {
		if *d.dst, err = durationVar(e, d.name, d.def); err != nil {
			return err
		}
	}
	if v := e.get("BOT_CHECK_WINDOW"); strings.EqualFold(v, "off") {
		c.CheckWindow = 0
	} else if c.CheckWindow, err = durationVar(e, "BOT_CHECK_WINDOW", 30*time.Second); err != nil {
		return err
	}
	if c.RemindAfter >= c.ApprovalTTL {
		return bad("BOT_REMIND_AFTER", "%s is not shorter than BOT_APPROVAL_TTL (%s): the reminder would come after expiry",
			c.RemindAfter, c.ApprovalTTL)
	}
	return nil
}

// adminConversationID is a team channel's or a group chat's conversation id.
var adminConversationID = regexp.MustCompile(`^19:[^@\s;]+@thread\.(tacv2|v2)$`)

// readAdmins reads the admins' conversation, who may act there, and how
// often they get a digest.
func (c *config) readAdmins(e environ) error {
	c.AdminConversation = e.get("BOT_ADMIN_CONVERSATION")
	if c.AdminConversation != "" && !adminConversationID.MatchString(c.AdminConversation) {
		return bad("BOT_ADMIN_CONVERSATION", "%q is not a team channel id (19:…@thread.tacv2) or a group chat id (19:…@thread.v2)",
			c.AdminConversation)
	}
	admins := list(e.get("BOT_ADMINS"))
	if len(admins) == 0 {
		admins = []string{"owners"}
	}
	for _, a := range admins {
		if a != "owners" && !strings.HasPrefix(a, "group:") && !strings.HasPrefix(a, "user:") {
			return bad("BOT_ADMINS", "%q is not owners, group:<object id> or user:<object id>", a)
		}
	}
	var err error
	if c.Admins, err = approval.ParseApproverPolicy(admins); err != nil {
		return bad("BOT_ADMINS", "%v", err)
	}
	if v := e.get("BOT_DIGEST_INTERVAL"); strings.EqualFold(v, "off") {
		c.DigestInterval = 0
	} else if c.DigestInterval, err = durationVar(e, "BOT_DIGEST_INTERVAL", 168*time.Hour); err != nil {
		return err
	}
	return nil
}

// durationVar reads a positive Go duration such as 15m or 72h.
func durationVar(e environ, name string, def time.Duration) (time.Duration, error) {
	v := e.get(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, bad(name, "%q is not a positive duration (e.g. 15m, 24h)", v)
	}
	return d, nil
}

func urlVar(e environ, name, def string) (string, error) {
	v := e.get(name)
	if v == "" {
		return def, nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", bad(name, "%q is not an absolute http(s) URL", v)
	}
	return v, nil
}

func secureURLVar(e environ, name, def string) (string, error) {
	v, err := urlVar(e, name, def)
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

// addr is the listen address.
func (c config) addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// opsAddr is the listen address of /healthz, /readyz and /metrics when
// OPS_PORT is set.
func (c config) opsAddr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.OpsPort)) }

// ConfigNames are the environment variables the bot's configuration reads,
// sorted. They are taken from loadConfig itself (every name it asks for when
// nothing is set, which is when it reads them all), so a deployment's
// manifests can be checked against the code rather than against a copy.
func ConfigNames() []string {
	seen := map[string]bool{}
	if _, err := loadConfig(func(name string) string { seen[name] = true; return "" }); err != nil {
		panic("app: the empty configuration is refused: " + err.Error())
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
