package server

import (
	"bytes"
	"crypto/tls"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-kv/cairn/internal/config"
)

func TestAutoTLSGeneratesAndReuses(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	u, _ := url.Parse("https://127.0.0.1:2379")
	info := config.TLSInfo{AutoTLS: true}
	side, err := buildTLS(nil, cfg, info, "client", []url.URL{*u})
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(cfg.DataDir, "fixtures", "client", "cert.pem")
	first, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if !side.peer.InsecureSkipVerify || side.server.ClientAuth != tls.NoClientCert {
		t.Errorf("auto-tls: peer skip verify %v, client auth %v", side.peer.InsecureSkipVerify, side.server.ClientAuth)
	}
	if _, err := buildTLS(nil, cfg, info, "client", []url.URL{*u}); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(certFile)
	if !bytes.Equal(first, again) {
		t.Error("auto-tls regenerated the certificate on restart")
	}

	// The generated certificate serves a handshake for 127.0.0.1, and the
	// self client accepts it.
	l, err := tls.Listen("tcp", "127.0.0.1:0", side.server)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), side.self)
	if err != nil {
		t.Fatalf("self client to an auto-tls server: %v", err)
	}
	c.Close()
}

func TestBuildTLSOptions(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.TLSMinVersion, cfg.TLSMaxVersion = "TLS1.2", "TLS1.2"
	cfg.CipherSuites = []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}
	// A certificate from auto-tls doubles as the CA in this test.
	u, _ := url.Parse("https://127.0.0.1:2380")
	if _, err := buildTLS(nil, cfg, config.TLSInfo{AutoTLS: true}, "peer", []url.URL{*u}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cfg.DataDir, "fixtures", "peer")
	info := config.TLSInfo{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"),
		ClientCertAuth: true, TrustedCAFile: filepath.Join(dir, "cert.pem")}
	side, err := buildTLS(nil, cfg, info, "peer", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := side.server
	if s.ClientAuth != tls.RequireAndVerifyClientCert || s.ClientCAs == nil || s.MinVersion != tls.VersionTLS12 ||
		s.MaxVersion != tls.VersionTLS12 || len(s.CipherSuites) != 1 {
		t.Errorf("server config: auth %v CAs %v min %x max %x suites %v", s.ClientAuth, s.ClientCAs != nil, s.MinVersion, s.MaxVersion, s.CipherSuites)
	}
	if side.peer.InsecureSkipVerify || side.peer.RootCAs == nil || len(side.peer.Certificates) != 1 {
		t.Errorf("peer client config verifies nothing or presents no certificate")
	}

	// Peers with the certificate pass; a client without one gets nothing.
	l, err := tls.Listen("tcp", "127.0.0.1:0", side.server)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	// Pinned to TLS 1.2, the client's handshake fails when the server
	// refuses its certificate (the server's Finished never comes).
	read := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", l.Addr().String(), cfg)
		if err != nil {
			return err
		}
		return c.Close()
	}
	if err := read(side.peer); err != nil {
		t.Fatalf("peer with certificate: %v", err)
	}
	noCert := side.peer.Clone()
	noCert.Certificates = nil
	if err := read(noCert); err == nil {
		t.Fatal("peer without certificate was served")
	}

	if _, err := buildTLS(nil, cfg, config.TLSInfo{CertFile: "/nonexistent", KeyFile: "/nonexistent"}, "client", nil); err == nil {
		t.Error("missing certificate files accepted")
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	_ = os.WriteFile(bad, []byte("not a pem"), 0o600)
	info.TrustedCAFile = bad
	if _, err := buildTLS(nil, cfg, info, "client", nil); err == nil {
		t.Error("a CA file without certificates accepted")
	}
}
