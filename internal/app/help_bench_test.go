package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkHelpThroughTheWholeStack is one `help` as a replica serves it:
// a signed activity over a kept-alive connection, token and channel
// checks, the activity's claim and conversation reference in Redis at
// REDIS_URL, the help card posted to the connector fake through the
// connector's pipeline, and the 200. The client and the fakes run in this
// process too, so its figures are an upper bound of the bot's own; bench/
// measures the bot alone, in its own process. With -cpuprofile and
// -memprofile it shows where a help's CPU and allocations go.
func BenchmarkHelpThroughTheWholeStack(b *testing.B) {
	h := newHarness(b)
	h.tune = func(d *deps) { d.noBackground = true }
	h.connector.RecordBodies(false)
	h.start(b)

	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	token := h.channel.Token(b)
	post := func(id string) {
		body, err := json.Marshal(h.message(id, "help"))
		if err != nil {
			b.Fatal(err)
		}
		var req bytes.Buffer
		fmt.Fprintf(&req, "POST /api/messages HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %s\r\n\r\n",
			conn.RemoteAddr(), token, strconv.Itoa(len(body)))
		req.Write(body)
		if _, err := conn.Write(req.Bytes()); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("help answered %d", resp.StatusCode)
		}
	}
	for i := range 100 { // connections, pools and the token in place
		post("warm-" + strconv.Itoa(i))
	}
	before := len(h.connector.Calls())
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		post("help-" + strconv.Itoa(i))
	}
	b.StopTimer()
	if replies := len(h.connector.Calls()) - before; replies != b.N {
		b.Fatalf("%d replies for %d helps", replies, b.N)
	}
}
