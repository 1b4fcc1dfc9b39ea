// Package manifest builds the Teams app package an admin uploads: a zip
// holding manifest.json (with a zh-CN localization file) and the two icons.
package manifest

import (
	"archive/zip"
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/upgradeapprovals/bot/approval"
)

// SchemaVersion is the Teams manifest schema the package declares: the
// newest in Microsoft's official @microsoft/app-manifest schemas.
const SchemaVersion = "1.30"

//go:embed manifest.json.tmpl zh-cn.json.tmpl
var templates embed.FS

// Options are what an admin decides about the package. Zero values take the
// documented defaults; BotID is required.
type Options struct {
	// BotID is the Azure Bot's Microsoft App ID. Required.
	BotID string
	// AppID is the Teams app id. Default BotID.
	AppID string
	// Version is the package version, x.y.z. Default "1.0.0".
	Version string
	// ShortName (≤ 30 characters) and FullName (≤ 100). Defaults
	// "Upgrade Approvals" and "Upgrade Approvals for Teams apps".
	ShortName, FullName string
	// DeveloperName (≤ 32). Default "Upgrade Approvals".
	DeveloperName string
	// Domain is where the bot is hosted, e.g. "upgrades.contoso.com". It
	// is added to validDomains and is the default base of the URLs below.
	Domain string
	// WebsiteURL, PrivacyURL, TermsURL: https. Defaults https://Domain/,
	// https://Domain/privacy and https://Domain/terms; required without Domain.
	WebsiteURL, PrivacyURL, TermsURL string
	// ValidDomains are more domains the app may open.
	ValidDomains []string
	// AccentColor is a #RRGGBB colour. Default the icon's, "#5B5FC7".
	AccentColor string
	// ColorIcon (192×192 PNG) and OutlineIcon (32×32 PNG, white on
	// transparent). Defaults: drawn by this package.
	ColorIcon, OutlineIcon []byte
}

// Error is an invalid option; Field names the option.
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string { return "manifest: " + e.Field + ": " + e.Msg }

