package main

import (
	"net"
	"sync"
	"sync/atomic"
)

// redisProxy sits between the bot and Redis on loopback and counts round
// trips: a client write that follows a server reply (or opens the
// connection) starts one. A pipeline of several commands is one round trip,
// as it is on the wire, whatever client library the bot uses.
type redisProxy struct {
	ln       net.Listener
	upstream string
	trips    atomic.Int64
	wg       sync.WaitGroup
}

func startRedisProxy(upstream string) (*redisProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &redisProxy{ln: ln, upstream: upstream}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *redisProxy) Addr() string { return p.ln.Addr().String() }

// RoundTrips counts the round trips so far.
func (p *redisProxy) RoundTrips() int64 { return p.trips.Load() }

func (p *redisProxy) Close() {
	p.ln.Close()
	p.wg.Wait()
}

func (p *redisProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *redisProxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer server.Close()
	// replied is set when the server has answered since the client last
	// wrote: the client's next write is a new round trip.
	var replied atomic.Bool
	replied.Store(true)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				replied.Store(true)
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if replied.Swap(false) {
				p.trips.Add(1)
			}
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: the deferred closes end both sides
		}
	}
}
