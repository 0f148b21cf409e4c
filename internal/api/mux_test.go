package api

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// testDeadline bounds every wait in these tests; it is never slept.
const testDeadline = 30 * time.Second

func TestClassifyPlaintext(t *testing.T) {
	for _, tc := range []struct {
		name    string
		send    []string // written in separate writes
		close   bool     // client closes after sending
		want    route
		wantErr bool
	}{
		{name: "h2 preface", send: []string{http2Preface + "\x00\x00\x00\x04"}, want: routeGRPC},
		{name: "h2 preface in pieces", send: []string{"PRI * HT", "TP/2.0\r\n\r", "\nSM\r\n\r\n"}, want: routeGRPC},
		{name: "http/1.1", send: []string{"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"}, want: routeHTTP},
		{name: "short http/1.0 then close", send: []string{"GET /\r\n"}, close: true, want: routeHTTP},
		{name: "POST shares no byte", send: []string{"P", "OST"}, want: routeHTTP},
		{name: "diverges late", send: []string{"PRI * HTTP/1.1\r\n"}, want: routeHTTP},
		{name: "partial preface then close", send: []string{"PRI * HTTP/2.0"}, close: true, wantErr: true},
		{name: "nothing then close", close: true, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			go func() {
				for _, s := range tc.send {
					if _, err := client.Write([]byte(s)); err != nil {
						return
					}
				}
				if tc.close {
					client.Close()
				}
			}()
			conn, r, err := classifyPlaintext(server, testDeadline)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("classify = %v, want an error", r)
				}
				return
			}
			if err != nil || r != tc.want {
				t.Fatalf("classify = %v, %v; want %v", r, err, tc.want)
			}
			// The routed connection replays everything the client sent.
			want := strings.Join(tc.send, "")
			got := make([]byte, len(want))
			if _, err := io.ReadFull(conn, got); err != nil || string(got) != want {
				t.Fatalf("replayed %q, %v; want %q", got, err, want)
			}
		})
	}
}

func TestClassifyPlaintextTimeout(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	_, _, err := classifyPlaintext(server, time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("silent client: err = %v, want a timeout", err)
	}
}

// testClientServer serves a gRPC health service and a tiny HTTP handler on
// one ClientServer.
func testClientServer(t *testing.T, opts ClientServerOptions) *ClientServer {
	t.Helper()
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("pong " + r.Proto)) })
	return NewClientServer(gs, mux, opts)
}

func serveAsync(t *testing.T, s *ClientServer, l net.Listener) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(l) }()
	return errc
}

func listenLocal(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func waitErr(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(testDeadline):
		t.Fatal("Serve did not return")
		return nil
	}
}

// checkBoth makes one HTTP/1.1 request and one gRPC call through dial.
func checkBoth(t *testing.T, grpcTarget string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()

	hc := &http.Client{Transport: &http.Transport{DialContext: dial}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://cairn/ping", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("HTTP: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "pong HTTP/1.1" {
		t.Fatalf("HTTP body %q", body)
	}

	cc, err := grpc.NewClient(grpcTarget,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC: %v %v", hr, err)
	}
}

func tcpDialer(addr string) func(ctx context.Context, _, _ string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// stillOpen reports whether the server has not closed c (a read times out
// instead of returning EOF).
func stillOpen(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestClientServerSharesPort(t *testing.T) {
	s := testClientServer(t, ClientServerOptions{PrefaceTimeout: time.Hour})
	l := listenLocal(t)
	addr := l.Addr().String()
	errc := serveAsync(t, s, l)

	// Clients that connect and then stall must not hold up anyone else.
	var stalled []net.Conn
	for _, send := range []string{"", "PRI * HTTP/2.0\r\n", "GE"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(send)); err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c)
	}

	checkBoth(t, addr, tcpDialer(addr))
	for i, c := range stalled {
		if !stillOpen(c) {
			t.Errorf("stalled connection %d was closed", i)
		}
	}
	// The third one was routed to the HTTP server, which owns it now (and
	// would hold Shutdown for 5s, net/http's grace for new connections).
	stalled[2].Close()
	stalled = stalled[:2]

	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := waitErr(t, errc); err != nil {
		t.Errorf("Serve after Shutdown = %v, want nil", err)
	}
	// Unrouted connections are closed by Shutdown.
	for i, c := range stalled {
		_ = c.SetReadDeadline(time.Now().Add(testDeadline))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("stalled connection %d still open after Shutdown", i)
		}
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("listener still accepts after Shutdown")
	}
	if err := s.Serve(listenLocal(t)); !errors.Is(err, ErrClientServerClosed) {
		t.Errorf("Serve after Shutdown = %v, want ErrClientServerClosed", err)
	}
}

func TestClientServerPrefaceTimeout(t *testing.T) {
	s := testClientServer(t, ClientServerOptions{PrefaceTimeout: 50 * time.Millisecond})
	defer s.Close()
	l := listenLocal(t)
	serveAsync(t, s, l)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(testDeadline))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("silent client: read %d, %v; want EOF when the preface deadline passes", n, err)
	}
}

func TestClientServerUnixAndTCP(t *testing.T) {
	dir, err := os.MkdirTemp("", "cairn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "c.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	tl := listenLocal(t)

	s := testClientServer(t, ClientServerOptions{})
	uerrc := serveAsync(t, s, ul)
	terrc := serveAsync(t, s, tl)

	checkBoth(t, "unix:"+sock, func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	})
	checkBoth(t, tl.Addr().String(), tcpDialer(tl.Addr().String()))

	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := waitErr(t, uerrc); err != nil {
		t.Errorf("Serve(unix) after Close = %v", err)
	}
	if err := waitErr(t, terrc); err != nil {
		t.Errorf("Serve(tcp) after Close = %v", err)
	}
}

func TestClientServerShutdownForcesStreams(t *testing.T) {
	hs := health.NewServer()
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	s := NewClientServer(gs, http.NotFoundHandler(), ClientServerOptions{})
	l := listenLocal(t)
	errc := serveAsync(t, s, l)

	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	// A Watch stream never ends by itself, like an etcd Watch.
	stream, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}

	expired, cancelExpired := context.WithCancel(context.Background())
	cancelExpired()
	if err := s.Shutdown(expired); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown with an open stream = %v, want context.Canceled", err)
	}
	if _, err := stream.Recv(); err == nil {
		t.Error("stream survived a forced shutdown")
	}
	if err := waitErr(t, errc); err != nil {
		t.Errorf("Serve = %v", err)
	}
}

func TestClientServerListenerFailure(t *testing.T) {
	s := testClientServer(t, ClientServerOptions{})
	defer s.Close()
	l := listenLocal(t)
	errc := serveAsync(t, s, l)
	// Closing the listener from outside is a failure, reported by Serve.
	checkBoth(t, l.Addr().String(), tcpDialer(l.Addr().String()))
	l.Close()
	if err := waitErr(t, errc); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve = %v, want net.ErrClosed", err)
	}
}
