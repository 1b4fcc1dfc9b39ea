package cards_test

import (
	"encoding/json"
	"flag"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/upgradeapprovals/bot/cards"
	"github.com/upgradeapprovals/bot/internal/nodetest"
)

var screenshots = flag.Bool("screenshots", false, "write the rendered cards to docs/cards (README's pictures)")

// rendered is what docs/cards/render.cjs reports a person sees of a card.
type rendered struct {
	Name    string   `json:"name"`
	Text    string   `json:"text"`
	Buttons []button `json:"buttons"`
}

// button is a rendered button; its box is in the screenshot's pixels.
type button struct {
	Label   string  `json:"label"`
	Style   string  `json:"style"`
	Visible bool    `json:"visible"`
	X       float64 `json:"x"`
	Y       float64 `json:"y"`
	Width   float64 `json:"width"`
	Height  float64 `json:"height"`
}

// TestCardsRenderInABrowser renders every card the code builds now with
// the official adaptivecards renderer in headless Chromium
// (docs/cards/render.cjs) and checks what a person would notice: each
// card's buttons are there and visible, the pending card shows the
// versions, and its Approve button is drawn in Teams' accent colour. With
// -screenshots the same run writes the pictures README shows into
// docs/cards, so they cannot drift from the code; it refuses to when the
// Chinese cards' font is missing rather than commit pictures of boxes.
func TestCardsRenderInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser rendering skipped in -short mode")
	}
	nodetest.Require(t, "playwright-core", "adaptivecards", "markdown-it")
	chromium := nodetest.Chromium(t)

	in, out := t.TempDir(), t.TempDir()
	if *screenshots {
		out = filepath.Join(nodetest.Root(), "docs", "cards")
	}
	every := everyCard(t)
	// The family docs/cards/render.cjs names for Chinese cards; without it
	// Chromium draws an empty box for every Chinese character.
	cjkFont := nodetest.Font{Family: "Noto Sans CJK SC", Lang: "zh-cn", Package: "fonts-noto-cjk"}
	if slices.ContainsFunc(every, func(n named) bool { return strings.HasPrefix(n.Card.Lang, "zh") }) {
		if err := cjkFont.Installed(t.Context()); err != nil {
			if *screenshots || nodetest.InCI() {
				t.Fatalf("%v: the Chinese cards would show an empty box for every character", err)
			}
			// The checks below read the page's text, not its pixels.
			t.Logf("%v: the Chinese cards are drawn with boxes for characters in this run", err)
		}
	}
	built := map[string]cards.Card{}
	for _, n := range every {
		b, err := json.Marshal(n.Card)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in, n.Name+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		built[n.Name] = n.Card
	}
	report := nodetest.Output(t, []string{"CHROMIUM=" + chromium}, filepath.Join(nodetest.Root(), "docs", "cards", "render.cjs"), in, out)
	var seen []rendered
	if err := json.Unmarshal(report, &seen); err != nil {
		t.Fatalf("render.cjs said %q: %v", report, err)
	}
	if *screenshots {
		// A picture of a card the code no longer builds would mislead.
		pngs, _ := filepath.Glob(filepath.Join(out, "*.png"))
		for _, p := range pngs {
			if _, ok := built[strings.TrimSuffix(filepath.Base(p), ".png")]; !ok {
				if err := os.Remove(p); err != nil {
					t.Error(err)
				}
				t.Logf("removed %s: no card matches it", p)
			}
		}
	}
	if len(seen) != len(built) {
		t.Fatalf("rendered %d cards, built %d", len(seen), len(built))
	}
	for _, r := range seen {
		card := built[r.Name]
		// Markdown the renderer did not take as bold shows as asterisks.
		if strings.Contains(r.Text, "**") {
			t.Errorf("%s shows literal asterisks:\n%s", r.Name, r.Text)
		}
		img := readPNG(t, filepath.Join(out, r.Name+".png"))
		if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 60 {
			t.Errorf("%s: a %dx%d picture is not a rendered card", r.Name, b.Dx(), b.Dy())
		}
		// Every button the card carries is drawn, visible, in order; its
		// secondary actions behind the overflow menu's button.
		var labels []string
		for _, b := range r.Buttons {
			if b.Visible {
				labels = append(labels, b.Label)
			}
		}
		var want []string
		overflow := false
		for _, a := range card.Actions {
			if a.Mode == "secondary" {
				overflow = true
				continue
			}
			want = append(want, a.Title)
		}
		if overflow {
			want = append(want, "More options")
		}
		if len(want) > 0 && !containsInOrder(labels, want) {
			t.Errorf("%s: visible buttons %q, the card's actions %q", r.Name, labels, want)
		}
	}

	// The card people act on, as they see it.
	byName := map[string]rendered{}
	for _, r := range seen {
		byName[r.Name] = r
	}
	for name, labels := range map[string][2]string{"pending.en": {"Approve", "Reject"}, "pending.zh-CN": {"批准", "拒绝"}} {
		r := byName[name]
		for _, v := range []string{"Polls", "1.0.0", "1.1.0"} {
			if !strings.Contains(r.Text, v) {
				t.Errorf("%s shows no %q:\n%s", name, v, r.Text)
			}
		}
		img := readPNG(t, filepath.Join(out, name+".png"))
		for i, label := range labels {
			j := slices.IndexFunc(r.Buttons, func(b button) bool { return b.Label == label && b.Visible })
			if j < 0 {
				t.Errorf("%s: no visible %q button among %+v", name, label, r.Buttons)
				continue
			}
			b := r.Buttons[j]
			if i == 0 && b.Style != "positive" {
				t.Errorf("%s: %q is styled %q, want positive", name, label, b.Style)
			}
			if i == 0 {
				// Sample inside the button's padding, left of its label.
				px := img.At(int(b.X)+3, int(b.Y+b.Height/2))
				if r8, g8, b8 := rgb(px); !(b8 > 150 && r8 < 140 && g8 < 140) {
					t.Errorf("%s: %q is not drawn as the accented, positive button (pixel %d,%d,%d)", name, label, r8, g8, b8)
				}
			}
		}
	}
}

func rgb(c interface{ RGBA() (r, g, b, a uint32) }) (uint8, uint8, uint8) {
	r, g, b, _ := c.RGBA()
	return uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("not rendered: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// containsInOrder reports whether want appears in got as a subsequence.
func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}
