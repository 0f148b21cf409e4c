package api

import (
	"context"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Maintainer is what the Maintenance service needs beyond Backend.
type Maintainer interface {
	// Status describes this member.
	Status(ctx context.Context) (*pb.StatusResponse, error)
	// Defragment reclaims the space of deleted data. It runs beside
	// reads and writes and returns when done.
	Defragment(ctx context.Context) error
	// Snapshot writes an etcd-format snapshot (bbolt db and sha256
	// trailer) of one consistent state to w.
	Snapshot(ctx context.Context, w io.Writer) (int64, error)
	// MoveLeader hands leadership to target.
	MoveLeader(ctx context.Context, target uint64) error
}

// MaintenanceServer serves the Maintenance service.
type MaintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	b Backend
	m Maintainer
}

// NewMaintenanceServer returns the Maintenance service.
func NewMaintenanceServer(b Backend, m Maintainer) *MaintenanceServer {
	return &MaintenanceServer{b: b, m: m}
}

// Alarm lists, raises or clears alarms (through Raft).
func (s *MaintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp, err := s.b.Propose(ctx, &pb.InternalRaftRequest{Alarm: r})
	if err != nil {
		return nil, toGRPC(err)
	}
	out := resp.(*pb.AlarmResponse)
	fillHeader(out.Header, s.b.Header())
	return out, nil
}

// Status describes this member.
func (s *MaintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	resp, err := s.m.Status(ctx)
	return resp, toGRPC(err)
}

// Defragment reclaims space without stopping reads or writes.
func (s *MaintenanceServer) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := s.m.Defragment(ctx); err != nil {
		return nil, toGRPC(err)
	}
	return &pb.DefragmentResponse{Header: s.b.Header()}, nil
}

// Hash hashes the whole key-value history the member holds.
func (s *MaintenanceServer) Hash(ctx context.Context, _ *pb.HashRequest) (*pb.HashResponse, error) {
	h, _, _, err := s.b.KV().HashKV(0)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.HashResponse{Header: s.b.Header(), Hash: h}, nil
}

// HashKV hashes the key-value history up to a revision; members that
// applied the same entries agree.
func (s *MaintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	h, rev, compactRev, err := s.b.KV().HashKV(r.Revision)
	if err != nil {
		return nil, toGRPC(err)
	}
	hdr := s.b.Header()
	hdr.Revision = rev
	if compactRev == 0 && s.b.KV().CompactRev() == 0 {
		compactRev = -1 // no compaction yet, as etcd reports
	}
	hashRev := r.Revision
	if hashRev == 0 {
		hashRev = rev
	}
	return &pb.HashKVResponse{Header: hdr, Hash: h, CompactRevision: compactRev, HashRevision: hashRev}, nil
}

// Snapshot streams an etcd-format snapshot in chunks.
func (s *MaintenanceServer) Snapshot(_ *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	w := &chunkWriter{stream: stream, hdr: s.b.Header()}
	if _, err := s.m.Snapshot(stream.Context(), w); err != nil {
		return toGRPC(err)
	}
	return w.flush(true)
}

// MoveLeader transfers leadership.
func (s *MaintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if err := s.m.MoveLeader(ctx, r.TargetID); err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MoveLeaderResponse{Header: s.b.Header()}, nil
}

// Downgrade is not supported: cairn has one storage format.
func (s *MaintenanceServer) Downgrade(context.Context, *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	return nil, rpctypes.ErrGRPCNotCapable
}

// chunkWriter sends what is written in 32 KiB messages; the last one
// carries remaining_bytes 0.
type chunkWriter struct {
	stream pb.Maintenance_SnapshotServer
	hdr    *pb.ResponseHeader
	buf    []byte
	sent   bool
}

const snapshotChunk = 32 * 1024

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := snapshotChunk - len(w.buf)
		if room > len(p) {
			room = len(p)
		}
		w.buf = append(w.buf, p[:room]...)
		p = p[room:]
		if len(w.buf) == snapshotChunk {
			if err := w.flush(false); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush(last bool) error {
	if len(w.buf) == 0 && (!last || w.sent) && !last {
		return nil
	}
	resp := &pb.SnapshotResponse{Blob: w.buf, RemainingBytes: 1}
	if !w.sent {
		resp.Header = w.hdr
		resp.Version = versionForSnapshot
	}
	if last {
		resp.RemainingBytes = 0
	}
	w.sent = true
	err := w.stream.Send(resp)
	w.buf = nil
	return err
}

var _ io.Writer = (*chunkWriter)(nil)
