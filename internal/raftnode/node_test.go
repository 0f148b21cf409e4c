package raftnode

import (
	"context"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/storage"
)

// member drives a Node the way the server does: a goroutine applies
// committed entries, handing configuration changes back to Raft.
type member struct {
	t       *testing.T
	n       *Node
	applied chan *raftpb.Entry
	cs      *raftpb.ConfState
}

func start(t *testing.T, eng *storage.Engine, applied uint64, cs *raftpb.ConfState, snapCount uint64) *member {
	t.Helper()
	return startTicking(t, eng, applied, cs, snapCount, time.Millisecond)
}

func startTicking(t *testing.T, eng *storage.Engine, applied uint64, cs *raftpb.ConfState, snapCount uint64, tick time.Duration) *member {
	t.Helper()
	n, err := Start(Config{
		ID:             1,
		Peers:          []raft.Peer{{ID: 1}},
		TickInterval:   tick,
		ElectionTicks:  10,
		HeartbeatTicks: 1,
		SnapshotCount:  snapCount,
		CatchUpEntries: 2,
		Engine:         eng,
		Logger:         zap.NewNop(),
		Applied:        applied,
		ConfState:      cs,
	})
	if err != nil {
		t.Fatal(err)
	}
	m := &member{t: t, n: n, applied: make(chan *raftpb.Entry, 1024), cs: cs}
	go func() {
		for c := range n.Committed() {
			for _, e := range c.Entries {
				if e.GetType() == raftpb.EntryConfChange {
					var cc raftpb.ConfChange
					if err := unmarshal(e.GetData(), &cc); err != nil {
						panic(err)
					}
					m.cs = n.ApplyConfChange(&cc)
				}
				m.applied <- e
				if err := n.MaybeSnapshot(e.GetIndex(), m.cs, false); err != nil {
					panic(err)
				}
			}
		}
		close(m.applied)
	}()
	return m
}

// waitLeader waits until the member (who, in the failure) leads.
func (m *member) waitLeader(who string) {
	m.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.n.Lead() != 1 {
		if time.Now().After(deadline) {
			m.t.Fatalf("%s is %v with no ticks, want leader", who, m.n.Status().RaftState)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitData waits for a normal entry carrying data.
func (m *member) waitData(want string) *raftpb.Entry {
	m.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-m.applied:
			if !ok {
				m.t.Fatalf("node stopped before %q was committed", want)
			}
			if e.GetType() == raftpb.EntryNormal && string(e.GetData()) == want {
				return e
			}
		case <-deadline:
			m.t.Fatalf("%q not committed in time", want)
		}
	}
}

func (m *member) propose(data string) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for m.n.Lead() == raft.None {
		select {
		case <-ctx.Done():
			m.t.Fatal("no leader")
		case <-time.After(time.Millisecond):
		}
	}
	if err := m.n.Propose(ctx, []byte(data)); err != nil {
		m.t.Fatal(err)
	}
}

