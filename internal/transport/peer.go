package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// Peer states. Send queues messages while a peer is active or a
// connection attempt is in flight, and drops them while it is inactive
// (between a failure and the next attempt).
const (
	stateConnecting int32 = iota
	stateActive
	stateInactive
)

// Batching limits for one write to the stream.
const (
	maxBatchMsgs  = 512
	maxBatchBytes = 256 << 10
	maxPings      = 8 // pings without a pong before we stop sending more
)

var (
	errPeerSilent  = errors.New("transport: no pong from the peer within the idle timeout")
	errURLsChanged = errors.New("transport: peer URLs changed")
	errStreamEnded = errors.New("transport: the peer ended the stream")
)

// peer is the sending side towards one member: a bounded queue drained by
// one goroutine into one long-lived stream, and a snapshot goroutine.
type peer struct {
	t     *Transport
	id    uint64
	label string
	lg    *zap.Logger

	queue chan *raftpb.Message
	snapc chan *raftpb.Message
	kick  chan struct{} // cut a backoff wait short (URLs changed)
	state atomic.Int32

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	urls      []*url.URL
	next      int       // index of the URL to use
	connected *url.URL  // URL of the live stream
	endStream func()    // closes the live stream
	since     time.Time // last change of active
	lastErr   error
	loggedErr string // last error logged, to log changes only
}

func newPeer(t *Transport, id uint64, urls []*url.URL) *peer {
	ctx, cancel := context.WithCancel(context.Background())
	p := &peer{
		t:      t,
		id:     id,
		label:  idString(id),
		lg:     t.lg.With(zap.String("remote-peer-id", idString(id))),
		queue:  make(chan *raftpb.Message, t.cfg.QueueSize),
		snapc:  make(chan *raftpb.Message, 1),
		kick:   make(chan struct{}, 1),
		ctx:    ctx,
		cancel: cancel,
		urls:   urls,
	}
	p.state.Store(stateConnecting)
	return p
}

func (p *peer) start() {
	p.wg.Add(2)
	go p.run()
	go p.runSnapshots()
}

func (p *peer) stop() {
	p.cancel()
	p.wg.Wait()
	if p.state.Swap(stateInactive) == stateActive {
		p.t.met.activePeers.WithLabelValues(p.t.local, p.label).Dec()
	}
}

// send queues m without blocking; see Transport.Send.
func (p *peer) send(m *raftpb.Message) {
	if p.state.Load() == stateInactive {
		p.drop(1)
		return
	}
	select {
	case p.queue <- m:
	default:
		p.drop(1)
	}
}

func (p *peer) drop(n int) {
	p.t.met.sentFailures.WithLabelValues(p.label).Add(float64(n))
	p.t.rep.unreachable(p.id)
}

func (p *peer) setURLs(us []*url.URL) {
	p.mu.Lock()
	p.urls = us
	p.next = 0
	end := p.endStream
	if p.connected != nil {
		for _, u := range us {
			if u.String() == p.connected.String() {
				end = nil
				break
			}
		}
	}
	p.mu.Unlock()
	if end != nil {
		end()
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *peer) status() PeerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.urls[p.next%len(p.urls)]
	if p.connected != nil {
		u = p.connected
	}
	return PeerStatus{
		Active: p.state.Load() == stateActive,
		Since:  p.since,
		URL:    u.String(),
		Err:    p.lastErr,
	}
}

// run connects, streams until the stream breaks, and reconnects with
// exponential backoff (reset by every successful connection).
func (p *peer) run() {
	defer p.wg.Done()
	backoff := p.t.cfg.BackoffMin
	for p.ctx.Err() == nil {
		p.state.Store(stateConnecting)
		s, err := p.connect()
		if err == nil {
			p.setActive(s.url)
			backoff = p.t.cfg.BackoffMin
			err = p.stream(s)
		} else {
			p.rotateURL()
		}
		if p.ctx.Err() != nil {
			return
		}
		p.setInactive(err)
		select {
		case <-time.After(backoff):
		case <-p.kick:
		case <-p.ctx.Done():
			return
		}
		backoff = min(2*backoff, p.t.cfg.BackoffMax)
	}
}

func (p *peer) setActive(u *url.URL) {
	p.mu.Lock()
	p.connected = u
	p.since = time.Now()
	p.lastErr = nil
	p.loggedErr = ""
	p.mu.Unlock()
	p.state.Store(stateActive)
	p.t.met.activePeers.WithLabelValues(p.t.local, p.label).Inc()
	p.lg.Info("peer became active", zap.String("remote-peer-url", u.String()))
}

