package apply

import (
	"bytes"
	"errors"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/mvcc"
)

// Reader is a view of the store that ranges can be served from: the
// published store for client reads, a Write inside a transaction.
type Reader interface {
	Range(key, end []byte, o mvcc.RangeOptions) (*mvcc.RangeResult, error)
}

// RangeEnd converts a request's range_end to the store's convention: nil
// for a single key, empty for "every key from key on" (etcd's "\x00").
func RangeEnd(end []byte) []byte {
	if len(end) == 0 {
		return nil
	}
	if len(end) == 1 && end[0] == 0 {
		return []byte{}
	}
	return end
}

// Range serves a RangeRequest from r, with etcd's semantics for limit,
// sorting, revision filters, keys_only and count_only. The response header
// carries only the revision; the caller fills the rest.
func Range(r Reader, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	limit := req.Limit
	if req.SortOrder != pb.RangeRequest_NONE ||
		req.MinModRevision != 0 || req.MaxModRevision != 0 ||
		req.MinCreateRevision != 0 || req.MaxCreateRevision != 0 {
		// Filtering and sorting need every key; truncate afterwards.
		limit = 0
	}
	if limit > 0 {
		limit++ // one more, to know whether there is more
	}
	rr, err := r.Range(req.Key, RangeEnd(req.RangeEnd), mvcc.RangeOptions{
		Rev: req.Revision, Limit: limit, Count: req.CountOnly,
		// Keys only, unless sorted by value: no record needs reading.
		KeysOnly: req.KeysOnly && req.SortTarget != pb.RangeRequest_VALUE,
	})
	if err != nil {
		return nil, err
	}
	kvs := rr.KVs
	if req.MaxModRevision != 0 {
		kvs = filterKVs(kvs, func(kv *mvccpb.KeyValue) bool { return kv.ModRevision <= req.MaxModRevision })
	}
	if req.MinModRevision != 0 {
		kvs = filterKVs(kvs, func(kv *mvccpb.KeyValue) bool { return kv.ModRevision >= req.MinModRevision })
	}
	if req.MaxCreateRevision != 0 {
		kvs = filterKVs(kvs, func(kv *mvccpb.KeyValue) bool { return kv.CreateRevision <= req.MaxCreateRevision })
	}
	if req.MinCreateRevision != 0 {
		kvs = filterKVs(kvs, func(kv *mvccpb.KeyValue) bool { return kv.CreateRevision >= req.MinCreateRevision })
	}
	order := req.SortOrder
	switch {
	case req.SortTarget != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE:
		// The store returns key order; any other target sorts ascending.
		order = pb.RangeRequest_ASCEND
	case req.SortTarget == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND:
		order = pb.RangeRequest_NONE // already in key order
	}
	if order != pb.RangeRequest_NONE {
		sortKVs(kvs, req.SortTarget, order == pb.RangeRequest_DESCEND)
	}
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: rr.Rev}, Count: int64(rr.Count)}
	if req.Limit > 0 && int64(len(kvs)) > req.Limit {
		kvs = kvs[:req.Limit]
		resp.More = true
	}
	if req.KeysOnly {
		// etcd's keys-only read leaves out the value, and the lease too
		// unless the keys are sorted by value.
		for _, kv := range kvs {
			kv.Value = nil
			if req.SortTarget != pb.RangeRequest_VALUE {
				kv.Lease = 0
			}
		}
	}
	resp.Kvs = kvs
	return resp, nil
}

func filterKVs(kvs []*mvccpb.KeyValue, keep func(*mvccpb.KeyValue) bool) []*mvccpb.KeyValue {
	out := kvs[:0]
	for _, kv := range kvs {
		if keep(kv) {
			out = append(out, kv)
		}
	}
	return out
}

