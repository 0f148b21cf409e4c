package apply

import (
	"fmt"

	"go.uber.org/zap"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/storage"
)

// applyRequest applies one client request. It returns the response, the
// watch events it produced and the error to report to the client. An
// error leaves the state unchanged.
func (a *Applier) applyRequest(b *pebble.Batch, req *pb.InternalRaftRequest) (proto.Message, []*mvccpb.Event, error) {
	if a.corrupt() && refusedWhenCorrupt(req) {
		return nil, nil, ErrCorrupt
	}
	switch {
	case req.Put != nil:
		if a.NoSpace() {
			return nil, nil, ErrNoSpace
		}
		w := a.kv.Write(b)
		resp, err := a.put(w, req.Put)
		evs := w.End()
		if err != nil {
			return nil, nil, err
		}
		resp.Header.Revision = w.Rev()
		return resp, evs, nil
	case req.DeleteRange != nil:
		w := a.kv.Write(b)
		resp, err := a.deleteRange(w, req.DeleteRange)
		evs := w.End()
		if err != nil {
			return nil, nil, err
		}
		resp.Header.Revision = w.Rev()
		return resp, evs, nil
	case req.Txn != nil:
		if a.NoSpace() && TxnPuts(req.Txn) {
			return nil, nil, ErrNoSpace
		}
		w := a.kv.Write(b)
		resp, err := a.txn(w, req.Txn)
		evs := w.End()
		if err != nil {
			return nil, nil, err
		}
		// Inner responses carry the revision each op saw or made (a
		// nested txn's own header stays 0), as in etcd.
		resp.Header.Revision = w.Rev()
		return resp, evs, nil
	case req.Range != nil:
		resp, err := Range(a.kv.Write(b), req.Range)
		return resp, nil, err
	case req.Compaction != nil:
		rev := req.Compaction.Revision
		if err := a.kv.ScheduleCompaction(b, rev); err != nil {
			return nil, nil, err
		}
		if a.OnCompaction != nil {
			a.OnCompaction(rev)
		}
		return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: a.kv.PendingRev()}}, nil, nil
	case req.LeaseGrant != nil:
		if a.NoSpace() {
			return nil, nil, ErrNoSpace
		}
		rec, err := a.lessor.Grant(lease.ID(req.LeaseGrant.ID), req.LeaseGrant.TTL)
		if err != nil {
			return nil, nil, err
		}
		if err := b.Set(storage.LeaseKey(int64(rec.ID)), EncodeLease(rec), nil); err != nil {
			return nil, nil, err
		}
		return &pb.LeaseGrantResponse{
			Header: &pb.ResponseHeader{Revision: a.kv.PendingRev()},
			ID:     int64(rec.ID), TTL: rec.TTL,
		}, nil, nil
	case req.LeaseRevoke != nil:
		return a.revoke(b, req.LeaseRevoke.ID)
	case req.LeaseCheckpoint != nil:
		for _, cp := range req.LeaseCheckpoint.Checkpoints {
			rec, err := a.lessor.Checkpoint(lease.ID(cp.ID), cp.Remaining_TTL)
			if err != nil {
				continue // revoked meanwhile
			}
			if err := b.Set(storage.LeaseKey(int64(rec.ID)), EncodeLease(rec), nil); err != nil {
				return nil, nil, err
			}
		}
		return &pb.LeaseCheckpointResponse{Header: &pb.ResponseHeader{Revision: a.kv.PendingRev()}}, nil, nil
	case req.Alarm != nil:
		return a.alarm(b, req.Alarm)
	case req.ClusterMemberAttrSet != nil:
		if a.members != nil {
			if err := a.members.SetAttributes(b, req.ClusterMemberAttrSet); err != nil {
				return nil, nil, err
			}
		}
		return &pb.ResponseHeader{}, nil, nil
	case req.ClusterVersionSet != nil, req.DowngradeInfoSet != nil:
		return &pb.ResponseHeader{}, nil, nil
	}
	return nil, nil, ErrUnknownRequest
}

// revoke deletes a lease and, in one revision, every key attached to it.
func (a *Applier) revoke(b *pebble.Batch, id int64) (proto.Message, []*mvccpb.Event, error) {
	keys, err := a.lessor.Revoke(lease.ID(id))
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(keys)
	w := a.kv.Write(b)
	for _, k := range keys {
		if _, err := w.DeleteRange([]byte(k), nil); err != nil {
			return nil, nil, err
		}
	}
	evs := w.End()
	if err := b.Delete(storage.LeaseKey(id), nil); err != nil {
		return nil, nil, err
	}
	return &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: w.Rev()}}, evs, nil
}

