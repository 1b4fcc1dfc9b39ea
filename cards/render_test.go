package cards_test

import (
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCardsRenderInABrowser renders every golden card with the official
// adaptivecards renderer in headless Chromium (docs/cards/render.cjs, the
// script that makes the screenshots in docs/cards) and checks each one came
// out as a real picture.
func TestCardsRenderInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser rendering skipped in -short mode")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "SKIPPING browser rendering: node is not installed (CI installs it; see .ci/run)")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		skipOrFail(t, "SKIPPING browser rendering: no Chromium at "+chromium+" (CI installs Debian's chromium; see .ci/run)")
	}
	root, _ := filepath.Abs("..")
	if _, err := os.Stat(filepath.Join(root, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is missing: run `npm ci` in %s", root)
	}
	out := t.TempDir()
	cmd := exec.Command(node, filepath.Join(root, "docs", "cards", "render.cjs"), filepath.Join("testdata", "golden"), out)
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("render: %v\n%s", err, b)
	}
	goldens, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	if len(goldens) == 0 {
		t.Fatal("no golden cards")
	}
	for _, g := range goldens {
		name := strings.TrimSuffix(filepath.Base(g), ".json") + ".png"
		f, err := os.Open(filepath.Join(out, name))
		if err != nil {
			t.Errorf("%s was not rendered: %v", name, err)
			continue
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width < 300 || cfg.Height < 60 {
			t.Errorf("%s: %dx%d, %v: not a rendered card", name, cfg.Width, cfg.Height, err)
		}
	}
}
