package propose

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/raftnode"
)

// fakeRaft records proposals; the test decides when they "apply".
type fakeRaft struct {
	mu       sync.Mutex
	proposed [][]byte
	reads    [][]byte
	proposeC chan []byte
	readC    chan []byte
	failWith error
	confs    []raftpb.ConfChangeI
}

func newFakeRaft() *fakeRaft {
	return &fakeRaft{proposeC: make(chan []byte, 16), readC: make(chan []byte, 16)}
}

func (f *fakeRaft) Propose(_ context.Context, data []byte) error {
	if f.failWith != nil {
		return f.failWith
	}
	f.mu.Lock()
	f.proposed = append(f.proposed, data)
	f.mu.Unlock()
	f.proposeC <- data
	return nil
}

func (f *fakeRaft) ProposeConfChange(_ context.Context, cc raftpb.ConfChangeI) error {
	f.mu.Lock()
	f.confs = append(f.confs, cc)
	f.mu.Unlock()
	return nil
}

func (f *fakeRaft) ReadIndex(_ context.Context, rctx []byte) error {
	f.readC <- rctx
	return nil
}

func TestIDGenUnique(t *testing.T) {
	g := NewIDGen(0xabcd, time.Unix(1700000000, 0))
	seen := map[uint64]bool{}
	for i := 0; i < 100000; i++ {
		id := g.Next()
		if seen[id] {
			t.Fatalf("duplicate id %x after %d", id, i)
		}
		seen[id] = true
		if id>>48 != 0xabcd {
			t.Fatalf("id %x lost the member prefix", id)
		}
	}
	// Another start of the same member a second later does not reuse the
	// first IDs (100k IDs use up about 0.4s of the time-based suffix).
	h := NewIDGen(0xabcd, time.Unix(1700000001, 0))
	if first := h.Next(); seen[first] {
		t.Fatalf("restarted generator reused %x", first)
	}
}

func TestProposeWaitsForTrigger(t *testing.T) {
	r := newFakeRaft()
	p := New(r, NewIDGen(1, time.Now()), 1<<20, time.Minute)
	done := make(chan error, 1)
	var got proto.Message
	go func() {
		var err error
		got, err = p.Propose(context.Background(), &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k")}})
		done <- err
	}()
	data := <-r.proposeC
	req := &pb.InternalRaftRequest{}
	if err := proto.Unmarshal(data, req); err != nil {
		t.Fatal(err)
	}
	if req.Header.GetID() == 0 {
		t.Fatal("proposal has no request ID")
	}
	p.Trigger(req.Header.ID+1, Result{}) // someone else's: ignored
	want := &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 7}}
	p.Trigger(req.Header.ID, Result{Resp: want})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got.(*pb.PutResponse).Header.Revision != 7 {
		t.Fatalf("got %v", got)
	}
	if p.Pending() != 0 {
		t.Fatalf("%d waiters left", p.Pending())
	}
}

func TestProposeErrors(t *testing.T) {
	r := newFakeRaft()
	p := New(r, NewIDGen(1, time.Now()), 64, 0)
	_, err := p.Propose(context.Background(), &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: make([]byte, 100)}})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Now())
	defer cancel()
	_, err = p.Propose(ctx, &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k")}})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("deadline: %v", err)
	}
	if p.Pending() != 0 {
		t.Fatalf("a timed-out proposal left its waiter: %d", p.Pending())
	}
	r.failWith = errors.New("raft: proposal dropped")
	if _, err := p.Propose(context.Background(), &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k")}}); err == nil {
		t.Fatal("raft error not returned")
	}
}

// applied is a fake state machine watermark.
type applied struct {
	mu    sync.Mutex
	index uint64
	cond  *sync.Cond
}

func (a *applied) WaitApplied(ctx context.Context, index uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.index < index {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.cond.Wait()
	}
	return nil
}

func (a *applied) set(i uint64) {
	a.mu.Lock()
	a.index = i
	a.mu.Unlock()
	a.cond.Broadcast()
}

// Reads that arrive while a ReadIndex is in flight share the next one,
// and none returns before the state machine applied the read index.
func TestReadsBatchAndWaitForApply(t *testing.T) {
	r := newFakeRaft()
	states := make(chan raftnode.ReadState, 4)
	ap := &applied{}
	ap.cond = sync.NewCond(&ap.mu)
	reads := NewReads(r, NewIDGen(1, time.Now()), states, ap, 10*time.Second, nil)
	stop := make(chan struct{})
	defer close(stop)
	go reads.Run(stop)

	first := make(chan error, 1)
	go func() { first <- reads.Wait(context.Background()) }()
	rctx1 := <-r.readC

	// Three more reads arrive while the first ReadIndex is out.
	more := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { more <- reads.Wait(context.Background()) }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for reads.Waiting() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d reads waiting, want 4", reads.Waiting())
		}
		runtime.Gosched()
	}
	states <- raftnode.ReadState{Index: 5, Ctx: rctx1}
	select {
	case err := <-first:
		t.Fatalf("read returned (%v) before index 5 was applied", err)
	default:
	}
	ap.set(5)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// The three share one new ReadIndex.
	rctx2 := <-r.readC
	states <- raftnode.ReadState{Index: 6, Ctx: rctx2}
	ap.set(6)
	for i := 0; i < 3; i++ {
		if err := <-more; err != nil {
			t.Fatal(err)
		}
	}
	select {
	case extra := <-r.readC:
		t.Fatalf("a third ReadIndex %x for reads that were batched", extra)
	default:
	}
}

// blockingRaft blocks every proposal until the context it was given ends,
// as raft does while there is no leader.
type blockingRaft struct{ fakeRaft }

func (b *blockingRaft) Propose(ctx context.Context, _ []byte) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestProposeTimeout(t *testing.T) {
	// A proposal that is never applied fails with "request timed out"
	// and leaves no waiter.
	r := newFakeRaft()
	p := New(r, NewIDGen(1, time.Now()), 1<<20, 20*time.Millisecond)
	errc := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() {
			_, err := p.Propose(context.Background(), &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k")}})
			errc <- err
		}()
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-errc:
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("unapplied proposal: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("an unapplied proposal did not time out")
		}
	}
	if n := p.Pending(); n != 0 {
		t.Fatalf("%d waiters left after the timeout", n)
	}
	// The sweep stops once nothing waits.
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		idle := !p.sweeping && len(p.bounds) == 0
		p.mu.Unlock()
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sweep kept running with nothing waiting")
		}
		runtime.Gosched()
	}
}

func TestProposeTimeoutWhileRaftBlocks(t *testing.T) {
	// Handing the proposal to Raft blocks (no leader): the proposer's own
	// bound ends it, without a deadline on the caller's context.
	p := New(&blockingRaft{}, NewIDGen(1, time.Now()), 1<<20, 20*time.Millisecond)
	errc := make(chan error, 1)
	go func() {
		_, err := p.Propose(context.Background(), &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k")}})
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("blocked proposal: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a proposal blocked in raft did not time out")
	}
	if n := p.Pending(); n != 0 {
		t.Fatalf("%d waiters left", n)
	}
}
