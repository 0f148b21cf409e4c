// Package raftnode runs the Raft state machine of go.etcd.io/raft for one
// member. It is the only package that imports raft.
//
// One goroutine owns the raft.Node's Ready loop. For every Ready, in order:
//
//  1. leader and read-index news are handed out (non-blocking);
//  2. the hard state and new entries are written to pebble in one synced
//     batch (storage.SaveRaft) and appended to the in-memory log raft reads;
//  3. messages go to the transport (after the write: a member never
//     promises what it has not persisted);
//  4. committed entries are sent, in order, on Committed() to the apply
//     loop; the loop does not wait for them to be applied;
//  5. Advance.
//
// Ticks come from a ticker at the heartbeat interval. The apply loop calls
// ApplyConfChange for configuration entries and MaybeSnapshot after it
// applied, which compacts the in-memory and on-disk log.
package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/failpoint"
	"github.com/cairn-kv/cairn/internal/storage"
)

// None is the ID of no member: no leader is known.
const None = raft.None

// Peer is an initial member of a new cluster (its ID and the context of
// the configuration entry that adds it).
type Peer = raft.Peer

// Transport carries Raft messages to other members. A single member has
// none to send; the cluster transport implements it.
type Transport interface {
	Send(msgs []*raftpb.Message)
}

// Config is what a Node needs.
type Config struct {
	ID    uint64
	Peers []raft.Peer // initial members, for a new cluster only
	// Join starts a member with an empty log that was added to a running
	// cluster: the leader sends it the log or a snapshot.
	Join           bool
	TickInterval   time.Duration
	ElectionTicks  int
	HeartbeatTicks int
	SnapshotCount  uint64 // applied entries between Raft snapshots
	CatchUpEntries uint64 // entries kept behind a snapshot for slow followers
	Engine         *storage.Engine
	Transport      Transport
	Logger         *zap.Logger
	// Applied is the applied index recovered from the state machine,
	// AppliedTerm its term, and ConfState the configuration as of that
	// index. Raft does not deliver entries at or below Applied again, so
	// it must start from ConfState rather than replay the configuration
	// entries. A state machine ahead of the log (a snapshot installed just
	// before a crash) counts as a Raft snapshot at Applied.
	Applied     uint64
	AppliedTerm uint64
	ConfState   *raftpb.ConfState
	// OnLeader is called from the Ready loop when the leader changes.
	OnLeader func(lead uint64, isLeader bool)
}

// ReadState answers a ReadIndex request: reads issued before the request
// with context Ctx are linearizable once the state machine applied Index.
type ReadState struct {
	Index uint64
	Ctx   []byte
}

// Committed is what the apply loop must do next, in log order. When
// Snapshot is set (a leader sent this member a snapshot), the loop first
// replaces its state with the snapshot's, durably, and sends the outcome
// on Installed; the Raft loop waits for it before it truncates the log.
type Committed struct {
	Snapshot  *raftpb.Snapshot
	Installed chan<- error
	Entries   []*raftpb.Entry
}

// Node is a running Raft member.
type Node struct {
	cfg      Config
	node     raft.Node
	mem      *raft.MemoryStorage
	lg       *zap.Logger
	commitC  chan Committed
	readC    chan ReadState
	stopC    chan struct{}
	doneC    chan struct{}
	stopOnce sync.Once

	lead     atomic.Uint64
	term     atomic.Uint64
	commit   atomic.Uint64
	snapMu   sync.Mutex
	snapshot uint64 // index of the last Raft snapshot

	lastPersisted uint64
	prevHS        *raftpb.HardState
	// termStart is the index of this leader's first entry of its term
	// (0 when not leader); see handle.
	termStart uint64
	leading   bool // the last SoftState made this member the leader
	errMu     sync.Mutex
	err       error
}

// ErrStopped is returned by calls on a stopped node.
var ErrStopped = errors.New("raft: stopped")