func sortKVs(kvs []*mvccpb.KeyValue, target pb.RangeRequest_SortTarget, desc bool) {
	var less func(a, b *mvccpb.KeyValue) bool
	switch target {
	case pb.RangeRequest_KEY:
		less = func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Key, b.Key) < 0 }
	case pb.RangeRequest_VERSION:
		less = func(a, b *mvccpb.KeyValue) bool { return a.Version < b.Version }
	case pb.RangeRequest_CREATE:
		less = func(a, b *mvccpb.KeyValue) bool { return a.CreateRevision < b.CreateRevision }
	case pb.RangeRequest_MOD:
		less = func(a, b *mvccpb.KeyValue) bool { return a.ModRevision < b.ModRevision }
	case pb.RangeRequest_VALUE:
		less = func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Value, b.Value) < 0 }
	default:
		return
	}
	if desc {
		sort.SliceStable(kvs, func(i, j int) bool { return less(kvs[j], kvs[i]) })
	} else {
		sort.SliceStable(kvs, func(i, j int) bool { return less(kvs[i], kvs[j]) })
	}
}

// put applies a PutRequest inside w.
func (a *Applier) put(w *mvcc.Write, req *pb.PutRequest) (*pb.PutResponse, error) {
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{}}
	val, leaseID := req.Value, req.Lease
	if leaseID != 0 {
		if _, err := a.lessor.Lookup(lease.ID(leaseID)); err != nil {
			return nil, ErrLeaseNotFound
		}
	}
	var prev *mvccpb.KeyValue
	if req.IgnoreValue || req.IgnoreLease || req.PrevKv {
		rr, err := w.Range(req.Key, nil, mvcc.RangeOptions{})
		if err != nil {
			return nil, err
		}
		if len(rr.KVs) > 0 {
			prev = rr.KVs[0]
		}
	}
	if req.IgnoreValue || req.IgnoreLease {
		if prev == nil {
			return nil, ErrKeyNotFound
		}
		if req.IgnoreValue {
			val = prev.Value
		}
		if req.IgnoreLease {
			leaseID = prev.Lease
		}
	}
	if leaseID != 0 {
		if _, err := a.lessor.Lookup(lease.ID(leaseID)); err != nil {
			return nil, ErrLeaseNotFound
		}
	}
	oldLease, err := w.Put(req.Key, val, leaseID)
	if err != nil {
		return nil, err
	}
	if oldLease != 0 && oldLease != leaseID {
		_ = a.lessor.Detach(lease.ID(oldLease), string(req.Key))
	}
	if leaseID != 0 {
		if err := a.lessor.Attach(lease.ID(leaseID), string(req.Key)); err != nil {
			return nil, ErrLeaseNotFound
		}
	}
	if req.PrevKv {
		resp.PrevKv = prev // read above, before the put
	}
	return resp, nil
}

// deleteRange applies a DeleteRangeRequest inside w.
func (a *Applier) deleteRange(w *mvcc.Write, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	deleted, err := w.DeleteRange(req.Key, RangeEnd(req.RangeEnd))
	if err != nil {
		return nil, err
	}
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}, Deleted: int64(len(deleted))}
	for _, kv := range deleted {
		if kv.Lease != 0 {
			_ = a.lessor.Detach(lease.ID(kv.Lease), string(kv.Key))
		}
	}
	if req.PrevKv {
		resp.PrevKvs = deleted
	}
	return resp, nil
}

// txn applies a TxnRequest inside w. Every compare, those of nested txns
// included, is decided against the state before the txn (as etcd does);
// then the chosen operations run in order, each seeing the changes of those
// before it.
func (a *Applier) txn(w *mvcc.Write, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	path := txnPath(w, req, nil)
	// Check what can fail before changing anything, so a failed txn
	// changes nothing (leases exist, ignore_* keys exist, revisions).
	rest := path
	if err := a.checkTxn(w, req, &rest); err != nil {
		return nil, err
	}
	rest = path
	return a.runTxn(w, req, &rest)
}

// txnPath lists the outcome of every txn that will run, in the order
// they run: the txn itself, then the nested txns of its chosen branch.
func txnPath(r Reader, t *pb.TxnRequest, path []bool) []bool {
	ok := true
	for _, c := range t.Compare {
		if !compare(r, c) {
			ok = false
			break
		}
	}
	path = append(path, ok)
	for _, op := range branch(t, ok) {
		if n, isTxn := op.Request.(*pb.RequestOp_RequestTxn); isTxn {
			path = txnPath(r, n.RequestTxn, path)
		}
	}
	return path
}

