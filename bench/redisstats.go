package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// redisRoundTrips is how many replies the bench's own redis-server has
// written so far (INFO stats total_writes_processed): one per round trip,
// since Redis answers a command, or a pipeline that arrived in one read,
// with one write. Redis counts it, so nothing stands between the bot and
// Redis during the measurement (a counting proxy would cost the shared
// CPUs four syscalls per round trip, which the peer, without Redis, would
// not pay). A reply or request larger than a socket buffer counts more
// than once; the bot's are a few KiB.
//
// Each call is itself one round trip, which the next call counts: callers
// subtract it.
func redisRoundTrips(addr string) (int64, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "INFO stats\r\n"); err != nil {
		return 0, err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
	if !strings.HasPrefix(line, "$") || err != nil || n < 0 {
		return 0, fmt.Errorf("bench: INFO stats answered %q", line)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(l, "total_writes_processed:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("bench: redis-server reports no total_writes_processed (Redis 6 or later needed)")
}