// Start restores the persisted Raft state (or bootstraps a new member with
// cfg.Peers) and starts the Ready loop.
func Start(cfg Config) (*Node, error) {
	st, err := cfg.Engine.LoadRaft()
	if err != nil {
		return nil, err
	}
	mem := raft.NewMemoryStorage()
	n := &Node{
		cfg:     cfg,
		mem:     mem,
		lg:      cfg.Logger,
		commitC: make(chan Committed, 128),
		readC:   make(chan ReadState, 64),
		stopC:   make(chan struct{}),
		doneC:   make(chan struct{}),
	}
	rc := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   &restartStorage{MemoryStorage: mem, cs: cfg.ConfState},
		Applied:                   cfg.Applied,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  16 << 20,
		MaxUncommittedEntriesSize: 1 << 30,
		MaxInflightMsgs:           512,
		CheckQuorum:               true,
		PreVote:                   true,
		StepDownOnRemoval:         true,
		Logger:                    raftLogger{cfg.Logger.Sugar()},
	}
	if st.Empty() && cfg.Join {
		n.node = raft.RestartNode(rc)
	} else if st.Empty() {
		if len(cfg.Peers) == 0 {
			return nil, errors.New("raftnode: a new member needs its initial peers")
		}
		n.node = raft.StartNode(rc, cfg.Peers)
		if len(cfg.Peers) == 1 && cfg.Peers[0].ID == cfg.ID {
			go n.campaignWhenBootstrapped(1)
		}
	} else {
		if st.Snapshot.GetIndex() > 0 {
			if err := mem.ApplySnapshot(&raftpb.Snapshot{Metadata: st.Snapshot}); err != nil {
				return nil, fmt.Errorf("restoring raft snapshot: %w", err)
			}
			n.snapshot = st.Snapshot.GetIndex()
		}
		if err := mem.SetHardState(st.HardState); err != nil {
			return nil, err
		}
		if err := mem.Append(st.Entries); err != nil {
			return nil, err
		}
		if len(st.Entries) > 0 {
			n.lastPersisted = st.Entries[len(st.Entries)-1].GetIndex()
		} else {
			n.lastPersisted = st.Snapshot.GetIndex()
		}
		if cfg.Applied > 0 && cfg.Applied < st.Snapshot.GetIndex() {
			return nil, fmt.Errorf("%w: applied index %d is behind the raft snapshot at %d", storage.ErrCorrupt, cfg.Applied, st.Snapshot.GetIndex())
		}
		if last := n.lastPersisted; cfg.Applied > last {
			// The state machine installed a leader's snapshot and the
			// member stopped before the log was truncated to it.
			meta := &raftpb.SnapshotMetadata{Index: &cfg.Applied, Term: &cfg.AppliedTerm, ConfState: cfg.ConfState}
			if err := cfg.Engine.SaveSnapshot(meta, cfg.Applied+1); err != nil {
				return nil, err
			}
			mem = raft.NewMemoryStorage()
			n.mem = mem
			rc.Storage = &restartStorage{MemoryStorage: mem, cs: cfg.ConfState}
			if err := mem.ApplySnapshot(&raftpb.Snapshot{Metadata: meta}); err != nil {
				return nil, err
			}
			hs := st.HardState
			if hs.GetCommit() < cfg.Applied {
				c := cfg.Applied
				hs = &raftpb.HardState{Term: hs.Term, Vote: hs.Vote, Commit: &c}
			}
			if err := mem.SetHardState(hs); err != nil {
				return nil, err
			}
			n.lastPersisted = cfg.Applied
			n.snapshot = cfg.Applied
		}
		n.node = raft.RestartNode(rc)
		// The only voter is a quorum by itself: it campaigns at once
		// instead of waiting out an election timeout (1-2 s by default)
		// before it can serve. This is an election that comes early,
		// nothing more; raft refuses it while conf changes are pending.
		if _, cs, err := rc.Storage.InitialState(); err == nil && soleVoter(cs, cfg.ID) {
			if err := n.node.Campaign(context.Background()); err != nil {
				return nil, err
			}
		}
	}
	n.term.Store(st.HardState.GetTerm())
	n.prevHS = st.HardState
	go n.run()
	return n, nil
}

// campaignWhenBootstrapped makes a new cluster's only member campaign as
// soon as it has applied its bootstrap entries (up to index), instead of
// after an election timeout: raft refuses a campaign while configuration
// changes wait to be applied, and a fresh member starts with its own. It
// gives up after two seconds, when an election has happened anyway.
func (n *Node) campaignWhenBootstrapped(index uint64) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for range 400 {
		select {
		case <-n.stopC:
			return
		case <-t.C:
		}
		st := n.node.Status()
		if st.Lead != raft.None || st.RaftState != raft.StateFollower {
			return
		}
		if st.Applied >= index {
			_ = n.node.Campaign(context.Background())
			return
		}
	}
}

