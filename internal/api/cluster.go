package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
}

// NewClusterServer returns the Cluster service.
func NewClusterServer(b Backend, m Members) *ClusterServer { return &ClusterServer{b: b, members: m} }

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

var errMembership = status.Error(codes.Unimplemented, "cairn: adding members needs a multi-member cluster, which this build does not serve yet")

func (s *ClusterServer) find(id uint64) *membership.Member {
	for _, m := range s.members.Members() {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// MemberAdd refuses peer URLs already in use, as etcd does; adding a
// member is not served by a single-member build.
func (s *ClusterServer) MemberAdd(_ context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	for _, m := range s.members.Members() {
		for _, have := range m.PeerURLs {
			for _, want := range r.PeerURLs {
				if have == want {
					return nil, rpctypes.ErrGRPCPeerURLExist
				}
			}
		}
	}
	return nil, errMembership
}

// MemberRemove answers as etcd does for a single member: an unknown ID is
// not found; removing the only member would leave no quorum.
func (s *ClusterServer) MemberRemove(_ context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	if s.find(r.ID) == nil {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	return nil, rpctypes.ErrGRPCMemberNotEnoughStarted
}

// MemberUpdate answers not found for an unknown ID; changing this
// member's peer URLs is not served by a single-member build.
func (s *ClusterServer) MemberUpdate(_ context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	if s.find(r.ID) == nil {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	return nil, errMembership
}

// MemberPromote answers as etcd does: only a learner can be promoted.
func (s *ClusterServer) MemberPromote(_ context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	m := s.find(r.ID)
	if m == nil {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	if !m.IsLearner {
		return nil, rpctypes.ErrGRPCMemberNotLearner
	}
	return nil, errMembership
}
