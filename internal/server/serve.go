package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"

	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/cairn-kv/cairn/internal/api"
	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/version"
)

// grpcOverheadBytes is the room gRPC gets above --max-request-bytes for
// its own framing, as in etcd.
const grpcOverheadBytes = 512 * 1024

// Serving holds the member's listeners and servers.
type Serving struct {
	clients  []*api.ClientServer
	others   []*http.Server
	self     *clientv3.Client
	gateway  *api.Gateway
	wg       sync.WaitGroup
	errC     chan error
	listener []net.Listener
}

// Serve starts the client, peer and metrics listeners. It returns once
// they accept connections.
func (s *Server) Serve(ctx context.Context) (*Serving, error) {
	cfg := s.cfg
	if cfg.FeatureEnabled("InitialCorruptCheck") {
		if err := s.checkInitialHashKV(ctx); err != nil {
			return nil, err
		}
	}
	sv := &Serving{errC: make(chan error, 8)}
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(int(cfg.MaxRequestBytes)+grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(maxStreams(cfg.MaxConcurrentStreams)),
		// Each connection's write buffer goes back to a shared pool
		// after every flush instead of staying allocated while the
		// connection is idle between responses.
		grpc.SharedWriteBuffer(true),
		// Handlers run on a pool of goroutines that keep their grown
		// stacks, instead of a new goroutine per request whose stack
		// grows (and is copied) again on every call: under 1000
		// clients that copying was 6-12 % of the server's CPU. Requests
		// beyond the pool still get their own goroutine. Each idle
		// worker costs a few KiB.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.GRPCKeepAliveMinTime, PermitWithoutStream: false}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.GRPCKeepAliveInterval, Timeout: cfg.GRPCKeepAliveTimeout}),
	)
	limits := api.Limits{MaxRequestBytes: int(cfg.MaxRequestBytes), MaxTxnOps: int(cfg.MaxTxnOps)}
	pb.RegisterKVServer(gs, api.NewKVServer(s, limits))
	pb.RegisterLeaseServer(gs, api.NewLeaseServer(s))
	pb.RegisterMaintenanceServer(gs, api.NewMaintenanceServer(s, s))
	pb.RegisterClusterServer(gs, api.NewClusterServer(s, s.members, s))
	registerWatch(gs, s)

	health, err := api.NewHealth(healthSource{s}, api.HealthOptions{Logger: s.lg, Registerer: s.metrics.reg, Timeout: 5*time.Second + 2*cfg.ElectionTimeout})
	if err != nil {
		return nil, err
	}
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	for _, u := range cfg.ListenClientURLs {
		l, err := listen(u)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listening for client requests on %s: %w", u.String(), err)
		}
		listeners = append(listeners, l)
	}
	ctls, err := s.clientTLS()
	if err != nil {
		closeAll()
		return nil, err
	}
	ptls, err := s.peerTLS()
	if err != nil {
		closeAll()
		return nil, err
	}
	// The gateway and the Lock/Election services talk to this member
	// through its own first plaintext client URL, or its first TLS one
	// when all are TLS (presenting the member's certificate, as etcd).
	self := cfg.ListenClientURLs[0]
	for _, u := range cfg.ListenClientURLs {
		if !config.IsTLSURL(u) {
			self = u
			break
		}
	}
	var selfTLS *tls.Config
	var gwOpts []grpc.DialOption
	if config.IsTLSURL(self) {
		selfTLS = ctls.self
		gwOpts = append(gwOpts, grpc.WithTransportCredentials(credentials.NewTLS(selfTLS)))
	}
	var gw http.Handler
	if cfg.EnableGRPCGateway {
		g, err := api.NewGateway(api.GatewayTarget(self), gwOpts...)
		if err != nil {
			closeAll()
			return nil, err
		}
		sv.gateway = g
		gw = g
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{selfEndpoint(self)},
		TLS:         selfTLS,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		closeAll()
		return nil, err
	}
	sv.self = cli
	v3lockpb.RegisterLockServer(gs, api.NewLockServer(cli))
	v3electionpb.RegisterElectionServer(gs, api.NewElectionServer(cli))

	var extra map[string]http.Handler
	if cfg.EnablePprof {
		extra = pprofHandlers()
		s.lg.Info("pprof is enabled", zap.String("path", "/debug/pprof/"))
	}
	handler := api.NewHTTPHandler(api.HTTPConfig{
		Health: health, Versions: versions{}, Gatherer: s.metrics.reg, Gateway: gw, Logger: s.lg, Extra: extra,
	})
	cs := api.NewClientServer(gs, handler, api.ClientServerOptions{})
	sv.clients = append(sv.clients, cs)
	for i, l := range listeners {
		u := cfg.ListenClientURLs[i]
		if config.IsTLSURL(u) {
			sv.serve(func() error { return cs.ServeTLS(l, ctls.server) })
			s.lg.Info("serving client traffic securely", zap.String("address", u.Host+u.Path))
			continue
		}
		sv.serve(func() error { return cs.Serve(l) })
		s.lg.Warn("serving client traffic insecurely; this is strongly discouraged!", zap.String("address", u.Host+u.Path))
	}
	for _, u := range cfg.ListenPeerURLs {
		l, err := listen(u)
		if err != nil {
			sv.Close()
			closeAll()
			return nil, fmt.Errorf("listening for peers on %s: %w", u.String(), err)
		}
		hs := &http.Server{Handler: s.peerMux(), ReadHeaderTimeout: 5 * time.Second}
		sv.others = append(sv.others, hs)
		if config.IsTLSURL(u) {
			hs.TLSConfig = ptls.server
			sv.serve(func() error { return hs.ServeTLS(l, "", "") })
			s.lg.Info("serving peer traffic securely", zap.String("address", u.Host+u.Path))
			continue
		}
		sv.serve(func() error { return hs.Serve(l) })
		s.lg.Info("serving peer traffic", zap.String("address", u.Host+u.Path))
	}
	for _, u := range cfg.ListenMetricsURLs {
		l, err := listen(u)
		if err != nil {
			sv.Close()
			closeAll()
			return nil, fmt.Errorf("listening for metrics on %s: %w", u.String(), err)
		}
		hs := &http.Server{Handler: api.NewMetricsHandler(s.metrics.reg, health), ReadHeaderTimeout: 5 * time.Second}
		sv.others = append(sv.others, hs)
		sv.serve(func() error { return hs.Serve(l) })
		s.lg.Info("serving metrics", zap.String("address", u.String()))
	}
	sv.listener = listeners
	go func() {
		if err := s.WaitReady(ctx); err != nil {
			return
		}
		// Publish until it works, as etcd does: a member that just joined
		// may still be catching up with the leader. Each attempt is short:
		// a proposal forwarded to the leader before the peer stream is up
		// is lost, and waiting long for it only delays readiness (a
		// restarted member took 6-12 s); publishing twice is harmless.
		for {
			pctx, cancel := context.WithTimeout(context.Background(), 2*cfg.ElectionTimeout+time.Second)
			err := s.PublishAttributes(pctx, cfg.AdvertiseClientURLs)
			cancel()
			if err == nil {
				break
			}
			s.lg.Warn("failed to publish local member attributes; retrying", zap.Error(err))
			select {
			case <-s.stopC:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
		s.lg.Info("published local member to cluster through raft",
			zap.String("local-member-id", fmt.Sprintf("%x", s.id.MemberID)),
			zap.String("cluster-id", fmt.Sprintf("%x", s.id.ClusterID)))
		for _, u := range cfg.ListenClientURLs {
			s.lg.Info("ready to serve client requests", zap.String("address", u.String()))
		}
	}()
	return sv, nil
}

func (sv *Serving) serve(fn func() error) {
	sv.wg.Add(1)
	go func() {
		defer sv.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, api.ErrClientServerClosed) && !errors.Is(err, net.ErrClosed) {
			sv.errC <- err
		}
	}()
}

