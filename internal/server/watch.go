package server

import "google.golang.org/grpc"

// registerWatch registers the Watch service.
func registerWatch(gs *grpc.Server, s *Server) {}
