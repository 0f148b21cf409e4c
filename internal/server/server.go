// Package server is cairn's composition root: it opens the data dir,
// bootstraps or recovers the member, wires storage, Raft, apply, watch,
// leases and the API together, and runs them until stopped. It holds no
// logic of its own beyond lifecycle and the few decisions that need
// several parts at once (quota, lease expiry on the leader, compaction).
package server

import (
	"context"
	"sync/atomic"

	"encoding/json"
	"errors"
	"fmt"
	"github.com/cockroachdb/pebble/v2"
	"log/slog"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/apply"
	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/failpoint"
	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/membership"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/propose"
	"github.com/cairn-kv/cairn/internal/raftnode"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/transport"
	"github.com/cairn-kv/cairn/internal/watch"
)

// identity is the member's cluster identity, stored at bootstrap (or by
// an offline restore).
type identity = membership.Identity

// Server is one running member.
type Server struct {
	cfg *config.Config
	lg  *zap.Logger

	eng     *storage.Engine
	kv      *mvcc.Store
	lessor  *lease.Lessor
	members *membership.Set
	applier *apply.Applier
	node    *raftnode.Node
	prop    *propose.Proposer
	reads   *propose.Reads
	ids     *propose.IDGen
	hub     *watch.Hub
	id      identity

	stopC    chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	fatalC   chan error

	compactMu   sync.Mutex
	compactCond *sync.Cond
	compactDone int64 // last physically finished compaction revision
	compactKick chan struct{}

	readyC  chan struct{}
	metrics *metrics

	tr          *transport.Transport
	join        bool                 // joining a running cluster with an empty log
	joinPeers   []*membership.Member // the first peers, before the member set is known
	wasMember   atomic.Bool
	learner     atomic.Bool                   // this member is a learner (see isLearner)
	confChanged atomic.Bool                   // a membership change was applied: snapshot now
	lc          leaderConn                    // client to the leader, for forwarded requests
	raft        atomic.Pointer[raftnode.Node] // s.node, for the transport's goroutines
}