// Err delivers the first serving error.
func (sv *Serving) Err() <-chan error { return sv.errC }

// Close stops every listener and server.
func (sv *Serving) Close() {
	if sv.self != nil {
		sv.self.Close()
	}
	if sv.gateway != nil {
		sv.gateway.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, c := range sv.clients {
		if err := c.Shutdown(ctx); err != nil {
			c.Close()
		}
	}
	for _, h := range sv.others {
		h.Close()
	}
	sv.wg.Wait()
}

func maxStreams(n uint32) uint32 {
	if n == 0 {
		return math.MaxUint32
	}
	return n
}

func listen(u url.URL) (net.Listener, error) {
	network, addr := config.ListenAddress(u)
	if network == "unix" {
		// A stale socket from a killed member would block the bind.
		if fi, err := os.Stat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(addr)
		}
	}
	return net.Listen(network, addr)
}

func selfEndpoint(u url.URL) string {
	if u.Scheme == "unix" || u.Scheme == "unixs" {
		_, addr := config.ListenAddress(u)
		return u.Scheme + "://" + addr
	}
	host := u.Host
	if h, p, err := net.SplitHostPort(host); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
		host = net.JoinHostPort("127.0.0.1", p)
	}
	if u.Scheme == "https" {
		return "https://" + host
	}
	return "http://" + host
}

type versions struct{}

func (versions) ClusterVersion() string { return version.EtcdCluster }
func (versions) StorageVersion() string { return version.EtcdCluster }

// healthSource answers the health checks.
type healthSource struct{ s *Server }

func (h healthSource) HasLeader() bool           { return h.s.HasLeader() }
func (h healthSource) Alarms() []*pb.AlarmMember { return h.s.Alarms() }
func (h healthSource) IsLearner() bool           { return h.s.isLearner() }
func (h healthSource) LinearizableReadCheck(ctx context.Context) error {
	if err := h.s.LinearizableRead(ctx); err != nil {
		return err
	}
	_, err := h.s.kv.Range([]byte("health"), nil, rangeOne)
	return err
}
func (h healthSource) SerializableReadCheck(ctx context.Context) error {
	_, err := h.s.kv.Range([]byte("health"), nil, rangeOne)
	return err
}

// pprofHandlers serve Go's profiles under /debug/pprof/ (--enable-pprof).
func pprofHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		"/debug/pprof/":        http.HandlerFunc(pprof.Index),
		"/debug/pprof/cmdline": http.HandlerFunc(pprof.Cmdline),
		"/debug/pprof/profile": http.HandlerFunc(pprof.Profile),
		"/debug/pprof/symbol":  http.HandlerFunc(pprof.Symbol),
		"/debug/pprof/trace":   http.HandlerFunc(pprof.Trace),
	}
}

// streamWorkers is the size of the gRPC handler pool: enough for most of
// a 1000-client load (handlers of writes wait for their commit), small
// enough to cost about 5 MiB when idle.
const streamWorkers = 512
