package nodetest_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/upgradeapprovals/bot/internal/nodetest"
)

func requireFcList(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("fc-list"); err != nil {
		nodetest.SkipOrFail(t, "fontconfig's fc-list is not installed (apt-get install fontconfig)")
	}
}

// A missing font is named with the package that installs it, so whoever
// runs the screenshots knows what to install.
func TestFontMissingNamesFamilyAndPackage(t *testing.T) {
	requireFcList(t)
	f := nodetest.Font{Family: "Upgradebot No Such Sans", Lang: "en", Package: "fonts-upgradebot-none"}
	err := f.Installed(t.Context())
	if err == nil {
		t.Fatalf("%s reported installed", f.Family)
	}
	if want := "Upgradebot No Such Sans is not installed (apt-get install fonts-upgradebot-none)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// Every name fontconfig gives a font (a font has one per language, listed
// together) finds it.
func TestFontInstalledFindsEveryFamilyFontconfigLists(t *testing.T) {
	requireFcList(t)
	out, err := exec.Command("fc-list", ":lang=en", "family").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if lines[0] == "" {
		t.Skip("fontconfig lists no font for English")
	}
	for _, line := range lines {
		for _, name := range strings.Split(line, ",") {
			f := nodetest.Font{Family: name, Lang: "en", Package: "some-package"}
			if err := f.Installed(t.Context()); err != nil {
				t.Errorf("fc-list lists %q for English: %v", name, err)
			}
		}
	}
}
