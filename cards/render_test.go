package cards_test

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upgradeapprovals/bot/internal/nodetest"
)

// TestCardsRenderInABrowser renders every golden card with the official
// adaptivecards renderer in headless Chromium (docs/cards/render.cjs, the
// script that makes the screenshots in docs/cards) and checks each one came
// out as a real picture.
func TestCardsRenderInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser rendering skipped in -short mode")
	}
	nodetest.Require(t, "playwright-core", "adaptivecards", "markdown-it")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		nodetest.SkipOrFail(t, "no Chromium at "+chromium+" (CI installs Debian's chromium; see .ci/run)")
	}
	out := t.TempDir()
	nodetest.Output(t, []string{"CHROMIUM=" + chromium}, filepath.Join(nodetest.Root(), "docs", "cards", "render.cjs"),
		filepath.Join("testdata", "golden"), out)
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