// soleVoter reports whether id is the only voter of cs (learners aside).
func soleVoter(cs *raftpb.ConfState, id uint64) bool {
	v := cs.GetVoters()
	return len(v) == 1 && v[0] == id && len(cs.GetVotersOutgoing()) == 0
}

// restartStorage is the in-memory log, except that at start raft reads
// the configuration of the applied state, not of the last Raft snapshot.
type restartStorage struct {
	*raft.MemoryStorage
	cs *raftpb.ConfState
}

func (r *restartStorage) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	hs, cs, err := r.MemoryStorage.InitialState()
	if err != nil || r.cs == nil || len(r.cs.GetVoters())+len(r.cs.GetLearners()) == 0 {
		return hs, cs, err
	}
	return hs, r.cs, nil
}

// Committed delivers committed entries in log order.
func (n *Node) Committed() <-chan Committed { return n.commitC }

// ReadStates delivers the answers to ReadIndex requests.
func (n *Node) ReadStates() <-chan ReadState { return n.readC }

// Done is closed when the Ready loop has stopped.
func (n *Node) Done() <-chan struct{} { return n.doneC }

// Err is the error that stopped the loop, if any.
func (n *Node) Err() error {
	n.errMu.Lock()
	defer n.errMu.Unlock()
	return n.err
}

func (n *Node) fail(err error) {
	n.errMu.Lock()
	if n.err == nil {
		n.err = err
	}
	n.errMu.Unlock()
}

func (n *Node) run() {
	defer close(n.doneC)
	defer close(n.commitC)
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			n.node.Tick()
		case rd := <-n.node.Ready():
			if err := n.handle(rd); err != nil {
				n.lg.Error("raft loop stopped", zap.Error(err))
				n.fail(err)
				n.node.Stop()
				return
			}
			n.node.Advance()
		case <-n.stopC:
			n.node.Stop()
			return
		}
	}
}

func (n *Node) handle(rd raft.Ready) error {
	if rd.SoftState != nil {
		old := n.lead.Swap(rd.SoftState.Lead)
		if old != rd.SoftState.Lead && n.cfg.OnLeader != nil {
			n.cfg.OnLeader(rd.SoftState.Lead, rd.SoftState.RaftState == raft.StateLeader)
		}
	}
	if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
		n.term.Store(rd.HardState.GetTerm())
		n.commit.Store(rd.HardState.GetCommit())
	}
	if rd.SoftState != nil {
		n.termStart = 0
		n.leading = rd.SoftState.RaftState == raft.StateLeader
		if n.leading {
			n.termStart = termStart(rd, n.term.Load(), n.lastPersisted)
		}
	}
	// A leader sends its appends and heartbeats before it persists, so
	// the followers write the new entries to their disks while it
	// writes them to its own (the Raft thesis, 10.2.1): an entry commits
	// after the slower of the two fsyncs, not after both in turn. This
	// is safe because the leader counts its own copy of an entry only
	// once it is persisted (raft steps the leader's own append response
	// at Advance). Responses (append and vote answers) promise what is
	// on this member's disk, so they, and everything a follower or
	// candidate sends, go out after the write.
	var early, late []*raftpb.Message
	late = rd.Messages
	if n.leading {
		early, late = splitLeaderMessages(rd.Messages)
	}
	if n.cfg.Transport != nil && len(early) > 0 {
		n.cfg.Transport.Send(early)
	}
	for _, rs := range rd.ReadStates {
		// A leader's commit index may lag behind entries committed in
		// earlier terms until it commits one of its own: a restarted
		// single member's persisted commit index can be stale (it is
		// written without sync), and raft answers a single voter's
		// ReadIndex with it at once. Reads wait for the leader's first
		// entry, as raft makes every other leader do.
		idx := max(rs.Index, n.termStart)
		select {
		case n.readC <- ReadState{Index: idx, Ctx: rs.RequestCtx}:
		default:
			// Nobody is waiting; the read-index loop retries.
		}
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.installSnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	sync := raft.MustSync(rd.HardState, n.prevHS, len(rd.Entries))
	failpoint.Hit("raft-before-save")
	if err := n.cfg.Engine.SaveRaft(rd.HardState, rd.Entries, n.lastPersisted, sync); err != nil {
		return fmt.Errorf("persisting raft entries: %w", err)
	}
	failpoint.Hit("raft-after-save")
	if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
		if err := n.mem.SetHardState(rd.HardState); err != nil {
			return err
		}
		n.prevHS = rd.HardState
	}
	if len(rd.Entries) > 0 {
		if err := n.mem.Append(rd.Entries); err != nil {
			return err
		}
		n.lastPersisted = rd.Entries[len(rd.Entries)-1].GetIndex()
	}
	if n.cfg.Transport != nil && len(late) > 0 {
		n.cfg.Transport.Send(late)
	}
	if len(rd.CommittedEntries) > 0 {
		select {
		case n.commitC <- Committed{Entries: rd.CommittedEntries}:
		case <-n.stopC:
		}
	}
	return nil
}

