// Command bench measures the bot under load beside a botbuilder (Node) peer,
// on one machine in one run, against local fakes only: a channel that signs
// tokens with a local key and serves its OpenID metadata, an Entra ID token
// endpoint, a connector, a Microsoft Graph tenant with injectable latency,
// and a Redis of its own, which counts the round trips. Everything
// listens on loopback. Run it from the repository root:
//
//	go run ./bench
//
// It builds the bot, installs the peer's npm packages
// (bench/peer-js, lockfile committed), runs each work unit for at most -n
// activities and -duration, and prints a Markdown report with ratios
// ours/peer. See bench/RESULTS.md.
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/upgradeapprovals/bot/botframework/fakechannel"
	"github.com/upgradeapprovals/bot/cards"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
	"github.com/upgradeapprovals/bot/internal/fakeentra"
	"github.com/upgradeapprovals/bot/internal/logtest"
)

const (
	appID  = "00000000-0000-0000-0000-0000000be4c4"
	tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	owner  = "11111111-1111-1111-1111-111111111111"
)

type options struct {
	n            int
	duration     time.Duration
	concurrency  int
	graphC       int
	graphLatency time.Duration
	apps         int
	approvals    int
	peer         bool
	graphUnits   bool
	botEnv       string
	botBin       string
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 4000, "at most this many activities per work unit")
	flag.DurationVar(&o.duration, "duration", 15*time.Second, "at most this long per work unit")
	flag.IntVar(&o.concurrency, "c", 32, "concurrent requests for help")
	flag.IntVar(&o.graphC, "graph-c", 4, "concurrent requests for check and approve, which wait on Graph")
	flag.DurationVar(&o.graphLatency, "graph-latency", 30*time.Millisecond, "latency the fake Graph adds to every request")
	flag.IntVar(&o.apps, "apps", 20, "apps installed in the chat of the check unit")
	flag.IntVar(&o.approvals, "approvals", 300, "approvals prepared for the approve unit")
	flag.BoolVar(&o.peer, "peer", true, "also run the botbuilder (Node) peer")
	flag.BoolVar(&o.graphUnits, "graph-units", true, "run the check and approve units (false: help only)")
	flag.StringVar(&o.botBin, "bot-bin", "", "measure this build of the bot instead of building the release binary (e.g. one with symbols, to profile with perf)")
	flag.StringVar(&o.botEnv, "bot-env", "", "extra environment for our bot, space-separated (e.g. \"GOGC=50 GOMEMLIMIT=12MiB\")")
	flag.Parse()
	tb := &runTB{}
	defer tb.close()
	if err := run(tb, o); err != nil {
		tb.Fatal(err)
	}
}

// result is one work unit's measurements on one bot.
type result struct {
	unit, bot     string
	n             int
	errors        int
	elapsed       time.Duration
	p50, p99      time.Duration
	cpu           time.Duration
	benchCPU      time.Duration // the load generator's and the fakes' (this process)
	peakRSS       int64
	mallocs       float64 // -1: unknown
	graphRequests int64
	redisTrips    int64
}

func (r result) throughput() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (r result) cpuPerActivity() float64 {
	return float64(r.cpu.Microseconds()) / 1000 / float64(r.n)
}

