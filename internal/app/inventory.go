package app

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/state"
)

// inventoryCommand writes every known installation behind the catalog, one
// row each, from the bot's Redis (REDIS_URL, REDIS_PREFIX): of one tenant
// (--tenant, default MicrosoftAppTenantId), or of every tenant the bot is
// in. A bad flag exits 2 naming it.
func inventoryCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inventory", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tenant := fs.String("tenant", "", "the tenant to list (default MicrosoftAppTenantId; without it, every tenant the bot is in)")
	format := fs.String("format", "csv", "csv or json")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2 // the flag package named the flag
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "inventory: unexpected argument %q (flags are --tenant, --format)\n", fs.Arg(0))
		return 2
	}
	if *format != "csv" && *format != "json" {
		fmt.Fprintf(stderr, "inventory: --format: unknown value %q (want csv or json)\n", *format)
		return 2
	}
	e := environ(getenv)
	t := strings.TrimSpace(*tenant)
	if t == "" {
		t = e.get("MicrosoftAppTenantId")
	}
	if t != "" && !approval.IsEntraID(t) {
		fmt.Fprintf(stderr, "inventory: --tenant: %q is not a tenant id (GUID)\n", t)
		return 2
	}
	var c config
	if err := c.readRedis(e); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	store, closeFn, code := commandStore(ctx, c, "inventory", "the inventory is read from the bot's Redis", slog.New(slog.DiscardHandler), stderr)
	if code != 0 {
		return code
	}
	defer closeFn()
	if err := exportInventory(ctx, store, t, *format, stdout); err != nil {
		fmt.Fprintln(stderr, "inventory:", err)
		return 1
	}
	return 0
}

// inventoryRow is an export row with its tenant.
type inventoryRow struct {
	TenantID string `json:"tenantId"`
	bot.InventoryRow
}

func exportInventory(ctx context.Context, store *state.Store, tenant, format string, out io.Writer) error {
	tenants := []string{tenant}
	if tenant == "" {
		var err error
		if tenants, err = store.Proactive().Tenants(ctx); err != nil {
			return err
		}
	}
	var rows []inventoryRow
	for _, t := range tenants {
		d, err := store.Admins().Inventory(ctx, t)
		if err != nil {
			return err
		}
		for _, r := range d.Rows() {
			rows = append(rows, inventoryRow{TenantID: strings.ToLower(t), InventoryRow: r})
		}
	}
	if format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []inventoryRow{}
		}
		return enc.Encode(rows)
	}
	w := csv.NewWriter(out)
	_ = w.Write([]string{"tenantId", "teamsAppId", "app", "scopeKind", "scopeId", "installationId", "installedVersion",
		"catalogVersion", "requestId", "requestStatus", "requestedAt", "seenAt"})
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, r := range rows {
		_ = w.Write([]string{r.TenantID, r.TeamsAppID, csvSafe(r.App), string(r.ScopeKind), r.ScopeID, r.InstallationID, r.Version,
			r.CatalogVersion, r.RequestID, string(r.RequestStatus), stamp(r.RequestedAt), stamp(r.SeenAt)})
	}
	w.Flush()
	return errors.Join(w.Error(), flushErr(out))
}

// csvSafe keeps an app's name (from whoever uploaded the app) from being a
// formula when the export is opened in a spreadsheet.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func flushErr(w io.Writer) error {
	if f, ok := w.(*os.File); ok {
		return f.Sync()
	}
	return nil
}
