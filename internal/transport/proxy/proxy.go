// Package proxy is a fault-injecting TCP proxy for partition tests: it
// listens on a loopback port and forwards every connection to a target,
// and a test can freeze, black-hole, or randomly cut the link. Put one in
// front of a member's peer listener and give its address to the other
// members as that member's peer URL.
//
// The faults model what a network does to TCP, not to bytes: a stream is
// delayed or it dies, but the proxy never forwards a stream with a hole
// in it.
//
//   - Pause freezes the link: nothing is read, forwarded or dialed; data
//     waits in kernel buffers (and at most one read chunk per direction in
//     the proxy). Resume delivers it intact, as after a long stall.
//   - Blackhole makes the link silent: what arrives is read and discarded,
//     and every connection that lost data that way stays silent until it is
//     closed, even after Heal, since its stream has a hole. New connections
//     are accepted and never reach the target. Peers notice only through
//     their own timeouts, as with a real partition.
//   - DropFraction(f) cuts (closes both sides of) the connection carrying
//     a forwarded chunk with probability f. Decisions are drawn in order
//     from a generator seeded in New, so the same sequence of chunks gets
//     the same fate.
//   - Delay(d) holds every chunk for d before forwarding it, a slow link:
//     each direction of a connection delivers in order, d later.
//   - Heal ends Pause, Blackhole, DropFraction and Delay.
package proxy

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Stats counts what the proxy did.
type Stats struct {
	Accepted  int   // connections accepted
	Dialed    int   // connections opened to the target
	Forwarded int64 // bytes forwarded, both directions
	Discarded int64 // bytes read and dropped by Blackhole
	Cut       int   // connections cut by DropFraction or CutConnections
	Held      int   // chunks being held by Delay right now
}

// Proxy forwards loopback connections to a target.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu        sync.Mutex
	changed   *sync.Cond    // paused or closed changed
	healed    chan struct{} // closed and replaced by every Heal and Close: held chunks go
	paused    bool
	blackhole bool
	dropFrac  float64
	delay     time.Duration
	rnd       *rand.Rand
	conns     map[*link]struct{}
	closed    bool
	stats     Stats
}

// link is one proxied connection.
type link struct {
	client, server net.Conn // server is nil if black-holed from the start
	silent         bool     // lost data to Blackhole: never forwards again
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		l.client.Close()
		if l.server != nil {
			l.server.Close()
		}
	})
}

// New listens on a free loopback port and forwards to target (host:port).
// seed drives DropFraction.
func New(target string, seed uint64) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		target: target,
		ln:     ln,
		rnd:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		conns:  map[*link]struct{}{},
	}
	p.changed = sync.NewCond(&p.mu)
	p.healed = make(chan struct{})
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Pause freezes the link until Resume or Heal.
func (p *Proxy) Pause() { p.set(func() { p.paused = true }) }

// Resume ends Pause.
func (p *Proxy) Resume() { p.set(func() { p.paused = false }) }

// Blackhole discards everything from now on, until Heal.
func (p *Proxy) Blackhole() { p.set(func() { p.blackhole = true }) }

// DropFraction cuts the connection of each forwarded chunk with
// probability f (0 turns it off).
func (p *Proxy) DropFraction(f float64) { p.set(func() { p.dropFrac = f }) }

// Delay holds every forwarded chunk for d (0 turns it off).
func (p *Proxy) Delay(d time.Duration) { p.set(func() { p.delay = d }) }

// Heal ends Pause, Blackhole, DropFraction and Delay. Connections that
// lost data to Blackhole stay silent.
func (p *Proxy) Heal() {
	p.set(func() {
		p.paused, p.blackhole, p.dropFrac, p.delay = false, false, 0, 0
		close(p.healed)
		p.healed = make(chan struct{})
	})
}

func (p *Proxy) set(f func()) {
	p.mu.Lock()
	f()
	p.changed.Broadcast()
	p.mu.Unlock()
}

// CutConnections closes every current connection, as a crashed router or
// a restarted peer would.
func (p *Proxy) CutConnections() {
	p.mu.Lock()
	ls := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		ls = append(ls, l)
	}
	p.stats.Cut += len(ls)
	p.mu.Unlock()
	for _, l := range ls {
		l.close()
	}
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.changed.Broadcast()
	close(p.healed) // release held chunks; their writes fail on the closed links
	p.healed = make(chan struct{})
	ls := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		ls = append(ls, l)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range ls {
		l.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.stats.Accepted++
		l := &link{client: c}
		p.conns[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// waitRunning blocks while paused; false if the proxy closed.
func (p *Proxy) waitRunningLocked() bool {
	for p.paused && !p.closed {
		p.changed.Wait()
	}
	return !p.closed
}

func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.conns, l)
		p.mu.Unlock()
	}()
	p.mu.Lock()
	ok := p.waitRunningLocked()
	dial := !p.blackhole
	if !dial {
		l.silent = true
	}
	p.mu.Unlock()
	if !ok {
		return
	}
	if !dial {
		p.pipe(l, l.client, io.Discard, true)
		return
	}
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	l.server = s
	p.stats.Dialed++
	closed := p.closed
	p.mu.Unlock()
	if closed {
		s.Close()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.pipe(l, s, l.client, false)
	}()
	p.pipe(l, l.client, s, true)
	<-done
}

// pipe copies src to dst under the current faults. At the end of src it
// passes the half-close on, as TCP would, and returns; on any other error
// or a cut it closes the whole link. On a silent link the target's end
// is not passed on (the FIN or RST is lost in the black hole too): the
// client's side stays open until the client closes it.
func (p *Proxy) pipe(l *link, src io.Reader, dst io.Writer, fromClient bool) {
	buf := make([]byte, 32<<10)
	var hold *time.Timer
	defer func() {
		if hold != nil {
			hold.Stop()
		}
	}()
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		delay, healed := p.delay, p.healed
		if !p.waitRunningLocked() {
			p.mu.Unlock()
			return
		}
		if n > 0 {
			if p.blackhole {
				l.silent = true
			}
			switch {
			case l.silent:
				p.stats.Discarded += int64(n)
				n = 0
			case p.dropFrac > 0 && p.rnd.Float64() < p.dropFrac:
				p.stats.Cut++
				p.mu.Unlock()
				l.close()
				return
			default:
				p.stats.Forwarded += int64(n)
			}
		}
		p.mu.Unlock()
		if n > 0 && delay > 0 {
			if hold == nil {
				hold = time.NewTimer(delay)
			} else {
				hold.Reset(delay)
			}
			p.mu.Lock()
			p.stats.Held++
			p.mu.Unlock()
			select {
			case <-hold.C:
			case <-healed:
				if !hold.Stop() {
					<-hold.C
				}
			}
			p.mu.Lock()
			p.stats.Held--
			p.mu.Unlock()
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				l.close()
				return
			}
		}
		if err != nil {
			p.mu.Lock()
			silent := l.silent
			p.mu.Unlock()
			if silent && !fromClient {
				return
			}
			cw, ok := dst.(interface{ CloseWrite() error })
			if errors.Is(err, io.EOF) && ok {
				_ = cw.CloseWrite()
				return
			}
			l.close()
			return
		}
	}
}