// New opens the data dir and starts the member's storage, Raft and apply
// loops. Serving clients is started by Serve.
func New(cfg *config.Config, lg *zap.Logger) (*Server, error) {
	s := &Server{
		cfg: cfg, lg: lg,
		stopC:       make(chan struct{}),
		fatalC:      make(chan error, 1),
		compactKick: make(chan struct{}, 1),
		readyC:      make(chan struct{}),
	}
	s.compactCond = sync.NewCond(&s.compactMu)
	s.metrics = newMetrics(s)
	dir := filepath.Join(cfg.MemberDataDir(), "member")
	eng, err := storage.Open(dir, storage.Options{WALDir: cfg.WalDir, OnFatal: func(err error) { s.fatal(err) }})
	if err != nil {
		return nil, err
	}
	s.eng = eng
	eng.OnSync = s.observeSync
	if err := s.open(); err != nil {
		eng.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) open() error {
	cfg := s.cfg
	st, err := s.eng.LoadRaft()
	if err != nil {
		return err
	}
	var peers []raftnode.Peer
	if v, ok, err := storage.GetMeta(s.eng.DB(), storage.MetaCluster); err != nil {
		return err
	} else if ok {
		if err := json.Unmarshal(v, &s.id); err != nil {
			return fmt.Errorf("%w: cluster identity: %v", storage.ErrCorrupt, err)
		}
		if s.id.Name != cfg.Name {
			s.lg.Warn("member name differs from the one in the data dir; keeping the data dir's identity",
				zap.String("data-dir-name", s.id.Name), zap.String("name", cfg.Name))
		}
	} else {
		if !st.Empty() {
			return fmt.Errorf("%w: raft state without a cluster identity", storage.ErrCorrupt)
		}
		peers, err = s.bootstrap()
		if err != nil {
			return err
		}
	}
	s.members, err = membership.Load(s.eng.DB(), s.id.ClusterID)
	if err != nil {
		return err
	}
	s.kv, err = mvcc.Open(s.eng.DB())
	if err != nil {
		return err
	}
	tick := cfg.HeartbeatInterval
	electionTicks := int(cfg.ElectionTimeout / cfg.HeartbeatInterval)
	s.lessor, err = lease.New(lease.Config{
		MinTTL:             lease.MinTTLFor(electionTicks, tick),
		CheckpointInterval: cfg.LeaseCheckpointInterval,
	})
	if err != nil {
		return err
	}
	if err := s.restoreLeases(); err != nil {
		return err
	}
	s.hub = watch.NewHub(watchStore{s.kv}, watch.Options{Logger: slog.New(zapSlogHandler(s.lg))})
	s.ids = propose.NewIDGen(s.id.MemberID, time.Now())
	s.applier, err = apply.New(apply.Deps{
		DB: s.eng.DB(), KV: s.kv, Lessor: s.lessor, Members: s.members,
		Conf: confChanger{s}, Waits: proposerRef{s}, Watch: s.hub, Logger: s.lg,
	})
	if err != nil {
		return err
	}
	if cfg.WarningApplyDuration > 0 {
		s.applier.WarnApply = cfg.WarningApplyDuration
	}
	s.applier.OnCompaction = func(int64) { s.kickCompaction() }
	s.applier.OnConfChange = func() {
		s.confChanged.Store(true)
		s.syncPeers()
	}
	s.tr, err = s.newTransport()
	if err != nil {
		return err
	}
	for _, m := range s.joinPeers {
		if m.ID != s.id.MemberID {
			if err := s.tr.AddPeer(m.ID, m.PeerURLs); err != nil {
				return err
			}
		}
	}
	s.syncPeers()
	s.node, err = raftnode.Start(raftnode.Config{
		ID:             s.id.MemberID,
		Peers:          peers,
		TickInterval:   tick,
		ElectionTicks:  electionTicks,
		HeartbeatTicks: 1,
		SnapshotCount:  cfg.SnapshotCount,
		CatchUpEntries: cfg.SnapshotCatchUpEntries,
		Join:           s.join,
		Engine:         s.eng,
		Transport:      s.tr,
		Logger:         s.lg,
		Applied:        s.applier.Applied(),
		AppliedTerm:    s.applier.AppliedTerm(),
		ConfState:      s.applier.ConfState(),
		OnLeader:       s.onLeader,
	})
	if err != nil {
		return err
	}
	s.raft.Store(s.node)
	maxProposal := int(cfg.MaxRequestBytes)
	s.prop = propose.New(s.node, s.ids, maxProposal, s.requestTimeout())
	s.reads = propose.NewReads(s.node, s.ids, s.node.ReadStates(), s.applier, s.requestTimeout(), s.lg)
	s.compactDone = s.finishedCompaction()

	s.wg.Add(4)
	go func() { defer s.wg.Done(); s.applyLoop() }()
	go func() { defer s.wg.Done(); s.reads.Run(s.stopC) }()
	go func() { defer s.wg.Done(); s.leaseLoop() }()
	go func() { defer s.wg.Done(); s.compactionLoop() }()
	s.kickCompaction() // resume a physical compaction cut short by a stop
	if cfg.AutoPromoteLearners {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.autoPromoteLoop() }()
	}
	if cfg.CorruptCheckTime > 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.corruptCheckLoop(cfg.CorruptCheckTime) }()
	}
	if mode, period, revs, err := cfg.AutoCompaction(); err == nil && (period > 0 || revs > 0) {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.autoCompactLoop(mode, period, revs) }()
	}
	return nil
}

