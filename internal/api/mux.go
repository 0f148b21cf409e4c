package api

// The client port: gRPC and HTTP/1.1 on one listener.
//
// etcd clients speak gRPC (HTTP/2 with prior knowledge, no TLS on http://
// and unix:// URLs) and operators speak HTTP/1.1 (/health, /metrics, the
// /v3 JSON gateway) to the same address. A ClientServer owns one gRPC server
// and one HTTP server and may serve any number of listeners; for each
// listener a splitter accepts connections and routes each one by its first
// bytes:
//
//	accept loop ──> per-connection goroutine: read up to 24 bytes (deadline)
//	                  │ "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"      │ anything else
//	                  v                                       v
//	             gRPC listener ──> grpc.Server      HTTP listener ──> http.Server
//
// The bytes read are replayed to whichever server gets the connection. The
// accept loop never reads, so a client that connects and sends nothing only
// costs its own goroutine until the preface deadline closes it.
//
// On TLS listeners (https://, unixs://; ServeTLS) the classifier completes
// the handshake in the per-connection goroutine, under the same deadline,
// and routes by the negotiated ALPN protocol: "h2" to gRPC, anything else
// (http/1.1, none) to HTTP. The *tls.Conn itself is handed on, so the HTTP
// server sees Request.TLS. A client that fails the handshake (no
// certificate when one is required, one from another CA) never reaches
// either server. See tls.go.

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// http2Preface is the first thing every HTTP/2 client (every gRPC client)
// sends on a plaintext connection (RFC 9113 section 3.4).
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// DefaultPrefaceTimeout is how long a new connection may take to send enough
// bytes to be routed before it is closed.
const DefaultPrefaceTimeout = 10 * time.Second

// DefaultReadHeaderTimeout is the HTTP server's header deadline; etcd uses 5
// minutes on the client port.
const DefaultReadHeaderTimeout = 5 * time.Minute

// ErrClientServerClosed is returned by ClientServer.Serve when it is called
// after Shutdown or Close.
var ErrClientServerClosed = errors.New("api: client server closed")

// ClientServerOptions tunes a ClientServer. The zero value uses the defaults.
type ClientServerOptions struct {
	// PrefaceTimeout bounds the time from accept to routing; 0 means
	// DefaultPrefaceTimeout.
	PrefaceTimeout time.Duration
	// ReadHeaderTimeout is the HTTP server's; 0 means DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// ErrorLog receives the HTTP server's connection errors; nil discards
	// them (etcd does not log client mistakes).
	ErrorLog *log.Logger
}

// ClientServer serves a gRPC server and an HTTP handler on shared listeners.
// It owns grpcSrv: Shutdown and Close stop it. Serve may be called once per
// listener (one per --listen-client-urls entry), concurrently.
type ClientServer struct {
	grpc           *grpc.Server
	http           *http.Server
	prefaceTimeout time.Duration

	mu        sync.Mutex
	closed    bool
	splitters map[*splitter]struct{}
}

// NewClientServer returns a ClientServer for grpcSrv and httpHandler. Nothing
// is served until Serve.
func NewClientServer(grpcSrv *grpc.Server, httpHandler http.Handler, opts ClientServerOptions) *ClientServer {
	if opts.PrefaceTimeout <= 0 {
		opts.PrefaceTimeout = DefaultPrefaceTimeout
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if opts.ErrorLog == nil {
		opts.ErrorLog = log.New(io.Discard, "", 0)
	}
	return &ClientServer{
		grpc: grpcSrv,
		http: &http.Server{
			Handler:           httpHandler,
			ReadHeaderTimeout: opts.ReadHeaderTimeout,
			ErrorLog:          opts.ErrorLog,
		},
		prefaceTimeout: opts.PrefaceTimeout,
		splitters:      make(map[*splitter]struct{}),
	}
}

// Serve accepts connections on l and routes them until l fails or the server
// is shut down. It returns nil after Shutdown or Close, the listener's error
// if l fails, and ErrClientServerClosed if the server was already closed. l
// is closed when Serve returns.
func (s *ClientServer) Serve(l net.Listener) error {
	timeout := s.prefaceTimeout
	return s.serve(l, func(c net.Conn) (net.Conn, route, error) {
		return classifyPlaintext(c, timeout)
	})
}

func (s *ClientServer) serve(l net.Listener, classify classifier) error {
	sp := newSplitter(l, classify)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = l.Close()
		return ErrClientServerClosed
	}
	s.splitters[sp] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.splitters, sp)
		s.mu.Unlock()
	}()

	// Whichever of the three loops ends first ends the other two: a gRPC or
	// HTTP server that stopped accepting would leave routed connections
	// waiting forever.
	errc := make(chan error, 3)
	go func() { errc <- s.grpc.Serve(sp.grpcL) }()
	go func() { errc <- s.http.Serve(sp.httpL) }()
	go func() { errc <- sp.serve() }()
	first := <-errc
	sp.close()
	<-errc
	<-errc

	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil
	}
	return first
}

