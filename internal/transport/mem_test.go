package transport

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

func settle(t *testing.T, n *MemNetwork) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Settle(ctx); err != nil {
		t.Fatalf("network did not settle: %v", err)
	}
}

func joinAll(t *testing.T, n *MemNetwork, ids ...uint64) map[uint64]*recorder {
	recs := map[uint64]*recorder{}
	for _, id := range ids {
		recs[id] = newRecorder()
		tr := n.Join(MemMember{ID: id, Handler: recs[id]})
		t.Cleanup(tr.Close)
	}
	return recs
}

func memSend(n *MemNetwork, from, to uint64, first, count int) {
	n.mu.Lock()
	tr := n.members[from]
	n.mu.Unlock()
	for i := first; i < first+count; i++ {
		tr.Send([]*raftpb.Message{msg(raftpb.MsgApp, from, to, uint64(i))})
	}
}

func TestMemNetworkDeliversInOrder(t *testing.T) {
	n := NewMemNetwork()
	recs := joinAll(t, n, 1, 2, 3)
	for _, from := range []uint64{1, 2, 3} {
		for _, to := range []uint64{1, 2, 3} {
			if from != to {
				memSend(n, from, to, 1, 1000)
			}
		}
	}
	settle(t, n)
	for id, r := range recs {
		for from := range recs {
			if from == id {
				continue
			}
			got := r.messages(from)
			if len(got) != 1000 {
				t.Fatalf("%d got %d from %d", id, len(got), from)
			}
			checkInOrder(t, got, false)
		}
	}
	if st := n.Stats(); st.Delivered != 6000 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMemNetworkPartitionAndHeal(t *testing.T) {
	n := NewMemNetwork()
	recs := joinAll(t, n, 1, 2, 3)
	n.Partition([]uint64{1}, []uint64{2, 3})
	memSend(n, 1, 2, 1, 10)
	memSend(n, 2, 1, 1, 10)
	memSend(n, 2, 3, 1, 10)
	settle(t, n)
	if recs[2].received(1) != 0 || recs[1].received(2) != 0 || recs[3].received(2) != 10 {
		t.Fatalf("across the partition: %d, %d; within: %d", recs[2].received(1), recs[1].received(2), recs[3].received(2))
	}
	waitFor(t, 10*time.Second, "unreachable reports", func() bool {
		return recs[1].unreachableCount(2) > 0 && recs[2].unreachableCount(1) > 0
	})
	if st := n.Stats(); st.Dropped != 20 || st.Delivered != 10 {
		t.Fatalf("stats %+v", st)
	}

	n.Heal()
	memSend(n, 1, 2, 11, 10)
	settle(t, n)
	if got := recs[2].messages(1); len(got) != 10 || got[0].GetIndex() != 11 {
		t.Fatalf("after heal: %d messages", len(got))
	}

	// One-way cut, isolation and a message filter.
	n.Cut(1, 3)
	memSend(n, 1, 3, 1, 5)
	memSend(n, 3, 1, 1, 5)
	settle(t, n)
	if recs[3].received(1) != 0 || recs[1].received(3) != 5 {
		t.Fatal("one-way cut")
	}
	n.Heal()
	n.Isolate(2)
	memSend(n, 1, 2, 21, 5)
	memSend(n, 3, 2, 1, 5)
	settle(t, n)
	if recs[2].received(1) != 10 || recs[2].received(3) != 0 {
		t.Fatal("isolation")
	}
	n.Heal()
	n.DropIf(func(m *raftpb.Message) bool { return m.GetIndex()%2 == 0 })
	memSend(n, 1, 3, 1, 10)
	settle(t, n)
	if got := recs[3].messages(1); len(got) != 5 || got[0].GetIndex() != 1 || got[4].GetIndex() != 9 {
		t.Fatalf("filter: %d messages", len(got))
	}
}

// A partition applies to messages already queued: once Partition returns,
// nothing more crosses.
func TestMemNetworkPartitionStopsQueuedMessages(t *testing.T) {
	n := NewMemNetwork()
	recs := joinAll(t, n, 1)
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	r2 := newRecorder()
	r2.gate = gate
	tr2 := n.Join(MemMember{ID: 2, Handler: &enterSignal{r2, entered}})
	t.Cleanup(tr2.Close)
	memSend(n, 1, 2, 1, 10)
	<-entered // message 1 is inside Process; 2..10 are queued
	n.Partition([]uint64{1}, []uint64{2})
	close(gate)
	settle(t, n)
	if got := r2.messages(1); len(got) != 1 || got[0].GetIndex() != 1 {
		t.Fatalf("delivered %d messages across a partition made after they were sent", len(got))
	}
	waitFor(t, 10*time.Second, "unreachable report", func() bool { return recs[1].unreachableCount(2) > 0 })
}

type enterSignal struct {
	*recorder
	entered chan struct{}
}

func (e *enterSignal) Process(ctx context.Context, m *raftpb.Message) error {
	select {
	case e.entered <- struct{}{}:
	default:
	}
	return e.recorder.Process(ctx, m)
}

func TestMemNetworkSnapshots(t *testing.T) {
	n := NewMemNetwork()
	r1, r2 := newRecorder(), newRecorder()
	var stored int64
	t1 := n.Join(MemMember{ID: 1, Handler: r1, SnapshotSource: func(*raftpb.Message) (io.ReadCloser, int64, error) {
		return testData(3, 1<<20), 1 << 20, nil
	}})
	t.Cleanup(t1.Close)
	t2 := n.Join(MemMember{ID: 2, Handler: r2, SnapshotSink: func(_ context.Context, _ *raftpb.Message, data io.Reader, size int64) error {
		k, err := io.Copy(io.Discard, data)
		stored = k
		if k != size {
			return errors.New("short")
		}
		return err
	}})
	t.Cleanup(t2.Close)
	t1.Send([]*raftpb.Message{snapMsg(1, 2, 50)})
	settle(t, n)
	waitFor(t, 10*time.Second, "snapshot report", func() bool { return len(r1.snapshotReports()) == 1 })
	if r := r1.snapshotReports()[0]; r.failed || stored != 1<<20 || r2.typeCount(raftpb.MsgSnap) != 1 {
		t.Fatalf("report %+v, stored %d, processed %d", r, stored, r2.typeCount(raftpb.MsgSnap))
	}
	n.Isolate(2)
	t1.Send([]*raftpb.Message{snapMsg(1, 2, 60)})
	settle(t, n)
	waitFor(t, 10*time.Second, "failed snapshot report", func() bool { return len(r1.snapshotReports()) == 2 })
	if r := r1.snapshotReports()[1]; !r.failed {
		t.Fatal("snapshot across an isolation succeeded")
	}
}

func TestMemNetworkRestart(t *testing.T) {
	n := NewMemNetwork()
	recs := joinAll(t, n, 1, 2)
	memSend(n, 1, 2, 1, 5)
	settle(t, n)
	n.mu.Lock()
	old := n.members[2]
	n.mu.Unlock()
	old.Close()
	memSend(n, 1, 2, 6, 5) // nobody there
	settle(t, n)
	r2 := newRecorder()
	t2 := n.Join(MemMember{ID: 2, Handler: r2})
	t.Cleanup(t2.Close)
	memSend(n, 1, 2, 11, 5)
	settle(t, n)
	if recs[2].received(1) != 5 || r2.received(1) != 5 || r2.messages(1)[0].GetIndex() != 11 {
		t.Fatalf("before restart %d, after %d", recs[2].received(1), r2.received(1))
	}
	old.Send([]*raftpb.Message{msg(raftpb.MsgApp, 2, 1, 1)}) // a closed endpoint sends nothing
	settle(t, n)
	if recs[1].received(2) != 0 {
		t.Fatal("a closed member sent a message")
	}
}
