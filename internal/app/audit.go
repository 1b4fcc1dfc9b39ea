package app

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/state"
)

// AuditHeader is the first line of `upgradebot audit`'s CSV, one column
// per field of an event; README documents it, and it only ever grows at
// its end.
var AuditHeader = []string{"CreationTime", "Operation", "ActorId", "ActorName", "TenantId", "ScopeKind", "ScopeId",
	"AppId", "AppName", "FromVersion", "ToVersion", "PermissionsAdded", "PermissionsRemoved", "ApprovalId", "Detail"}

// auditOptions are `upgradebot audit`'s flags.
type auditOptions struct {
	tenant string        // one tenant; "" every tenant with a trail
	since  time.Duration // events appended in the last since
	json   bool          // JSON lines instead of CSV
}

// auditCommand is `upgradebot audit [--tenant ID] [--since 720h] [--format
// csv|json]`: it prints the audit trail from REDIS_URL to stdout, one event
// a line, oldest first (tenant after tenant, sorted, without --tenant).
// Exit 0 when printed, 1 when Redis or stdout fails, 2 on a bad flag or
// configuration (the line names it).
func auditCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o auditOptions
	fs.StringVar(&o.tenant, "tenant", "", "the tenant id whose trail to print (default: every tenant's, one after another)")
	fs.DurationVar(&o.since, "since", 720*time.Hour, "print the events of this long back (a Go duration)")
	format := fs.String("format", "csv", "csv (with a header line) or json (one object a line)")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2 // the flag package named the flag
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "audit: unexpected argument %q (flags are --tenant, --since, --format)\n", fs.Arg(0))
		return 2
	case o.since <= 0:
		fmt.Fprintf(stderr, "audit: -since: %s is not a positive duration (e.g. 24h, 720h)\n", o.since)
		return 2
	case *format != "csv" && *format != "json":
		fmt.Fprintf(stderr, "audit: -format: unknown value %q (want csv or json)\n", *format)
		return 2
	}
	if o.tenant != "" && !approval.IsEntraID(o.tenant) {
		fmt.Fprintf(stderr, "audit: -tenant: %q is not a tenant id (GUID)\n", o.tenant)
		return 2
	}
	o.json = *format == "json"
	o.tenant = strings.ToLower(strings.TrimSpace(o.tenant))
	cfg, err := loadConfig(getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	store, closeRedis, code := commandStore(ctx, cfg, "audit", "the audit trail is in the bot's Redis", newLogger(stderr), stderr)
	if code != 0 {
		return code
	}
	defer closeRedis()
	if err := printAudit(ctx, store.Trail(), o, time.Now(), stdout); err != nil {
		fmt.Fprintln(stderr, "audit:", err)
		return 1
	}
	return 0
}

// commandStore is the bot's Redis store for a command that reads it (audit,
// inventory): REDIS_URL is required (why says what is there), and an exit
// code other than 0 says the command is over, its reason written.
func commandStore(ctx context.Context, c config, command, why string, logger *slog.Logger, stderr io.Writer) (*state.Store, func() error, int) {
	if c.RedisURL == "" {
		fmt.Fprintln(stderr, "config: REDIS_URL: required: "+why)
		return nil, nil, 2
	}
	rdb, closeRedis, err := state.Connect(ctx, c.RedisURL, logger)
	if err != nil {
		fmt.Fprintln(stderr, command+":", err)
		return nil, nil, 1
	}
	return state.New(rdb, state.Options{Prefix: c.RedisPrefix}), closeRedis, 0
}

// printAudit writes the trail as o asks, streaming: each event is written
// as it is read, a page at a time.
func printAudit(ctx context.Context, trail *state.Trail, o auditOptions, now time.Time, stdout io.Writer) error {
	tenants := []string{o.tenant}
	if o.tenant == "" {
		var err error
		if tenants, err = trail.Tenants(ctx); err != nil {
			return err
		}
	}
	bw := bufio.NewWriterSize(stdout, 64<<10)
	var write func(approval.AuditEvent) error
	var flush func() error
	if o.json {
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		write, flush = func(e approval.AuditEvent) error { return enc.Encode(e) }, bw.Flush
	} else {
		cw := csv.NewWriter(bw)
		if err := cw.Write(AuditHeader); err != nil {
			return err
		}
		write = func(e approval.AuditEvent) error { return cw.Write(auditRecord(e)) }
		flush = func() error { cw.Flush(); return errors.Join(cw.Error(), bw.Flush()) }
	}
	since := now.Add(-o.since)
	for _, tenant := range tenants {
		if err := trail.Read(ctx, tenant, since, write); err != nil {
			flush()
			return err
		}
	}
	return flush()
}

// auditRecord is e as a CSV line under AuditHeader. A cell a spreadsheet
// would take for a formula (app names and Graph's messages are not the
// bot's to vouch for) is quoted with a leading apostrophe.
func auditRecord(e approval.AuditEvent) []string {
	r := []string{e.At.UTC().Format("2006-01-02T15:04:05.000Z"), string(e.Operation), e.ActorID, e.Actor, e.TenantID,
		string(e.ScopeKind), e.ScopeID, e.AppID, e.App, e.From, e.To, approval.FormatPermissions(e.Added),
		approval.FormatPermissions(e.Removed), e.ApprovalID, e.Detail}
	for i, c := range r {
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			r[i] = "'" + c
		}
	}
	return r
}