// splitLeaderMessages returns the messages a leader may send before it
// persists the Ready (in place, in msgs) and the responses that must wait
// (rare for a leader: answers to stale candidates).
func splitLeaderMessages(msgs []*raftpb.Message) (early, late []*raftpb.Message) {
	early = msgs[:0]
	for _, m := range msgs {
		switch m.GetType() {
		case raftpb.MsgAppResp, raftpb.MsgVoteResp, raftpb.MsgPreVoteResp:
			late = append(late, m)
		default:
			early = append(early, m)
		}
	}
	return early, late
}

// termStart finds the first entry of term in a Ready that made this node
// leader (raft appends it on election); if the Ready has none it returns
// the first index after the persisted log, which is no later.
func termStart(rd raft.Ready, term, lastPersisted uint64) uint64 {
	if rd.HardState != nil && rd.HardState.GetTerm() > term {
		term = rd.HardState.GetTerm()
	}
	for _, e := range rd.Entries {
		if e.GetTerm() == term {
			return e.GetIndex()
		}
	}
	return lastPersisted + 1
}

// installSnapshot hands a leader's snapshot to the apply loop, waits until
// the state machine holds it durably, then replaces the log with it.
func (n *Node) installSnapshot(snap *raftpb.Snapshot) error {
	done := make(chan error, 1)
	select {
	case n.commitC <- Committed{Snapshot: snap, Installed: done}:
	case <-n.stopC:
		return ErrStopped
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("installing snapshot at %d: %w", snap.GetMetadata().GetIndex(), err)
		}
	case <-n.stopC:
		return ErrStopped
	}
	idx := snap.GetMetadata().GetIndex()
	if err := n.cfg.Engine.SaveSnapshot(snap.GetMetadata(), n.lastPersisted+1); err != nil {
		return err
	}
	if err := n.mem.ApplySnapshot(snap); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
		return err
	}
	n.snapMu.Lock()
	n.snapshot = idx
	n.snapMu.Unlock()
	n.lastPersisted = idx
	n.lg.Info("applied snapshot from leader", zap.Uint64("snapshot-index", idx), zap.Uint64("snapshot-term", snap.GetMetadata().GetTerm()))
	return nil
}

// Step hands a message from another member to Raft.
//
// A proposal forwarded by a peer (MsgProp) never holds up the messages
// behind it on the peer's stream: raft accepts proposals only while it
// knows a leader and blocks until then, and a member that restarted
// while its peers still took it for the leader would otherwise stall on
// their forwarded proposals and never read the heartbeats that tell it
// who leads. Such a proposal is dropped at once when no leader is known,
// and waits at most an election timeout otherwise; the proposer times
// out and retries, as when raft drops a proposal itself.
func (n *Node) Step(ctx context.Context, m *raftpb.Message) error {
	if m.GetType() == raftpb.MessageType_MsgProp {
		if n.Lead() == None {
			return ErrProposalDropped
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(n.cfg.ElectionTicks)*n.cfg.TickInterval)
		defer cancel()
	}
	return n.node.Step(ctx, m)
}

// ErrProposalDropped is raft's error for a proposal it did not take.
var ErrProposalDropped = raft.ErrProposalDropped

// ReportUnreachable tells Raft that a message to id could not be sent.
func (n *Node) ReportUnreachable(id uint64) { n.node.ReportUnreachable(id) }

// ReportSnapshot tells Raft whether a snapshot reached id.
func (n *Node) ReportSnapshot(id uint64, failed bool) {
	st := raft.SnapshotFinish
	if failed {
		st = raft.SnapshotFailure
	}
	n.node.ReportSnapshot(id, st)
}

