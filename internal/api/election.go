package api

// The v3election service (etcdctl elect), served as etcd serves it over
// go.etcd.io/etcd/client/v3/concurrency against this server's own client
// port (see lock.go for sessions and forwarded credentials).
//
//	Campaign(name, lease, value)  waits until the caller's key
//	                              "<name>/<lease hex>" is the oldest under
//	                              "<name>/"; returns the LeaderKey.
//	Proclaim(leader, value)       rewrites the leader's value if leader's key
//	                              still exists at leader.rev, else
//	                              "election: not leader".
//	Leader(name)                  the oldest key, or "election: no leader".
//	Observe(name)                 streams the leader's value at each change.
//	Resign(leader)                deletes the leader's key if it still exists
//	                              at leader.rev (no error if it does not).
//
// Errors keep etcd's text and code: concurrency's errors and
// ErrMissingLeaderKey reach the client as codes.Unknown with their message;
// errors from the KV calls keep their rpctypes code.

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	epb "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
)

// ErrMissingLeaderKey is returned by Proclaim and Resign without a leader.
var ErrMissingLeaderKey = errors.New(`"leader" field must be provided`)

// NewElectionServer returns the Election service over c, a client of this
// server that carries no credentials of its own.
func NewElectionServer(c *clientv3.Client) epb.ElectionServer {
	return &electionServer{c: c}
}

type electionServer struct {
	epb.UnimplementedElectionServer
	c *clientv3.Client
}

// noLease is the session lease for Leader and Observe, which only read. A
// session needs a lease; etcd passes -1 so none is granted.
const noLease = -1

func (s *electionServer) Campaign(ctx context.Context, req *epb.CampaignRequest) (*epb.CampaignResponse, error) {
	ctx = forwardCallerMetadata(ctx)
	sess, err := orphanedSession(ctx, s.c, req.Lease)
	if err != nil {
		return nil, err
	}
	e := concurrency.NewElection(sess, string(req.Name))
	if err := e.Campaign(ctx, string(req.Value)); err != nil {
		return nil, err
	}
	return &epb.CampaignResponse{
		Header: e.Header(),
		Leader: &epb.LeaderKey{
			Name:  req.Name,
			Key:   []byte(e.Key()),
			Rev:   e.Rev(),
			Lease: int64(sess.Lease()),
		},
	}, nil
}

func (s *electionServer) Proclaim(ctx context.Context, req *epb.ProclaimRequest) (*epb.ProclaimResponse, error) {
	if req.Leader == nil {
		return nil, ErrMissingLeaderKey
	}
	ctx = forwardCallerMetadata(ctx)
	e, err := s.resume(ctx, req.Leader)
	if err != nil {
		return nil, err
	}
	if err := e.Proclaim(ctx, string(req.Value)); err != nil {
		return nil, err
	}
	return &epb.ProclaimResponse{Header: e.Header()}, nil
}

func (s *electionServer) Resign(ctx context.Context, req *epb.ResignRequest) (*epb.ResignResponse, error) {
	if req.Leader == nil {
		return nil, ErrMissingLeaderKey
	}
	ctx = forwardCallerMetadata(ctx)
	e, err := s.resume(ctx, req.Leader)
	if err != nil {
		return nil, err
	}
	if err := e.Resign(ctx); err != nil {
		return nil, err
	}
	return &epb.ResignResponse{Header: e.Header()}, nil
}

// resume rebuilds the leader's Election from its LeaderKey.
func (s *electionServer) resume(ctx context.Context, l *epb.LeaderKey) (*concurrency.Election, error) {
	sess, err := orphanedSession(ctx, s.c, l.Lease)
	if err != nil {
		return nil, err
	}
	return concurrency.ResumeElection(sess, string(l.Name), string(l.Key), l.Rev), nil
}

func (s *electionServer) Leader(ctx context.Context, req *epb.LeaderRequest) (*epb.LeaderResponse, error) {
	ctx = forwardCallerMetadata(ctx)
	sess, err := orphanedSession(ctx, s.c, noLease)
	if err != nil {
		return nil, err
	}
	resp, err := concurrency.NewElection(sess, string(req.Name)).Leader(ctx)
	if err != nil {
		return nil, err
	}
	return &epb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}, nil
}

func (s *electionServer) Observe(req *epb.LeaderRequest, stream epb.Election_ObserveServer) error {
	ctx := forwardCallerMetadata(stream.Context())
	sess, err := orphanedSession(ctx, s.c, noLease)
	if err != nil {
		return err
	}
	ch := concurrency.NewElection(sess, string(req.Name)).Observe(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok := <-ch:
			if !ok {
				// Observe gives up when its watch fails (compaction, no
				// leader); the stream then ends cleanly, as in etcd.
				return ctx.Err()
			}
			if err := stream.Send(&epb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}); err != nil {
				return err
			}
		}
	}
}