// bootstrap computes a new member's identity from --initial-cluster (a
// new cluster) or learns it from a running one (--initial-cluster-state
// existing), stores it, and returns the Raft peers to start with (none
// when joining).
func (s *Server) bootstrap() ([]raftnode.Peer, error) {
	cfg := s.cfg
	ms, err := membership.ParseInitialCluster(cfg.InitialCluster, cfg.InitialClusterToken)
	if err != nil {
		return nil, err
	}
	var self *membership.Member
	var ids []uint64
	for _, m := range ms {
		ids = append(ids, m.ID)
		if m.Name == cfg.Name {
			self = m
		}
	}
	if self == nil {
		return nil, fmt.Errorf("couldn't find local name %q in the initial cluster configuration", cfg.Name)
	}
	var peers []raftnode.Peer
	if cfg.InitialClusterState == "existing" {
		got, err := s.joinExisting(ms)
		if err != nil {
			return nil, err
		}
		s.joinPeers = got
		s.join = true
	} else {
		s.id = identity{ClusterID: membership.ComputeClusterID(ids), MemberID: self.ID, Name: cfg.Name}
		for _, m := range ms {
			ctx, _ := json.Marshal(m)
			peers = append(peers, raftnode.Peer{ID: m.ID, Context: ctx})
		}
		s.joinPeers = ms
	}
	v, _ := json.Marshal(s.id)
	b := s.eng.DB().NewBatch()
	defer b.Close()
	if err := b.Set(storage.MetaKey(storage.MetaCluster), v, nil); err != nil {
		return nil, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, err
	}
	return peers, nil
}

func (s *Server) restoreLeases() error {
	lo, hi := storage.LeaseSpan()
	it, err := s.eng.DB().NewIter(nil)
	if err != nil {
		return err
	}
	var recs []lease.Record
	for it.SeekGE(lo); it.Valid() && string(it.Key()) < string(hi); it.Next() {
		r, err := apply.DecodeLease(it.Value())
		if err != nil {
			it.Close()
			return fmt.Errorf("%w: lease record: %v", storage.ErrCorrupt, err)
		}
		recs = append(recs, r)
	}
	if err := it.Close(); err != nil {
		return err
	}
	if err := s.lessor.Restore(recs); err != nil {
		return err
	}
	return s.kv.LeasedKeys(func(key []byte, id int64) {
		_ = s.lessor.Attach(lease.ID(id), string(key))
	})
}

func (s *Server) applyLoop() {
	for c := range s.node.Committed() {
		if c.Snapshot != nil {
			failpoint.Hit("snapshot-before-install")
			err := s.installSnapshot(c.Snapshot)
			failpoint.Hit("snapshot-after-install")
			c.Installed <- err
			if err != nil {
				s.fatal(fmt.Errorf("install snapshot: %w", err))
				return
			}
		}
		if err := s.applier.Apply(c.Entries); err != nil {
			s.fatal(fmt.Errorf("apply: %w", err))
			return
		}
		if err := s.node.MaybeSnapshot(s.applier.Applied(), s.applier.ConfState(), s.confChanged.Swap(false)); err != nil {
			s.fatal(fmt.Errorf("raft snapshot: %w", err))
			return
		}
	}
}

func (s *Server) fatal(err error) {
	s.lg.Error("member stopping on a fatal error", zap.Error(err))
	select {
	case s.fatalC <- err:
	default:
	}
}

// Fatal delivers an error that stopped the member.
func (s *Server) Fatal() <-chan error { return s.fatalC }

func (s *Server) onLeader(lead uint64, isLeader bool) {
	if lead != raftnode.None {
		s.metrics.leaderChanges.Inc()
	}
	if isLeader {
		s.lg.Info("became leader", zap.String("member-id", fmt.Sprintf("%x", s.id.MemberID)), zap.Uint64("term", s.node.Term()))
		s.lessor.Promote(s.cfg.ElectionTimeout)
	} else {
		s.lessor.Demote()
	}
	if lead != raftnode.None {
		s.lg.Info("leader changed", zap.String("leader", fmt.Sprintf("%x", lead)))
	} else {
		s.lg.Warn("lost leader")
	}
	if lead != raftnode.None {
		select {
		case <-s.readyC:
		default:
			close(s.readyC)
		}
	}
}

