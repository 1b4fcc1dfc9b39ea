package manifest_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/upgradeapprovals/bot/internal/nodetest"
	"github.com/upgradeapprovals/bot/manifest"
)

const botID = "00000000-0000-0000-0000-0000000000b0"

func build(t *testing.T, o manifest.Options) manifest.Files {
	t.Helper()
	files, err := manifest.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func zipOf(t *testing.T, files manifest.Files) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := files.WriteZip(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPackageLayoutAndIcons(t *testing.T) {
	b := zipOf(t, build(t, manifest.Options{BotID: botID, Domain: "upgrades.contoso.com"}))
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	sizes := map[string]int{"color.png": 192, "outline.png": 32}
	for _, f := range zr.File {
		names = append(names, f.Name)
		if want, ok := sizes[f.Name]; ok {
			rc, _ := f.Open()
			img, err := png.Decode(rc)
			rc.Close()
			if err != nil || img.Bounds().Dx() != want || img.Bounds().Dy() != want {
				t.Errorf("%s: %v, want %dx%d PNG", f.Name, err, want, want)
			}
		}
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "color.png manifest.json outline.png zh-cn.json" {
		t.Errorf("zip holds %v, want manifest.json, zh-cn.json and the two icons at its root", names)
	}
}

func TestOutlineIconIsWhiteOnTransparent(t *testing.T) {
	img, err := png.Decode(bytes.NewReader(manifest.OutlineIcon()))
	if err != nil {
		t.Fatal(err)
	}
	var opaque, clear int
	for y := 0; y < 32; y++ {
		for x := 0; x < 32; x++ {
			r, g, b, a := img.At(x, y).RGBA()
			if a != 0 && (r != a || g != a || b != a) {
				t.Fatalf("pixel %d,%d is not white", x, y)
			}
			if a == 0xffff {
				opaque++
			}
			if a == 0 {
				clear++
			}
		}
	}
	if opaque < 100 || clear < 300 {
		t.Errorf("%d opaque and %d transparent pixels: no visible glyph", opaque, clear)
	}
}

func TestManifestContent(t *testing.T) {
	files := build(t, manifest.Options{BotID: botID, AppID: "11111111-2222-3333-4444-555555555555", Version: "1.4.2",
		Domain: "upgrades.contoso.com", ValidDomains: []string{"*.contoso.com"}})
	var m struct {
		ManifestVersion string `json:"manifestVersion"`
		Version         string `json:"version"`
		ID              string `json:"id"`
		Developer       struct {
			WebsiteURL string `json:"websiteUrl"`
		} `json:"developer"`
		Bots []struct {
			BotID         string   `json:"botId"`
			Scopes        []string `json:"scopes"`
			SupportsFiles *bool    `json:"supportsFiles"`
			CommandLists  []struct {
				Scopes   []string `json:"scopes"`
				Commands []struct {
					Title string `json:"title"`
				} `json:"commands"`
			} `json:"commandLists"`
		} `json:"bots"`
		ValidDomains       []string `json:"validDomains"`
		WebApplicationInfo struct {
			ID string `json:"id"`
		} `json:"webApplicationInfo"`
	}
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	if m.ManifestVersion != manifest.SchemaVersion || m.Version != "1.4.2" || m.ID != "11111111-2222-3333-4444-555555555555" {
		t.Errorf("header %+v", m)
	}
	if len(m.Bots) != 1 || m.Bots[0].BotID != botID || strings.Join(m.Bots[0].Scopes, ",") != "personal,groupChat,team" {
		t.Fatalf("bots %+v", m.Bots)
	}
	if m.Bots[0].SupportsFiles == nil || *m.Bots[0].SupportsFiles {
		t.Error("supportsFiles must be false")
	}
	var scopes []string
	for _, cl := range m.Bots[0].CommandLists {
		scopes = append(scopes, cl.Scopes...)
		var titles []string
		for _, c := range cl.Commands {
			titles = append(titles, c.Title)
		}
		if strings.Join(titles, ",") != "check,history,help" {
			t.Errorf("%v commands %v", cl.Scopes, titles)
		}
	}
	if strings.Join(scopes, ",") != "personal,groupChat,team" {
		t.Errorf("command lists cover %v", scopes)
	}
	if strings.Join(m.ValidDomains, ",") != "upgrades.contoso.com,*.contoso.com" || m.WebApplicationInfo.ID != botID ||
		m.Developer.WebsiteURL != "https://upgrades.contoso.com/" {
		t.Errorf("domains %v, webApplicationInfo %v, website %s", m.ValidDomains, m.WebApplicationInfo, m.Developer.WebsiteURL)
	}
	var zh map[string]string
	if err := json.Unmarshal(files["zh-cn.json"], &zh); err != nil {
		t.Fatal(err)
	}
	if zh["name.short"] != "升级审批" || zh["bots[0].commandLists[2].commands[0].title"] != "检查" {
		t.Errorf("zh-cn.json %v", zh)
	}
}

func TestSameOptionsSameBytes(t *testing.T) {
	o := manifest.Options{BotID: botID, Domain: "upgrades.contoso.com"}
	if !bytes.Equal(zipOf(t, build(t, o)), zipOf(t, build(t, o))) {
		t.Error("two builds of the same package differ")
	}
}

func icon(size int, c color.Color) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

func TestBadInputIsRefusedNamingTheField(t *testing.T) {
	ok := manifest.Options{BotID: botID, Domain: "upgrades.contoso.com"}
	for _, tc := range []struct {
		field string
		edit  func(*manifest.Options)
	}{
		{"bot id", func(o *manifest.Options) { o.BotID = "" }},
		{"bot id", func(o *manifest.Options) { o.BotID = "not-a-guid" }},
		{"app id", func(o *manifest.Options) { o.AppID = "12345" }},
		{"name", func(o *manifest.Options) { o.ShortName = strings.Repeat("x", 31) }},
		{"full name", func(o *manifest.Options) { o.FullName = strings.Repeat("长", 101) }},
		{"developer name", func(o *manifest.Options) { o.DeveloperName = strings.Repeat("d", 33) }},
		{"version", func(o *manifest.Options) { o.Version = "1.0" }},
		{"version", func(o *manifest.Options) { o.Version = "v1.0.0" }},
		{"domain", func(o *manifest.Options) { o.Domain = "https://upgrades.contoso.com/" }},
		{"website url", func(o *manifest.Options) { o.Domain = "" }},
		{"privacy url", func(o *manifest.Options) { o.PrivacyURL = "http://contoso.com/privacy" }},
		{"valid domain", func(o *manifest.Options) { o.ValidDomains = []string{"contoso.com/path"} }},
		{"accent color", func(o *manifest.Options) { o.AccentColor = "purple" }},
		{"color icon", func(o *manifest.Options) { o.ColorIcon = icon(96, color.White) }},
		{"color icon", func(o *manifest.Options) { o.ColorIcon = []byte("GIF89a") }},
		{"outline icon", func(o *manifest.Options) { o.OutlineIcon = icon(32, color.Black) }},
	} {
		o := ok
		tc.edit(&o)
		_, err := manifest.Build(o)
		var me *manifest.Error
		if !errors.As(err, &me) || me.Field != tc.field {
			t.Errorf("%+v: err %v, want one naming %q", o, err, tc.field)
		}
	}
}

// TestSchemaVersionIsTheNewest keeps SchemaVersion at the newest numbered
// schema Microsoft ships in @microsoft/app-manifest.
func TestSchemaVersionIsTheNewest(t *testing.T) {
	nodetest.Require(t, "@microsoft/app-manifest")
	dir := filepath.Join(nodetest.Root(), "node_modules", "@microsoft", "app-manifest", "build", "json-schemas", "teams")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	newest := [2]int{}
	re := regexp.MustCompile(`^v(\d+)\.(\d+)$`)
	for _, e := range entries {
		if m := re.FindStringSubmatch(e.Name()); m != nil {
			major, _ := strconv.Atoi(m[1])
			minor, _ := strconv.Atoi(m[2])
			if major > newest[0] || (major == newest[0] && minor > newest[1]) {
				newest = [2]int{major, minor}
			}
		}
	}
	if got := strconv.Itoa(newest[0]) + "." + strconv.Itoa(newest[1]); got != manifest.SchemaVersion {
		t.Errorf("newest schema is %s, the manifest declares %s", got, manifest.SchemaVersion)
	}
}

func TestPackagePassesTheOfficialSchema(t *testing.T) {
	nodetest.Require(t, "@microsoft/app-manifest")
	validate := func(files manifest.Files) []string {
		dir := t.TempDir()
		for name, b := range files {
			os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
		out := nodetest.Output(t, nil, filepath.Join("testdata", "validate.cjs"), dir)
		var problems []string
		if err := json.Unmarshal(out, &problems); err != nil {
			t.Fatalf("validator said %q", out)
		}
		return problems
	}
	for _, o := range []manifest.Options{
		{BotID: botID, Domain: "upgrades.contoso.com"},
		{BotID: botID, AppID: "11111111-2222-3333-4444-555555555555", Version: "2.10.3", ShortName: "Contoso Upgrades",
			FullName: "Contoso app upgrade approvals", DeveloperName: "Contoso IT", WebsiteURL: "https://contoso.com/it",
			PrivacyURL: "https://contoso.com/privacy", TermsURL: "https://contoso.com/terms", ValidDomains: []string{"*.contoso.com"}},
	} {
		if problems := validate(build(t, o)); len(problems) > 0 {
			t.Errorf("%+v:\n%s", o, strings.Join(problems, "\n"))
		}
	}
	// The validator must be able to fail: a name Teams refuses.
	files := build(t, manifest.Options{BotID: botID, Domain: "upgrades.contoso.com"})
	files["manifest.json"] = bytes.Replace(files["manifest.json"], []byte(`"short": "Upgrade Approvals"`),
		[]byte(`"short": "`+strings.Repeat("x", 31)+`"`), 1)
	if problems := validate(files); len(problems) == 0 {
		t.Error("the schema validator accepted a 31-character name")
	}
}
