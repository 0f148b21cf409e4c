package transport

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/internal/transport/proxy"
)

// TestPartitionThroughProxy runs member 1's link to member 2 through the
// fault-injecting proxy: every fault takes the peer down (detected by the
// ping timeout, not by a clean close), messages meanwhile are dropped and
// reported, and after the fault ends the stream comes back by itself and
// carries messages in order.
func TestPartitionThroughProxy(t *testing.T) {
	const silence = time.Second
	a := startMember(t, 1, "127.0.0.1:0", withSilenceAfter(silence))
	b := startMember(t, 2, "127.0.0.1:0", withSilenceAfter(silence))
	px, err := proxy.New(b.ln.Addr().String(), 7)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	if err := a.tr.AddPeer(2, []string{"http://" + px.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, a, 2)

	seq := 0
	// deliver sends messages until one sent after the fault ended
	// arrives (the first ones may still meet the old stream's end), then
	// a batch that must all arrive in order behind it.
	deliver := func(what string) {
		t.Helper()
		waitActive(t, a, 2)
		first := seq + 1
		waitFor(t, 20*time.Second, what, func() bool {
			seq++
			a.tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, uint64(seq))})
			ms := b.rec.messages(1)
			return len(ms) > 0 && ms[len(ms)-1].GetIndex() >= uint64(first)
		})
		from := len(b.rec.messages(1))
		sendSeq(a, 2, seq+1, 200)
		seq += 200
		waitFor(t, 20*time.Second, what+": 200 more", func() bool {
			ms := b.rec.messages(1)
			return len(ms) > 0 && ms[len(ms)-1].GetIndex() == uint64(seq)
		})
		checkConsecutive(t, b.rec.messages(1)[from:])
	}
	down := func(what string) {
		t.Helper()
		st := waitInactive(t, a, 2)
		t.Logf("%s: %v", what, st.Err)
		before := a.rec.unreachableCount(2)
		seq++
		a.tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, uint64(seq))})
		waitFor(t, 10*time.Second, what+": unreachable report", func() bool { return a.rec.unreachableCount(2) > before })
	}

	deliver("before any fault")

	px.Blackhole()
	down("blackhole")
	px.Heal()
	deliver("after the blackhole healed")

	px.Pause()
	down("pause")
	px.Resume()
	deliver("after resume")

	px.DropFraction(1)
	seq++
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, uint64(seq))}) // data to cut on
	down("drop fraction 1")
	px.Heal()
	deliver("after the drops healed")

	if st := px.Stats(); st.Discarded == 0 || st.Cut == 0 {
		t.Fatalf("proxy stats %+v: the faults did nothing", st)
	}
}
