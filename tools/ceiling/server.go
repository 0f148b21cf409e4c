package main

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/version"
)

const (
	clusterID = 0xce111e6
	memberID  = 0x1
	raftTerm  = 1
	// leaseTTL is what KeepAlive, TimeToLive and Leases report: nothing
	// is stored, so every lease is alive with this TTL.
	leaseTTL = 60
	// watchSendQueue bounds the responses waiting for one watch stream.
	watchSendQueue = 1024
)

// server is the state ceiling keeps: a revision counter, lease ids and
// the registered watchers. No key or value is stored.
type server struct {
	rev     atomic.Int64
	leaseID atomic.Int64
	watchID atomic.Int64

	nwatchers atomic.Int64 // lets Put skip the lock when nobody watches
	mu        sync.RWMutex
	byKey     map[string][]*watcher // single-key watchers
	ranges    []*watcher            // range and prefix watchers
}

func newServer() *server {
	s := &server{byKey: map[string][]*watcher{}}
	s.rev.Store(1) // a fresh etcd is at revision 1
	return s
}

func (s *server) header(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: clusterID, MemberId: memberID, Revision: rev, RaftTerm: raftTerm}
}

// --- KV ----------------------------------------------------------------

type kvServer struct {
	pb.UnimplementedKVServer
	s *server
}

func (s *server) kv() *kvServer { return &kvServer{s: s} }

func (k *kvServer) Range(_ context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	return &pb.RangeResponse{Header: k.s.header(k.s.rev.Load())}, nil
}

func (k *kvServer) Put(_ context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	rev := k.s.rev.Add(1)
	k.s.notify(rev, r)
	return &pb.PutResponse{Header: k.s.header(rev)}, nil
}

func (k *kvServer) DeleteRange(_ context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return &pb.DeleteRangeResponse{Header: k.s.header(k.s.rev.Add(1))}, nil
}

func (k *kvServer) Txn(_ context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	rev := k.s.rev.Load()
	if hasWrite(r.Success) {
		rev = k.s.rev.Add(1)
	}
	h := k.s.header(rev)
	return &pb.TxnResponse{Header: h, Succeeded: true, Responses: k.s.answerOps(rev, h, r.Success)}, nil
}

// hasWrite reports whether ops (or a nested txn's success branch) write.
func hasWrite(ops []*pb.RequestOp) bool {
	for _, op := range ops {
		switch v := op.Request.(type) {
		case *pb.RequestOp_RequestPut, *pb.RequestOp_RequestDeleteRange:
			return true
		case *pb.RequestOp_RequestTxn:
			if hasWrite(v.RequestTxn.Success) {
				return true
			}
		}
	}
	return false
}

// answerOps builds one empty response of the right kind per op and
// delivers the puts to watchers.
func (s *server) answerOps(rev int64, h *pb.ResponseHeader, ops []*pb.RequestOp) []*pb.ResponseOp {
	out := make([]*pb.ResponseOp, len(ops))
	for i, op := range ops {
		switch v := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			out[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: h}}}
		case *pb.RequestOp_RequestPut:
			s.notify(rev, v.RequestPut)
			out[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: h}}}
		case *pb.RequestOp_RequestDeleteRange:
			out[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Header: h}}}
		case *pb.RequestOp_RequestTxn:
			out[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{
				Header: h, Succeeded: true, Responses: s.answerOps(rev, h, v.RequestTxn.Success)}}}
		default:
			out[i] = &pb.ResponseOp{}
		}
	}
	return out
}

func (k *kvServer) Compact(_ context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return &pb.CompactionResponse{Header: k.s.header(k.s.rev.Load())}, nil
}

// --- Lease -------------------------------------------------------------

type leaseServer struct {
	pb.UnimplementedLeaseServer
	s *server
}

func (s *server) lease() *leaseServer { return &leaseServer{s: s} }

func (l *leaseServer) LeaseGrant(_ context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	id := r.ID
	if id == 0 {
		id = l.s.leaseID.Add(1)
	}
	return &pb.LeaseGrantResponse{Header: l.s.header(l.s.rev.Load()), ID: id, TTL: r.TTL}, nil
}

func (l *leaseServer) LeaseRevoke(_ context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return &pb.LeaseRevokeResponse{Header: l.s.header(l.s.rev.Load())}, nil
}

func (l *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil // the client closed the stream
		}
		if err := stream.Send(&pb.LeaseKeepAliveResponse{Header: l.s.header(l.s.rev.Load()), ID: req.ID, TTL: leaseTTL}); err != nil {
			return err
		}
	}
}

func (l *leaseServer) LeaseTimeToLive(_ context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return &pb.LeaseTimeToLiveResponse{Header: l.s.header(l.s.rev.Load()), ID: r.ID, TTL: leaseTTL, GrantedTTL: leaseTTL}, nil
}

func (l *leaseServer) LeaseLeases(context.Context, *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	return &pb.LeaseLeasesResponse{Header: l.s.header(l.s.rev.Load())}, nil
}

// --- Maintenance and Cluster ---------------------------------------------

type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	s *server
}

func (s *server) maintenance() *maintenanceServer { return &maintenanceServer{s: s} }