// ProposeConfChange proposes a membership change.
func (n *Node) ProposeConfChange(ctx context.Context, cc raftpb.ConfChangeI) error {
	return n.node.ProposeConfChange(ctx, cc)
}

// Propose proposes data as a normal entry.
func (n *Node) Propose(ctx context.Context, data []byte) error {
	return n.node.Propose(ctx, data)
}

// ReadIndex asks for the commit index that a linearizable read must wait
// for; the answer arrives on ReadStates with the same rctx.
func (n *Node) ReadIndex(ctx context.Context, rctx []byte) error {
	return n.node.ReadIndex(ctx, rctx)
}

// ApplyConfChange applies a committed configuration change to Raft.
func (n *Node) ApplyConfChange(cc raftpb.ConfChangeI) *raftpb.ConfState {
	return n.node.ApplyConfChange(cc)
}

// TransferLeadership asks the leader to hand over to transferee.
func (n *Node) TransferLeadership(ctx context.Context, lead, transferee uint64) {
	n.node.TransferLeadership(ctx, lead, transferee)
}

// Status is Raft's view of this member.
func (n *Node) Status() raft.Status { return n.node.Status() }

// Lead is the current leader's ID, 0 if none is known.
func (n *Node) Lead() uint64 { return n.lead.Load() }

// Term is the current term.
func (n *Node) Term() uint64 { return n.term.Load() }

// CommitIndex is the last known commit index.
func (n *Node) CommitIndex() uint64 { return n.commit.Load() }

// ID is this member's Raft ID.
func (n *Node) ID() uint64 { return n.cfg.ID }

// MaybeSnapshot takes a Raft snapshot at applied when SnapshotCount entries
// were applied since the last one, and drops the log before
// applied-CatchUpEntries. The state machine holds everything up to applied.
//
// force takes one whatever the count (after a membership change, so that a
// snapshot sent to a new member names it in its configuration).
func (n *Node) MaybeSnapshot(applied uint64, cs *raftpb.ConfState, force bool) error {
	n.snapMu.Lock()
	defer n.snapMu.Unlock()
	if applied <= n.snapshot || (!force && applied-n.snapshot < n.cfg.SnapshotCount) {
		return nil
	}
	if last, err := n.mem.LastIndex(); err != nil || applied > last {
		// A leader's snapshot was just installed in the state machine
		// and the log does not hold it yet: it is the snapshot.
		return nil
	}
	snap, err := n.mem.CreateSnapshot(applied, cs, nil)
	if err != nil {
		if errors.Is(err, raft.ErrSnapOutOfDate) {
			return nil
		}
		return err
	}
	compact := uint64(1)
	if applied > n.cfg.CatchUpEntries {
		compact = applied - n.cfg.CatchUpEntries
	}
	if err := n.cfg.Engine.SaveSnapshot(snap.GetMetadata(), compact); err != nil {
		return err
	}
	if compact > 1 {
		if err := n.mem.Compact(compact); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return err
		}
	}
	n.snapshot = applied
	n.lg.Info("saved snapshot", zap.Uint64("snapshot-index", applied), zap.Uint64("compact-index", compact))
	return nil
}

// Stop stops the Ready loop and waits for it.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopC) })
	<-n.doneC
}

type raftLogger struct{ s *zap.SugaredLogger }

func (l raftLogger) Debug(v ...interface{})                   { l.s.Debug(v...) }
func (l raftLogger) Debugf(format string, v ...interface{})   { l.s.Debugf(format, v...) }
func (l raftLogger) Error(v ...interface{})                   { l.s.Error(v...) }
func (l raftLogger) Errorf(format string, v ...interface{})   { l.s.Errorf(format, v...) }
func (l raftLogger) Info(v ...interface{})                    { l.s.Info(v...) }
func (l raftLogger) Infof(format string, v ...interface{})    { l.s.Infof(format, v...) }
func (l raftLogger) Warning(v ...interface{})                 { l.s.Warn(v...) }
func (l raftLogger) Warningf(format string, v ...interface{}) { l.s.Warnf(format, v...) }
func (l raftLogger) Fatal(v ...interface{})                   { l.s.Fatal(v...) }
func (l raftLogger) Fatalf(format string, v ...interface{})   { l.s.Fatalf(format, v...) }
func (l raftLogger) Panic(v ...interface{})                   { l.s.Panic(v...) }
func (l raftLogger) Panicf(format string, v ...interface{})   { l.s.Panicf(format, v...) }
