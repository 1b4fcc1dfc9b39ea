// Package redistest runs real redis-server processes for fault tests: a
// server on a spare loopback port that a test can kill, restart, freeze and
// thaw, and a Redis Cluster of such servers. Tests that need it skip, loudly,
// when redis-server is not installed, and fail under CI (.ci/run installs it).
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/internal/nodetest"
)

// Server is one redis-server process. It keeps its data in an append-only
// file synced on every write, so a killed and restarted server has every
// acknowledged write, as a production Redis with AOF would.
type Server struct {
	Port int
	dir  string
	args []string
	tb   testing.TB

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Binaries returns the paths of redis-server and redis-cli, skipping tb
// when they are missing.
func Binaries(tb testing.TB) (server, cli string) {
	tb.Helper()
	server, err := exec.LookPath("redis-server")
	if err != nil {
		nodetest.SkipOrFail(tb, "redis-server is not installed, so the Redis fault and cluster tests cannot run "+
			"(apt-get install redis-server; .ci/run does)")
	}
	cli, err = exec.LookPath("redis-cli")
	if err != nil {
		nodetest.SkipOrFail(tb, "redis-cli is not installed (apt-get install redis-server; .ci/run does)")
	}
	return server, cli
}

// SparePort returns a loopback TCP port nothing listens on right now.
func SparePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start runs a redis-server on a spare port until the test ends. Extra
// arguments are passed on (e.g. "--cluster-enabled", "yes").
func Start(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	Binaries(tb)
	s := &Server{Port: SparePort(tb), dir: tb.TempDir(), args: extra, tb: tb}
	s.start()
	tb.Cleanup(s.Stop)
	return s
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the server's REDIS_URL.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

func (s *Server) start() {
	s.tb.Helper()
	args := append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no"}, s.args...)
	cmd := exec.Command("redis-server", args...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("redistest: start redis-server: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s.ping() {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redistest: redis-server on %s did not start", s.Addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping reports whether the server answers PING with PONG.
func (s *Server) ping() bool {
	r, err := s.Do("PING")
	return err == nil && r == "PONG"
}

// Do sends one command over a fresh connection and returns the first line
// of the reply (without its type byte), or an error for an error reply.
func (s *Server) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "-") {
		return "", fmt.Errorf("redistest: %s", line[1:])
	}
	return line[1:], nil
}

// Kill ends the server with SIGKILL, as a crash would.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT) // a frozen process must be able to die
	cmd.Process.Kill()
	cmd.Wait()
}

// Restart starts the killed server again on the same port and data.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Kill()
	s.start()
}

// Freeze stops the process (SIGSTOP): connections stay open, nothing answers.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.cmd.Process.Signal(sig)
	}
}

// Stop ends the server and forgets it.
func (s *Server) Stop() { s.Kill() }

// Cluster is a Redis Cluster of masters without replicas.
type Cluster struct {
	Nodes []*Server
}

// StartCluster creates an n-master Redis Cluster on spare loopback ports,
// removed when the test ends.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	_, cli := Binaries(tb)
	c := &Cluster{}
	addrs := make([]string, n)
	for i := range n {
		s := Start(tb, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000")
		c.Nodes = append(c.Nodes, s)
		addrs[i] = s.Addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(tb)
	return c
}

// WaitHealthy waits until every node reports cluster_state:ok.
func (c *Cluster) WaitHealthy(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Nodes {
		for !s.clusterOK() {
			if time.Now().After(deadline) {
				tb.Fatalf("redistest: cluster node %s is not ok", s.Addr())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (s *Server) clusterOK() bool {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	return strings.Contains(string(buf[:n]), "cluster_state:ok")
}

// URL is the cluster's REDIS_URL: every node as a seed.
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr() + "?cluster=true"
	for _, s := range c.Nodes[1:] {
		u += "&addr=" + s.Addr()
	}
	return u
}
