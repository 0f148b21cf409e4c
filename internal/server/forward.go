package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/membership"
)

// Requests only the leader can answer (membership changes) are forwarded
// from a follower to the leader's advertised client URLs with the etcd
// client, as etcd forwards them over its peer API.

type leaderConn struct {
	mu  sync.Mutex
	id  uint64
	cli *clientv3.Client
}

// leaderClient returns a client connected to the current leader.
func (s *Server) leaderClient() (*clientv3.Client, error) {
	lead := s.node.Lead()
	if lead == 0 {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	s.lc.mu.Lock()
	defer s.lc.mu.Unlock()
	if s.lc.cli != nil && s.lc.id == lead {
		return s.lc.cli, nil
	}
	if s.lc.cli != nil {
		s.lc.cli.Close()
		s.lc.cli = nil
	}
	m := s.members.Member(lead)
	if m == nil || len(m.ClientURLs) == 0 {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: m.ClientURLs, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("connecting to the leader: %w", err)
	}
	s.lc.id, s.lc.cli = lead, cli
	return cli, nil
}

func (s *Server) closeLeaderClient() {
	s.lc.mu.Lock()
	defer s.lc.mu.Unlock()
	if s.lc.cli != nil {
		s.lc.cli.Close()
		s.lc.cli = nil
	}
}

func (s *Server) isLeader() bool { return s.node.Lead() == s.id.MemberID }

// fromPB converts the members of a forwarded answer.
func fromPB(ms []*pb.Member) []*membership.Member {
	out := make([]*membership.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, &membership.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	return out
}

func (s *Server) forwardAdd(ctx context.Context, peerURLs []string, learner bool) (*membership.Member, []*membership.Member, error) {
	cli, err := s.leaderClient()
	if err != nil {
		return nil, nil, err
	}
	var resp *clientv3.MemberAddResponse
	if learner {
		resp, err = cli.MemberAddAsLearner(ctx, peerURLs)
	} else {
		resp, err = cli.MemberAdd(ctx, peerURLs)
	}
	if err != nil {
		return nil, nil, err
	}
	s.catchUp(ctx)
	return fromPB([]*pb.Member{resp.Member})[0], fromPB(resp.Members), nil
}

// catchUp waits (within ctx) until this member has applied what the leader
// committed, so that a membership change made through the leader is in
// this member's view when the client hears of it: the next request to
// this member sees it, as it would had this member proposed the change.
// The change is done either way; a failed wait only means the view may
// lag for a moment.
func (s *Server) catchUp(ctx context.Context) {
	_ = s.reads.Wait(ctx)
}

func (s *Server) forwardRemove(ctx context.Context, id uint64) ([]*membership.Member, error) {
	cli, err := s.leaderClient()
	if err != nil {
		return nil, err
	}
	resp, err := cli.MemberRemove(ctx, id)
	if err != nil {
		return nil, err
	}
	s.catchUp(ctx)
	return fromPB(resp.Members), nil
}

func (s *Server) forwardUpdate(ctx context.Context, id uint64, peerURLs []string) ([]*membership.Member, error) {
	cli, err := s.leaderClient()
	if err != nil {
		return nil, err
	}
	resp, err := cli.MemberUpdate(ctx, id, peerURLs)
	if err != nil {
		return nil, err
	}
	s.catchUp(ctx)
	return fromPB(resp.Members), nil
}

func (s *Server) forwardPromote(ctx context.Context, id uint64) ([]*membership.Member, error) {
	cli, err := s.leaderClient()
	if err != nil {
		return nil, err
	}
	resp, err := cli.MemberPromote(ctx, id)
	if err != nil {
		return nil, err
	}
	s.catchUp(ctx)
	return fromPB(resp.Members), nil
}

// ForwardRenew renews a lease on the leader (this member is not it). An
// unknown lease answers TTL 0, as a keep-alive does.
//
// Each attempt is bounded by an election timeout and goes to the member
// that leads at that moment: a renewal sent towards a leader that just
// died would otherwise wait for it forever (the client waits for its
// connection), stalling the client's keep-alive stream while its lease
// expires. After etcd's request timeout the renewal fails with etcd's
// "request timed out" and the client opens a new stream.
func (s *Server) ForwardRenew(ctx context.Context, id int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.requestTimeout())
	defer cancel()
	retry := time.NewTicker(50 * time.Millisecond)
	defer retry.Stop()
	for {
		if cli, err := s.leaderClient(); err == nil {
			actx, acancel := context.WithTimeout(ctx, s.cfg.ElectionTimeout)
			resp, err := cli.KeepAliveOnce(actx, clientv3.LeaseID(id))
			acancel()
			switch {
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
				return 0, nil
			case err == nil:
				return resp.TTL, nil
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return 0, rpctypes.ErrGRPCTimeout
			}
			return 0, ctx.Err()
		case <-retry.C:
		}
	}
}

// ForwardTimeToLive asks the leader, which alone knows a lease's expiry.
func (s *Server) ForwardTimeToLive(ctx context.Context, id int64, keys bool) (*pb.LeaseTimeToLiveResponse, error) {
	cli, err := s.leaderClient()
	if err != nil {
		return nil, err
	}
	var opts []clientv3.LeaseOption
	if keys {
		opts = append(opts, clientv3.WithAttachedKeys())
	}
	resp, err := cli.TimeToLive(ctx, clientv3.LeaseID(id), opts...)
	if err != nil {
		return nil, err
	}
	return &pb.LeaseTimeToLiveResponse{Header: s.Header(), ID: int64(resp.ID), TTL: resp.TTL, GrantedTTL: resp.GrantedTTL, Keys: resp.Keys}, nil
}

// IsLeaseLeader reports whether this member's lessor decides expiry.
func (s *Server) IsLeaseLeader() bool { return s.lessor.IsPrimary() }
