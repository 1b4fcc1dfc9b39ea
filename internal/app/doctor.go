package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/state"
)

// doctorCheckTimeout bounds each of doctor's checks: a hung dependency is
// a finding, not a hang.
const doctorCheckTimeout = 20 * time.Second

// doctorCommand is `upgradebot doctor [-tenant ID]`: a preflight with the
// real configuration. Each check prints one line, ok or FAIL with the fix.
// Exit 0 when all pass, 1 when one fails, 2 on bad configuration.
func doctorCommand(ctx context.Context, args []string, getenv func(string) string, out io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(out)
	tenant := fs.String("tenant", "", "the tenant whose Graph permissions and catalog to check (default MicrosoftAppTenantId, else each of BOT_ALLOWED_TENANTS)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		var ce *configError
		fix := "fix the configuration"
		if errors.As(err, &ce) {
			fix = "fix " + ce.Var + " (README, Configuration)"
		}
		fmt.Fprintf(out, "FAIL configuration: %v — %s\n", err, fix)
		return 2
	}
	return doctor(ctx, cfg, *tenant, doctorDeps{}, out)
}

// doctorDeps are doctor's seams for tests; zero values mean production.
type doctorDeps struct {
	azureTransport *http.Client // carries Entra ID token requests
}

// report prints doctor's lines and remembers whether one failed.
type report struct {
	out    io.Writer
	failed bool
}

func (r *report) ok(format string, args ...any) {
	fmt.Fprintf(r.out, "ok   "+format+"\n", args...)
}

// warn prints what works but knows less; it does not fail doctor.
func (r *report) warn(fix, format string, args ...any) {
	fmt.Fprintf(r.out, "warn "+format+" — "+fix+"\n", args...)
}

func (r *report) fail(fix, format string, args ...any) {
	r.failed = true
	fmt.Fprintf(r.out, "FAIL "+format+" — "+fix+"\n", args...)
}

func doctor(ctx context.Context, cfg config, tenant string, d doctorDeps, out io.Writer) int {
	r := &report{out: out}
	r.ok("configuration: %s app %s, tenant %s, cloud %s", cfg.AppType, orNone(cfg.AppID), orNone(cfg.AppTenantID), cfg.Cloud.Name)
	checkRedis(ctx, cfg, r)
	if cfg.AppID == "" {
		r.fail("set MicrosoftAppId and its credential; without it authentication is off, for local runs only",
			"identity: MicrosoftAppId is not set")
	} else {
		creds := newCredentials(cfg, d.azureTransport)
		checkConnectorToken(ctx, cfg, creds, r)
		tenants := doctorTenants(cfg, tenant)
		if len(tenants) == 0 {
			r.fail("run doctor -tenant <tenant id>: a MultiTenant bot is granted Graph permissions per customer tenant",
				"Microsoft Graph: no tenant to check (MicrosoftAppTenantId is not set, BOT_ALLOWED_TENANTS is *)")
		}
		for _, tenant := range tenants {
			// With several tenants, each permission line says whose.
			where := ""
			if len(tenants) > 1 {
				where = " in tenant " + tenant
			}
			if checkGraphPermissions(ctx, cfg, creds, tenant, where, r) {
				checkCatalog(ctx, cfg, creds, tenant, d, r)
			}
		}
	}
	checkSigningKeys(ctx, cfg, r)
	if r.failed {
		return 1
	}
	return 0
}

