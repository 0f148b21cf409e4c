// Package testcluster runs several cairn members inside one test process
// (testing layer 2 of the design): each member is a real server.Server with
// its own data dir under t.TempDir(), serving gRPC and peer traffic on free
// 127.0.0.1 ports, with a short heartbeat (10ms) and election timeout
// (100ms) so elections take little time.
//
// Every method that waits does so on a condition with a deadline and fails
// the test (t.Fatalf) when it is not met; they must be called from the test
// goroutine. Everything a Cluster starts is stopped at the end of the test.
//
// Member logs go to an in-memory buffer per member, printed only when the
// test fails (WithLogger replaces that).
package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/server"
)

// WaitTimeout bounds every wait of the package: start, readiness, leader
// election, HashKV agreement.
const WaitTimeout = 15 * time.Second

const (
	heartbeat       = 10 * time.Millisecond
	electionTimeout = 100 * time.Millisecond
)

// Option changes how Start builds the cluster.
type Option func(*options)

type options struct {
	logger    *zap.Logger
	configure []func(i int, cfg *config.Config)
}

// WithLogger makes every member log to lg (tagged with its name) instead
// of the per-member buffers shown on failure.
func WithLogger(lg *zap.Logger) Option {
	return func(o *options) { o.logger = lg }
}

// WithConfig lets the test change member i's Config before the first
// start (snapshot count, quotas, ...). The cluster's URLs, names and data
// dirs are already set; changing them is the caller's business.
func WithConfig(fn func(i int, cfg *config.Config)) Option {
	return func(o *options) { o.configure = append(o.configure, fn) }
}

// Member is one member of a Cluster.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1:port
	PeerURL   string

	cfg *config.Config
	lg  *zap.Logger
	log *logBuffer // nil with WithLogger

	mu     sync.Mutex
	srv    *server.Server
	sv     *server.Serving
	cancel context.CancelFunc
	cli    *clientv3.Client // this member only; kept across restarts
}

// Cluster is n members of one cluster running in the test process.
type Cluster struct {
	t       testing.TB
	Members []*Member

	mu  sync.Mutex
	cli *clientv3.Client // every member
}

// Start runs n members of a new cluster and returns once each of them has
// a leader. The members start at once: none can elect a leader alone.
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("testcluster: %d members", n)
	}
	var o options
	for _, fn := range opts {
		fn(&o)
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		t.Fatalf("testcluster: picking ports: %v", err)
	}
	base := t.TempDir()
	c := &Cluster{t: t}
	var initial []string
	for i := 0; i < n; i++ {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	token := "testcluster-" + strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	for i, m := range c.Members {
		cfg := config.Default()
		cfg.Name = m.Name
		cfg.DataDir = filepath.Join(base, m.Name)
		cu, pu := mustParse(t, m.ClientURL), mustParse(t, m.PeerURL)
		cfg.ListenClientURLs = []url.URL{cu}
		cfg.AdvertiseClientURLs = []url.URL{cu}
		cfg.ListenPeerURLs = []url.URL{pu}
		cfg.InitialAdvertisePeerURLs = []url.URL{pu}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = token
		cfg.InitialClusterState = config.ClusterStateNew
		cfg.HeartbeatInterval = heartbeat
		cfg.ElectionTimeout = electionTimeout
		for _, fn := range o.configure {
			fn(i, cfg)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("testcluster: config of %s: %v", m.Name, err)
		}
		m.cfg = cfg
		if o.logger != nil {
			m.lg = o.logger.With(zap.String("member", m.Name))
		} else {
			m.log = &logBuffer{}
			m.lg = zap.New(zapcore.NewCore(
				zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
				zapcore.AddSync(m.log), zapcore.InfoLevel))
		}
	}
	t.Cleanup(c.cleanup)
	c.startAll(c.Members)
	return c
}

