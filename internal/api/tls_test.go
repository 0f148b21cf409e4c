package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// testCA is a certificate authority made in the test; nothing expires on
// disk.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue signs a certificate for 127.0.0.1 usable as server and client.
func (ca *testCA) issue(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// fakeKV answers every Range with one key, enough for clientv3's Get.
type fakeKV struct{ pb.UnimplementedKVServer }

func (fakeKV) Range(context.Context, *pb.RangeRequest) (*pb.RangeResponse, error) {
	return &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 7}, Count: 1,
		Kvs: []*mvccpb.KeyValue{{Key: []byte("k"), Value: []byte("v")}}}, nil
}

// tlsServer serves a fake KV service, /health and /ping with TLS.
func tlsServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	gs := grpc.NewServer()
	pb.RegisterKVServer(gs, fakeKV{})
	mux := newHealthMux(t, healthy(), prometheus.NewRegistry())
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("pong " + r.Proto + " tls=" + map[bool]string{true: "yes", false: "no"}[r.TLS != nil]))
	})
	s := NewClientServer(gs, mux, ClientServerOptions{PrefaceTimeout: testDeadline})
	l := listenLocal(t)
	errc := make(chan error, 1)
	go func() { errc <- s.ServeTLS(l, cfg) }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := waitErr(t, errc); err != nil {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	return l.Addr().String()
}

func kvGet(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{"https://" + addr}, TLS: cfg, DialTimeout: 3 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		return err
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("Get = %v", resp)
	}
	return nil
}

func httpsGet(t *testing.T, addr, path string, cfg *tls.Config) (string, error) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: testDeadline}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestClientServerTLS(t *testing.T) {
	ca := newTestCA(t)
	addr := tlsServer(t, &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "server")}})
	client := &tls.Config{RootCAs: ca.pool}

	if err := kvGet(t, addr, client); err != nil {
		t.Fatalf("clientv3 over TLS: %v", err)
	}
	body, err := httpsGet(t, addr, "/health", client)
	if err != nil || !strings.Contains(body, `"health":"true"`) {
		t.Fatalf("/health over TLS = %q, %v", body, err)
	}
	// The HTTP server sees the TLS connection itself.
	body, err = httpsGet(t, addr, "/ping", client)
	if err != nil || body != "pong HTTP/1.1 tls=yes" {
		t.Fatalf("/ping = %q, %v", body, err)
	}
	// A client that does not trust the CA refuses the server.
	other := newTestCA(t)
	if err := kvGet(t, addr, &tls.Config{RootCAs: other.pool}); err == nil {
		t.Fatal("a client trusting another CA reached the server")
	}
	// Plaintext on a TLS port gets nothing.
	if _, err := http.Get("http://" + addr + "/health"); err == nil {
		t.Fatal("plaintext HTTP answered on a TLS port")
	}
}

func TestClientServerTLSALPN(t *testing.T) {
	ca := newTestCA(t)
	addr := tlsServer(t, &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "server")}})
	for _, tc := range []struct {
		protos []string
		want   string
	}{
		{nil, ""},
		{[]string{"http/1.1"}, "http/1.1"},
		{[]string{"h2", "http/1.1"}, "h2"},
	} {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool, NextProtos: tc.protos})
		if err != nil {
			t.Fatalf("dial with %q: %v", tc.protos, err)
		}
		got := c.ConnectionState().NegotiatedProtocol
		if got != tc.want {
			t.Errorf("ALPN with %q = %q, want %q", tc.protos, got, tc.want)
		}
		if got != "h2" {
			// Routed to the HTTP server: it answers HTTP/1.1.
			_, _ = c.Write([]byte("GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
			b, _ := io.ReadAll(c)
			if !strings.Contains(string(b), "pong HTTP/1.1 tls=yes") {
				t.Errorf("HTTP/1.1 over TLS with %q: %q", tc.protos, b)
			}
		} else {
			// Routed to gRPC: its server speaks first with a SETTINGS frame.
			_, _ = c.Write([]byte(http2Preface))
			hdr := make([]byte, 9)
			if _, err := io.ReadFull(c, hdr); err != nil || hdr[3] != 0x4 {
				t.Errorf("h2 over TLS: first frame %x, %v; want SETTINGS", hdr, err)
			}
		}
		c.Close()
	}
}

func TestClientServerTLSClientCertAuth(t *testing.T) {
	ca := newTestCA(t)
	addr := tlsServer(t, &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "server")},
		ClientCAs:    ca.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
	good := &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "client")}}
	if err := kvGet(t, addr, good); err != nil {
		t.Fatalf("clientv3 with a client certificate: %v", err)
	}
	if body, err := httpsGet(t, addr, "/health", good); err != nil || !strings.Contains(body, `"health":"true"`) {
		t.Fatalf("/health with a client certificate = %q, %v", body, err)
	}

	if err := kvGet(t, addr, &tls.Config{RootCAs: ca.pool}); err == nil {
		t.Fatal("clientv3 without a client certificate was served")
	}
	if _, err := httpsGet(t, addr, "/health", &tls.Config{RootCAs: ca.pool}); err == nil {
		t.Fatal("/health without a client certificate was served")
	}
	other := newTestCA(t)
	wrong := &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{other.issue(t, "intruder")}}
	if err := kvGet(t, addr, wrong); err == nil {
		t.Fatal("clientv3 with a certificate from another CA was served")
	}
	if _, err := httpsGet(t, addr, "/health", wrong); err == nil {
		t.Fatal("/health with a certificate from another CA was served")
	}
}

func TestClassifyTLSTimeout(t *testing.T) {
	ca := newTestCA(t)
	client, server := net.Pipe()
	defer client.Close()
	_, _, err := classifyTLS(server, &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "server")}}, time.Millisecond)
	if err == nil {
		t.Fatal("a silent client completed a handshake")
	}
}
