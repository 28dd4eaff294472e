// Package faultproxy is a TCP proxy for tests that injects network faults between a
// client and a server on loopback: it can drop every open connection at once (a reset,
// as when a NAT or a load balancer forgets them), stall all traffic until told to resume
// (as a congested or half-dead link does), and refuse new connections (the server looks
// unreachable while it is in fact up).
package faultproxy

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Stats counts what a Proxy did.
type Stats struct {
	// Conns is the number of client connections accepted.
	Conns int64
	// Dropped is the number of connections cut by Drop.
	Dropped int64
	// Refused is the number of connections closed at once because of Refuse or because
	// the target could not be dialed.
	Refused int64
	// Bytes is the number of bytes forwarded, both directions.
	Bytes int64
	// Held is the number of bytes read from one side and not yet forwarded because of a
	// stall.
	Held int64
}

// Proxy forwards each connection accepted on its listener to the target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	stalled chan struct{} // non-nil while stalled; closed by Resume
	refuse  bool
	closed  bool

	wg                                 sync.WaitGroup
	nConns, nDropped, nRefused, nBytes atomic.Int64
	nHeld                              atomic.Int64
	dialTimeout                        time.Duration
}

// New listens on listen (e.g. "127.0.0.1:0") and forwards to target.
func New(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %q: %w", listen, err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, dialTimeout: 5 * time.Second}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	return Stats{Conns: p.nConns.Load(), Dropped: p.nDropped.Load(), Refused: p.nRefused.Load(),
		Bytes: p.nBytes.Load(), Held: p.nHeld.Load()}
}

// Drop resets every open connection (both sides) and returns how many there were. New
// connections are accepted as before.
func (p *Proxy) Drop() int {
	p.mu.Lock()
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		reset(c)
	}
	p.nDropped.Add(int64(len(conns)))
	return len(conns)
}

// reset closes c with an RST rather than a FIN where it can: the peer sees "connection
// reset", the harshest way a connection ends.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// Stall holds every byte, in both directions and on every connection, old and new,
// until Resume. Stalling a stalled proxy does nothing.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
}

// Resume ends a stall: held bytes flow again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
}

// Refuse makes the proxy close new connections at once (on) or forward them again (off).
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// Close stops accepting, resets every connection and waits for the forwarding
// goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.Resume()
	p.Drop()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.nConns.Add(1)
		p.mu.Lock()
		refuse := p.refuse || p.closed
		p.mu.Unlock()
		if refuse {
			p.nRefused.Add(1)
			reset(c)
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// track registers c so that Drop reaches it; false when the proxy is closing.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, p.dialTimeout)
	if err != nil {
		// The target is down: the client sees its connection reset, as it would had it
		// dialed the target itself and been refused.
		p.nRefused.Add(1)
		reset(client)
		return
	}
	if !p.track(client) || !p.track(server) {
		reset(client)
		reset(server)
		p.untrack(client)
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client) }()
	go func() { defer wg.Done(); p.pipe(client, server) }()
	wg.Wait()
	p.untrack(client)
	p.untrack(server)
}

// pipe copies from src to dst until either fails, waiting out stalls between reads and
// writes. When one direction ends, both connections are closed: HTTP clients and
// servers do not rely on half-closed connections.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer func() {
		_ = dst.Close()
		_ = src.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.nHeld.Add(int64(n))
			p.waitStall(src)
			p.nHeld.Add(-int64(n))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			p.nBytes.Add(int64(n))
		}
		if err != nil {
			return // EOF, a reset, or a Drop: the other direction ends too
		}
	}
}

// waitStall blocks while the proxy is stalled, or until src is closed by Drop or Close.
func (p *Proxy) waitStall(src net.Conn) {
	for {
		p.mu.Lock()
		ch := p.stalled
		_, open := p.conns[src]
		p.mu.Unlock()
		if ch == nil || !open {
			return
		}
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond): // look again whether src was dropped
		}
	}
}
