package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/apply"
	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/propose"
	"github.com/cairn-kv/cairn/internal/raftnode"
	"github.com/cairn-kv/cairn/internal/version"
)

// Propose sends a request through Raft. Writes that would grow the store
// past --quota-backend-bytes raise the NOSPACE alarm and are refused.
func (s *Server) Propose(ctx context.Context, r *pb.InternalRaftRequest) (proto.Message, error) {
	if s.isLearner() && r.ClusterMemberAttrSet == nil {
		return nil, rpctypes.ErrGRPCNotSupportedForLearner
	}
	if s.node.Lead() == raftnode.None {
		if err := s.waitLeader(ctx); err != nil {
			return nil, err
		}
	}
	if growsStore(r) && s.overQuota(proto.Size(r)) {
		s.raiseNoSpace(ctx)
		return nil, rpctypes.ErrGRPCNoSpace
	}
	// A proposal that is not applied within the request timeout fails
	// with etcd's "request timed out" (the proposer keeps that bound).
	resp, err := s.prop.Propose(ctx, r)
	if err != nil && resp == nil && isProposalFailure(err) {
		s.metrics.proposalsFail.Inc()
	}
	if err == nil && (r.Put != nil || r.DeleteRange != nil || r.Txn != nil) {
		// Watchers of the keys get the events no later than the writer
		// gets its answer (the wait is bounded, and only for streams
		// that keep up).
		if h, ok := resp.(interface{ GetHeader() *pb.ResponseHeader }); ok && s.hub != nil {
			s.hub.WaitDelivered(ctx, h.GetHeader().GetRevision(), watchDeliveryWait)
		}
	}
	return resp, err
}

// watchDeliveryWait bounds how long a write's answer waits for watch
// streams to take its events.
const watchDeliveryWait = 10 * time.Millisecond

// isProposalFailure tells a proposal that did not commit (timeout, stop,
// dropped) from one that applied with an error for the client.
func isProposalFailure(err error) bool {
	return errors.Is(err, propose.ErrTimeout) || errors.Is(err, propose.ErrStopped) || errors.Is(err, context.Canceled) ||
		strings.Contains(err.Error(), "proposal dropped")
}

// requestTimeout is etcd's: 5s plus two election timeouts.
func (s *Server) requestTimeout() time.Duration {
	return 5*time.Second + 2*s.cfg.ElectionTimeout
}

func (s *Server) waitLeader(ctx context.Context) error {
	select {
	case <-s.readyC:
		if s.node.Lead() == raftnode.None {
			return rpctypes.ErrGRPCNoLeader
		}
		return nil
	case <-ctx.Done():
		return rpctypes.ErrGRPCNoLeader
	}
}

func growsStore(r *pb.InternalRaftRequest) bool {
	return r.Put != nil || r.LeaseGrant != nil || (r.Txn != nil && apply.TxnPuts(r.Txn))
}

func (s *Server) quota() int64 {
	q := s.cfg.QuotaBackendBytes
	if q <= 0 {
		q = 2 << 30
	}
	return q
}

// overQuota reports whether a request of cost bytes would take the store
// past its quota, as etcd's backend quota check does.
func (s *Server) overQuota(cost int) bool { return s.kv.Bytes()+int64(cost) > s.quota() }

// sizeInUse is the logical size of the data held, never above the size
// on disk.
func (s *Server) sizeInUse() int64 {
	n := s.kv.Bytes() + 4096
	if size := s.eng.Size(); n > size {
		n = size
	}
	return n
}

func (s *Server) raiseNoSpace(ctx context.Context) {
	if s.applier.NoSpace() {
		return
	}
	s.lg.Warn("database space exceeded", zap.Int64("quota-size-bytes", s.quota()), zap.Int64("size-in-use", s.sizeInUse()))
	_, err := s.prop.Propose(ctx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{
		Action: pb.AlarmRequest_ACTIVATE, MemberID: s.id.MemberID, Alarm: pb.AlarmType_NOSPACE,
	}})
	if err != nil {
		s.lg.Warn("failed to raise NOSPACE alarm", zap.Error(err))
	}
}

