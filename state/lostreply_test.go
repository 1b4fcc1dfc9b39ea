package state_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/state"
)

// replyCutter is a TCP proxy to Redis that, once armed, lets the next
// script command through to Redis but cuts the connection instead of
// passing its reply back: the write lands, its answer is lost, as when a
// connection drops or a reply times out.
type replyCutter struct {
	ln    net.Listener
	armed atomic.Bool
	cuts  atomic.Int32
}

func newReplyCutter(t *testing.T, target string) *replyCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyCutter{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); p.serve(c, target) }()
		}
	}()
	return p
}

func (p *replyCutter) serve(client net.Conn, target string) {
	defer client.Close()
	server, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer server.Close()
	var cut atomic.Bool // this connection's next reply is dropped
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				lower := bytes.ToLower(buf[:n])
				if (bytes.Contains(lower, []byte("\r\nevalsha\r\n")) || bytes.Contains(lower, []byte("\r\neval\r\n"))) && p.armed.CompareAndSwap(true, false) {
					cut.Store(true)
				}
				if _, err := server.Write(buf[:n]); err != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		server.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			if cut.Load() {
				p.cuts.Add(1)
				return // the script ran; its answer never arrives
			}
			if _, err := client.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// A compare-and-set whose answer is lost is sent again by the client (on a
// new connection); the second run must find the write done, not take it
// for someone else's: a claim reported as lost leaves the approver's
// upgrade to the reaper, an outcome reported as someone else's is never
// published (no history line, no card updated for everyone).
func TestWriteWhoseAnswerWasLostIsOurs(t *testing.T) {
	u, err := url.Parse(redisURL())
	if err != nil {
		t.Fatal(err)
	}
	cutter := newReplyCutter(t, u.Host)
	u.Host = cutter.ln.Addr().String()
	rdb, closeFn, err := state.Connect(context.Background(), u.String(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeFn() })
	prefix := fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())
	direct, _ := newApprovals(t, state.Options{Prefix: prefix})
	s := state.New(rdb, state.Options{Prefix: prefix}).Approvals()
	ctx := context.Background()

	ap, _, err := s.OpenApproval(ctx, sampleApproval())
	if err != nil {
		t.Fatal(err)
	}
	cutter.armed.Store(true)
	claim, err := s.ClaimUpgrade(ctx, ap.ID, approval.Person{Name: "Megan"}, time.Now(), time.Minute)
	if cutter.cuts.Load() != 1 {
		t.Fatalf("the claim's answer was not cut (%d cuts)", cutter.cuts.Load())
	}
	if err != nil || claim.Status != approval.StatusUpgrading || claim.ClaimToken == "" {
		t.Fatalf("claim whose answer was lost: %+v %v", claim, err)
	}
	if stored, err := direct.Approval(ctx, ap.ID); err != nil || stored.ClaimToken != claim.ClaimToken {
		t.Fatalf("stored claim %q, returned %q (%v)", stored.ClaimToken, claim.ClaimToken, err)
	}

	marked, err := s.Amend(ctx, claim, func(x *approval.Approval) { x.UpgradeSentAt = time.Now().UTC() })
	if err != nil {
		t.Fatal(err)
	}
	cutter.armed.Store(true)
	done, err := s.Settle(ctx, marked, func(x *approval.Approval) { x.Status = approval.StatusUpgraded })
	if cutter.cuts.Load() != 2 {
		t.Fatalf("the outcome's answer was not cut (%d cuts)", cutter.cuts.Load())
	}
	if err != nil || done.Status != approval.StatusUpgraded {
		t.Fatalf("outcome whose answer was lost: %+v %v (conflict: %v)", done, err, errors.Is(err, bot.ErrConflict))
	}
	if stored, err := direct.Approval(ctx, ap.ID); err != nil || stored.Status != approval.StatusUpgraded || stored.ClaimToken != "" {
		t.Errorf("stored %+v %v", stored, err)
	}
}