// setInactive records why the stream or the attempt ended, drops what is
// queued (it would arrive stale) and reports the peer unreachable.
func (p *peer) setInactive(err error) {
	was := p.state.Swap(stateInactive)
	p.mu.Lock()
	p.connected, p.endStream = nil, nil
	p.lastErr = err
	logIt := was == stateActive || err.Error() != p.loggedErr
	p.loggedErr = err.Error()
	if was == stateActive {
		p.since = time.Now()
	}
	p.mu.Unlock()
	if was == stateActive {
		p.t.met.activePeers.WithLabelValues(p.t.local, p.label).Dec()
		p.t.met.disconnectedPeers.WithLabelValues(p.t.local, p.label).Inc()
	}
	var refused bool
	for _, r := range []error{ErrClusterMismatch, ErrMemberRemoved, ErrWrongMember, ErrBadRequest} {
		if errors.Is(err, r) {
			refused = true
		}
	}
	if logIt {
		switch {
		case refused:
			p.lg.Error("peer refused this member", zap.Error(err))
		case was == stateActive:
			p.lg.Warn("peer became inactive", zap.Error(err))
		default:
			p.lg.Warn("cannot connect to peer", zap.Error(err))
		}
	}
	if refused && p.t.cfg.OnRefused != nil {
		p.t.cfg.OnRefused(p.id, err)
	}
	n := 0
	for {
		select {
		case <-p.queue:
			n++
			continue
		default:
		}
		break
	}
	if n > 0 {
		p.t.met.sentFailures.WithLabelValues(p.label).Add(float64(n))
	}
	p.t.rep.unreachable(p.id)
}

func (p *peer) pickURL() *url.URL {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.urls[p.next%len(p.urls)]
}

func (p *peer) rotateURL() {
	p.mu.Lock()
	p.next = (p.next + 1) % len(p.urls)
	p.mu.Unlock()
}

// outStream is one open message stream: we write frames into pw, the
// HTTP client sends them as the request body, and the peer's pongs come
// back on the response body.
type outStream struct {
	url    *url.URL
	pw     *io.PipeWriter
	bw     *bufio.Writer
	resp   *http.Response
	opened chan struct{} // the opening ping left the pipe
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	pings    []time.Time // send times of pings without a pong, oldest first
	lastPong atomic.Int64
}

func (p *peer) setHeaders(h http.Header, contentType string) {
	h.Set("Content-Type", contentType)
	h.Set(HeaderProtocol, ProtocolVersion)
	h.Set(HeaderClusterID, p.t.cluster)
	h.Set(HeaderFrom, p.t.local)
	h.Set(HeaderTo, p.label)
}

// connect opens a stream and waits for the peer to accept it.
func (p *peer) connect() (*outStream, error) {
	u := p.pickURL()
	ctx, cancel := context.WithCancelCause(p.ctx)
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.JoinPath(StreamPath).String(), pr)
	if err != nil {
		cancel(err)
		return nil, err
	}
	req.ContentLength = -1
	p.setHeaders(req.Header, streamContentType)
	cw := &countingWriter{w: pw, n: p.t.met.sentBytes.WithLabelValues(p.label)}
	s := &outStream{url: u, pw: pw, ctx: ctx, cancel: cancel, opened: make(chan struct{})}
	s.bw = bufio.NewWriterSize(cw, 64<<10)

	// Whatever ends the stream also closes the pipe: the HTTP client
	// waits for its body writer, which waits on the pipe, before it
	// returns from a failed or cancelled request.
	context.AfterFunc(ctx, func() { pw.CloseWithError(context.Cause(ctx)) })

	// An HTTP/1.1 client sends the request headers with the first body
	// bytes, so the stream opens with a ping; its pong is the first RTT
	// sample. The write returns once the HTTP client took the bytes (or
	// the pipe is closed), and stream waits for it before using the pipe.
	s.pings = append(s.pings, time.Now())
	go func() {
		defer close(s.opened)
		_, _ = cw.Write(pingFrame)
	}()

	timer := time.AfterFunc(p.t.cfg.DialTimeout, func() {
		cancel(fmt.Errorf("transport: peer did not accept the stream within %v", p.t.cfg.DialTimeout))
	})
	resp, err := p.t.streamClient.Do(req)
	if !timer.Stop() && err == nil {
		resp.Body.Close()
		err = context.Cause(ctx)
	}
	if err != nil {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			err = c
		}
		cancel(err)
		pw.CloseWithError(err)
		return nil, fmt.Errorf("opening stream to %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		err := refusalError(resp)
		resp.Body.Close()
		cancel(err)
		pw.CloseWithError(err)
		return nil, err
	}
	s.resp = resp
	s.lastPong.Store(time.Now().UnixNano())
	p.mu.Lock()
	p.endStream = func() { cancel(errURLsChanged) }
	p.mu.Unlock()
	return s, nil
}

