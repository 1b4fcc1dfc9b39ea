package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/internal/logtest"
	"github.com/upgradeapprovals/bot/state"
)

// buildBot builds the bot's binary as the Dockerfile does (its flags also
// key the build cache, so CI's release build has compiled it already).
func buildBot(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("no go command on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "upgradebot")
	start := time.Now()
	build := exec.Command("sh", "-c", dockerBuildFlags+` -o "$1" ../..`, "sh", bin)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", dockerBuildFlags, err, out)
	}
	t.Logf("built the bot in %s", time.Since(start).Round(time.Second))
	return bin
}

// trustFile writes the certificate of the harness's Entra ID fake (an https
// server on loopback) where a child process trusts it (SSL_CERT_FILE).
func trustFile(t *testing.T, h *harness) string {
	t.Helper()
	u, err := url.Parse(h.aad.AuthorityHost())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: h.aad.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var buf bytes.Buffer
	for _, c := range conn.ConnectionState().PeerCertificates {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	file := filepath.Join(t.TempDir(), "aad.pem")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func startBotProcess(t *testing.T, h *harness, env map[string]string) (*exec.Cmd, *logtest.Buffer) {
	t.Helper()
	bin := buildBot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	vars := map[string]string{"PORT": fmt.Sprint(port), "HOST": "127.0.0.1", "SSL_CERT_FILE": trustFile(t, h),
		"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME")}
	for k, v := range h.env {
		vars[k] = v
	}
	for k, v := range env {
		vars[k] = v
	}
	cmd := exec.Command(bin)
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var seen string
	eventually(t, 30*time.Second, "the bot process to become ready", func() bool {
		seen = logs.String()
		return ready(base)
	}, &seen)
	return cmd, logs
}

// pendingJobs returns how many scan jobs consumers hold unacknowledged, by
// consumer, across the queue's streams.
func pendingJobs(t *testing.T, h *harness) map[string]int64 {
	t.Helper()
	rdb, closeFn, err := state.Connect(context.Background(), h.env["REDIS_URL"], slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	ctx := context.Background()
	out := map[string]int64{}
	iter := rdb.Scan(ctx, 0, h.env["REDIS_PREFIX"]+"jobs:{*", 100).Iterator()
	for iter.Next(ctx) {
		p, err := rdb.XPending(ctx, iter.Val(), "scanners").Result()
		if err != nil {
			t.Fatal(err)
		}
		for consumer, n := range p.Consumers {
			out[consumer] += n
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A replica process is SIGKILLed while it holds every scan job, taken and
// not acknowledged: no shutdown, no lease released, nothing cleaned up.
// Other replicas reclaim the jobs (XAUTOCLAIM) and finish them, with still
// exactly one card per affected chat.
func TestReplicaProcessKilledMidJobIsReclaimedAndPostedOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bot binary")
	}
	h := newHarness(t)
	h.env["BOT_SCAN_INTERVAL"] = "1s"
	setup := h.replica(t, nil, 0)
	seedTenant(t, h, setup)
	h.awaitCatalogReads(t, 1) // the watcher has seen 1.0.0
	setup.stop()

	// The process's Graph answers everything but installation listings,
	// on which it hangs: its scans stop midway.
	hang := &hangingGraph{next: h.graph, hung: make(chan struct{}, 16)}
	hangSrv := httptest.NewServer(hang)
	t.Cleanup(hangSrv.Close)
	proc, logs := startBotProcess(t, h, map[string]string{"GRAPH_BASE_URL": hangSrv.URL + "/v1.0"})
	publishPolls11(h)
	select {
	case <-hang.hung:
	case <-time.After(20 * time.Second):
		t.Fatalf("the bot process never started a scan:\n%s", logs.String())
	}
	// Its four scan workers each hold one chat's job: every card to come
	// must come from a reclaimed job.
	// A job the tenant's budget puts off leaves the pending list until its
	// turn: the deadline is for an event on a loaded machine, not a speed.
	// Only the process's own count: the setup replica may have stopped
	// holding a job of its own, which the reclaim finishes too.
	var seen string
	eventually(t, 30*time.Second, "the process to hold every chat's scan job", func() bool {
		var held int64
		pending := pendingJobs(t, h)
		for consumer, n := range pending {
			if strings.Contains(consumer, fmt.Sprintf("-%d-", proc.Process.Pid)) { // replicaName: host-pid-token
				held += n
			}
		}
		seen = fmt.Sprint(pending)
		return held == int64(len(proactiveChats))
	}, &seen)
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	if posts := cardPosts(h.connector.Calls()); len(posts) != 0 {
		t.Fatalf("cards posted before the reclaim: %v", posts)
	}

	posts := reclaimByTwoReplicas(t, h)
	for _, chat := range proactiveChats[:3] {
		if posts[chat] != 1 {
			t.Errorf("%s got %d cards, want 1", chat, posts[chat])
		}
	}
	if posts[proactiveChats[3]] != 0 {
		t.Errorf("a chat without Polls got a card")
	}
	if strings.Contains(logs.String(), "proactive card posted") {
		t.Errorf("the killed process posted a card:\n%s", logs.String())
	}
}