func run(tb *runTB, o options) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "bench", "peer-js", "package.json")); err != nil {
		return errors.New("run from the repository root: go run ./bench")
	}
	work, err := os.MkdirTemp("", "upgradebot-bench-")
	if err != nil {
		return err
	}
	tb.Cleanup(func() { os.RemoveAll(work) })

	// Built exactly as the Dockerfile and .ci/run build the release binary,
	// since that is what users run: the flags change what is linked (gin's
	// MessagePack codec) and so the binary's size and resident memory. The
	// first such build compiles msgraph-sdk-go anew (minutes on a small
	// machine); later ones reuse the build cache.
	botBin := o.botBin
	if botBin == "" {
		fmt.Fprintln(os.Stderr, `bench: building the bot (CGO_ENABLED=0 go build -tags nomsgpack -trimpath -ldflags "-s -w")`)
		botBin = filepath.Join(work, "upgradebot")
		build := exec.Command("go", "build", "-tags", "nomsgpack", "-trimpath", "-ldflags", "-s -w", "-o", botBin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build: %w", err)
		}
	}
	if o.peer && !peerInstalled(filepath.Join(root, "bench", "peer-js")) {
		fmt.Fprintln(os.Stderr, "bench: installing the peer's npm packages (npm ci)")
		npm := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		npm.Dir = filepath.Join(root, "bench", "peer-js")
		npm.Stdout, npm.Stderr = os.Stderr, os.Stderr
		if err := npm.Run(); err != nil {
			return fmt.Errorf("npm ci in bench/peer-js: %w", err)
		}
	}

	// The fakes.
	channel := fakechannel.NewChannel(tb, appID)
	aad := fakeentra.New(tb)
	connector := fakechannel.NewConnector(tb)
	// Only the approve unit's preparation reads what was posted.
	connector.RecordBodies(false)
	channel.ServiceURL = connector.URL()
	tenantFake := fakegraph.New()
	var graphRequests atomic.Int64
	latency := o.graphLatency
	graphSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		graphRequests.Add(1)
		time.Sleep(latency)
		tenantFake.ServeHTTP(w, r)
	}))
	tb.Cleanup(graphSrv.Close)
	tenantFake.BaseURL = graphSrv.URL
	certFile := filepath.Join(work, "aad.pem")
	if err := writeCert(certFile, aad); err != nil {
		return err
	}

	redisAddr, err := startRedis(tb, work)
	if err != nil {
		return err
	}

	helpCard := filepath.Join(work, "help.json")
	c, err := cards.New()
	if err != nil {
		return err
	}
	raw, _ := json.Marshal(c.Help("en-US"))
	if err := os.WriteFile(helpCard, raw, 0o600); err != nil {
		return err
	}

	common := []string{
		"MicrosoftAppId=" + appID, "MicrosoftAppPassword=bench secret", "MicrosoftAppTenantId=" + tenant,
		"MicrosoftAppType=SingleTenant", "BOT_OPENID_METADATA_URL=" + channel.MetadataURL(),
		"AZURE_AUTHORITY_HOST=" + aad.AuthorityHost(), "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
	}

	// Our bot.
	port, err := freePort()
	if err != nil {
		return err
	}
	ours := exec.Command(botBin)
	ours.Env = append(slices.Clone(common), "PORT="+strconv.Itoa(port), "HOST=127.0.0.1", "SSL_CERT_FILE="+certFile,
		"GRAPH_BASE_URL="+graphSrv.URL+"/v1.0", "REDIS_URL=redis://"+redisAddr+"/0", "REDIS_PREFIX=bench:",
		// The check unit measures a check that reads Graph, as the peer's
		// would, not the short answer to a repeat within the window.
		"BOT_CHECK_WINDOW=off")
	ours.Env = append(ours.Env, strings.Fields(o.botEnv)...)
	oursURL, coldStart, logs, err := launch(tb, "our bot", port, ours)
	if err != nil {
		return err
	}

	g := &loadGen{channel: channel, connector: connector, tb: tb, o: o, concurrency: o.concurrency}
	measure := func(unit, name, url string, pid int, acts func(i int) []byte, n int, bodyCheck func([]byte) bool) (result, error) {
		r := result{unit: unit, bot: name, mallocs: -1}
		cpu0, _ := cpuTime(pid)
		bench0, _ := cpuTime(os.Getpid())
		m0, okM := mallocs(url)
		g0 := graphRequests.Load()
		t0, err := redisRoundTrips(redisAddr)
		if err != nil {
			return r, err
		}
		lat, errs, elapsed := g.run(url, acts, n, bodyCheck)
		cpu1, _ := cpuTime(pid)
		bench1, _ := cpuTime(os.Getpid())
		r.benchCPU = bench1 - bench0
		if m1, ok := mallocs(url); ok && okM {
			r.mallocs = (m1 - m0) / float64(len(lat))
		}
		r.n, r.errors, r.elapsed, r.cpu = len(lat), errs, elapsed, cpu1-cpu0
		t1, err := redisRoundTrips(redisAddr)
		if err != nil {
			return r, err
		}
		// t1 counts the reply to the INFO that read t0.
		r.graphRequests, r.redisTrips = graphRequests.Load()-g0, t1-t0-1
		r.peakRSS, _ = peakRSS(pid)
		slices.Sort(lat)
		if len(lat) > 0 {
			r.p50, r.p99 = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
		}
		if r.errors > 0 {
			return r, fmt.Errorf("%s on %s: %d of %d activities failed\n%s", unit, name, r.errors, r.n+r.errors, tail(logs.String(), 2000))
		}
		return r, nil
	}

	var results []result
	help := template(g.message("", "19:bench-help@thread.v2", "help"))
	g.warm(oursURL, help)
	fmt.Fprintf(os.Stderr, "bench: help on our bot (pid %d)\n", ours.Process.Pid)
	r, err := measure("help", "ours", oursURL, ours.Process.Pid, func(i int) []byte { return help(fmt.Sprintf("help-%d", i)) }, o.n, nil)
	if err != nil {
		return err
	}
	results = append(results, r)

	if o.graphUnits {
		if results, err = runGraphUnits(g, o, tenantFake, oursURL, ours.Process.Pid, measure, results); err != nil {
			return err
		}
	}

	var peerResult *result
	var peerStart time.Duration
	if o.peer {
		peerPort, err := freePort()
		if err != nil {
			return err
		}
		peer := exec.Command("node", filepath.Join(root, "bench", "peer-js", "index.js"))
		peer.Env = append(slices.Clone(common), "PORT="+strconv.Itoa(peerPort), "HELP_CARD="+helpCard,
			"NODE_EXTRA_CA_CERTS="+certFile, "NODE_ENV=production")
		var peerURL string
		var peerLogs *logtest.Buffer
		if peerURL, peerStart, peerLogs, err = launch(tb, "peer", peerPort, peer); err != nil {
			return err
		}
		g.concurrency = o.concurrency
		g.warm(peerURL, help)
		fmt.Fprintln(os.Stderr, "bench: help on the botbuilder peer")
		pr, err := measure("help", "peer", peerURL, peer.Process.Pid, func(i int) []byte { return help(fmt.Sprintf("peer-help-%d", i)) }, o.n, nil)
		if err != nil {
			return fmt.Errorf("%w\n%s", err, tail(peerLogs.String(), 2000))
		}
		peerResult = &pr
	}
	report(os.Stdout, o, results, peerResult, coldStart, peerStart)
	return nil
}