func (a *Applier) alarm(b *pebble.Batch, req *pb.AlarmRequest) (proto.Message, []*mvccpb.Event, error) {
	resp := &pb.AlarmResponse{Header: &pb.ResponseHeader{Revision: a.kv.PendingRev()}}
	switch req.Action {
	case pb.AlarmRequest_GET:
		for _, al := range a.Alarms() {
			if req.Alarm == pb.AlarmType_NONE || al.Alarm == req.Alarm {
				resp.Alarms = append(resp.Alarms, al)
			}
		}
	case pb.AlarmRequest_ACTIVATE:
		if req.Alarm == pb.AlarmType_NONE {
			break
		}
		k := alarmKey{req.MemberID, req.Alarm}
		a.mu.Lock()
		_, had := a.alarms[k]
		a.alarms[k] = struct{}{}
		a.mu.Unlock()
		if err := b.Set(storage.AlarmKey(req.MemberID, int32(req.Alarm)), nil, nil); err != nil {
			return nil, nil, err
		}
		if !had {
			a.lg.Warn("alarm raised", alarmFields(req)...)
		}
		resp.Alarms = []*pb.AlarmMember{{MemberID: req.MemberID, Alarm: req.Alarm}}
	case pb.AlarmRequest_DEACTIVATE:
		var keys []alarmKey
		a.mu.Lock()
		if k := (alarmKey{req.MemberID, req.Alarm}); true {
			if _, ok := a.alarms[k]; ok {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			delete(a.alarms, k)
		}
		a.mu.Unlock()
		for _, k := range keys {
			if err := b.Delete(storage.AlarmKey(k.member, int32(k.alarm)), nil); err != nil {
				return nil, nil, err
			}
			resp.Alarms = append(resp.Alarms, &pb.AlarmMember{MemberID: k.member, Alarm: k.alarm})
			a.lg.Warn("alarm disarmed", alarmFields(&pb.AlarmRequest{MemberID: k.member, Alarm: k.alarm})...)
		}
		sortAlarms(resp.Alarms)
	}
	return resp, nil, nil
}

// refusedWhenCorrupt lists what etcd refuses under the CORRUPT alarm:
// every change and every read that goes through Raft, but not a
// read-only txn (etcd serves those without Raft).
func refusedWhenCorrupt(req *pb.InternalRaftRequest) bool {
	switch {
	case req.Txn != nil:
		return txnChanges(req.Txn)
	case req.Put != nil, req.DeleteRange != nil, req.Range != nil, req.Compaction != nil,
		req.LeaseGrant != nil, req.LeaseRevoke != nil:
		return true
	}
	return false
}

func txnChanges(t *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			switch r := op.Request.(type) {
			case *pb.RequestOp_RequestPut, *pb.RequestOp_RequestDeleteRange:
				return true
			case *pb.RequestOp_RequestTxn:
				if txnChanges(r.RequestTxn) {
					return true
				}
			}
		}
	}
	return false
}

// TxnPuts reports whether a txn puts a key in any branch (what the
// NOSPACE alarm and the quota refuse).
func TxnPuts(t *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			switch r := op.Request.(type) {
			case *pb.RequestOp_RequestPut:
				return true
			case *pb.RequestOp_RequestTxn:
				if TxnPuts(r.RequestTxn) {
					return true
				}
			}
		}
	}
	return false
}

func sortAlarms(as []*pb.AlarmMember) {
	sort.Slice(as, func(i, j int) bool {
		if as[i].MemberID != as[j].MemberID {
			return as[i].MemberID < as[j].MemberID
		}
		return as[i].Alarm < as[j].Alarm
	})
}

// EncodeLease encodes a lease record as etcd's leasepb.Lease
// (ID = 1, TTL = 2, RemainingTTL = 3), so snapshots carry it unchanged.
func EncodeLease(r lease.Record) []byte {
	var b []byte
	if r.ID != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.ID))
	}
	if r.TTL != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.TTL))
	}
	if r.RemainingTTL != 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.RemainingTTL))
	}
	return b
}

// DecodeLease decodes a record made by EncodeLease.
func DecodeLease(b []byte) (lease.Record, error) {
	var r lease.Record
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return r, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.VarintType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return r, protowire.ParseError(m)
			}
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeVarint(b)
		if m < 0 {
			return r, protowire.ParseError(m)
		}
		b = b[m:]
		switch num {
		case 1:
			r.ID = lease.ID(v)
		case 2:
			r.TTL = int64(v)
		case 3:
			r.RemainingTTL = int64(v)
		}
	}
	return r, nil
}

func alarmFields(req *pb.AlarmRequest) []zap.Field {
	return []zap.Field{
		zap.String("alarm", req.Alarm.String()),
		zap.String("member-id", fmt.Sprintf("%x", req.MemberID)),
	}
}
