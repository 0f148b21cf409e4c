package apply

import (
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

var errNotReadOnly = errors.New("apply: txn is not read-only")

// ReadOnlyTxn reports whether no branch of t (nested txns included) can
// change anything: such a txn is served from a member's store, like a
// range, instead of through Raft.
func ReadOnlyTxn(t *pb.TxnRequest) bool { return !txnChanges(t) }

// SerializableTxn reports whether a read-only txn may skip the
// linearizable read barrier: every operation of both branches is a
// serializable range (vacuously so for a txn without operations), as etcd
// decides.
func SerializableTxn(t *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			if r := op.GetRequestRange(); r == nil || !r.Serializable {
				return false
			}
		}
	}
	return true
}

// ReadTxn serves a read-only txn from r, which must read every range at
// one revision (an mvcc.View): compares, those of nested txns included,
// are decided first, then the chosen ranges run, as the Raft path does.
// The response header carries only the revision; the caller fills the rest.
func ReadTxn(r Reader, t *pb.TxnRequest, rev int64) (*pb.TxnResponse, error) {
	path := txnPath(r, t, nil)
	resp, err := readTxn(r, t, &path)
	if err != nil {
		return nil, err
	}
	resp.Header.Revision = rev
	return resp, nil
}

func readTxn(r Reader, t *pb.TxnRequest, path *[]bool) (*pb.TxnResponse, error) {
	ok := (*path)[0]
	*path = (*path)[1:]
	resp := &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: ok}
	for _, op := range branch(t, ok) {
		switch o := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			rr, err := Range(r, o.RequestRange)
			if err != nil {
				return nil, err
			}
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rr}})
		case *pb.RequestOp_RequestTxn:
			nested, err := readTxn(r, o.RequestTxn, path)
			if err != nil {
				return nil, err
			}
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: nested}})
		default:
			return nil, errNotReadOnly
		}
	}
	return resp, nil
}
