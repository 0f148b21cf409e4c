package api_test

import (
	"context"
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/api"
	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/mvcc"
)

// learnerBackend is a member that is a learner: every call that could
// serve the txn fails the test.
type learnerBackend struct{ t *testing.T }

func (b learnerBackend) Propose(context.Context, *pb.InternalRaftRequest) (proto.Message, error) {
	b.t.Fatal("a learner proposed a txn")
	return nil, nil
}

func (b learnerBackend) LinearizableRead(context.Context) error {
	return rpctypes.ErrGRPCNotSupportedForLearner
}

func (b learnerBackend) KV() *mvcc.Store {
	b.t.Fatal("a learner read the store for a txn")
	return nil
}

func (learnerBackend) Lessor() *lease.Lessor      { return nil }
func (learnerBackend) Header() *pb.ResponseHeader { return &pb.ResponseHeader{} }
func (learnerBackend) NewID() uint64              { return 1 }
func (learnerBackend) IsLearner() bool            { return true }

// TestLearnerRefusesReadOnlyTxn: a learner serves no txn, not even a
// read-only one whose ranges are all serializable (as etcd).
func TestLearnerRefusesReadOnlyTxn(t *testing.T) {
	kv := api.NewKVServer(learnerBackend{t}, api.Limits{MaxTxnOps: 128})
	for _, serializable := range []bool{false, true} {
		txn := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{
			RequestRange: &pb.RangeRequest{Key: []byte("a"), Serializable: serializable},
		}}}}
		if _, err := kv.Txn(context.Background(), txn); !errors.Is(err, rpctypes.ErrGRPCNotSupportedForLearner) {
			t.Fatalf("serializable=%v: Txn on a learner: %v, want %v", serializable, err, rpctypes.ErrGRPCNotSupportedForLearner)
		}
	}
}
