package server

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/cairn-kv/cairn/internal/api"
)

// registerWatch registers the Watch service over the member's hub.
func registerWatch(gs *grpc.Server, s *Server) {
	pb.RegisterWatchServer(gs, api.NewWatchServer(s.hub, s.Header, api.WatchOptions{
		MaxRequestBytes:        s.cfg.MaxRequestBytes,
		ProgressNotifyInterval: s.cfg.WatchProgressNotifyInterval,
	}))
}
