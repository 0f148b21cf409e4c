//go:build tools

// Package tools pins dependencies that the tree uses before code imports them,
// so `go mod tidy` keeps them. It is never built.
package tools

import (
	_ "github.com/cockroachdb/pebble/v2"
	_ "github.com/google/btree"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "go.etcd.io/bbolt"
	_ "go.etcd.io/etcd/api/v3/etcdserverpb"
	_ "go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/client/v3/concurrency"
	_ "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	_ "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	_ "go.etcd.io/raft/v3"
	_ "go.uber.org/zap"
	_ "google.golang.org/grpc"
	_ "sigs.k8s.io/yaml"
)
