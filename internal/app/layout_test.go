package app

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is this module's path: imports under it are ours.
const module = "github.com/upgradeapprovals/bot"

// layers says which of our packages each of our packages may import, in
// its production files and in its tests. Dependencies point inward: the
// domain (approval) imports nothing of ours; the application (bot) the
// domain and cards; each adapter (botframework, graph, state) the domain
// and the application, never another adapter; only the wiring
// (internal/app) brings adapters together. The test kits under internal/
// (a fake Entra ID, real redis-server processes, Node.js) serve any test.
var layers = map[string]struct{ prod, test []string }{
	"approval":                 {},
	"cards":                    {},
	"bot":                      {prod: []string{"approval", "cards"}, test: []string{"bot/memstore"}},
	"bot/memstore":             {prod: []string{"approval", "bot"}, test: []string{"bot/storetest"}},
	"bot/storetest":            {prod: []string{"approval", "bot"}},
	"botframework":             {prod: []string{"approval", "bot"}, test: []string{"botframework/fakechannel", "cards"}},
	"botframework/fakechannel": {},
	"graph":                    {prod: []string{"approval", "bot"}, test: []string{"graph/fakegraph"}},
	"graph/fakegraph":          {},
	"state":                    {prod: []string{"approval", "bot"}, test: []string{"bot/storetest"}},
	"manifest":                 {prod: []string{"approval"}},
	"internal/fakeentra":       {},
	"internal/nodetest":        {},
	"internal/logtest":         {},
	"internal/redistest":       {prod: []string{"internal/nodetest"}},
}

// testKits may be imported by any package's tests.
var testKits = []string{"internal/fakeentra", "internal/redistest", "internal/nodetest", "internal/logtest"}

// unrestricted packages sit outside the layers: the command, the wiring,
// and what drives or packages the whole binary (the benchmark, the browser
// tests, the chart and template tests).
var unrestricted = []string{"", "internal/app", "bench", "e2e", "deploy"}

type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// TestImportsPointInward reads every package's imports (as `go list` sees
// them, tests included) and holds each to its layer.
func TestImportsPointInward(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	seen := 0
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		seen++
		name := ours(p.ImportPath)
		if slices.Contains(unrestricted, name) {
			continue
		}
		rule, ok := layers[name]
		if !ok {
			t.Errorf("package %q has no place in the layers: add it to layers with what it may import", name)
			continue
		}
		for _, imp := range p.Imports {
			if dep, isOurs := ourImport(imp); isOurs && !slices.Contains(rule.prod, dep) {
				t.Errorf("%s imports %s: its production code may import only %q", name, dep, rule.prod)
			}
		}
		for _, imp := range append(p.TestImports, p.XTestImports...) {
			dep, isOurs := ourImport(imp)
			if !isOurs || dep == name || slices.Contains(rule.prod, dep) || slices.Contains(rule.test, dep) || slices.Contains(testKits, dep) {
				continue
			}
			t.Errorf("the tests of %s import %s: they may import only %q, %q and the test kits %q", name, dep, rule.prod, rule.test, testKits)
		}
	}
	if seen < len(layers) {
		t.Fatalf("go list listed %d packages, fewer than the %d layers name", seen, len(layers))
	}
}

// TestBinaryHoldsNoTestCode: nothing the bot's binary is built from imports
// the testing package, so no test kit ships in production.
func TestBinaryHoldsNoTestCode(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", ".")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "testing" || strings.HasPrefix(dep, "testing/") {
			t.Errorf("the bot's binary includes %s", dep)
		}
		if d, isOurs := ourImport(dep); isOurs && strings.HasSuffix(d, "test") {
			t.Errorf("the bot's binary includes the test package %s", d)
		}
	}
}

func ours(importPath string) string {
	return strings.TrimPrefix(strings.TrimPrefix(importPath, module), "/")
}

func ourImport(imp string) (string, bool) {
	if imp != module && !strings.HasPrefix(imp, module+"/") {
		return "", false
	}
	return ours(imp), true
}