func (m *maintenanceServer) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	rev := m.s.rev.Load()
	return &pb.StatusResponse{
		Header:           m.s.header(rev),
		Version:          version.Version,
		Leader:           memberID,
		RaftIndex:        uint64(rev),
		RaftTerm:         raftTerm,
		RaftAppliedIndex: uint64(rev),
	}, nil
}

type clusterServer struct {
	pb.UnimplementedClusterServer
	s *server
}

func (s *server) cluster() *clusterServer { return &clusterServer{s: s} }

func (c *clusterServer) MemberList(context.Context, *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	return &pb.MemberListResponse{
		Header:  c.s.header(c.s.rev.Load()),
		Members: []*pb.Member{{ID: memberID, Name: "ceiling"}},
	}, nil
}

// --- Watch -------------------------------------------------------------

type watchServer struct {
	pb.UnimplementedWatchServer
	s *server
}

func (s *server) watch() *watchServer { return &watchServer{s: s} }

// watcher is one watch on one stream.
type watcher struct {
	id       int64
	key, end []byte // end empty: the single key; "\x00": every key >= key
	out      *watchStream
}

func (w *watcher) matches(key []byte) bool {
	if len(w.end) == 0 {
		return bytes.Equal(key, w.key)
	}
	if bytes.Compare(key, w.key) < 0 {
		return false
	}
	return (len(w.end) == 1 && w.end[0] == 0) || bytes.Compare(key, w.end) < 0
}

// watchStream serializes the responses of one Watch stream: gRPC allows
// one sender at a time, and events come from Put handlers.
type watchStream struct {
	sendc chan *pb.WatchResponse
	done  chan struct{}
}

func (ws *watchStream) send(r *pb.WatchResponse) {
	select {
	case ws.sendc <- r:
	case <-ws.done:
	}
}

func (w *watchServer) Watch(stream pb.Watch_WatchServer) error {
	ws := &watchStream{sendc: make(chan *pb.WatchResponse, watchSendQueue), done: make(chan struct{})}
	mine := map[int64]*watcher{}
	defer func() {
		for _, wt := range mine {
			w.s.unregister(wt)
		}
	}()
	sendErr := make(chan error, 1)
	go func() {
		for {
			select {
			case r := <-ws.sendc:
				if err := stream.Send(r); err != nil {
					sendErr <- err
					close(ws.done)
					return
				}
			case <-stream.Context().Done():
				close(ws.done)
				return
			}
		}
	}()
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		switch v := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			cr := v.CreateRequest
			id := cr.WatchId
			if id <= 0 { // clients leave it 0 (or -1): the server picks
				id = w.s.watchID.Add(1)
			}
			wt := &watcher{id: id, key: cr.Key, end: cr.RangeEnd, out: ws}
			mine[id] = wt
			w.s.register(wt)
			ws.send(&pb.WatchResponse{Header: w.s.header(w.s.rev.Load()), WatchId: id, Created: true})
		case *pb.WatchRequest_CancelRequest:
			id := v.CancelRequest.WatchId
			if wt, ok := mine[id]; ok {
				w.s.unregister(wt)
				delete(mine, id)
			}
			ws.send(&pb.WatchResponse{Header: w.s.header(w.s.rev.Load()), WatchId: id, Canceled: true})
		case *pb.WatchRequest_ProgressRequest:
			ws.send(&pb.WatchResponse{Header: w.s.header(w.s.rev.Load()), WatchId: -1})
		}
		select {
		case err := <-sendErr:
			return err
		default:
		}
	}
}

func (s *server) register(w *watcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(w.end) == 0 {
		k := string(w.key)
		s.byKey[k] = append(s.byKey[k], w)
	} else {
		s.ranges = append(s.ranges, w)
	}
	s.nwatchers.Add(1)
}

func (s *server) unregister(w *watcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	remove := func(ws []*watcher) []*watcher {
		for i, x := range ws {
			if x == w {
				return append(ws[:i:i], ws[i+1:]...)
			}
		}
		return ws
	}
	if len(w.end) == 0 {
		k := string(w.key)
		if rest := remove(s.byKey[k]); len(rest) > 0 {
			s.byKey[k] = rest
		} else {
			delete(s.byKey, k)
		}
	} else {
		s.ranges = remove(s.ranges)
	}
	s.nwatchers.Add(-1)
}

// notify delivers a put at rev to the watchers of its key.
func (s *server) notify(rev int64, put *pb.PutRequest) {
	if s.nwatchers.Load() == 0 {
		return
	}
	var targets []*watcher
	s.mu.RLock()
	targets = append(targets, s.byKey[string(put.Key)]...)
	for _, w := range s.ranges {
		if w.matches(put.Key) {
			targets = append(targets, w)
		}
	}
	s.mu.RUnlock()
	if len(targets) == 0 {
		return
	}
	ev := &mvccpb.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{
		Key: put.Key, Value: put.Value, CreateRevision: rev, ModRevision: rev, Version: 1, Lease: put.Lease,
	}}
	h := s.header(rev)
	for _, w := range targets {
		w.out.send(&pb.WatchResponse{Header: h, WatchId: w.id, Events: []*mvccpb.Event{ev}})
	}
}