// doctorTenants are the tenants whose Graph permissions and catalog doctor
// checks: the one asked for; for a MultiTenant bot, each customer tenant
// it serves (BOT_ALLOWED_TENANTS), where it calls Graph, so that `helm
// test` checks a MultiTenant release as it will run; else the app's own.
func doctorTenants(cfg config, asked string) []string {
	switch {
	case asked != "":
		return []string{asked}
	case cfg.AppType == appTypeMultiTenant && len(cfg.AllowedTenants) > 0:
		return cfg.AllowedTenants
	case cfg.AppTenantID != "":
		return []string{cfg.AppTenantID}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// checkRedis pings Redis, and on a cluster every master.
func checkRedis(ctx context.Context, cfg config, r *report) {
	const fix = "check REDIS_URL (rediss:// and port 6380 for Azure Cache for Redis) and that Redis is reachable from here"
	if cfg.RedisURL == "" {
		if cfg.AppID != "" {
			r.fail("set REDIS_URL", "Redis: REDIS_URL is not set")
		} else {
			r.ok("Redis: none configured (an embedded Redis, for local runs only)")
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, doctorCheckTimeout)
	defer cancel()
	rdb, closeRedis, err := state.Connect(ctx, cfg.RedisURL, slog.New(slog.DiscardHandler))
	if err != nil {
		r.fail(fix, "Redis: %v", err)
		return
	}
	defer closeRedis()
	cluster, ok := rdb.(*redis.ClusterClient)
	if !ok {
		if err := rdb.Ping(ctx).Err(); err != nil {
			r.fail(fix, "Redis does not answer: %v", err)
			return
		}
		r.ok("Redis answers")
		return
	}
	var masters atomic.Int32 // ForEachMaster calls fn concurrently
	err = cluster.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		if err := m.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("master %s: %w", m.Options().Addr, err)
		}
		masters.Add(1)
		return nil
	})
	if err != nil {
		r.fail(fix, "Redis Cluster does not answer: %v", err)
		return
	}
	r.ok("Redis Cluster answers: every master (%d)", masters.Load())
}

// credentialFix is what to do when Entra ID refuses the app's credential.
func credentialFix(cfg config) string {
	switch {
	case cfg.AppType == appTypeUserAssignedMSI:
		return "check that MicrosoftAppId is the client id of the managed identity assigned to this workload"
	case cfg.FederatedTokenFile != "":
		return "check the federated credential of the app (issuer, subject: this service account) and MicrosoftAppId"
	case cfg.CertificatePath != "":
		return "check MicrosoftAppId and that the certificate in MicrosoftAppCertificatePath is registered on the app and not expired"
	}
	return "check MicrosoftAppId and MicrosoftAppPassword (the secret's value, not its id; not expired)"
}

func checkConnectorToken(ctx context.Context, cfg config, creds *credentials, r *report) {
	ctx, cancel := context.WithTimeout(ctx, doctorCheckTimeout)
	defer cancel()
	cred, err := creds.connector()
	if err == nil {
		_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{cfg.Cloud.TokenScope}})
	}
	if err != nil {
		r.fail(credentialFix(cfg), "Bot Framework token: Entra ID refused the app's credential: %v", oneLine(err))
		return
	}
	r.ok("Bot Framework token (%s)", cfg.Cloud.TokenScope)
}

// graphScope is the token audience of cfg's Graph: its host, e.g.
// https://graph.microsoft.com/.default.
func graphScope(cfg config) string {
	u, err := url.Parse(cfg.GraphBaseURL)
	if err != nil {
		return cfg.GraphBaseURL
	}
	return u.Scheme + "://" + u.Host + "/.default"
}

// graphRoles gets a Graph token in tenant and reads the application
// permissions granted to the app there from its roles claim.
func graphRoles(ctx context.Context, cfg config, creds *credentials, tenant string) ([]string, error) {
	if cfg.AppType != appTypeMultiTenant {
		tenant = cfg.AppTenantID // as graph.Options.SingleTenant asks
	}
	cred, err := creds.forTenant(tenant)
	if err != nil {
		return nil, err
	}
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{graphScope(cfg)}})
	if err != nil {
		return nil, err
	}
	return tokenRoles(tok.Token)
}

// checkGraphPermissions reports whether a Graph token was had, and names
// every needed permission the token's roles do not list; where ends each
// permission's line.
func checkGraphPermissions(ctx context.Context, cfg config, creds *credentials, tenant, where string, r *report) bool {
	ctx, cancel := context.WithTimeout(ctx, doctorCheckTimeout)
	defer cancel()
	roles, err := graphRoles(ctx, cfg, creds, tenant)
	if errors.Is(err, errNotJWT) {
		r.fail("check GRAPH_BASE_URL and AZURE_AUTHORITY_HOST: Entra ID issues Graph tokens as JWTs",
			"Microsoft Graph token for tenant %s cannot be read: %v", tenant, err)
		return false
	}
	if err != nil {
		fix := credentialFix(cfg)
		if cfg.AppType == appTypeMultiTenant {
			fix += "; and that an admin of tenant " + tenant + " consented to the app"
		}
		r.fail(fix, "Microsoft Graph token for tenant %s: %v", tenant, oneLine(err))
		return false
	}
	r.ok("Microsoft Graph token for tenant %s", tenant)
	missing := missingPermissions(cfg, roles)
	for _, p := range neededPermissions(cfg) {
		if isMissing(missing, p) && p.optional {
			r.warn(permissionFix, "Graph permission %s is not granted%s; it is optional: %s", p.Name, where, p.Purpose)
		} else if isMissing(missing, p) {
			r.fail(permissionFix, "Graph permission %s is not granted%s; the bot needs it to: %s", p.Name, where, p.Purpose)
		} else {
			r.ok("Graph permission %s%s", p.Name, where)
		}
	}
	return true
}

