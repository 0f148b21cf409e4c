package api

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// etcdBinary is the reference server the lock, election and gateway tests
// run against (Debian's etcd-server; CI installs it).
const etcdBinary = "/usr/bin/etcd"

// refEtcd is a running single-member etcd.
type refEtcd struct {
	addr   string // client host:port
	client *clientv3.Client
}

// startEtcd runs etcdBinary on free loopback ports with a temporary data dir
// until the test ends, and waits until it serves a linearizable read.
func startEtcd(t *testing.T) *refEtcd {
	t.Helper()
	if _, err := os.Stat(etcdBinary); err != nil {
		t.Skipf("reference etcd not installed (%v); install Debian's etcd-server to run this test", err)
	}
	clientAddr, peerAddr := freeAddr(t), freeAddr(t)
	peerURL := "http://" + peerAddr
	cmd := exec.Command(etcdBinary,
		"--name", "ref",
		"--data-dir", t.TempDir(),
		"--listen-client-urls", "http://"+clientAddr,
		"--advertise-client-urls", "http://"+clientAddr,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "ref="+peerURL,
		"--heartbeat-interval", "10",
		"--election-timeout", "100",
		"--logger", "zap",
		"--log-outputs", "stderr",
	)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("etcd log:\n%s", logs.String())
		}
	})

	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{clientAddr},
		DialTimeout: testDeadline,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	deadline := time.Now().Add(testDeadline)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Get(ctx, "probe")
		cancel()
		if err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("etcd exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd not ready: %v\n%s", err, logs.String())
		}
	}
	return &refEtcd{addr: clientAddr, client: c}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l := listenLocal(t)
	defer l.Close()
	return l.Addr().String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// serveServices serves cairn's Lock and Election services over e's client
// on a loopback gRPC server and returns a connection to them.
func serveServices(t *testing.T, e *refEtcd) *grpc.ClientConn {
	t.Helper()
	gs := grpc.NewServer()
	v3lockpb.RegisterLockServer(gs, NewLockServer(e.client))
	v3electionpb.RegisterElectionServer(gs, NewElectionServer(e.client))
	l := listenLocal(t)
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	return dialLocal(t, l.Addr().String())
}

func dialLocal(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestServicesAgainstEtcd runs the lock, election and gateway tests against
// one reference etcd: cairn's services are served over a client of it, and
// where etcd serves the same service itself the two must answer alike.
func TestServicesAgainstEtcd(t *testing.T) {
	e := startEtcd(t)
	t.Run("lock", func(t *testing.T) { testLock(t, e) })
	t.Run("election", func(t *testing.T) { testElection(t, e) })
	t.Run("gateway", func(t *testing.T) { testGateway(t, e) })
	t.Run("client port", func(t *testing.T) { testClientPort(t, e) })
}

func grant(t *testing.T, e *refEtcd, ttl int64) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	resp, err := e.client.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return resp.ID
}

// waitKeys waits until exactly n keys exist under prefix.
func waitKeys(t *testing.T, e *refEtcd, prefix string, n int64) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		resp, err := e.client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d keys under %q, want %d", resp.Count, prefix, n)
		}
	}
}

// sameError fails unless ours and etcd's are the same gRPC status.
func sameError(t *testing.T, what string, ours, theirs error) {
	t.Helper()
	if ours == nil || theirs == nil {
		t.Errorf("%s: cairn %v, etcd %v; want both to fail", what, ours, theirs)
		return
	}
	o, e := status.Convert(ours), status.Convert(theirs)
	if o.Code() != e.Code() || o.Message() != e.Message() {
		t.Errorf("%s: cairn %v %q, etcd %v %q", what, o.Code(), o.Message(), e.Code(), e.Message())
	}
}

type lockResult struct {
	resp *v3lockpb.LockResponse
	err  error
}

func testLock(t *testing.T, e *refEtcd) {
	ours := v3lockpb.NewLockClient(serveServices(t, e))
	theirs := v3lockpb.NewLockClient(dialLocal(t, e.addr))
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()

	la, lb := grant(t, e, 60), grant(t, e, 60)
	a, err := ours.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: int64(la)})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("lk/%x", la); string(a.Key) != want {
		t.Errorf("lock key %q, want %q", a.Key, want)
	}

	// B queues behind A until A unlocks.
	bc := make(chan lockResult, 1)
	go func() {
		r, err := ours.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: int64(lb)})
		bc <- lockResult{r, err}
	}()
	waitKeys(t, e, "lk/", 2)
	select {
	case r := <-bc:
		t.Fatalf("second locker got the lock while the first held it: %v %v", r.resp, r.err)
	default:
	}
	u, err := ours.Unlock(ctx, &v3lockpb.UnlockRequest{Key: a.Key})
	if err != nil {
		t.Fatal(err)
	}
	var b lockResult
	select {
	case b = <-bc:
	case <-ctx.Done():
		t.Fatal("second locker never got the lock")
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	if want := fmt.Sprintf("lk/%x", lb); string(b.resp.Key) != want || b.resp.Header.Revision < u.Header.Revision {
		t.Errorf("second lock %q at rev %d, want %q after unlock rev %d", b.resp.Key, b.resp.Header.Revision, want, u.Header.Revision)
	}

	// Re-locking with the lease that holds the lock succeeds at once.
	again, err := ours.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: int64(lb)})
	if err != nil || string(again.Key) != string(b.resp.Key) {
		t.Errorf("re-lock = %v, %v", again, err)
	}
	if _, err := ours.Unlock(ctx, &v3lockpb.UnlockRequest{Key: b.resp.Key}); err != nil {
		t.Fatal(err)
	}
	waitKeys(t, e, "lk/", 0)

	// A lease that does not exist fails as in etcd.
	_, oerr := ours.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: 0x7eadbeef})
	_, terr := theirs.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: 0x7eadbeef})
	sameError(t, "lock with a missing lease", oerr, terr)

	// A lock ends with its lease.
	lc := grant(t, e, 60)
	c, err := ours.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("lk2"), Lease: int64(lc)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Revoke(ctx, lc); err != nil {
		t.Fatal(err)
	}
	if r, err := e.client.Get(ctx, string(c.Key)); err != nil || r.Count != 0 {
		t.Errorf("lock key after revoke: %v %v", r, err)
	}
}

func TestForwardCallerMetadata(t *testing.T) {
	in := metadata.Pairs("token", "t1", "authorization", "a1", "hasleader", "true", "user-agent", "x", "other", "y")
	ctx := forwardCallerMetadata(metadata.NewIncomingContext(context.Background(), in))
	out, _ := metadata.FromOutgoingContext(ctx)
	want := metadata.Pairs("token", "t1", "authorization", "a1", "hasleader", "true")
	if !reflect.DeepEqual(out, want) {
		t.Errorf("outgoing metadata = %v, want %v", out, want)
	}
	// Nothing to forward: the context is unchanged.
	plain := metadata.NewIncomingContext(context.Background(), metadata.Pairs("other", "y"))
	if got := forwardCallerMetadata(plain); got != plain {
		t.Error("context changed with nothing to forward")
	}
}
