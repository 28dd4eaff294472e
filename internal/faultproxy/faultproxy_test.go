package faultproxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echoServer answers every line it reads with the same line, and counts the bytes it
// received.
func echoServer(t *testing.T) (addr string, received *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	received = &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					received.Add(int64(len(line)))
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), received
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// answered reports whether a line sent through p comes back; the reset of a refused
// connection may already fail the dial.
func answered(p *Proxy) bool {
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		return false
	}
	defer c.Close()
	if _, err := io.WriteString(c, "x\n"); err != nil {
		return false
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err == nil
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, msg string) string {
	t.Helper()
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(line, "\n")
}

func TestForwardsBothWays(t *testing.T) {
	addr, _ := echoServer(t)
	p := newProxy(t, addr)
	c, r := dial(t, p)
	for _, msg := range []string{"hello", strings.Repeat("x", 100<<10)} {
		if got := roundTrip(t, c, r, msg); got != msg {
			t.Fatalf("echo of %d bytes came back as %d bytes", len(msg), len(got))
		}
	}
	if st := p.Stats(); st.Conns != 1 || st.Bytes < 2*(100<<10) {
		t.Fatalf("stats %+v: want 1 connection and both directions counted", st)
	}
}

func TestDropResetsOpenConnectionsAndNewOnesWork(t *testing.T) {
	addr, _ := echoServer(t)
	p := newProxy(t, addr)
	c, r := dial(t, p)
	roundTrip(t, c, r, "before")
	if n := p.Drop(); n != 2 { // the client's and the server's side
		t.Fatalf("Drop cut %d connections, want 2", n)
	}
	_, _ = io.WriteString(c, "after\n")
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("a dropped connection still answered")
	}
	c2, r2 := dial(t, p)
	if got := roundTrip(t, c2, r2, "again"); got != "again" {
		t.Fatalf("new connection after a drop echoed %q", got)
	}
}

func TestStallHoldsBytesUntilResume(t *testing.T) {
	addr, received := echoServer(t)
	p := newProxy(t, addr)
	c, r := dial(t, p)
	roundTrip(t, c, r, "warm")
	before := received.Load()
	p.Stall()
	if _, err := io.WriteString(c, "held\n"); err != nil {
		t.Fatal(err)
	}
	// Wait until the proxy has read the bytes: from then on only the stall keeps them
	// from the server.
	for p.Stats().Held == 0 {
		time.Sleep(time.Millisecond)
	}
	if got := received.Load(); got != before {
		t.Fatalf("the server received %d bytes during the stall", got-before)
	}
	p.Resume()
	line, err := r.ReadString('\n')
	if err != nil || line != "held\n" {
		t.Fatalf("after Resume: %q, %v", line, err)
	}
}

func TestDropEndsAStalledConnection(t *testing.T) {
	addr, _ := echoServer(t)
	p := newProxy(t, addr)
	c, r := dial(t, p)
	roundTrip(t, c, r, "warm")
	p.Stall()
	defer p.Resume()
	_, _ = io.WriteString(c, "held\n")
	for p.Stats().Held == 0 {
		time.Sleep(time.Millisecond)
	}
	p.Drop()
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("a dropped, stalled connection answered")
	}
}

func TestRefuseAndDeadTarget(t *testing.T) {
	addr, _ := echoServer(t)
	p := newProxy(t, addr)
	p.Refuse(true)
	if answered(p) {
		t.Fatal("a refused connection answered")
	}
	p.Refuse(false)
	c2, r2 := dial(t, p)
	if got := roundTrip(t, c2, r2, "ok"); got != "ok" {
		t.Fatalf("after Refuse(false): %q", got)
	}

	// A target nobody listens on: the client's connection is reset, not left hanging.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	pd := newProxy(t, dead)
	if answered(pd) {
		t.Fatal("a connection to a dead target answered")
	}
	if st := pd.Stats(); st.Refused != 1 {
		t.Fatalf("stats %+v: want 1 refused", st)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	addr, _ := echoServer(t)
	p, err := New("127.0.0.1:0", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, r := dial(t, p)
	roundTrip(t, c, r, "warm")
	p.Stall() // Close must not hang on a stall
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection alive after Close")
	}
	if answered(p) {
		t.Fatal("proxy still forwards after Close")
	}
}