// permissionFix is the fix of a missing Graph permission.
const permissionFix = "add it as an application permission of Microsoft Graph and grant admin consent " +
	"(or run deploy/azure/grant-graph-permissions.sh); tokens carry it within the hour"

func isMissing(missing []GraphPermission, p GraphPermission) bool {
	for _, m := range missing {
		if m.Name == p.Name {
			return true
		}
	}
	return false
}

func checkCatalog(ctx context.Context, cfg config, creds *credentials, tenant string, d doctorDeps, r *report) {
	ctx, cancel := context.WithTimeout(ctx, doctorCheckTimeout)
	defer cancel()
	g, err := newGraph(cfg, creds, deps{azureTransport: d.azureTransport}, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err == nil {
		var apps []approval.AppDefinition
		if apps, err = g.Published(ctx, tenant); err == nil {
			r.ok("org app catalog of tenant %s is readable (%d apps published)", tenant, len(apps))
			return
		}
	}
	r.fail("grant AppCatalog.Read.All and check GRAPH_BASE_URL", "org app catalog of tenant %s: %v", tenant, oneLine(err))
}

func checkSigningKeys(ctx context.Context, cfg config, r *report) {
	ctx, cancel := context.WithTimeout(ctx, doctorCheckTimeout)
	defer cancel()
	const fix = "check outbound https to the Bot Framework (login.botframework.com, or the cloud's) and BOT_OPENID_METADATA_URL"
	appID := cfg.AppID
	if appID == "" {
		appID = "00000000-0000-0000-0000-000000000000" // the keys do not depend on it
	}
	v, err := botframework.NewVerifier(botframework.VerifierOptions{
		AppID: appID, Issuer: cfg.Cloud.Issuer, OpenIDMetadataURL: cfg.OpenIDMetadataURL,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err == nil {
		err = v.Load(ctx)
	}
	if err != nil {
		r.fail(fix, "Bot Framework signing keys: %v", oneLine(err))
		return
	}
	r.ok("Bot Framework signing keys load (%s)", cfg.OpenIDMetadataURL)
}

// oneLine keeps a multi-line error (azidentity's quote Entra ID's answer
// over several lines) on its report line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// logMissingPermissions logs, once at start, each Graph permission the
// app's token in its home tenant lacks, as doctor names them: the bot runs
// on, and the first Graph call needing one fails with the same name.
func logMissingPermissions(ctx context.Context, cfg config, creds *credentials, logger *slog.Logger) {
	if cfg.AppID == "" || cfg.AppTenantID == "" {
		return // a MultiTenant bot's permissions are per customer tenant: doctor -tenant checks one
	}
	ctx, cancel := context.WithTimeout(ctx, doctorCheckTimeout)
	defer cancel()
	roles, err := graphRoles(ctx, cfg, creds, cfg.AppTenantID)
	if err != nil {
		logger.Warn("cannot check the Graph permissions at start", "tenant", cfg.AppTenantID, "err", err)
		return
	}
	for _, p := range missingPermissions(cfg, roles) {
		if p.optional {
			logger.Warn("an optional Graph application permission is not granted", "permission", p.Name, "purpose", p.Purpose,
				"tenant", cfg.AppTenantID, "fix", permissionFix)
			continue
		}
		logger.Error("a Graph application permission is not granted", "permission", p.Name, "purpose", p.Purpose,
			"tenant", cfg.AppTenantID, "fix", permissionFix)
	}
}
