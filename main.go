// Command upgradebot is a Microsoft Teams bot that gets Teams app upgrades
// approved in chat: it shows which resource-specific consent permissions an
// upgrade adds, and upgrades the app when an approver says so.
//
// Usage:
//
//	upgradebot                   the bot; without MicrosoftAppId, the sandbox
//	upgradebot serve             the bot (without MicrosoftAppId: no Graph, loopback only)
//	upgradebot manifest [flags]  write the Teams app package (see -h)
//	upgradebot sandbox           run locally against a fake Graph tenant
//	upgradebot healthcheck       exit 0 when the local bot answers /healthz
//	upgradebot doctor [-tenant]  check the configuration, Redis, tokens, Graph permissions, catalog, signing keys
//	upgradebot audit [flags]     print the audit trail from REDIS_URL as CSV or JSON lines (see -h)
//	upgradebot inventory [flags] export the installations behind the catalog from REDIS_URL as CSV or a JSON array (see -h)
package main

import (
	"context"
	"os"
	"runtime"

	"github.com/upgradeapprovals/bot/internal/app"
)

func main() {
	// The bot serves no profiles, so it keeps no heap profile either: the
	// runtime's default sampling holds up to a MiB of bucket tables that
	// nothing reads.
	runtime.MemProfileRate = 0
	os.Exit(app.Run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