// startAll starts the given stopped members at once and waits until each
// has a leader.
func (c *Cluster) startAll(ms []*Member) {
	c.t.Helper()
	errs := make(chan error, len(ms))
	for _, m := range ms {
		go func(m *Member) { errs <- m.start() }(m)
	}
	var failed []string
	for range ms {
		if err := <-errs; err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		c.t.Fatalf("testcluster: starting members: %s", strings.Join(failed, "; "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	for _, m := range ms {
		if err := m.server().WaitReady(ctx); err != nil {
			c.t.Fatalf("testcluster: %s has no leader: %v", m.Name, err)
		}
	}
}

func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv != nil {
		return fmt.Errorf("%s is already running", m.Name)
	}
	cfg := *m.cfg // the server gets its own copy each start
	srv, err := server.New(&cfg, m.lg)
	if err != nil {
		return fmt.Errorf("%s: %w", m.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sv, err := srv.Serve(ctx)
	if err != nil {
		cancel()
		srv.Stop()
		return fmt.Errorf("%s: serve: %w", m.Name, err)
	}
	m.srv, m.sv, m.cancel = srv, sv, cancel
	return nil
}

// stop stops the member gracefully; it returns an error the member met
// while running (fatal or serving), if any.
func (m *Member) stop() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv == nil {
		return nil
	}
	m.cancel()
	m.sv.Close()
	m.srv.Stop()
	var err error
	select {
	case e := <-m.srv.Fatal():
		err = fmt.Errorf("%s stopped on a fatal error: %w", m.Name, e)
	case e := <-m.sv.Err():
		err = fmt.Errorf("%s: serving: %w", m.Name, e)
	default:
	}
	m.srv, m.sv, m.cancel = nil, nil, nil
	return err
}

func (m *Member) server() *server.Server {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.srv
}

// Server is the member's running server, nil while it is stopped.
func (m *Member) Server() *server.Server { return m.server() }

// Running reports whether the member is started.
func (m *Member) Running() bool { return m.server() != nil }

// Stop stops member i gracefully (client and peer listeners, then the
// server); its data dir and ports are kept for Restart.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	if err := c.Members[i].stop(); err != nil {
		c.t.Errorf("testcluster: %v", err)
	}
}

// StopAll stops every running member, one after the other.
func (c *Cluster) StopAll() {
	c.t.Helper()
	for i := range c.Members {
		c.Stop(i)
	}
}

// Restart starts stopped member i again with the same data dir and ports,
// and waits until it knows a leader (so a quorum must be running).
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.startAll([]*Member{c.Members[i]})
}

// RestartAll starts every stopped member at once and waits until each
// knows a leader.
func (c *Cluster) RestartAll() {
	c.t.Helper()
	var ms []*Member
	for _, m := range c.Members {
		if !m.Running() {
			ms = append(ms, m)
		}
	}
	c.startAll(ms)
}

// Endpoints lists every member's client URL, running or not.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Client is a client over every member (stopped ones included: the client
// fails over). It is closed at the end of the test.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cli == nil {
		c.cli = c.newClient(c.Endpoints()...)
	}
	return c.cli
}

// MemberClient is a client of member i alone, for reading or writing
// through one member. It survives Stop and Restart of the member (it
// reconnects) and is closed at the end of the test.
func (c *Cluster) MemberClient(i int) *clientv3.Client {
	c.t.Helper()
	m := c.Members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cli == nil {
		m.cli = c.newClient(m.ClientURL)
	}
	return m.cli
}

func (c *Cluster) newClient(eps ...string) *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		// Reconnect quickly to a restarted member: gRPC's default
		// backoff grows to two minutes.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		c.t.Fatalf("testcluster: client of %v: %v", eps, err)
	}
	return cli
}

// Leader waits until the running members agree on a leader that is one of
// them and that knows it leads, and returns its index.
func (c *Cluster) Leader() int {
	c.t.Helper()
	var last string
	deadline := time.Now().Add(WaitTimeout)
	for time.Now().Before(deadline) {
		lead, why := c.leader()
		if lead >= 0 {
			return lead
		}
		last = why
		time.Sleep(5 * time.Millisecond) // poll interval, not a wait for an outcome
	}
	c.t.Fatalf("testcluster: no agreed leader within %v: %s", WaitTimeout, last)
	return -1
}

