package deploy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/upgradeapprovals/bot/internal/app"
)

// freePort is a port nothing listens on a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The chart's probes ask the paths the bot answers, on the port it answers
// them: the real server, started as the container starts it (`serve`, here
// without an app id so it needs nothing outside the process).
func TestChartProbesAreAnsweredByTheBot(t *testing.T) {
	c := renderOK(t, tenantSets()...).bot(t).Spec.Template.Spec.Containers[0]
	httpPort, opsPort := freePort(t), freePort(t)
	env := map[string]string{"PORT": strconv.Itoa(httpPort), "OPS_PORT": strconv.Itoa(opsPort), "HOST": "127.0.0.1"}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- app.Run(ctx, []string{"serve"}, func(k string) string { return env[k] }, io.Discard, pw)
		pw.Close()
	}()
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"msg":"listening"`) {
				close(listening)
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case <-listening:
	case code := <-done:
		t.Fatalf("serve exited %d", code)
	}
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d", code)
		}
	})

	get := func(method string, port int, path string) int {
		req, _ := http.NewRequestWithContext(ctx, method, "http://127.0.0.1:"+strconv.Itoa(port)+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = map[string]int{"http": httpPort, "ops": opsPort}[p.Name]
	}
	for name, probe := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		port, ok := ports[probe.HTTPGet.Port.String()]
		if !ok {
			t.Fatalf("%s probe on port %s, which the container does not name", name, probe.HTTPGet.Port.String())
		}
		if code := get(http.MethodGet, port, probe.HTTPGet.Path); code != http.StatusOK {
			t.Errorf("%s probe GET %s on %d: %d", name, probe.HTTPGet.Path, port, code)
		}
	}
	if code := get(http.MethodGet, opsPort, "/metrics"); code != http.StatusOK {
		t.Errorf("/metrics on the ops port: %d", code)
	}
	// The bot's port, behind the Ingress, serves Teams alone.
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code := get(http.MethodGet, httpPort, path); code != http.StatusNotFound {
			t.Errorf("GET %s on the bot's port: %d, want 404", path, code)
		}
	}
	if code := get(http.MethodHead, httpPort, "/api/messages"); code != http.StatusOK {
		t.Errorf("HEAD /api/messages on the bot's port: %d", code)
	}
	if code := get(http.MethodHead, opsPort, "/api/messages"); code != http.StatusNotFound {
		t.Errorf("HEAD /api/messages on the ops port: %d, want 404", code)
	}
}