// LinearizableRead waits until a read sees every acknowledged write.
func (s *Server) LinearizableRead(ctx context.Context) error {
	if s.isLearner() {
		return rpctypes.ErrGRPCNotSupportedForLearner
	}
	if s.node.Lead() == raftnode.None {
		if err := s.waitLeader(ctx); err != nil {
			return err
		}
	}
	return s.reads.Wait(ctx)
}

// KV is the MVCC store.
func (s *Server) KV() *mvcc.Store { return s.kv }

// Lessor is the lessor.
func (s *Server) Lessor() *lease.Lessor { return s.lessor }

// NewID returns a new cluster-unique ID.
func (s *Server) NewID() uint64 { return s.ids.Next() }

// Header is a response header for this member now.
func (s *Server) Header() *pb.ResponseHeader {
	return &pb.ResponseHeader{
		ClusterId: s.id.ClusterID,
		MemberId:  s.id.MemberID,
		Revision:  s.kv.Rev(),
		RaftTerm:  s.node.Term(),
	}
}

// HasLeader reports whether a leader is known.
func (s *Server) HasLeader() bool { return s.node.Lead() != raftnode.None }

// Alarms lists raised alarms.
func (s *Server) Alarms() []*pb.AlarmMember { return s.applier.Alarms() }

// Status describes this member as Maintenance.Status does in etcd.
func (s *Server) Status(ctx context.Context) (*pb.StatusResponse, error) {
	resp := &pb.StatusResponse{
		Header:           s.Header(),
		Version:          version.EtcdVersion,
		DbSize:           s.eng.Size(),
		DbSizeInUse:      s.sizeInUse(),
		Leader:           s.node.Lead(),
		RaftIndex:        s.node.CommitIndex(),
		RaftTerm:         s.node.Term(),
		RaftAppliedIndex: s.applier.Applied(),
		DbSizeQuota:      s.quota(),
		StorageVersion:   version.EtcdCluster,
	}
	for _, a := range s.applier.Alarms() {
		resp.Errors = append(resp.Errors, fmt.Sprintf("memberID:%d alarm:%s", a.MemberID, a.Alarm))
	}
	resp.IsLearner = s.isLearner()
	return resp, nil
}

// Defragment compacts the whole store in the background compaction
// machinery; reads and writes go on meanwhile.
func (s *Server) Defragment(ctx context.Context) error {
	s.lg.Info("defragmenting", zap.Int64("current-db-size-bytes", s.eng.Size()))
	done := make(chan error, 1)
	go func() { done <- s.eng.CompactAll(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	s.lg.Info("defragmented", zap.Int64("current-db-size-bytes", s.eng.Size()))
	return nil
}

// MoveLeader hands leadership to target.
func (s *Server) MoveLeader(ctx context.Context, target uint64) error {
	if s.node.Lead() != s.id.MemberID {
		return rpctypes.ErrGRPCNotLeader
	}
	if s.members.Member(target) == nil {
		return rpctypes.ErrGRPCBadLeaderTransferee
	}
	if target == s.id.MemberID {
		return nil
	}
	s.node.TransferLeadership(ctx, s.id.MemberID, target)
	for s.node.Lead() != target {
		select {
		case <-ctx.Done():
			return rpctypes.ErrGRPCTimeoutDueToLeaderFail
		case <-s.stopC:
			return rpctypes.ErrGRPCStopped
		default:
		}
		if err := s.waitLeaderChange(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) waitLeaderChange(ctx context.Context) error {
	t := newTimer()
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Snapshot writes an etcd-format snapshot of the current state to w.
func (s *Server) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	return s.writeSnapshot(ctx, w)
}

var errNotReady = errors.New("member is not ready")

// isLearner reports whether this member is a learner: it serves only
// serializable reads and status, as in etcd.
// It is read on every request, so it is kept in a flag that syncPeers
// refreshes whenever the member set changes.
func (s *Server) isLearner() bool { return s.learner.Load() }

// IsLearner reports whether this member is a learner (the KV service
// refuses it every txn, as etcd does).
func (s *Server) IsLearner() bool { return s.isLearner() }