// Shutdown stops accepting, then lets in-flight requests and streams finish
// until ctx ends, when it closes whatever is left (long-lived Watch streams
// never finish on their own). It returns ctx's error if it had to force.
func (s *ClientServer) Shutdown(ctx context.Context) error {
	s.closeSplitters()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	herr := s.http.Shutdown(ctx)
	if herr != nil {
		_ = s.http.Close()
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		s.grpc.Stop()
		<-stopped
	}
	if herr != nil {
		return herr
	}
	return ctx.Err()
}

// Close stops accepting and closes every connection at once.
func (s *ClientServer) Close() error {
	s.closeSplitters()
	s.grpc.Stop()
	return s.http.Close()
}

func (s *ClientServer) closeSplitters() {
	s.mu.Lock()
	s.closed = true
	sps := make([]*splitter, 0, len(s.splitters))
	for sp := range s.splitters {
		sps = append(sps, sp)
	}
	s.mu.Unlock()
	for _, sp := range sps {
		sp.close()
	}
}

// route says which server gets a connection.
type route int

const (
	routeHTTP route = iota
	routeGRPC
)

// classifier reads as much of a new connection as it needs to pick a route.
// It returns the connection to hand on, which replays what was read, or an
// error after which the connection is closed.
type classifier func(net.Conn) (net.Conn, route, error)

// classifyPlaintext routes by the HTTP/2 client preface. It stops reading as
// soon as the bytes so far differ from the preface, so an HTTP/1.1 request
// shorter than the preface is routed at once.
func classifyPlaintext(c net.Conn, timeout time.Duration) (net.Conn, route, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, 0, err
	}
	buf := make([]byte, len(http2Preface))
	n := 0
	r := routeGRPC
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		if string(buf[n:n+m]) != http2Preface[n:n+m] {
			n += m
			r = routeHTTP
			break
		}
		n += m
		if err != nil {
			return nil, 0, err
		}
	}
	// An error here means the connection is already closed; the server it
	// goes to will find out on its first read.
	_ = c.SetReadDeadline(time.Time{})
	return &replayConn{Conn: c, pending: buf[:n]}, r, nil
}

// replayConn returns pending before reading from Conn.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// splitter accepts on root and hands each connection to grpcL or httpL.
type splitter struct {
	root     net.Listener
	classify classifier
	grpcL    *connListener
	httpL    *connListener

	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	pending map[net.Conn]struct{} // accepted, not yet routed
	routing sync.WaitGroup
}

func newSplitter(root net.Listener, classify classifier) *splitter {
	return &splitter{
		root:     root,
		classify: classify,
		grpcL:    newConnListener(root.Addr()),
		httpL:    newConnListener(root.Addr()),
		done:     make(chan struct{}),
		pending:  make(map[net.Conn]struct{}),
	}
}

// serve is the accept loop. It returns when root fails or the splitter is
// closed. Temporary accept errors (out of file descriptors) are retried with
// backoff, as net/http does.
func (sp *splitter) serve() error {
	var backoff time.Duration
	for {
		c, err := sp.root.Accept()
		if err != nil {
			if sp.isClosed() {
				return net.ErrClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-sp.done:
					t.Stop()
				}
				continue
			}
			return err
		}
		backoff = 0
		if !sp.track(c) {
			_ = c.Close()
			return net.ErrClosed
		}
		go sp.route(c)
	}
}

func (sp *splitter) track(c net.Conn) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.isClosed() {
		return false
	}
	sp.pending[c] = struct{}{}
	sp.routing.Add(1)
	return true
}

func (sp *splitter) route(c net.Conn) {
	defer sp.routing.Done()
	rc, r, err := sp.classify(c)
	sp.mu.Lock()
	delete(sp.pending, c)
	sp.mu.Unlock()
	if err != nil {
		_ = c.Close()
		return
	}
	if r == routeGRPC {
		sp.grpcL.deliver(rc)
	} else {
		sp.httpL.deliver(rc)
	}
}

func (sp *splitter) isClosed() bool {
	select {
	case <-sp.done:
		return true
	default:
		return false
	}
}

// close stops the accept loop, closes connections not yet routed, waits for
// the routing goroutines and closes both sub-listeners. Connections already
// handed to a server are the server's to close. Idempotent.
func (sp *splitter) close() {
	sp.closeOnce.Do(func() {
		sp.mu.Lock()
		close(sp.done)
		for c := range sp.pending {
			_ = c.Close()
		}
		sp.mu.Unlock()
		_ = sp.root.Close()
		sp.grpcL.Close()
		sp.httpL.Close()
		sp.routing.Wait()
	})
}

// connListener is a net.Listener fed by deliver.
type connListener struct {
	addr      net.Addr
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// deliver waits until Accept takes c or the listener closes, which closes c.
func (l *connListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
