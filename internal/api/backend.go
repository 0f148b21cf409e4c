// Package api serves etcd's v3 API: the gRPC services (KV, Watch, Lease,
// Maintenance, Cluster, Lock, Election) and the HTTP endpoints on the
// client port. Handlers validate requests once, here, then either read the
// store (serializable reads, or after a linearizable ReadIndex) or propose
// through Raft (writes). They reach the server only through Backend.
package api

import (
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/apply"
	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/propose"
)

// Backend is what the handlers need from the server.
type Backend interface {
	// Propose sends a request through Raft and returns its applied result.
	Propose(ctx context.Context, r *pb.InternalRaftRequest) (proto.Message, error)
	// LinearizableRead returns once a read started now sees every write
	// acknowledged before it.
	LinearizableRead(ctx context.Context) error
	// KV is the member's MVCC store.
	KV() *mvcc.Store
	// Lessor is the member's lessor.
	Lessor() *lease.Lessor
	// Header is a response header with cluster, member, revision and term.
	Header() *pb.ResponseHeader
	// NewID returns a new cluster-unique ID (server-chosen lease IDs).
	NewID() uint64
	// IsLearner reports whether this member is a Raft learner (which
	// serves no txn and no linearizable read).
	IsLearner() bool
}

// Limits are the request limits, from --max-request-bytes and --max-txn-ops.
type Limits struct {
	MaxRequestBytes int
	MaxTxnOps       int
}

// toGRPC maps internal errors to etcd's gRPC errors, so clients see the
// same codes and messages as from etcd.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, mvcc.ErrCompacted):
		return rpctypes.ErrGRPCCompacted
	case errors.Is(err, mvcc.ErrFutureRev):
		return rpctypes.ErrGRPCFutureRev
	case errors.Is(err, apply.ErrNoSpace):
		return rpctypes.ErrGRPCNoSpace
	case errors.Is(err, apply.ErrCorrupt):
		return rpctypes.ErrGRPCCorrupt
	case errors.Is(err, apply.ErrKeyNotFound):
		return rpctypes.ErrGRPCKeyNotFound
	case errors.Is(err, apply.ErrLeaseNotFound), errors.Is(err, lease.ErrLeaseNotFound):
		return rpctypes.ErrGRPCLeaseNotFound
	case errors.Is(err, lease.ErrLeaseExists):
		return rpctypes.ErrGRPCLeaseExist
	case errors.Is(err, lease.ErrLeaseTTLTooLarge):
		return rpctypes.ErrGRPCLeaseTTLTooLarge
	case errors.Is(err, lease.ErrNotPrimary):
		return rpctypes.ErrGRPCNotLeader
	case errors.Is(err, propose.ErrTooLarge):
		return rpctypes.ErrGRPCRequestTooLarge
	case errors.Is(err, propose.ErrTimeout):
		return rpctypes.ErrGRPCTimeout
	case errors.Is(err, propose.ErrStopped):
		return rpctypes.ErrGRPCStopped
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, context.Canceled.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}
