// Package nodetest runs the project's Node.js checkers (the official
// Adaptive Cards parser and renderer, the Teams manifest schemas) from Go
// tests. A missing tool skips the test loudly on a laptop and fails it
// under CI, where .ci/run installs everything.
package nodetest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Root is the repository root, where package.json and node_modules live.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// SkipOrFail skips the test with msg, or fails it when CI is set.
func SkipOrFail(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatal("CANNOT RUN under CI: " + msg)
	}
	tb.Skip("SKIPPING: " + msg)
}

// Require returns the node binary after checking that the npm packages are
// installed.
func Require(tb testing.TB, packages ...string) string {
	tb.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		SkipOrFail(tb, "node is not installed (see .ci/run)")
	}
	for _, p := range packages {
		if _, err := os.Stat(filepath.Join(Root(), "node_modules", p)); err != nil {
			tb.Fatalf("npm package %s is missing: run `npm ci` in %s", p, Root())
		}
	}
	return node
}

// Output runs a Node script with the repository's node_modules on its path
// and returns its standard output; a failure fails the test with stderr.
func Output(tb testing.TB, env []string, script string, args ...string) []byte {
	tb.Helper()
	node := Require(tb)
	cmd := exec.Command(node, append([]string{script}, args...)...)
	cmd.Env = append(append(os.Environ(), "NODE_PATH="+filepath.Join(Root(), "node_modules")), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("node %s: %v\n%s", filepath.Base(script), err, strings.TrimSpace(stderr.String()))
	}
	return out
}