// measureFunc measures one work unit on one bot.
type measureFunc func(unit, name, url string, pid int, acts func(i int) []byte, n int, bodyCheck func([]byte) bool) (result, error)

// runGraphUnits runs check and approve on our bot: the units that wait on
// Graph.
func runGraphUnits(g *loadGen, o options, tenantFake *fakegraph.Tenant, oursURL string, pid int, measure measureFunc, results []result) ([]result, error) {
	// check: a chat with o.apps installed apps, one of them behind.
	const checkChat = "19:bench-check@thread.v2"
	seedChat(tenantFake, checkChat, o.apps, 0)
	fmt.Fprintf(os.Stderr, "bench: check on our bot (%d installed apps, Graph latency %s)\n", o.apps, o.graphLatency)
	g.concurrency = o.graphC
	checkAct := func(i int) []byte { return encode(g.message(fmt.Sprintf("check-%d", i), checkChat, "check")) }
	r, err := measure("check", "ours", oursURL, pid, checkAct, min(o.n, 2000), nil)
	if err != nil {
		return nil, err
	}
	results = append(results, r)

	// approve: one pending upgrade in each of o.approvals chats, each
	// checked first so that its card (and approval) exists.
	fmt.Fprintf(os.Stderr, "bench: preparing %d approvals\n", o.approvals)
	ids, err := g.prepareApprovals(oursURL, tenantFake, o.approvals)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "bench: approve on our bot")
	approveAct := func(i int) []byte { return encode(g.approve(fmt.Sprintf("approve-%d", i), ids[i])) }
	if r, err = measure("approve", "ours", oursURL, pid, approveAct, len(ids),
		func(b []byte) bool { return bytes.Contains(b, []byte("was upgraded")) }); err != nil {
		return nil, err
	}
	return append(results, r), nil
}

