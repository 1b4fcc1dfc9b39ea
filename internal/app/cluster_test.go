package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisCluster is a real 3-master Redis Cluster on spare loopback ports,
// private to one test. Nodes serve their slots even when another master is
// down (cluster-require-full-coverage no), as a cluster sized for
// availability does.
type redisCluster struct {
	addrs []string
	procs map[string]*exec.Cmd
}

func startRedisCluster(t *testing.T) *redisCluster {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	c := &redisCluster{procs: map[string]*exec.Cmd{}}
	dir := t.TempDir()
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", fmt.Sprintf("%s/nodes-%d.conf", dir, port), "--cluster-require-full-coverage", "no",
			"--save", "", "--appendonly", "no", "--dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		c.addrs = append(c.addrs, addr)
		c.procs[addr] = cmd
	}
	for _, a := range c.addrs {
		waitRedis(t, a)
	}
	out, err := exec.Command("redis-cli", append([]string{"--cluster", "create"}, append(c.addrs, "--cluster-replicas", "0", "--cluster-yes")...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range c.addrs {
		rdb := redis.NewClient(&redis.Options{Addr: a})
		var info string
		eventually(t, 20*time.Second, "the cluster at "+a+" to be ok", func() bool {
			info, _ = rdb.ClusterInfo(context.Background()).Result()
			return strings.Contains(info, "cluster_state:ok")
		}, &info)
		rdb.Close()
	}
	return c
}

func waitRedis(t *testing.T, addr string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	eventually(t, 10*time.Second, "redis-server at "+addr+" to start", func() bool {
		return rdb.Ping(context.Background()).Err() == nil
	})
}

func (c *redisCluster) url() string {
	return "redis://" + c.addrs[0] + "?addr=" + c.addrs[1] + "&addr=" + c.addrs[2]
}

// ownerOf returns the master serving key's slot.
func (c *redisCluster) ownerOf(t *testing.T, rdb *redis.Client, key string) string {
	t.Helper()
	ctx := context.Background()
	slot, err := rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	shards, err := rdb.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		for _, r := range s.Slots {
			if r.Start <= slot && slot <= r.End {
				for _, n := range s.Nodes {
					if n.Role == "master" {
						return net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
					}
				}
			}
		}
	}
	t.Fatalf("no master serves slot %d", slot)
	return ""
}

// One master of a Redis Cluster is down: conversations whose keys live on
// the other masters are still answered (no key sits on every activity's
// path), and /readyz says what is wrong.
func TestOneClusterMasterDown(t *testing.T) {
	cl := startRedisCluster(t)
	h := newHarness(t)
	h.env["REDIS_URL"] = cl.url()
	prefix := h.env["REDIS_PREFIX"]
	h.start(t)
	waitReady(t, h.url)

	// Take down the master of the slot the old global set lived in.
	probe := redis.NewClient(&redis.Options{Addr: cl.addrs[0]})
	defer probe.Close()
	down := cl.ownerOf(t, probe, prefix+"serviceurls")
	var live *redis.Client
	for _, a := range cl.addrs {
		if a != down {
			live = redis.NewClient(&redis.Options{Addr: a})
			defer live.Close()
			break
		}
	}
	// Conversations whose every key (claim, reference, service URL) is on
	// a live master.
	var convs []string
	for i := 0; len(convs) < 3 && i < 500; i++ {
		conv := fmt.Sprintf("19:conv%d@thread.v2", i)
		id := fmt.Sprint(1700000000000 + i)
		ok := true
		for _, k := range []string{"activity:{" + conv + "|" + id + "}", "ref:{" + conv + "}", "svc:{" + conv + "}"} {
			if cl.ownerOf(t, live, prefix+k) == down {
				ok = false
			}
		}
		if ok {
			convs = append(convs, conv+" "+id)
		}
	}
	if len(convs) < 3 {
		t.Fatal("found no conversation whose keys avoid the stopped master")
	}
	p := cl.procs[down]
	p.Process.Kill()
	p.Wait()

	for i := range 5 {
		resp, err := http.Get(h.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("/readyz probe %d with a master down: %d, want 503", i, resp.StatusCode)
		}
	}
	for n, c := range convs {
		conv, id, _ := strings.Cut(c, " ")
		m := h.message(id, "help")
		m["conversation"].(map[string]any)["id"] = conv
		if code := h.post(t, m); code != http.StatusOK {
			t.Fatalf("%s with another master down: status %d, want 200", conv, code)
		}
		h.connector.WaitCalls(t, n+1)
	}
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	eventually(t, 10*time.Second, "the bot to become ready", func() bool { return ready(base) })
}

// ready reports whether the bot at base answers /readyz with 200.
func ready(base string) bool {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