// leaseLoop revokes expired leases and checkpoints remaining TTLs while
// this member leads.
func (s *Server) leaseLoop() {
	s.every(500*time.Millisecond, func() {
		if !s.lessor.IsPrimary() {
			return
		}
		for _, id := range s.lessor.Expired(500) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := s.prop.Propose(ctx, &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: int64(id)}})
			cancel()
			if err != nil && !errors.Is(err, lease.ErrLeaseNotFound) {
				s.lg.Warn("failed to revoke expired lease", zap.Int64("lease-id", int64(id)), zap.Error(err))
			}
		}
		if cps := s.lessor.Checkpoints(1000); len(cps) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := s.prop.Propose(ctx, &pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: cps}})
			cancel()
			if err != nil {
				s.lg.Warn("failed to checkpoint leases", zap.Error(err))
			}
		}
	})
}

// every calls fn at each tick of d until the member stops.
func (s *Server) every(d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.stopC:
			return
		case <-t.C:
			fn()
		}
	}
}

// WaitReady returns once the member has a leader.
func (s *Server) WaitReady(ctx context.Context) error {
	select {
	case <-s.readyC:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case err := <-s.fatalC:
		s.fatalC <- err
		return err
	}
}

// PublishAttributes records this member's name and client URLs in the
// member set, through Raft, as etcd does after start.
func (s *Server) PublishAttributes(ctx context.Context, clientURLs []url.URL) error {
	var urls []string
	for _, u := range clientURLs {
		urls = append(urls, u.String())
	}
	_, err := s.prop.Propose(ctx, &pb.InternalRaftRequest{ClusterMemberAttrSet: &membershippb.ClusterMemberAttrSetRequest{
		Member_ID:        s.id.MemberID,
		MemberAttributes: &membershippb.Attributes{Name: s.cfg.Name, ClientUrls: urls},
	}})
	return err
}

// Stop stops the member: loops, Raft, storage.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopC)
		s.hub.Close()
		s.node.Stop()
		s.tr.Close()
		s.closeLeaderClient()
		s.wg.Wait()
		if err := s.eng.Close(); err != nil {
			s.lg.Warn("closing storage", zap.Error(err))
		}
	})
}

// ID is this member's ID.
func (s *Server) ID() uint64 { return s.id.MemberID }

// ClusterID is the cluster's ID.
func (s *Server) ClusterID() uint64 { return s.id.ClusterID }

// Members is the member set.
func (s *Server) Members() []*membership.Member { return s.members.Members() }

// Hub is the watch hub.
func (s *Server) Hub() *watch.Hub { return s.hub }

// confChanger hands configuration changes to Raft.
type confChanger struct{ s *Server }

func (c confChanger) ApplyConfChange(cc raftpb.ConfChangeI) *raftpb.ConfState {
	return c.s.node.ApplyConfChange(cc)
}

// proposerRef resolves the proposer lazily: the applier is built before it.
type proposerRef struct{ s *Server }

func (p proposerRef) Trigger(id uint64, r propose.Result) { p.s.prop.Trigger(id, r) }

// watchStore adapts the MVCC store to the watch hub's errors.
type watchStore struct{ kv *mvcc.Store }

func (w watchStore) Revs() (int64, int64) { return w.kv.Revs() }
func (w watchStore) Events(from, to int64, fn func(ev *mvccpb.Event) bool) error {
	err := w.kv.Events(from, to, fn)
	if errors.Is(err, mvcc.ErrCompacted) {
		return watch.ErrCompacted
	}
	return err
}
func (w watchStore) Get(key []byte, rev int64) (*mvccpb.KeyValue, error) {
	kv, err := w.kv.Get(key, rev)
	if errors.Is(err, mvcc.ErrCompacted) {
		return nil, watch.ErrCompacted
	}
	return kv, err
}
