// Package nodetest runs the project's Node.js checkers (the official
// Adaptive Cards parser and renderer, the Teams manifest schemas, the M365
// Agents Playground) from Go tests.
//
// Tests provision what they need: the first test that asks for npm packages
// runs `npm ci` against the committed package-lock.json, once, under a file
// lock, so several test binaries starting together (go test ./... runs
// packages in parallel) install once and never see a half-written
// node_modules. A tool that cannot be had at all (no node, no Chromium)
// skips the test loudly on a laptop and fails it under CI, where .ci/run
// installs everything.
package nodetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// modulePath identifies the repository's go.mod.
const modulePath = "module github.com/upgradeapprovals/bot"

// stampName, inside node_modules, records the package-lock.json that the
// last successful `npm ci` installed.
const stampName = ".upgradebot-npm-ci"

// npmTimeout bounds `npm ci`; a cold install downloads about 30 MB.
const npmTimeout = 10 * time.Minute

var (
	rootOnce sync.Once
	root     string
	rootErr  error
)

// Root is the repository root, where package.json and node_modules live.
// Test binaries run in their package's directory, so Root walks up from
// there to the project's go.mod; source paths recorded at build time are not
// used because -trimpath erases them.
func Root() string {
	rootOnce.Do(func() { root, rootErr = findRoot() })
	if rootErr != nil {
		panic("nodetest: " + rootErr.Error())
	}
	return root
}

func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte(modulePath)) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod of %s above %s", strings.TrimPrefix(modulePath, "module "), dir)
		}
		d = parent
	}
}

// InCI reports whether the tests run under CI (.ci/run sets CI), where
// nothing may be skipped for want of a tool.
func InCI() bool { return os.Getenv("CI") != "" }

// SkipOrFail skips the test with msg, or fails it when CI is set.
func SkipOrFail(tb testing.TB, msg string) {
	tb.Helper()
	if InCI() {
		tb.Fatal("CANNOT RUN under CI: " + msg)
	}
	// Loud on purpose: go test shows a passing package's output (skips
	// included) only with -v, so tell the terminal directly when there is one.
	w := io.Writer(os.Stderr)
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		defer tty.Close()
		w = tty
	}
	fmt.Fprintf(w, "\n*** %s SKIPPED: %s ***\n\n", tb.Name(), msg)
	tb.Skip("SKIPPING: " + msg)
}

// Node returns the node binary, or skips (fails under CI) without one.
func Node(tb testing.TB) string {
	tb.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		SkipOrFail(tb, "Node.js is not installed (install it, e.g. apt-get install nodejs npm; see .ci/run)")
	}
	return node
}

// Require returns the node binary after making sure node_modules holds the
// committed lockfile's packages (installing them if needed) and that each of
// packages is among them.
func Require(tb testing.TB, packages ...string) string {
	tb.Helper()
	node := Node(tb)
	if err := Provision(); err != nil {
		if errors.Is(err, errNoNPM) {
			SkipOrFail(tb, err.Error())
		}
		tb.Fatal(err)
	}
	for _, p := range packages {
		if _, err := os.Stat(filepath.Join(Root(), "node_modules", p)); err != nil {
			tb.Fatalf("npm package %s is not in package-lock.json (npm ci installed %s): %v", p, filepath.Join(Root(), "node_modules"), err)
		}
	}
	return node
}

var errNoNPM = errors.New("npm is not installed (it comes with Node.js; e.g. apt-get install npm)")

var (
	provisionMu  sync.Mutex
	provisionErr error
	provisioned  bool
)

// Provision runs `npm ci` in Root unless node_modules already holds what
// package-lock.json names. It is safe to call from many tests and many
// processes at once: one runs npm, the others wait for it and reuse its work.
func Provision() error {
	provisionMu.Lock()
	defer provisionMu.Unlock()
	if provisioned {
		return provisionErr
	}
	provisionErr, provisioned = provision(Root()), true
	return provisionErr
}

func provision(dir string) error {
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return fmt.Errorf("nodetest: %w", err)
	}
	sum := sha256.Sum256(lock)
	want := hex.EncodeToString(sum[:])
	stamp := filepath.Join(dir, "node_modules", stampName)
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == want {
		return nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return errNoNPM
	}

	// The lock lives outside the tree (a test run leaves the tree clean),
	// one per checkout; flock is released by the kernel if we die.
	id := sha256.Sum256([]byte(dir))
	lockPath := filepath.Join(os.TempDir(), "upgradebot-npm-"+hex.EncodeToString(id[:8])+".lock")
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return fmt.Errorf("nodetest: npm lock: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("nodetest: npm lock %s: %w", lockPath, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)

	// Someone may have installed while we waited.
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == want {
		return nil
	}
	fmt.Fprintf(os.Stderr, "nodetest: running npm ci in %s (once; later runs reuse node_modules)\n", dir)
	ctx, cancel := context.WithTimeout(context.Background(), npmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PUPPETEER_SKIP_DOWNLOAD=1", "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nodetest: npm ci in %s: %v\n%s", dir, err, bytes.TrimSpace(out))
	}
	if err := os.WriteFile(stamp, []byte(want+"\n"), 0o644); err != nil {
		return fmt.Errorf("nodetest: %w", err)
	}
	return nil
}

// Chromium returns the browser the tests drive: $CHROMIUM when set, else
// `chromium` on PATH (Debian's package, /usr/bin/chromium, which .ci/run
// installs when this lookup finds nothing). Nothing downloads a browser of
// its own. Without one the test skips loudly (fails under CI).
func Chromium(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			SkipOrFail(tb, fmt.Sprintf("CHROMIUM=%s is not an executable: %v", p, err))
		}
		return p
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		SkipOrFail(tb, "no chromium on PATH (apt-get install chromium fonts-noto-cjk, or set CHROMIUM; see .ci/run)")
	}
	return p
}

// Font is a font family Chromium must find to draw a language's text.
type Font struct {
	Family  string // fontconfig family name, e.g. "Noto Sans CJK SC"
	Lang    string // fontconfig language the family must cover, e.g. "zh-cn"
	Package string // the Debian package that installs it, named in the error
}

// Installed returns nil when fontconfig lists f.Family among the fonts
// covering f.Lang, and otherwise an error naming the family and its
// package. Chromium on Linux looks fonts up through fontconfig, so this sees
// what the browser will see: a family it cannot find is drawn with whatever
// fallback there is, for Chinese usually an empty box per character.
func (f Font) Installed(ctx context.Context) error {
	fcList, err := exec.LookPath("fc-list")
	if err != nil {
		return fmt.Errorf("%s: cannot tell, fontconfig's fc-list is not installed (apt-get install fontconfig %s)", f.Family, f.Package)
	}
	out, err := exec.CommandContext(ctx, fcList, ":lang="+f.Lang, "family").Output()
	if err != nil {
		return fmt.Errorf("%s: fc-list: %w", f.Family, err)
	}
	// One font per line, its family names (one per language) comma-separated.
	for line := range strings.Lines(string(out)) {
		for name := range strings.SplitSeq(line, ",") {
			if strings.EqualFold(strings.TrimSpace(name), f.Family) {
				return nil
			}
		}
	}
	return fmt.Errorf("%s is not installed (apt-get install %s)", f.Family, f.Package)
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