// leader returns the agreed leader's index, or -1 and why not.
func (c *Cluster) leader() (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var agreed uint64
	running := 0
	byID := map[uint64]int{}
	for i, m := range c.Members {
		srv := m.server()
		if srv == nil {
			continue
		}
		running++
		byID[srv.ID()] = i
		st, err := srv.Status(ctx)
		if err != nil {
			return -1, fmt.Sprintf("%s: status: %v", m.Name, err)
		}
		switch {
		case st.Leader == 0:
			return -1, m.Name + " has no leader"
		case agreed == 0:
			agreed = st.Leader
		case agreed != st.Leader:
			return -1, fmt.Sprintf("members disagree: %x and %x", agreed, st.Leader)
		}
	}
	if running == 0 {
		return -1, "no member is running"
	}
	i, ok := byID[agreed]
	if !ok {
		return -1, fmt.Sprintf("leader %x is not running", agreed)
	}
	return i, ""
}

// WaitHashKVEqual waits until every running member reports the same
// revision, compact revision and HashKV, through its own client. It is
// meant for a quiet cluster: with writes going on it may not converge.
func (c *Cluster) WaitHashKVEqual() {
	c.t.Helper()
	var last string
	deadline := time.Now().Add(WaitTimeout)
	for time.Now().Before(deadline) {
		why := c.hashKVDiff()
		if why == "" {
			return
		}
		last = why
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	c.t.Fatalf("testcluster: HashKV did not agree within %v: %s", WaitTimeout, last)
}

// hashKVDiff returns "" when the running members agree, else what differs.
func (c *Cluster) hashKVDiff() string {
	type hk struct {
		name            string
		rev, compactRev int64
		hash            uint32
	}
	var got []hk
	for i, m := range c.Members {
		if !m.Running() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := c.MemberClient(i).HashKV(ctx, m.ClientURL, 0)
		cancel()
		if err != nil {
			return fmt.Sprintf("%s: %v", m.Name, err)
		}
		got = append(got, hk{m.Name, r.Header.Revision, r.CompactRevision, r.Hash})
	}
	if len(got) == 0 {
		return "no member is running"
	}
	for _, h := range got[1:] {
		if h.rev != got[0].rev || h.compactRev != got[0].compactRev || h.hash != got[0].hash {
			return fmt.Sprintf("%+v", got)
		}
	}
	return ""
}

// cleanup closes the clients and stops every member, then shows the
// members' logs if the test failed.
func (c *Cluster) cleanup() {
	c.mu.Lock()
	if c.cli != nil {
		c.cli.Close()
		c.cli = nil
	}
	c.mu.Unlock()
	for _, m := range c.Members {
		m.mu.Lock()
		if m.cli != nil {
			m.cli.Close()
			m.cli = nil
		}
		m.mu.Unlock()
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.Members))
	for i, m := range c.Members {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = m.stop() }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Errorf("testcluster: %v", err)
	}
	if c.t.Failed() {
		for _, m := range c.Members {
			if m.log != nil {
				c.t.Logf("--- log of %s ---\n%s", m.Name, m.log.tail(64<<10))
			}
		}
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1, found by
// listening on port 0; all are held until every one is chosen.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func mustParse(t testing.TB, s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	return *u
}

// logBuffer keeps a member's log in memory, up to a bound, safe to write
// after the test has ended.
type logBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	dropped int
}

const maxLog = 8 << 20

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len()+len(p) > maxLog {
		l.dropped += len(p)
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *logBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	var head string
	if len(s) > n {
		head = fmt.Sprintf("[... %d bytes before]\n", len(s)-n)
		s = s[len(s)-n:]
	}
	if l.dropped > 0 {
		s += fmt.Sprintf("\n[%d bytes dropped past the buffer's limit]", l.dropped)
	}
	return head + s
}