// seedChat installs n apps in chat, the first one behind the catalog when
// behind is 0 (apps of other chats are shared through their ids).
func seedChat(t *fakegraph.Tenant, chat string, n, seed int) {
	for i := range n {
		id := fmt.Sprintf("a0000000-0000-4000-8000-%06d%06d", seed, i)
		defs := []fakegraph.Definition{{Version: "1.0.0", RSC: []fakegraph.Permission{{Value: "ChatSettings.Read.Chat", Type: "application"}}}}
		if i == 0 {
			defs = append(defs, fakegraph.Definition{Version: "1.1.0", ShortDescription: "A newer version",
				RSC: []fakegraph.Permission{{Value: "ChatMessage.Read.Chat", Type: "application"}}})
		}
		t.AddApp(fakegraph.App{ID: id, DisplayName: fmt.Sprintf("App %d", i), Definitions: defs})
		t.Install(fakegraph.Chat, chat, id, "1.0.0", []fakegraph.Permission{{Value: "ChatSettings.Read.Chat", Type: "application"}})
	}
	t.AddMembers(fakegraph.Chat, chat, fakegraph.Member{UserID: owner, DisplayName: "Megan Bowen", TenantID: tenant, Roles: []string{"owner"}})
}

func report(w io.Writer, o options, rs []result, peer *result, cold, peerCold time.Duration) {
	fmt.Fprintf(w, "Machine: %s/%s, %d CPUs (%s), Go %s, Node %s. Load: help with %d concurrent requests, check and approve with %d; at most %d activities or %s per unit; Graph latency %s, %d apps installed in the check chat.\n\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), runtime.Version(), nodeVersion(), o.concurrency, o.graphC, o.n, o.duration, o.graphLatency, o.apps)
	fmt.Fprintln(w, "| unit | bot | activities | throughput (/s) | p50 | p99 | bot CPU ms / activity | peak RSS | allocs / activity | Graph requests / activity | Redis round trips / activity |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	all := slices.Clone(rs)
	if peer != nil {
		all = append(all, *peer)
	}
	for _, r := range all {
		allocs := "—"
		if r.mallocs >= 0 {
			allocs = fmt.Sprintf("%.0f", r.mallocs)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.0f | %s | %s | %.2f | %.1f MiB | %s | %.2f | %.2f |\n", r.unit, r.bot, r.n,
			r.throughput(), ms(r.p50), ms(r.p99), r.cpuPerActivity(), float64(r.peakRSS)/(1<<20), allocs,
			float64(r.graphRequests)/float64(r.n), float64(r.redisTrips)/float64(r.n))
	}
	fmt.Fprintln(w, "\nCPU the bench process (load generator and fakes, sharing the machine) spent per activity:")
	for _, r := range all {
		fmt.Fprintf(w, "%s on %s %.3f ms;", r.unit, r.bot, float64(r.benchCPU.Microseconds())/1000/float64(max(r.n, 1)))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "\nCold start to /readyz: ours %s", ms(cold))
	if peer != nil {
		fmt.Fprintf(w, ", peer %s", ms(peerCold))
	}
	fmt.Fprintln(w)
	for _, r := range rs {
		if r.unit == "check" {
			fmt.Fprintf(w, "\ncheck p99 = %.1f Graph round trips of %s (target ≤ 3)\n", float64(r.p99)/float64(o.graphLatency), o.graphLatency)
		}
	}
	if peer == nil {
		return
	}
	help := rs[0]
	fmt.Fprintln(w, "\n| help, ours/peer | ratio | target |")
	fmt.Fprintln(w, "| --- | ---: | --- |")
	fmt.Fprintf(w, "| throughput | %s | ≥ 6× |\n", ratio(help.throughput()/peer.throughput()))
	fmt.Fprintf(w, "| bot CPU per activity | %s (peer/ours %s) | ≤ 1/7 (peer/ours ≥ 7×) |\n",
		ratio(help.cpuPerActivity()/peer.cpuPerActivity()), ratio(peer.cpuPerActivity()/help.cpuPerActivity()))
	fmt.Fprintf(w, "| peak RSS | %s (peer/ours %s) | ≤ 1/6 (peer/ours ≥ 6×) |\n",
		ratio(float64(help.peakRSS)/float64(peer.peakRSS)), ratio(float64(peer.peakRSS)/float64(help.peakRSS)))
	fmt.Fprintf(w, "| p99 latency | %s | |\n", ratio(float64(help.p99)/float64(peer.p99)))
}

func ratio(f float64) string {
	if f >= 10 {
		return fmt.Sprintf("%.0f×", f)
	}
	return fmt.Sprintf("%.2f×", f)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func nodeVersion() string {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return "absent"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

// mallocs reads go_memstats_mallocs_total from the bot's /metrics; the peer
// has none.
func mallocs(base string) (float64, bool) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false
	}
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_mallocs_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// writeCert writes the Entra ID fake's certificate where the child
// processes can trust it (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS).
func writeCert(file string, aad *fakeentra.Authority) error {
	u, err := url.Parse(aad.AuthorityHost())
	if err != nil {
		return err
	}
	// Only to read the certificate of our own fake on loopback.
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer conn.Close()
	var buf bytes.Buffer
	for _, c := range conn.ConnectionState().PeerCertificates {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return os.WriteFile(file, buf.Bytes(), 0o600)
}

// peerInstalled reports whether node_modules holds the botbuilder version
// the lockfile names, so that npm ci runs only when needed.
func peerInstalled(dir string) bool {
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	var installed struct {
		Version string `json:"version"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil || json.Unmarshal(raw, &lock) != nil {
		return false
	}
	raw, err = os.ReadFile(filepath.Join(dir, "node_modules", "botbuilder", "package.json"))
	if err != nil || json.Unmarshal(raw, &installed) != nil {
		return false
	}
	want := lock.Packages["node_modules/botbuilder"].Version
	return want != "" && installed.Version == want
}

// startRedis runs a redis-server of the bench's own on a free loopback port,
// so that only the bot's round trips are counted.
func startRedis(tb *runTB, dir string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("redis-server (apt-get install redis-server): %w", err)
	}
	tb.Cleanup(func() { stop(cmd) })
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", errors.New("bench: redis-server did not start")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s", url, limit)
}

func stop(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// launch starts a bot process listening on port and waits for its /readyz;
// it returns the bot's URL, the time from start to ready, and its log.
func launch(tb *runTB, name string, port int, cmd *exec.Cmd) (string, time.Duration, *logtest.Buffer, error) {
	logs := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = io.Discard, logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", 0, nil, fmt.Errorf("%s: %w", name, err)
	}
	tb.Cleanup(func() { stop(cmd) })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitReady(url+"/readyz", 20*time.Second); err != nil {
		return "", 0, nil, fmt.Errorf("%s: %w\n%s", name, err, tail(logs.String(), 4000))
	}
	return url, time.Since(start), logs, nil
}