func invalid(field, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

var (
	version = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	hexRGB  = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
	token   = regexp.MustCompile(`\$\{\w+\}`)
	// A validDomains entry: a host name, optionally with a leading "*." .
	domain = regexp.MustCompile(`^(\*\.)?([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}(:[0-9]{1,5})?$`)
)

// Files are the package's files by name.
type Files map[string][]byte

// Build validates opts and returns the package's files.
func Build(opts Options) (Files, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	// One command list per scope, so each scope's menu can differ later.
	scopes := []string{"personal", "groupChat", "team"}
	var lists []commandList
	var zhCommands strings.Builder
	for i, scope := range scopes {
		lists = append(lists, commandList{Scopes: []string{scope}, Commands: commands})
		for j, c := range commandsZH {
			for _, kv := range [][2]string{{"title", c.Title}, {"description", c.Description}} {
				k, _ := json.Marshal(fmt.Sprintf("bots[0].commandLists[%d].commands[%d].%s", i, j, kv[0]))
				v, _ := json.Marshal(kv[1])
				fmt.Fprintf(&zhCommands, ",\n  %s: %s", k, v)
			}
		}
	}
	values := map[string]any{
		"SchemaVersion": SchemaVersion, "Version": o.Version, "AppID": o.AppID, "BotID": o.BotID,
		"ShortName": o.ShortName, "FullName": o.FullName, "DeveloperName": o.DeveloperName,
		"WebsiteURL": o.WebsiteURL, "PrivacyURL": o.PrivacyURL, "TermsURL": o.TermsURL,
		"AccentColor": o.AccentColor, "ValidDomains": o.ValidDomains, "CommandLists": lists,
		"ShortNameZH": zh(o.ShortName, "Upgrade Approvals", "升级审批"),
		"FullNameZH":  zh(o.FullName, "Upgrade Approvals for Teams apps", "Teams 应用升级审批"),
	}
	raw := map[string]string{"SchemaVersionRaw": SchemaVersion, "CommandLocalizations": zhCommands.String()}
	files := Files{"color.png": o.ColorIcon, "outline.png": o.OutlineIcon}
	for name, tmpl := range map[string]string{"manifest.json": "manifest.json.tmpl", "zh-cn.json": "zh-cn.json.tmpl"} {
		b, err := render(tmpl, values, raw)
		if err != nil {
			return nil, err
		}
		files[name] = b
	}
	return files, nil
}

type command struct {
	Title       string `json:"title"`
	Description string `json:"description"`
}

type commandList struct {
	Scopes   []string  `json:"scopes"`
	Commands []command `json:"commands"`
}

var (
	commands = []command{
		{"check", "List pending app upgrades here, with their permission changes"},
		{"history", "Show recent approvals and upgrades here"},
		{"help", "Show what I can do"},
	}
	commandsZH = []command{
		{"检查", "列出此处待升级的应用及其权限变化"},
		{"历史", "显示此处最近的批准和升级"},
		{"帮助", "显示我能做什么"},
	}
)

// zh translates a name the admin left at its default; a custom name stays.
func zh(name, def, translated string) string {
	if name == def {
		return translated
	}
	return name
}

// render fills a template's ${Name} tokens: values as JSON, raw as is.
// (Not text/template: its reflective method lookup makes the linker keep
// every exported method in the program, and with msgraph-sdk-go that
// quadruples the binary.)
func render(name string, values map[string]any, raw map[string]string) ([]byte, error) {
	t, err := templates.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var failed error
	filled := token.ReplaceAllStringFunc(string(t), func(tok string) string {
		key := tok[2 : len(tok)-1]
		if v, ok := raw[key]; ok {
			return v
		}
		v, ok := values[key]
		if !ok {
			failed = fmt.Errorf("manifest: template %s uses unknown ${%s}", name, key)
			return ""
		}
		b, err := json.Marshal(v)
		if err != nil {
			failed = err
		}
		return string(b)
	})
	if failed != nil {
		return nil, failed
	}
	// Re-indent, and prove the template made valid JSON.
	var out bytes.Buffer
	if err := json.Indent(&out, []byte(filled), "", "  "); err != nil {
		return nil, fmt.Errorf("manifest: template %s made invalid JSON: %w", name, err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func (o Options) withDefaults() (Options, error) {
	if o.BotID == "" {
		return o, invalid("bot id", "required: the Azure Bot's Microsoft App ID (MicrosoftAppId)")
	}
	if !approval.IsEntraID(o.BotID) {
		return o, invalid("bot id", "%q is not a GUID", o.BotID)
	}
	if o.AppID == "" {
		o.AppID = o.BotID
	}
	if !approval.IsEntraID(o.AppID) {
		return o, invalid("app id", "%q is not a GUID", o.AppID)
	}
	if o.Version == "" {
		o.Version = "1.0.0"
	}
	if !version.MatchString(o.Version) {
		return o, invalid("version", "%q is not x.y.z", o.Version)
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.ShortName, "Upgrade Approvals")
	def(&o.FullName, "Upgrade Approvals for Teams apps")
	def(&o.DeveloperName, "Upgrade Approvals")
	def(&o.AccentColor, "#5B5FC7")
	for _, f := range []struct {
		field string
		value string
		max   int
	}{{"name", o.ShortName, 30}, {"full name", o.FullName, 100}, {"developer name", o.DeveloperName, 32}} {
		if n := utf8.RuneCountInString(strings.TrimSpace(f.value)); n == 0 || n > f.max {
			return o, invalid(f.field, "%q has %d characters; Teams allows 1 to %d", f.value, n, f.max)
		}
	}
	if !hexRGB.MatchString(o.AccentColor) {
		return o, invalid("accent color", "%q is not #RRGGBB", o.AccentColor)
	}
	if o.Domain != "" {
		if !domain.MatchString(o.Domain) || strings.HasPrefix(o.Domain, "*.") {
			return o, invalid("domain", "%q is not a host name (no scheme, no path)", o.Domain)
		}
		def(&o.WebsiteURL, "https://"+o.Domain+"/")
		def(&o.PrivacyURL, "https://"+o.Domain+"/privacy")
		def(&o.TermsURL, "https://"+o.Domain+"/terms")
		o.ValidDomains = append([]string{o.Domain}, o.ValidDomains...)
	}
	for _, f := range []struct{ field, value string }{
		{"website url", o.WebsiteURL}, {"privacy url", o.PrivacyURL}, {"terms url", o.TermsURL},
	} {
		if f.value == "" {
			return o, invalid(f.field, "required when no domain is given")
		}
		u, err := url.Parse(f.value)
		if err != nil || u.Scheme != "https" || u.Host == "" || len(f.value) > 2048 {
			return o, invalid(f.field, "%q is not an https URL", f.value)
		}
	}
	if o.ValidDomains == nil {
		o.ValidDomains = []string{}
	}
	for _, d := range o.ValidDomains {
		if !domain.MatchString(d) {
			return o, invalid("valid domain", "%q is not a host name (no scheme, no path)", d)
		}
	}
	if o.ColorIcon == nil {
		o.ColorIcon = ColorIcon()
	}
	if o.OutlineIcon == nil {
		o.OutlineIcon = OutlineIcon()
	}
	if err := checkIcon("color icon", o.ColorIcon, ColorIconSize, false); err != nil {
		return o, err
	}
	if err := checkIcon("outline icon", o.OutlineIcon, OutlineIconSize, true); err != nil {
		return o, err
	}
	return o, nil
}

// checkIcon enforces Teams' icon rules: PNG, exact size, and for the
// outline icon only white or transparent pixels.
func checkIcon(field string, b []byte, size int, outline bool) error {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return invalid(field, "not a PNG: %v", err)
	}
	if r := img.Bounds(); r.Dx() != size || r.Dy() != size {
		return invalid(field, "%dx%d pixels; Teams wants %dx%d", r.Dx(), r.Dy(), size, size)
	}
	if outline && !whiteOnTransparent(img) {
		return invalid(field, "must be white on a transparent background")
	}
	return nil
}

func whiteOnTransparent(img image.Image) bool {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			if a == 0 {
				continue
			}
			// Premultiplied: white at any alpha has r = g = b = a.
			if r != a || g != a || bl != a {
				return false
			}
		}
	}
	return true
}

// WriteZip writes the files as a Teams app package: every file at the root
// of the zip, in a stable order and with a fixed time, so the same options
// give the same bytes.
func (f Files) WriteZip(w io.Writer) error {
	zw := zip.NewWriter(w)
	for _, name := range []string{"manifest.json", "zh-cn.json", "color.png", "outline.png"} {
		b, ok := f[name]
		if !ok {
			return errors.New("manifest: package lacks " + name)
		}
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			return err
		}
		if _, err := fw.Write(b); err != nil {
			return err
		}
	}
	return zw.Close()
}
