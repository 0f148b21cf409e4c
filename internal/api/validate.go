package api

import (
	"bytes"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Request checks, with etcd's errors. They run once, before a request is
// proposed or served.

func checkRange(r *pb.RangeRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

func checkPut(r *pb.PutRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if r.IgnoreValue && len(r.Value) != 0 {
		return rpctypes.ErrGRPCValueProvided
	}
	if r.IgnoreLease && r.Lease != 0 {
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

func checkDeleteRange(r *pb.DeleteRangeRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	return nil
}

func checkTxn(r *pb.TxnRequest, maxOps int) error {
	if err := checkTxnOps(r, maxOps); err != nil {
		return err
	}
	// Duplicate keys are looked for once, over the whole request, after
	// every operation passed its own checks (etcd's order).
	if _, _, err := txnWriteSet(r.Success); err != nil {
		return err
	}
	if _, _, err := txnWriteSet(r.Failure); err != nil {
		return err
	}
	return nil
}

func checkTxnOps(r *pb.TxnRequest, maxOps int) error {
	n := len(r.Compare)
	if len(r.Success) > n {
		n = len(r.Success)
	}
	if len(r.Failure) > n {
		n = len(r.Failure)
	}
	if n > maxOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, c := range r.Compare {
		if len(c.Key) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if err := checkOp(op, maxOps-n); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkOp(op *pb.RequestOp, maxOps int) error {
	switch x := op.Request.(type) {
	case *pb.RequestOp_RequestRange:
		return checkRange(x.RequestRange)
	case *pb.RequestOp_RequestPut:
		return checkPut(x.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		return checkDeleteRange(x.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return checkTxnOps(x.RequestTxn, maxOps)
	}
	return rpctypes.ErrGRPCKeyNotFound // an operation with no request, as etcd answers
}

// span is a deleted key or key range; an empty end means to the end of
// the key space.
type span struct {
	key, end []byte
	single   bool
}

func (s span) contains(k []byte) bool {
	if s.single {
		return bytes.Equal(s.key, k)
	}
	return bytes.Compare(k, s.key) >= 0 && (len(s.end) == 0 || bytes.Compare(k, s.end) < 0)
}

func intersects(dels []span, k []byte) bool {
	for _, d := range dels {
		if d.contains(k) {
			return true
		}
	}
	return false
}

// txnWriteSet collects the keys put and the ranges deleted by a branch,
// and rejects a branch that puts one key twice or puts a key it also
// deletes (etcd's duplicate key rule). The two branches of a nested txn
// may put the same key, since only one of them runs.
func txnWriteSet(ops []*pb.RequestOp) (map[string]struct{}, []span, error) {
	var dels []span
	for _, op := range ops {
		if d, ok := op.Request.(*pb.RequestOp_RequestDeleteRange); ok && d.RequestDeleteRange != nil {
			r := d.RequestDeleteRange
			if len(r.RangeEnd) == 1 && r.RangeEnd[0] == 0 {
				// etcd checks "from key" deletes as the interval
				// [key, "\x00"), which holds no key: it never conflicts.
				continue
			}
			s := span{key: r.Key, single: len(r.RangeEnd) == 0, end: r.RangeEnd}
			dels = append(dels, s)
		}
	}
	puts := map[string]struct{}{}
	for _, op := range ops {
		t, ok := op.Request.(*pb.RequestOp_RequestTxn)
		if !ok || t.RequestTxn == nil {
			continue
		}
		putsThen, delsThen, err := txnWriteSet(t.RequestTxn.Success)
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := txnWriteSet(t.RequestTxn.Failure)
		if err != nil {
			return nil, nil, err
		}
		for k := range putsThen {
			if _, dup := puts[k]; dup || intersects(dels, []byte(k)) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			if _, dup := puts[k]; dup {
				if _, fromThen := putsThen[k]; !fromThen {
					return nil, nil, rpctypes.ErrGRPCDuplicateKey
				}
			}
			if intersects(dels, []byte(k)) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels = append(dels, delsThen...)
		dels = append(dels, delsElse...)
	}
	for _, op := range ops {
		p, ok := op.Request.(*pb.RequestOp_RequestPut)
		if !ok || p.RequestPut == nil {
			continue
		}
		k := string(p.RequestPut.Key)
		if _, dup := puts[k]; dup || intersects(dels, p.RequestPut.Key) {
			return nil, nil, rpctypes.ErrGRPCDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}
