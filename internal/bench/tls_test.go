package bench

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cairn-kv/cairn/internal/testca"
)

// countingKV answers Puts and counts them.
type countingKV struct {
	pb.UnimplementedKVServer
	puts atomic.Int64
}

func (k *countingKV) Put(context.Context, *pb.PutRequest) (*pb.PutResponse, error) {
	return &pb.PutResponse{Header: &pb.ResponseHeader{Revision: k.puts.Add(1) + 1}}, nil
}

// The TLS flags reach the client: against a server that demands a client
// certificate from its CA, a run with --cacert/--cert/--key succeeds and
// one without a client certificate fails every request.
func TestPutOverTLS(t *testing.T) {
	ca := testca.New(t, "bench-ca")
	srvCert, srvKey := ca.Issue(t, "server")
	cliCert, cliKey := ca.Issue(t, "client")
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})))
	kv := &countingKV{}
	pb.RegisterKVServer(gs, kv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)

	base := Config{
		Endpoints: []string{"https://" + l.Addr().String()}, Conns: 2, Clients: 4,
		CACert: ca.File, Cert: cliCert, Key: cliKey, RunTimeout: 20 * time.Second,
	}
	keys := KeySpec{KeySize: 8, ValSize: 16, KeySpace: 10}
	rep, err := Put(context.Background(), PutOptions{Common: Common{Config: base, Total: 40}, KeySpec: keys})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 40 || rep.Errors != 0 || kv.puts.Load() != 40 {
		t.Fatalf("with a client certificate: %d ok, %d errors %q, server saw %d puts; want 40, 0, 40", rep.Requests, rep.Errors, rep.ErrorSamples, kv.puts.Load())
	}

	noCert := base
	noCert.Cert, noCert.Key, noCert.RunTimeout = "", "", 2*time.Second
	rep, err = Put(context.Background(), PutOptions{Common: Common{Config: noCert, Total: 10}, KeySpec: keys})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 0 || rep.Errors != 10 || kv.puts.Load() != 40 {
		t.Fatalf("without a client certificate: %d ok, %d errors, server saw %d puts; want 0, 10, 40", rep.Requests, rep.Errors, kv.puts.Load())
	}
}
