package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
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

var errMembership = status.Error(codes.Unimplemented, "cairn: membership changes need a multi-member cluster, which this build does not serve yet")

// MemberAdd is not served by a single-member build.
func (s *ClusterServer) MemberAdd(context.Context, *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	return nil, errMembership
}

// MemberRemove is not served by a single-member build.
func (s *ClusterServer) MemberRemove(context.Context, *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	return nil, errMembership
}

// MemberUpdate is not served by a single-member build.
func (s *ClusterServer) MemberUpdate(context.Context, *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	return nil, errMembership
}

// MemberPromote is not served by a single-member build.
func (s *ClusterServer) MemberPromote(context.Context, *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return nil, errMembership
}
