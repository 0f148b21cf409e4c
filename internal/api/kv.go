package api

import (
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/cairn-kv/cairn/internal/apply"
	"github.com/cairn-kv/cairn/internal/mvcc"
)

// KVServer serves the KV service.
type KVServer struct {
	pb.UnimplementedKVServer
	b      Backend
	limits Limits
}

// NewKVServer returns the KV service over b.
func NewKVServer(b Backend, l Limits) *KVServer { return &KVServer{b: b, limits: l} }

// Range reads keys, serializable from the local store or linearizable
// after a ReadIndex.
func (s *KVServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := checkRange(r); err != nil {
		return nil, err
	}
	if !r.Serializable {
		if err := s.b.LinearizableRead(ctx); err != nil {
			return nil, toGRPC(err)
		}
	}
	resp, err := apply.Range(s.b.KV(), r)
	if err != nil {
		return nil, toGRPC(err)
	}
	fillHeader(resp.Header, s.b.Header())
	return resp, nil
}

// Put writes a key through Raft.
func (s *KVServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkPut(r); err != nil {
		return nil, err
	}
	resp, err := s.b.Propose(ctx, &pb.InternalRaftRequest{Put: r})
	if err != nil {
		return nil, toGRPC(err)
	}
	out := resp.(*pb.PutResponse)
	fillHeader(out.Header, s.b.Header())
	return out, nil
}

// DeleteRange deletes keys through Raft.
func (s *KVServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := checkDeleteRange(r); err != nil {
		return nil, err
	}
	resp, err := s.b.Propose(ctx, &pb.InternalRaftRequest{DeleteRange: r})
	if err != nil {
		return nil, toGRPC(err)
	}
	out := resp.(*pb.DeleteRangeResponse)
	fillHeader(out.Header, s.b.Header())
	return out, nil
}

// Txn runs a transaction through Raft: compares and operations see one
// consistent state, and all its changes share one revision. A txn that
// cannot change anything is served like a range instead: from the local
// store after a ReadIndex (without one if all its ranges are
// serializable), its compares and ranges read at one revision.
func (s *KVServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := checkTxn(r, s.limits.MaxTxnOps); err != nil {
		return nil, err
	}
	if apply.ReadOnlyTxn(r) {
		return s.readTxn(ctx, r)
	}
	resp, err := s.b.Propose(ctx, &pb.InternalRaftRequest{Txn: r})
	if err != nil {
		return nil, toGRPC(err)
	}
	out := resp.(*pb.TxnResponse)
	fillHeader(out.Header, s.b.Header()) // inner responses carry only the revision, as in etcd
	return out, nil
}

// readTxn serves a read-only txn from the local store.
func (s *KVServer) readTxn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	// A learner serves no txn, read-only or not (etcd allows it only
	// serializable ranges and status).
	if s.b.IsLearner() {
		return nil, rpctypes.ErrGRPCNotSupportedForLearner
	}
	if !apply.SerializableTxn(r) {
		if err := s.b.LinearizableRead(ctx); err != nil {
			return nil, toGRPC(err)
		}
	}
	kv := s.b.KV()
	for attempt := 0; ; attempt++ {
		v := kv.View()
		resp, err := apply.ReadTxn(v, r, v.Rev())
		// A compaction past the view's revision (writes and a
		// compaction landed while the txn read): read again at the new
		// revision, as the txn asked for none.
		if errors.Is(err, mvcc.ErrCompacted) && attempt < 3 && kv.CompactRev() > v.Rev() {
			continue
		}
		if err != nil {
			return nil, toGRPC(err)
		}
		fillHeader(resp.Header, s.b.Header())
		return resp, nil
	}
}

// Compact compacts the history at a revision; with physical set it answers
// once the compacted records are gone from the store.
func (s *KVServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := s.b.Propose(ctx, &pb.InternalRaftRequest{Compaction: r})
	if err != nil {
		return nil, toGRPC(err)
	}
	if r.Physical {
		if pc, ok := s.b.(PhysicalCompactor); ok {
			if err := pc.WaitPhysicalCompaction(ctx, r.Revision); err != nil {
				return nil, toGRPC(err)
			}
		}
	}
	out := resp.(*pb.CompactionResponse)
	fillHeader(out.Header, s.b.Header())
	return out, nil
}

// PhysicalCompactor is implemented by a backend that can wait for a
// compaction's records to be removed.
type PhysicalCompactor interface {
	WaitPhysicalCompaction(ctx context.Context, rev int64) error
}

// fillHeader sets the cluster fields of h from src, keeping h's revision
// when it has one.
func fillHeader(h *pb.ResponseHeader, src *pb.ResponseHeader) {
	if h == nil {
		return
	}
	h.ClusterId = src.ClusterId
	h.MemberId = src.MemberId
	h.RaftTerm = src.RaftTerm
	if h.Revision == 0 {
		h.Revision = src.Revision
	}
}
