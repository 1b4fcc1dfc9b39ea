// Package e2e runs the real binary, as README's `go run .` does, inside
// Microsoft's M365 Agents Playground (a local Teams client) driven by
// headless Chromium.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/internal/nodetest"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs cmd until the test ends and returns its combined output.
func start(t *testing.T, cmd *exec.Cmd) io.Reader {
	t.Helper()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		pw.Close()
	})
	return pr
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// buildBot builds the bot's binary once for all the tests of this package.
func buildBot(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "upgradebot-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "upgradebot")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Dir = nodetest.Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// playgroundConfig is the Playground configuration with the sandbox's
// pre-seeded ids; "" runs the Playground with its own defaults, as
// `npx @microsoft/m365agentsplayground` without configuration does.
const playgroundConfig = "playground.yml"

// playground builds the bot, runs it with args, opens the M365 Agents
// Playground on it (with config from testdata, or none) and performs the
// steps (see playground.cjs); it returns the bot's answer to each.
func playground(t *testing.T, args []string, config string, steps ...string) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	nodetest.Require(t, "@microsoft/m365agentsplayground", "playwright-core")
	chromium := nodetest.Chromium(t)
	root := nodetest.Root()

	// The bot, built once and run as a newcomer would: no configuration.
	bin := buildBot(t)
	port := freePort(t)
	botCmd := exec.Command(bin, args...)
	botCmd.Env = []string{"PORT=" + fmt.Sprint(port), "PATH=" + os.Getenv("PATH")}
	botLog := start(t, botCmd)
	go io.Copy(io.Discard, botLog)
	botURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(botURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the bot did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The playground: with these two variables and no credentials it makes
	// no outside connection.
	pg := exec.Command("node", filepath.Join(root, "node_modules", "@microsoft", "m365agentsplayground", "cli.js"),
		"start", "-e", botURL+"/api/messages", "-c", "msteams", "-p", fmt.Sprint(freePort(t)), "--disable-telemetry")
	// It writes devTools/m365agentsplayground.log into its working
	// directory: keep that out of the tree.
	pg.Dir = t.TempDir()
	pg.Env = append(os.Environ(), "TEAMSAPPTESTER_BROWSER=none", "APPLICATION_INSIGHTS_NO_STATSBEAT=true")
	botName := "Test Bot" // the Playground's default
	if config != "" {
		pg.Env = append(pg.Env, "M365_AGENTS_PLAYGROUND_CONFIG_PATH="+filepath.Join(root, "e2e", "testdata", config))
		botName = "Upgrade Approvals"
	}
	pgOut := bufio.NewScanner(start(t, pg))
	listening := regexp.MustCompile(`Listening on (\d+)`)
	pgPort := make(chan string, 1)
	go func() {
		for pgOut.Scan() {
			if m := listening.FindStringSubmatch(pgOut.Text()); m != nil {
				pgPort <- m[1]
			}
		}
	}()
	var pgURL string
	select {
	case p := <-pgPort:
		pgURL = "http://127.0.0.1:" + p
	case <-time.After(60 * time.Second):
		t.Fatal("the playground did not start")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	drive := exec.CommandContext(ctx, "node", append([]string{filepath.Join(root, "e2e", "playground.cjs"), pgURL}, steps...)...)
	drive.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(root, "node_modules"), "CHROMIUM="+chromium, "BOT_NAME="+botName)
	out, err := drive.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("driving the playground: %v\n%s", err, stderr)
	}
	var replies []string
	if err := json.Unmarshal(out, &replies); err != nil || len(replies) != len(steps) {
		t.Fatalf("replies %q: %v", out, err)
	}
	return replies
}

// TestServeWithoutGraph runs `upgradebot serve` without an app identity:
// it answers, and says plainly that it has no Graph access.
func TestServeWithoutGraph(t *testing.T) {
	replies := playground(t, []string{"serve"}, playgroundConfig, "help", "check")
	if !strings.Contains(replies[0], "Upgrade Approvals") || !strings.Contains(replies[0], "List pending app upgrades here") {
		t.Errorf("help showed %q", replies[0])
	}
	if !strings.Contains(replies[1], "Microsoft Graph access is not configured") {
		t.Errorf("check showed %q", replies[1])
	}
}

// TestApproveInTheAgentsPlayground clicks Approve in a real Teams-like
// client: the sandbox's fake tenant has Polls 1.0.0 installed in the
// user's personal scope, and 1.1.0 in the catalog.
func TestApproveInTheAgentsPlayground(t *testing.T) {
	replies := playground(t, []string{"sandbox"}, playgroundConfig, "check", "click:Approve", "history")
	for _, want := range []string{"Polls", "1.0.0", "1.1.0", "High risk", "Read all messages in this chat", "You can approve."} {
		if !strings.Contains(replies[0], want) {
			t.Errorf("the pending card lacks %q:\n%s", want, replies[0])
		}
	}
	if !strings.Contains(replies[1], "Polls was upgraded to 1.1.0") || !strings.Contains(replies[1], "Approved by Megan Bowen") {
		t.Errorf("after Approve the card shows:\n%s", replies[1])
	}
	if !strings.Contains(replies[2], "Megan Bowen approved: Polls upgraded 1.0.0 → 1.1.0") {
		t.Errorf("history shows:\n%s", replies[2])
	}
}

// TestNewcomersFirstRun is README's first two lines: `go run .` with no
// configuration at all and the Playground with none either. The sandbox
// adopts the Playground's own user and chats: the whole flow works in the
// personal chat, and the group chat has its pending upgrades too.
func TestNewcomersFirstRun(t *testing.T) {
	replies := playground(t, nil, "", "check", "click:Approve", "history", "open:Group Chat", "@check")
	for _, want := range []string{"Polls", "1.0.0", "1.1.0", "You can approve."} {
		if !strings.Contains(replies[0], want) {
			t.Errorf("the pending card lacks %q:\n%s", want, replies[0])
		}
	}
	if !strings.Contains(replies[1], "Polls was upgraded to 1.1.0") || !strings.Contains(replies[1], "Approved by Alex Wilber") {
		t.Errorf("after Approve the card shows:\n%s", replies[1])
	}
	if !strings.Contains(replies[2], "Alex Wilber approved: Polls upgraded 1.0.0 → 1.1.0") {
		t.Errorf("history shows:\n%s", replies[2])
	}
	for _, want := range []string{"Polls", "Tasks", "Whiteboard"} {
		if !strings.Contains(replies[4], want) {
			t.Errorf("check in the group chat lacks %q:\n%s", want, replies[4])
		}
	}
}
