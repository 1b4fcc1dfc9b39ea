package app

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Version is the bot's version: the Helm chart's appVersion and its image
// tag (a test compares).
const Version = "1.0.0"

// Run executes a subcommand and returns the process exit code: 0 on
// success, 1 on a runtime failure, 2 on bad usage or configuration. What a
// command prints as its output (audit, inventory) goes to stdout; logs and
// everything said to the operator go to stderr.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := ""
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	if cmd == "" {
		// README's first command: with no identity there is nothing real to
		// serve, so show the product working against the sandbox's tenant.
		cmd = "serve"
		if strings.TrimSpace(getenv("MicrosoftAppId")) == "" {
			cmd = "sandbox"
		}
	}
	switch cmd {
	case "serve":
		cfg, err := loadConfig(getenv)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		logger := newLogger(stderr)
		if err := serve(ctx, cfg, logger, deps{}); err != nil {
			logger.Error("bot stopped", "err", err)
			return 1
		}
		return 0
	case "manifest":
		return manifestCommand(args, getenv, stderr)
	case "sandbox":
		return sandboxCommand(ctx, getenv, stderr)
	case "healthcheck":
		return healthcheck(ctx, getenv, stderr)
	case "doctor":
		return doctorCommand(ctx, args, getenv, stderr)
	case "audit":
		return auditCommand(ctx, args, getenv, stdout, stderr)
	case "inventory":
		return inventoryCommand(ctx, args, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stderr, "usage: upgradebot [serve|manifest|sandbox|healthcheck|doctor|audit|inventory]")
		return 0
	}
	fmt.Fprintf(stderr, "upgradebot: unknown command %q (want serve, manifest, sandbox, healthcheck, doctor, audit or inventory)\n", cmd)
	return 2
}
