package api

import (
	"context"
	"errors"
	"io"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/cairn-kv/cairn/internal/lease"
)

// LeaseForwarder sends to the leader the lease requests only its lessor
// can answer (renewal, remaining TTL), from a follower.
type LeaseForwarder interface {
	IsLeaseLeader() bool
	ForwardRenew(ctx context.Context, id int64) (int64, error)
	ForwardTimeToLive(ctx context.Context, id int64, keys bool) (*pb.LeaseTimeToLiveResponse, error)
}

// LeaseServer serves the Lease service.
type LeaseServer struct {
	pb.UnimplementedLeaseServer
	b Backend
}

// NewLeaseServer returns the Lease service over b.
func NewLeaseServer(b Backend) *LeaseServer { return &LeaseServer{b: b} }

// LeaseGrant grants a lease with a client- or server-chosen ID.
func (s *LeaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.TTL > lease.MaxTTL {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	if r.ID == 0 {
		// Server-chosen: positive, unique across members and restarts.
		for r.ID == 0 {
			r.ID = int64(s.b.NewID() & (1<<63 - 1))
		}
	}
	resp, err := s.b.Propose(ctx, &pb.InternalRaftRequest{LeaseGrant: r})
	if err != nil {
		return nil, toGRPC(err)
	}
	out := resp.(*pb.LeaseGrantResponse)
	fillHeader(out.Header, s.b.Header())
	return out, nil
}

// LeaseRevoke revokes a lease and deletes its keys in one revision.
func (s *LeaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := s.b.Propose(ctx, &pb.InternalRaftRequest{LeaseRevoke: r})
	if err != nil {
		return nil, toGRPC(err)
	}
	out := resp.(*pb.LeaseRevokeResponse)
	fillHeader(out.Header, s.b.Header())
	return out, nil
}

// LeaseTimeToLive reports a lease's remaining TTL; an unknown or expired
// lease answers TTL -1, as etcd does.
func (s *LeaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	if f, ok := s.b.(LeaseForwarder); ok && !f.IsLeaseLeader() {
		resp, err := f.ForwardTimeToLive(ctx, r.ID, r.Keys)
		if err != nil {
			return nil, toGRPC(err)
		}
		return resp, nil
	}
	if err := s.b.LinearizableRead(ctx); err != nil {
		return nil, toGRPC(err)
	}
	l, err := s.b.Lessor().Lookup(lease.ID(r.ID))
	if errors.Is(err, lease.ErrLeaseNotFound) {
		return &pb.LeaseTimeToLiveResponse{Header: s.b.Header(), ID: r.ID, TTL: -1}, nil
	}
	if err != nil {
		return nil, toGRPC(err)
	}
	resp := &pb.LeaseTimeToLiveResponse{Header: s.b.Header(), ID: r.ID, TTL: l.RemainingTTL, GrantedTTL: l.TTL}
	if r.Keys {
		for _, k := range l.Keys {
			resp.Keys = append(resp.Keys, []byte(k))
		}
	}
	return resp, nil
}

// LeaseLeases lists every lease.
func (s *LeaseServer) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	if err := s.b.LinearizableRead(ctx); err != nil {
		return nil, toGRPC(err)
	}
	// Soonest expiry first, as etcd lists them.
	type entry struct{ id, ttl int64 }
	var ls []entry
	for _, id := range s.b.Lessor().Leases() {
		l, err := s.b.Lessor().Lookup(id)
		if err != nil {
			continue
		}
		ls = append(ls, entry{int64(id), l.RemainingTTL})
	}
	sort.SliceStable(ls, func(i, j int) bool { return ls[i].ttl < ls[j].ttl })
	resp := &pb.LeaseLeasesResponse{Header: s.b.Header()}
	for _, l := range ls {
		resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: l.id})
	}
	return resp, nil
}

// LeaseKeepAlive renews leases on the leader for as long as the stream
// lasts. An unknown lease answers TTL 0, as etcd does.
func (s *LeaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		ttl, resetCheckpoint, err := s.b.Lessor().Renew(lease.ID(req.ID))
		if errors.Is(err, lease.ErrNotPrimary) {
			if f, ok := s.b.(LeaseForwarder); ok {
				ttl, err = f.ForwardRenew(stream.Context(), req.ID)
				resetCheckpoint = false
			}
		}
		switch {
		case errors.Is(err, lease.ErrLeaseNotFound), errors.Is(err, lease.ErrLeaseExpired):
			ttl, err = 0, nil
		case err != nil:
			return toGRPC(err)
		}
		if resetCheckpoint {
			// The lease had a checkpointed remaining TTL: clear it through
			// Raft, so a later leader starts from the full TTL.
			_, err := s.b.Propose(stream.Context(), &pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{
				Checkpoints: []*pb.LeaseCheckpoint{{ID: req.ID, Remaining_TTL: 0}},
			}})
			if err != nil {
				return toGRPC(err)
			}
		}
		if err := stream.Send(&pb.LeaseKeepAliveResponse{Header: s.b.Header(), ID: req.ID, TTL: ttl}); err != nil {
			return err
		}
	}
}
