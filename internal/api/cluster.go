package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/membership"
)

// Members is what the Cluster service reads.
type Members interface {
	Members() []*membership.Member
}

// ClusterServer serves the Cluster service.
type ClusterServer struct {
	pb.UnimplementedClusterServer
	b       Backend
	members Members
	reconf  Reconfigurer
}

// NewClusterServer returns the Cluster service.
func NewClusterServer(b Backend, m Members, r Reconfigurer) *ClusterServer {
	return &ClusterServer{b: b, members: m, reconf: r}
}

// MemberList lists the members.
func (s *ClusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := s.b.LinearizableRead(ctx); err != nil {
			return nil, toGRPC(err)
		}
	}
	return &pb.MemberListResponse{Header: s.b.Header(), Members: MembersPB(s.members.Members())}, nil
}

// MembersPB converts members to their wire form.
func MembersPB(ms []*membership.Member) []*pb.Member {
	out := make([]*pb.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, &pb.Member{
			ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner,
		})
	}
	return out
}

// Reconfigurer changes the member set (through Raft, with the server's
// safety checks).
type Reconfigurer interface {
	// Each returns the member set after the change, as the member that
	// made it (the leader) sees it.
	AddMember(ctx context.Context, peerURLs []string, learner bool) (*membership.Member, []*membership.Member, error)
	RemoveMember(ctx context.Context, id uint64) ([]*membership.Member, error)
	UpdateMember(ctx context.Context, id uint64, peerURLs []string) ([]*membership.Member, error)
	PromoteMember(ctx context.Context, id uint64) ([]*membership.Member, error)
}

// MemberAdd adds a member (a learner when asked).
func (s *ClusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	m, ms, err := s.reconf.AddMember(ctx, r.PeerURLs, r.IsLearner)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MemberAddResponse{Header: s.b.Header(), Member: MembersPB([]*membership.Member{m})[0], Members: MembersPB(ms)}, nil
}

// MemberRemove removes a member.
func (s *ClusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	ms, err := s.reconf.RemoveMember(ctx, r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MemberRemoveResponse{Header: s.b.Header(), Members: MembersPB(ms)}, nil
}

// MemberUpdate changes a member's peer URLs.
func (s *ClusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	ms, err := s.reconf.UpdateMember(ctx, r.ID, r.PeerURLs)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MemberUpdateResponse{Header: s.b.Header(), Members: MembersPB(ms)}, nil
}

// MemberPromote promotes a learner that has caught up.
func (s *ClusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	ms, err := s.reconf.PromoteMember(ctx, r.ID)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MemberPromoteResponse{Header: s.b.Header(), Members: MembersPB(ms)}, nil
}
