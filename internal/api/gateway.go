package api

// The JSON gateway: etcd's /v3/... HTTP API (--enable-grpc-gateway), made
// by grpc-gateway from the same generated handlers etcd uses, calling the
// server's own gRPC endpoint over a client connection. Field names are the
// proto names (create_revision, not createRevision), bytes are base64,
// int64s are strings and zero values are left out, exactly as etcd answers:
//
//	curl -L http://127.0.0.1:2379/v3/kv/put -X POST -d '{"key":"Zm9v","value":"YmFy"}'
//
// Server streams (Watch, LeaseKeepAlive, Observe, Snapshot) answer with one
// JSON object per message over a chunked response. etcd additionally
// upgrades streams to WebSocket (tmc/grpc-websocket-proxy); cairn does not
// pin that library, so WebSocket clients of /v3/watch are not served.

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"

	gw "github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	etcdgw "go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	electiongw "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb/gw"
	lockgw "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb/gw"
)

// Gateway is the /v3/ HTTP handler. Close releases its gRPC connection.
type Gateway struct {
	mux  *gw.ServeMux
	conn *grpc.ClientConn
}

// NewGateway returns the gateway for the gRPC server at target, a gRPC dial
// target such as "127.0.0.1:2379" or "unix:/run/cairn.sock" (see
// GatewayTarget). By default the connection is plaintext and accepts
// responses of any size (math.MaxInt32), as etcd's; opts are appended, so a
// grpc.WithContextDialer (e.g. an in-process listener) or TLS credentials
// given here win. The connection is made lazily: NewGateway does not wait
// for the server.
func NewGateway(target string, opts ...grpc.DialOption) (*Gateway, error) {
	dopts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
	}, opts...)
	conn, err := grpc.NewClient(target, dopts...)
	if err != nil {
		return nil, fmt.Errorf("gateway: dial %s: %w", target, err)
	}
	g, err := NewGatewayForConn(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return g, nil
}

// NewGatewayForConn returns the gateway over an existing connection, which
// Close then closes.
func NewGatewayForConn(conn *grpc.ClientConn) (*Gateway, error) {
	mux := gw.NewServeMux(
		gw.WithMarshalerOption(gw.MIMEWildcard, &gw.HTTPBodyMarshaler{
			Marshaler: &gw.JSONPb{
				MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
				UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
			},
		}),
	)
	// The Register functions keep no reference to their context.
	ctx := context.Background()
	register := []func(context.Context, *gw.ServeMux, *grpc.ClientConn) error{
		etcdgw.RegisterKVHandler,
		etcdgw.RegisterWatchHandler,
		etcdgw.RegisterLeaseHandler,
		etcdgw.RegisterClusterHandler,
		etcdgw.RegisterMaintenanceHandler,
		etcdgw.RegisterAuthHandler,
		lockgw.RegisterLockHandler,
		electiongw.RegisterElectionHandler,
	}
	for _, r := range register {
		if err := r(ctx, mux, conn); err != nil {
			return nil, fmt.Errorf("gateway: register: %w", err)
		}
	}
	return &Gateway{mux: mux, conn: conn}, nil
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// Close closes the gateway's gRPC connection; requests in flight fail.
func (g *Gateway) Close() error {
	return g.conn.Close()
}

// GatewayTarget turns a client URL the server listens on into the gRPC
// target the gateway dials, as etcd does: the host:port of http:// and
// https:// URLs, "unix:<path>" for unix:// and unixs:// URLs.
func GatewayTarget(u url.URL) string {
	if u.Scheme == "unix" || u.Scheme == "unixs" {
		return "unix:" + u.Host + u.Path
	}
	return u.Host
}