func TestSingleMemberCommitsAndRestarts(t *testing.T) {
	fs := vfs.NewMem()
	eng, err := storage.Open("/data", storage.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	m := start(t, eng, 0, nil, 1000)
	m.propose("a")
	ea := m.waitData("a")
	m.propose("b")
	eb := m.waitData("b")
	if eb.GetIndex() != ea.GetIndex()+1 {
		t.Fatalf("indexes %d then %d", ea.GetIndex(), eb.GetIndex())
	}
	cs := m.cs
	m.n.Stop()

	// Restart as if "a" was applied but "b" was not: Raft delivers "b"
	// again and nothing at or before "a".
	m2 := start(t, eng, ea.GetIndex(), cs, 1000)
	defer m2.n.Stop()
	got := m2.waitData("b")
	if got.GetIndex() != eb.GetIndex() {
		t.Fatalf("replayed b at %d, want %d", got.GetIndex(), eb.GetIndex())
	}
	m2.propose("c")
	m2.waitData("c")
	if st := m2.n.Status(); st.RaftState != raft.StateLeader {
		t.Fatalf("restarted member is %v, want leader", st.RaftState)
	}
	eng.Close()
}

// TestSoleVoterCampaignsAtRestart restarts a single member whose clock
// never ticks: it can only become leader by campaigning at start, without
// waiting for an election timeout.
func TestSoleVoterCampaignsAtRestart(t *testing.T) {
	fs := vfs.NewMem()
	eng, err := storage.Open("/data", storage.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	m := start(t, eng, 0, nil, 1000)
	m.propose("a")
	ea := m.waitData("a")
	cs := m.cs
	m.n.Stop()
	<-m.n.Done()

	m2 := startTicking(t, eng, ea.GetIndex(), cs, 1000, time.Hour)
	defer m2.n.Stop()
	m2.waitLeader("restarted sole voter")
	m2.propose("b")
	m2.waitData("b")
}

// TestNewSoleMemberCampaignsAtStart starts a new one-member cluster whose
// clock never ticks: it can only become leader by campaigning once its
// bootstrap entries are applied.
func TestNewSoleMemberCampaignsAtStart(t *testing.T) {
	eng, err := storage.Open("/data", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	m := startTicking(t, eng, 0, nil, 1000, time.Hour)
	defer m.n.Stop()
	m.waitLeader("new sole member")
	m.propose("a")
	m.waitData("a")
}

func TestSnapshotTruncatesLog(t *testing.T) {
	fs := vfs.NewMem()
	eng, err := storage.Open("/data", storage.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	m := start(t, eng, 0, nil, 5)
	var last *raftpb.Entry
	for i := 0; i < 20; i++ {
		d := string(rune('a' + i))
		m.propose(d)
		last = m.waitData(d)
	}
	cs := m.cs
	m.n.Stop()
	st, err := eng.LoadRaft()
	if err != nil {
		t.Fatal(err)
	}
	if st.Snapshot.GetIndex() == 0 {
		t.Fatal("no raft snapshot after 20 entries with snapshot count 5")
	}
	if len(st.Entries) == 0 || st.Entries[0].GetIndex() <= 1 {
		t.Fatalf("log not truncated: first entry %d", st.Entries[0].GetIndex())
	}
	// Restart from the truncated log, fully applied.
	m2 := start(t, eng, last.GetIndex(), cs, 5)
	defer m2.n.Stop()
	m2.propose("after")
	if e := m2.waitData("after"); e.GetIndex() <= last.GetIndex() {
		t.Fatalf("new entry at %d, not after %d", e.GetIndex(), last.GetIndex())
	}
	eng.Close()
}

// TestRestartedSingleMemberReadIndexCoversCommittedEntries: the commit
// index in the hard state is written without sync, so a killed member can
// come back with one older than entries it acknowledged. A single voter's
// ReadIndex must still cover those entries (the robustness scenario
// kill-single found a linearizable read at an older revision than an
// acknowledged write).
func TestRestartedSingleMemberReadIndexCoversCommittedEntries(t *testing.T) {
	fs := vfs.NewMem()
	eng, err := storage.Open("/data", storage.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	m := start(t, eng, 0, nil, 1000)
	m.propose("a")
	ea := m.waitData("a")
	var last *raftpb.Entry
	for _, d := range []string{"b", "c", "d"} {
		m.propose(d)
		last = m.waitData(d)
	}
	hs := m.n.Status().HardState
	cs := m.cs
	m.n.Stop()

	// Lose the commit index, as a kill before pebble wrote the unsynced
	// batch would, keeping the synced entries.
	stale := ea.GetIndex()
	term, vote := hs.GetTerm(), hs.GetVote()
	if err := eng.SaveRaft(&raftpb.HardState{Term: &term, Vote: &vote, Commit: &stale}, nil, last.GetIndex(), true); err != nil {
		t.Fatal(err)
	}
	st, err := eng.LoadRaft()
	if err != nil || st.HardState.GetCommit() != stale {
		t.Fatalf("hard state after the rewrite: %v, %v", st.HardState, err)
	}

	m2 := start(t, eng, stale, cs, 1000)
	defer m2.n.Stop()
	// Ask for read indexes from before the election on, so that some are
	// answered in the first moments of leadership.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			_ = m2.n.ReadIndex(ctx, []byte{byte(i)})
			cancel()
		}
	}()
	defer func() { close(stop); <-done }()
	deadline := time.After(10 * time.Second)
	for got := 0; got < 50; got++ {
		select {
		case rs := <-m2.n.ReadStates():
			if rs.Index < last.GetIndex() {
				t.Fatalf("read index %d after a restart, below the acknowledged entry %d", rs.Index, last.GetIndex())
			}
		case <-deadline:
			t.Fatalf("only %d read states in 10s", got)
		}
	}
}

// A proposal forwarded by a peer to a member that knows no leader is
// dropped at once instead of blocking the peer's stream (raft accepts
// proposals only once it knows a leader).
func TestForwardedProposalWithoutLeaderIsDropped(t *testing.T) {
	eng, err := storage.Open("mem", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	n, err := Start(Config{
		ID:             1,
		Peers:          []raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}},
		TickInterval:   time.Hour, // never elects
		ElectionTicks:  10,
		HeartbeatTicks: 1,
		Engine:         eng,
		Logger:         zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	go func() {
		for range n.Committed() {
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	typ, from, to := raftpb.MessageType_MsgProp, uint64(2), uint64(1)
	m := &raftpb.Message{Type: &typ, From: &from, To: &to, Entries: []*raftpb.Entry{{Data: []byte("x")}}}
	if err := n.Step(ctx, m); err != ErrProposalDropped {
		t.Fatalf("Step(MsgProp) without a leader: %v, want %v", err, ErrProposalDropped)
	}
}