func branch(t *pb.TxnRequest, ok bool) []*pb.RequestOp {
	if ok {
		return t.Success
	}
	return t.Failure
}

func (a *Applier) checkTxn(w *mvcc.Write, t *pb.TxnRequest, path *[]bool) error {
	ok := (*path)[0]
	*path = (*path)[1:]
	for _, op := range branch(t, ok) {
		switch r := op.Request.(type) {
		case *pb.RequestOp_RequestPut:
			p := r.RequestPut
			if p.Lease != 0 {
				if _, err := a.lessor.Lookup(lease.ID(p.Lease)); err != nil {
					return ErrLeaseNotFound
				}
			}
			if p.IgnoreValue || p.IgnoreLease {
				rr, err := w.Range(p.Key, nil, mvcc.RangeOptions{Count: true})
				if err != nil {
					return err
				}
				if rr.Count == 0 {
					return ErrKeyNotFound
				}
			}
		case *pb.RequestOp_RequestRange:
			rr := r.RequestRange
			if _, err := w.Range(rr.Key, RangeEnd(rr.RangeEnd), mvcc.RangeOptions{Rev: rr.Revision, Count: true}); err != nil {
				return err // compacted or future revision
			}
		case *pb.RequestOp_RequestTxn:
			if err := a.checkTxn(w, r.RequestTxn, path); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *Applier) runTxn(w *mvcc.Write, t *pb.TxnRequest, path *[]bool) (*pb.TxnResponse, error) {
	ok := (*path)[0]
	*path = (*path)[1:]
	resp := &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: ok}
	for _, op := range branch(t, ok) {
		r, err := a.op(w, op, path)
		if err != nil {
			return nil, err
		}
		resp.Responses = append(resp.Responses, r)
	}
	return resp, nil
}

func (a *Applier) op(w *mvcc.Write, op *pb.RequestOp, path *[]bool) (*pb.ResponseOp, error) {
	switch r := op.Request.(type) {
	case *pb.RequestOp_RequestRange:
		resp, err := Range(w, r.RequestRange)
		if err != nil {
			return nil, err
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: resp}}, nil
	case *pb.RequestOp_RequestPut:
		resp, err := a.put(w, r.RequestPut)
		if err != nil {
			return nil, err
		}
		resp.Header.Revision = w.Rev()
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: resp}}, nil
	case *pb.RequestOp_RequestDeleteRange:
		resp, err := a.deleteRange(w, r.RequestDeleteRange)
		if err != nil {
			return nil, err
		}
		resp.Header.Revision = w.Rev() // new only if something changed so far
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: resp}}, nil
	case *pb.RequestOp_RequestTxn:
		resp, err := a.runTxn(w, r.RequestTxn, path)
		if err != nil {
			return nil, err
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: resp}}, nil
	}
	return nil, errors.New("etcdserver: unknown request in txn")
}

// compare evaluates one txn compare against the keys it names.
func compare(r Reader, c *pb.Compare) bool {
	rr, err := r.Range(c.Key, RangeEnd(c.RangeEnd), mvcc.RangeOptions{})
	if err != nil {
		return false
	}
	if len(rr.KVs) == 0 {
		if c.Target == pb.Compare_VALUE {
			// A missing key has no value to compare: always false.
			return false
		}
		return compareKV(c, &mvccpb.KeyValue{})
	}
	for _, kv := range rr.KVs {
		if !compareKV(c, kv) {
			return false
		}
	}
	return true
}

func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var res int
	switch c.Target {
	case pb.Compare_VALUE:
		res = bytes.Compare(kv.Value, c.GetValue())
	case pb.Compare_VERSION:
		res = cmpInt(kv.Version, c.GetVersion())
	case pb.Compare_CREATE:
		res = cmpInt(kv.CreateRevision, c.GetCreateRevision())
	case pb.Compare_MOD:
		res = cmpInt(kv.ModRevision, c.GetModRevision())
	case pb.Compare_LEASE:
		res = cmpInt(kv.Lease, c.GetLease())
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return res == 0
	case pb.Compare_NOT_EQUAL:
		return res != 0
	case pb.Compare_GREATER:
		return res > 0
	case pb.Compare_LESS:
		return res < 0
	}
	return true // an unknown result constrains nothing, as in etcd
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
