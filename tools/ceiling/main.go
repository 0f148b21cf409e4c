// Command ceiling is a do-nothing etcd v3 server: it speaks the etcd gRPC
// protocol and answers every request at once with a minimal valid
// response, storing nothing. Benchmarked on the same machine as the load
// tool, it shows the ceiling that gRPC, the etcd client and cairn-bench
// leave to any real server: a server cannot be faster than ceiling.
//
// What it answers:
//
//   - KV: Range returns no keys; Put, DeleteRange and Txn bump the revision
//     (a Txn whose branch has a write bumps it once) and return empty
//     results of the right shape; Txn always takes the success branch;
//     Compact returns a header.
//   - Lease: Grant returns a new ID (or the requested one) and the requested
//     TTL; KeepAlive answers each request with the ID and a fixed TTL
//     (leaseTTL); Revoke, TimeToLive and Leases answer without looking
//     anything up.
//   - Watch: creates are answered with a created response; a Put (alone or
//     in a Txn) is delivered as an event to the watchers whose key or range
//     holds its key, with the Put's revision (the value is passed through,
//     not stored); cancel and progress requests are answered.
//   - Maintenance.Status and Cluster.MemberList describe one member that is
//     its own leader, so clients, --target-leader and `cairn-bench ready`
//     work.
//
// Every response carries a header whose revision increases with each
// write. Usage:
//
//	ceiling --listen-client-urls http://127.0.0.1:2379
package main

import (
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// maxRequestBytes and grpcOverheadBytes are cairn's (and etcd's) defaults:
// the largest request accepted is 1.5 MiB plus room for gRPC framing.
const (
	maxRequestBytes   = 3 * 1024 * 1024 / 2
	grpcOverheadBytes = 512 * 1024
)

func main() {
	fs := flag.NewFlagSet("ceiling", flag.ContinueOnError)
	urls := fs.String("listen-client-urls", "http://127.0.0.1:2379", "comma-separated URLs to serve the etcd v3 gRPC API on (http only)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if err := run(strings.Split(*urls, ",")); err != nil {
		fmt.Fprintf(os.Stderr, "ceiling: %v\n", err)
		os.Exit(1)
	}
}

func run(urls []string) error {
	var listeners []net.Listener
	for _, raw := range urls {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("--listen-client-urls %q: %w", raw, err)
		}
		if u.Scheme != "http" || u.Host == "" {
			return fmt.Errorf("--listen-client-urls %q: want http://host:port", raw)
		}
		l, err := net.Listen("tcp", u.Host)
		if err != nil {
			for _, o := range listeners {
				o.Close()
			}
			return err
		}
		listeners = append(listeners, l)
	}
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxRequestBytes+grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
	)
	s := newServer()
	pb.RegisterKVServer(gs, s.kv())
	pb.RegisterLeaseServer(gs, s.lease())
	pb.RegisterWatchServer(gs, s.watch())
	pb.RegisterMaintenanceServer(gs, s.maintenance())
	pb.RegisterClusterServer(gs, s.cluster())

	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		fmt.Fprintf(os.Stderr, "ceiling: serving the etcd v3 gRPC API on %s\n", l.Addr())
		go func() { errc <- gs.Serve(l) }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case <-sig:
		gs.Stop()
		return nil
	case err := <-errc:
		gs.Stop()
		return err
	}
}