// stream writes queued messages into s until s breaks or the peer stops.
// Messages are batched: whatever is queued when the writer wakes up goes
// out in one flush.
func (p *peer) stream(s *outStream) error {
	var wg sync.WaitGroup
	defer func() {
		s.cancel(ErrStopped)
		s.pw.CloseWithError(context.Cause(s.ctx))
		s.resp.Body.Close()
		wg.Wait()
	}()
	rtt := p.t.met.rtt.WithLabelValues(p.label)

	// Pongs: each answers the oldest outstanding ping.
	wg.Add(1)
	go func() {
		defer wg.Done()
		fr := newFrameReader(s.resp.Body, 0)
		for {
			kind, _, err := fr.next()
			if err == nil && kind != framePong {
				err = fmt.Errorf("%w: %s frame on the response", ErrBadFrame, kindName(kind))
			}
			if err != nil {
				if err == io.EOF {
					err = errStreamEnded
				}
				s.cancel(err)
				return
			}
			now := time.Now()
			s.lastPong.Store(now.UnixNano())
			s.mu.Lock()
			if len(s.pings) > 0 {
				rtt.Observe(now.Sub(s.pings[0]).Seconds())
				s.pings = s.pings[1:]
			}
			s.mu.Unlock()
		}
	}()

	// Watchdog: asks for pings and closes a stream whose peer went silent,
	// even while the writer is blocked on a full connection.
	pingc := make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(p.t.cfg.PingInterval)
		defer tick.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case now := <-tick.C:
				if now.Sub(time.Unix(0, s.lastPong.Load())) > p.t.cfg.IdleTimeout {
					s.cancel(errPeerSilent)
					return
				}
				select {
				case pingc <- struct{}{}:
				default:
				}
			}
		}
	}()

	select {
	case <-s.opened:
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	}
	buf := make([]byte, 0, 4096)
	for {
		select {
		case <-s.ctx.Done():
			return context.Cause(s.ctx)
		case <-pingc:
			s.mu.Lock()
			skip := len(s.pings) >= maxPings
			if !skip {
				s.pings = append(s.pings, time.Now())
			}
			s.mu.Unlock()
			if skip {
				continue
			}
			if _, err := s.bw.Write(pingFrame); err != nil {
				return p.streamErr(s, err)
			}
			if err := s.bw.Flush(); err != nil {
				return p.streamErr(s, err)
			}
		case m := <-p.queue:
			var err error
			for n := 0; ; n++ {
				if buf, err = p.writeMsg(s.bw, buf[:0], m); err != nil {
					return p.streamErr(s, err)
				}
				if n+1 >= maxBatchMsgs || s.bw.Buffered() >= maxBatchBytes {
					break
				}
				select {
				case m = <-p.queue:
					continue
				default:
				}
				break
			}
			if err := s.bw.Flush(); err != nil {
				return p.streamErr(s, err)
			}
			if cap(buf) > keepBuffer {
				buf = make([]byte, 0, 4096)
			}
		}
	}
}

// writeMsg encodes m into the stream. A message too large to send is
// dropped here (the peer would close the stream over it).
func (p *peer) writeMsg(bw *bufio.Writer, buf []byte, m *raftpb.Message) ([]byte, error) {
	buf, err := appendMsgFrame(buf, m)
	if err == nil && len(buf)-frameHeaderLen > p.t.cfg.MaxFrameBytes {
		err = fmt.Errorf("%w: %s of %d bytes, limit %d", ErrFrameTooLarge, m.GetType(), len(buf)-frameHeaderLen, p.t.cfg.MaxFrameBytes)
	}
	if err != nil {
		p.lg.Error("dropping a message that cannot be sent", zap.Stringer("type", m.GetType()), zap.Error(err))
		p.drop(1)
		return buf[:0], nil
	}
	_, err = bw.Write(buf)
	return buf, err
}

// streamErr prefers the reason the stream was cancelled over the pipe
// error it caused.
func (p *peer) streamErr(s *outStream, err error) error {
	if c := context.Cause(s.ctx); c != nil {
		return c
	}
	return err
}

// countingWriter counts bytes written into a metric.
type countingWriter struct {
	w io.Writer
	n interface{ Add(float64) }
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(float64(n))
	return n, err
}
