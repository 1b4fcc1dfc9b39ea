package deploy

import (
	"os/exec"
	"strings"
	"testing"
)

// The Helm SDK and the Kubernetes modules are the tests' alone: the bot's
// binary (built as the Dockerfile builds it) links none of them.
func TestBotBinaryHasNoHelm(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "nomsgpack", "github.com/upgradeapprovals/bot").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := strings.Fields(string(out))
	var wiring bool
	for _, p := range pkgs {
		wiring = wiring || p == "github.com/upgradeapprovals/bot/internal/app"
		for _, prefix := range []string{"helm.sh/", "k8s.io/", "sigs.k8s.io/"} {
			if strings.HasPrefix(p, prefix) {
				t.Errorf("the bot's binary links %s", p)
			}
		}
	}
	if !wiring {
		t.Fatalf("go list did not list the bot's packages:\n%s", out)
	}
}
