package proxy

import (
	"bufio"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echo is a line echo server that counts connections and bytes.
type echo struct {
	ln       net.Listener
	accepted atomic.Int64
	received atomic.Int64
	wg       sync.WaitGroup
}

func startEcho(t *testing.T) *echo {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadBytes('\n')
					e.received.Add(int64(len(line)))
					if err != nil {
						return
					}
					if _, err := c.Write(line); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); e.wg.Wait() })
	return e
}

func newProxy(t *testing.T, target string, seed uint64) *Proxy {
	p, err := New(target, seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, p *Proxy) *client {
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c, bufio.NewReader(c)}
}

func (c *client) send(t *testing.T, s string) {
	if _, err := io.WriteString(c.c, s+"\n"); err != nil {
		t.Fatal(err)
	}
}

// read returns the next echoed line, or the error that ended the stream.
func (c *client) read() (string, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-1], nil
}

func (c *client) expect(t *testing.T, want string) {
	t.Helper()
	got, err := c.read()
	if err != nil || got != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestForwards(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.ln.Addr().String(), 1)
	c := dial(t, p)
	c.send(t, "hello")
	c.expect(t, "hello")
	if st := p.Stats(); st.Accepted != 1 || st.Dialed != 1 || st.Forwarded != 12 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPauseHoldsDataUntilResume(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.ln.Addr().String(), 1)
	c := dial(t, p)
	c.send(t, "one")
	c.expect(t, "one")
	p.Pause()
	c.send(t, "two")
	c2 := dial(t, p) // a new connection waits too, undialed
	c2.send(t, "three")
	waitFor(t, "the proxy to accept the second connection", func() bool { return p.Stats().Accepted == 2 })
	if e.received.Load() != 4 || e.accepted.Load() != 1 || p.Stats().Forwarded != 8 {
		t.Fatalf("data crossed a paused link: target got %d bytes on %d connections", e.received.Load(), e.accepted.Load())
	}
	p.Resume()
	c.expect(t, "two")
	c2.expect(t, "three")
}

func TestBlackholeAndHeal(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.ln.Addr().String(), 1)
	c := dial(t, p)
	c.send(t, "one")
	c.expect(t, "one")

	p.Blackhole()
	c.send(t, "lost")
	waitFor(t, "the proxy to discard", func() bool { return p.Stats().Discarded == 5 })
	c2 := dial(t, p)
	c2.send(t, "also lost")
	waitFor(t, "the proxy to discard", func() bool { return p.Stats().Discarded == 15 })
	if e.received.Load() != 4 || e.accepted.Load() != 1 {
		t.Fatalf("data crossed a black hole: %d bytes, %d connections", e.received.Load(), e.accepted.Load())
	}

	p.Heal()
	// A connection that lost data stays silent; a new one works.
	c.send(t, "after")
	waitFor(t, "the proxy to discard", func() bool { return p.Stats().Discarded == 21 })
	c3 := dial(t, p)
	c3.send(t, "fresh")
	c3.expect(t, "fresh")
	if e.received.Load() != 10 {
		t.Fatalf("target got %d bytes", e.received.Load())
	}
}

func TestDropFractionCutsConnections(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.ln.Addr().String(), 1)
	p.DropFraction(1)
	c := dial(t, p)
	c.send(t, "x")
	if _, err := c.read(); err == nil {
		t.Fatal("a connection survived DropFraction(1)")
	}
	p.Heal()
	c2 := dial(t, p)
	c2.send(t, "y")
	c2.expect(t, "y")
}

// fates sends one line on each of n connections in turn and records
// which came back.
func fates(t *testing.T, seed uint64, n int) []bool {
	e := startEcho(t)
	p := newProxy(t, e.ln.Addr().String(), seed)
	p.DropFraction(0.5)
	out := make([]bool, n)
	for i := range out {
		c := dial(t, p)
		c.send(t, "ping")
		line, err := c.read()
		out[i] = err == nil && line == "ping"
		c.c.Close()
	}
	return out
}

func TestDropFractionIsSeeded(t *testing.T) {
	a, b := fates(t, 42, 40), fates(t, 42, 40)
	cut := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different fate for connection %d", i)
		}
		if !a[i] {
			cut++
		}
	}
	if cut == 0 || cut == len(a) {
		t.Fatalf("%d of %d cut at 0.5", cut, len(a))
	}
}

func TestCutConnectionsAndClose(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.ln.Addr().String(), 1)
	c := dial(t, p)
	c.send(t, "a")
	c.expect(t, "a")
	p.CutConnections()
	if _, err := c.read(); err == nil {
		t.Fatal("connection survived CutConnections")
	}
	c2 := dial(t, p)
	c2.send(t, "b")
	c2.expect(t, "b")
	p.Pause() // Close must not wait for a Resume
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.read(); err == nil {
		t.Fatal("connection survived Close")
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Fatal("proxy still listening")
	}
}

func TestDelayHoldsChunksUntilDueOrHeal(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.ln.Addr().String(), 1)
	c := dial(t, p)
	c.send(t, "one")
	c.expect(t, "one")

	// A short delay: data still flows, in order.
	p.Delay(5 * time.Millisecond)
	c.send(t, "two")
	c.send(t, "three")
	c.expect(t, "two")
	c.expect(t, "three")

	// A delay longer than the test: the chunk is held, not forwarded,
	// until Heal lets it go.
	p.Delay(time.Hour)
	before := e.received.Load()
	c.send(t, "four")
	waitFor(t, "the proxy to hold the chunk", func() bool { return p.Stats().Held == 1 })
	if got := e.received.Load(); got != before {
		t.Fatalf("a held chunk reached the target (%d bytes, want %d)", got, before)
	}
	p.Heal()
	c.expect(t, "four")
	if st := p.Stats(); st.Held != 0 {
		t.Fatalf("stats after heal %+v", st)
	}
}
