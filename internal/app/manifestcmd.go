package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/upgradeapprovals/bot/manifest"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// manifestCommand writes the Teams app package. Bad input writes nothing.
func manifestCommand(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("manifest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o manifest.Options
	var domains listFlag
	var colorIcon, outlineIcon string
	out := fs.String("out", filepath.Join("appPackage", "build", "app.zip"), "where to write the app package")
	fs.StringVar(&o.BotID, "bot-id", getenv("MicrosoftAppId"), "the Azure Bot's Microsoft App ID (default $MicrosoftAppId)")
	fs.StringVar(&o.AppID, "app-id", "", "the Teams app id (default the bot id)")
	fs.StringVar(&o.Version, "version", "1.0.0", "the package version, x.y.z; raise it for every upload")
	fs.StringVar(&o.ShortName, "name", "", "the app name, at most 30 characters (default \"Upgrade Approvals\")")
	fs.StringVar(&o.FullName, "full-name", "", "the full app name, at most 100 characters")
	fs.StringVar(&o.DeveloperName, "developer", "", "the developer (your organization), at most 32 characters")
	fs.StringVar(&o.Domain, "domain", "", "the host the bot runs on, e.g. upgrades.contoso.com")
	fs.StringVar(&o.WebsiteURL, "website-url", "", "https URL of the support page (default https://DOMAIN/)")
	fs.StringVar(&o.PrivacyURL, "privacy-url", "", "https URL of the privacy statement (default https://DOMAIN/privacy)")
	fs.StringVar(&o.TermsURL, "terms-url", "", "https URL of the terms of use (default https://DOMAIN/terms)")
	fs.Var(&domains, "valid-domain", "another domain the app may open (repeatable)")
	fs.StringVar(&o.AccentColor, "accent-color", "", "#RRGGBB (default #5B5FC7)")
	fs.StringVar(&colorIcon, "color-icon", "", "a 192x192 PNG to use instead of the built-in icon")
	fs.StringVar(&outlineIcon, "outline-icon", "", "a 32x32 white-on-transparent PNG to use instead of the built-in one")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.ValidDomains = domains
	for _, ic := range []struct {
		path string
		dst  *[]byte
	}{{colorIcon, &o.ColorIcon}, {outlineIcon, &o.OutlineIcon}} {
		if ic.path == "" {
			continue
		}
		b, err := os.ReadFile(ic.path)
		if err != nil {
			fmt.Fprintln(stderr, "manifest:", err)
			return 2
		}
		*ic.dst = b
	}
	files, err := manifest.Build(o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := writeAtomically(*out, files.WriteZip); err != nil {
		fmt.Fprintln(stderr, "manifest:", err)
		return 1
	}
	fmt.Fprintf(stderr, "wrote %s: upload it in the Teams admin center (Manage apps > Upload new app) or sideload it\n", *out)
	return 0
}

// writeAtomically writes path through a temporary file, so a failure never
// leaves a half-written package behind.
func writeAtomically(path string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".app-*.zip")
	if err != nil {
		return err
	}
	err = write(tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return errors.Join(err, os.Remove(tmp.Name()))
	}
	return nil
}
