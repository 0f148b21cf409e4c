package api

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// ALPN protocols offered on a TLS client port: gRPC clients ask for "h2",
// HTTP/1.1 clients (curl, Prometheus, browsers) for "http/1.1" or nothing.
const (
	alpnH2    = "h2"
	alpnHTTP1 = "http/1.1"
)

// ServeTLS is Serve for a TLS listener (https://, unixs://): l accepts raw
// connections and cfg, the server's TLS configuration, is used for the
// handshake of each. Its NextProtos is replaced by "h2" and "http/1.1", by
// which connections are routed. A connection whose handshake fails or does
// not finish within the preface timeout is closed.
func (s *ClientServer) ServeTLS(l net.Listener, cfg *tls.Config) error {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{alpnH2, alpnHTTP1}
	timeout := s.prefaceTimeout
	return s.serve(l, func(c net.Conn) (net.Conn, route, error) {
		return classifyTLS(c, cfg, timeout)
	})
}

// classifyTLS completes the handshake and routes by ALPN.
func classifyTLS(c net.Conn, cfg *tls.Config, timeout time.Duration) (net.Conn, route, error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, 0, err
	}
	tc := tls.Server(c, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, 0, err
	}
	// As in classifyPlaintext: a failure here surfaces on the first read.
	_ = c.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == alpnH2 {
		return tc, routeGRPC, nil
	}
	return tc, routeHTTP, nil
}
