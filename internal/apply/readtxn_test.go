package apply_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/apply"
	"github.com/cairn-kv/cairn/internal/propose"
)

// applyOne applies r in one entry, as the Raft loop does, and returns its
// result.
func (e *scriptEnv) applyOne(r *pb.InternalRaftRequest) propose.Result {
	e.t.Helper()
	e.index++
	e.nextID++
	r.Header = &pb.RequestHeader{ID: e.nextID}
	data, err := proto.Marshal(r)
	if err != nil {
		e.t.Fatal(err)
	}
	ent := &raftpb.Entry{Term: proto.Uint64(1), Index: proto.Uint64(e.index), Type: raftpb.EntryNormal.Enum(), Data: data}
	if err := e.app.Apply([]*raftpb.Entry{ent}); err != nil {
		e.t.Fatal(err)
	}
	res, ok := e.notes.take(e.nextID)
	if !ok {
		e.t.Fatalf("no result for %v", r)
	}
	return res
}

func randKey(rng *rand.Rand) []byte { return []byte(fmt.Sprintf("k%d", rng.IntN(12))) }

func randRangeOp(rng *rand.Rand, rev int64) *pb.RangeRequest {
	r := &pb.RangeRequest{Key: randKey(rng)}
	switch rng.IntN(3) {
	case 1:
		r.RangeEnd = randKey(rng)
	case 2:
		r.RangeEnd = []byte{0}
	}
	if rng.IntN(3) == 0 {
		r.Limit = rng.Int64N(4)
	}
	if rng.IntN(3) == 0 {
		r.Revision = rng.Int64N(rev + 3) // sometimes compacted or future
	}
	r.CountOnly = rng.IntN(6) == 0
	r.KeysOnly = rng.IntN(6) == 0
	if rng.IntN(4) == 0 {
		r.SortTarget = pb.RangeRequest_SortTarget(rng.IntN(5))
		r.SortOrder = pb.RangeRequest_SortOrder(rng.IntN(3))
	}
	return r
}

func randCompare(rng *rand.Rand, rev int64) *pb.Compare {
	c := &pb.Compare{Key: randKey(rng), Result: pb.Compare_CompareResult(rng.IntN(4))}
	if rng.IntN(4) == 0 {
		c.RangeEnd = randKey(rng)
	}
	switch rng.IntN(5) {
	case 0:
		c.Target, c.TargetUnion = pb.Compare_VALUE, &pb.Compare_Value{Value: []byte(fmt.Sprintf("v%d", rng.IntN(5)))}
	case 1:
		c.Target, c.TargetUnion = pb.Compare_VERSION, &pb.Compare_Version{Version: rng.Int64N(4)}
	case 2:
		c.Target, c.TargetUnion = pb.Compare_CREATE, &pb.Compare_CreateRevision{CreateRevision: rng.Int64N(rev + 1)}
	case 3:
		c.Target, c.TargetUnion = pb.Compare_MOD, &pb.Compare_ModRevision{ModRevision: rng.Int64N(rev + 1)}
	default:
		c.Target, c.TargetUnion = pb.Compare_LEASE, &pb.Compare_Lease{Lease: 0}
	}
	return c
}

func randReadTxn(rng *rand.Rand, rev int64, depth int) *pb.TxnRequest {
	t := &pb.TxnRequest{}
	for n := rng.IntN(3); n > 0; n-- {
		t.Compare = append(t.Compare, randCompare(rng, rev))
	}
	for _, ops := range []*[]*pb.RequestOp{&t.Success, &t.Failure} {
		for n := rng.IntN(3); n > 0; n-- {
			if depth < 2 && rng.IntN(4) == 0 {
				*ops = append(*ops, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: randReadTxn(rng, rev, depth+1)}})
				continue
			}
			*ops = append(*ops, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: randRangeOp(rng, rev)}})
		}
	}
	return t
}

// TestReadTxnMatchesRaftPath serves random read-only txns (compares of
// every target, ranges with limits, sorting, revisions, nested txns) both
// through the applier, as an entry, and with ReadTxn over a store view:
// the responses and errors must be the same.
func TestReadTxnMatchesRaftPath(t *testing.T) {
	e := newScriptEnv(t)
	rng := rand.New(rand.NewPCG(3, 4))
	compacted := false
	errs, succeeded := 0, 0
	for step := 0; step < 400; step++ {
		// Change the store a little.
		switch p := rng.IntN(10); {
		case p < 5:
			e.applyOne(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: randKey(rng), Value: []byte(fmt.Sprintf("v%d", rng.IntN(5)))}})
		case p < 7:
			e.applyOne(&pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: randKey(rng)}})
		case p < 8 && !compacted && e.kv.Rev() > 20:
			e.applyOne(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: e.kv.Rev() - 10}})
			compacted = true
		}
		txn := randReadTxn(rng, e.kv.Rev(), 0)
		if !apply.ReadOnlyTxn(txn) {
			t.Fatalf("generated txn is not read-only: %v", txn)
		}
		v := e.kv.View()
		got, gotErr := apply.ReadTxn(v, txn, v.Rev())
		want := e.applyOne(&pb.InternalRaftRequest{Txn: proto.Clone(txn).(*pb.TxnRequest)})
		if (gotErr == nil) != (want.Err == nil) || (gotErr != nil && !errors.Is(gotErr, want.Err) && gotErr.Error() != want.Err.Error()) {
			t.Fatalf("step %d: txn %v: ReadTxn error %v, Raft path error %v", step, txn, gotErr, want.Err)
		}
		if gotErr != nil {
			errs++
			continue
		}
		if !proto.Equal(got, want.Resp) {
			t.Fatalf("step %d: txn %v:\nReadTxn   %v\nRaft path %v", step, txn, got, want.Resp)
		}
		if got.Succeeded {
			succeeded++
		}
	}
	// The random txns must cover errors and both branches.
	if errs == 0 || succeeded == 0 || succeeded == 400-errs {
		t.Fatalf("weak coverage: %d errors, %d succeeded of 400", errs, succeeded)
	}
	t.Logf("%d errors, %d succeeded of 400", errs, succeeded)
}

func TestReadOnlyAndSerializableTxn(t *testing.T) {
	rng := func(s bool) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Serializable: s}}}
	}
	put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a")}}}
	nested := func(ops ...*pb.RequestOp) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Failure: ops}}}
	}
	for _, c := range []struct {
		name             string
		txn              *pb.TxnRequest
		readOnly, serial bool
	}{
		{"empty", &pb.TxnRequest{}, true, true},
		{"ranges", &pb.TxnRequest{Success: []*pb.RequestOp{rng(false)}, Failure: []*pb.RequestOp{rng(true)}}, true, false},
		{"serializable ranges", &pb.TxnRequest{Success: []*pb.RequestOp{rng(true)}, Failure: []*pb.RequestOp{rng(true)}}, true, true},
		{"put in failure", &pb.TxnRequest{Success: []*pb.RequestOp{rng(true)}, Failure: []*pb.RequestOp{put}}, false, false},
		{"nested put", &pb.TxnRequest{Success: []*pb.RequestOp{nested(rng(true), put)}}, false, false},
		{"nested ranges", &pb.TxnRequest{Success: []*pb.RequestOp{nested(rng(true))}}, true, false},
	} {
		if got := apply.ReadOnlyTxn(c.txn); got != c.readOnly {
			t.Errorf("%s: ReadOnlyTxn = %v, want %v", c.name, got, c.readOnly)
		}
		if got := apply.SerializableTxn(c.txn); got != c.serial {
			t.Errorf("%s: SerializableTxn = %v, want %v", c.name, got, c.serial)
		}
	}
}
