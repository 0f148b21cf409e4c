package transport

import (
	"fmt"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// exchange has every member send n messages to every other, in batches
// like a Raft Ready, and checks that each receiver got all of them in
// order.
func exchange(t *testing.T, n int, ms ...*member) {
	t.Helper()
	types := []raftpb.MessageType{raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgAppResp, raftpb.MsgHeartbeatResp}
	base := map[[2]uint64]int{}
	unreachable := map[[2]uint64]int{}
	for _, a := range ms {
		for _, b := range ms {
			base[[2]uint64{a.id, b.id}] = b.rec.received(a.id)
			unreachable[[2]uint64{a.id, b.id}] = a.rec.unreachableCount(b.id)
		}
	}
	for seq := 1; seq <= n; seq += 16 {
		for _, a := range ms {
			var batch []*raftpb.Message
			for i := seq; i < seq+16 && i <= n; i++ {
				for _, b := range ms {
					if a == b {
						continue
					}
					m := msg(types[i%len(types)], a.id, b.id, uint64(i))
					if m.GetType() == raftpb.MsgApp {
						m.Entries = []*raftpb.Entry{{Index: proto.Uint64(uint64(i)), Data: make([]byte, i%300)}}
					}
					batch = append(batch, m)
				}
			}
			a.tr.Send(batch)
		}
		// Keep within the queues: each peer's queue holds 4096.
		if seq%2048 == 1 {
			for _, a := range ms {
				for _, b := range ms {
					if a != b {
						want := base[[2]uint64{a.id, b.id}] + seq - 1
						waitFor(t, 10*time.Second, "delivery", func() bool { return b.rec.received(a.id) >= want })
					}
				}
			}
		}
	}
	for _, a := range ms {
		for _, b := range ms {
			if a == b {
				continue
			}
			want := base[[2]uint64{a.id, b.id}] + n
			waitFor(t, 20*time.Second, fmt.Sprintf("%d messages from %x at %x", n, a.id, b.id), func() bool {
				return b.rec.received(a.id) >= want
			})
			got := b.rec.messages(a.id)[base[[2]uint64{a.id, b.id}]:]
			if len(got) != n {
				t.Fatalf("%x got %d messages from %x, want %d", b.id, len(got), a.id, n)
			}
			checkInOrder(t, got, false)
			for _, m := range got {
				if m.GetType() == raftpb.MsgApp && len(m.GetEntries()[0].GetData()) != int(m.GetIndex())%300 {
					t.Fatalf("message %d: entry of %d bytes", m.GetIndex(), len(m.GetEntries()[0].GetData()))
				}
			}
		}
	}
	for _, a := range ms {
		for _, b := range ms {
			if a != b && a.rec.unreachableCount(b.id) != unreachable[[2]uint64{a.id, b.id}] {
				t.Fatalf("%x reported %x unreachable", a.id, b.id)
			}
		}
	}
}

func TestTwoMembersExchangeInOrder(t *testing.T) {
	a := startMember(t, 1, "127.0.0.1:0")
	b := startMember(t, 2, "127.0.0.1:0")
	connect(t, a, b)
	exchange(t, 5000, a, b)
}

func TestThreeMembersExchangeInOrder(t *testing.T) {
	a := startMember(t, 1, "127.0.0.1:0")
	b := startMember(t, 2, "127.0.0.1:0")
	c := startMember(t, 3, "127.0.0.1:0")
	connect(t, a, b, c)
	exchange(t, 3000, a, b, c)
}

func TestExchangeOverH2C(t *testing.T) {
	a := startMember(t, 1, "127.0.0.1:0", withH2C())
	b := startMember(t, 2, "127.0.0.1:0", withH2C())
	c := startMember(t, 3, "127.0.0.1:0", withH2C())
	connect(t, a, b, c)
	exchange(t, 2000, a, b, c)
	if !b.served(StreamPath, "HTTP/2.0") {
		t.Fatal("streams did not use HTTP/2")
	}
}
