// Package e2e holds cairn's black-box tests: the real server binary on
// loopback, driven by the real etcdctl and by go.etcd.io/etcd/client/v3.
//
// # Running
//
//	go test ./tests/e2e                          # builds ./cmd/cairn once, tests it
//	CAIRN_E2E_SERVER=etcd go test ./tests/e2e    # the same tests against /usr/bin/etcd
//	CAIRN_E2E_BINARY=/path/to/cairn go test ./tests/e2e   # skip the build, use this binary
//
// The etcd mode is how the expectations are kept honest: every test must pass
// against etcd (Debian's 3.4 today) before cairn is asked to match it. Where
// cairn follows etcd 3.7 and etcd 3.4 differs, the test says so and keys the
// expectation on Kind().
//
// etcdctl is always /usr/bin/etcdctl (Debian package etcd-client, 3.4): the
// client side of every output format is therefore fixed, and what a test sees
// change between modes is only what the server put into its responses.
// Tests that need etcdctl skip when it is missing.
//
// # Order of operations
//
// TestMain calls Main, which picks the server kind, builds the server once
// and runs the tests. A test calls StartMember, which picks free loopback
// ports, starts the server with etcd's flags in a fresh data dir, and returns
// once a linearizable Get succeeds and the server has logged etcd's "ready
// to serve client requests". The member is stopped (SIGTERM) when the test
// ends; a member that exited on its own fails the test; if the test failed,
// the server's output is written to the test log. Stop, Kill and Restart
// keep the data dir and the ports (and check that the member and cluster
// ids survive). ExpectStartFailure runs a server that must refuse to start.
//
// Every member is its own single-member cluster, so tests run in parallel
// and revisions in a fresh member are deterministic (the first write is
// revision 2): tests state exact revisions.
//
// # Rules
//
// No sleeps: wait on a condition with a deadline (waitFor, CtlProc.WaitStdout).
// No timing assertions. Every load loop is bounded in count and time. Every
// client call gets its own deadline (tctx).
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ServerKind names the server implementation under test.
type ServerKind string

const (
	KindCairn ServerKind = "cairn"
	KindEtcd  ServerKind = "etcd"
)

const (
	etcdBinary    = "/usr/bin/etcd"
	etcdctlBinary = "/usr/bin/etcdctl"

	// startTimeout bounds how long a member may take to serve its first
	// linearizable read (election included).
	startTimeout = 30 * time.Second
	// stopTimeout bounds a graceful stop after SIGTERM.
	stopTimeout = 30 * time.Second
	// ctlTimeout bounds one etcdctl run.
	ctlTimeout = 60 * time.Second
	// waitTimeout bounds waiting for an asynchronous effect (watch event,
	// lock acquired, background compaction) in a test.
	waitTimeout = 30 * time.Second
	// maxLogDump bounds the server output written to a failing test's log.
	maxLogDump = 256 << 10
)

var (
	kind        ServerKind
	cairnBinary string
)

// Kind reports which server the tests run against.
func Kind() ServerKind { return kind }

// Main is TestMain's body: it picks the server from CAIRN_E2E_SERVER
// ("cairn", the default, or "etcd"), builds ./cmd/cairn once when needed,
// and runs the tests. It returns the exit code.
func Main(m *testing.M) int {
	switch k := os.Getenv("CAIRN_E2E_SERVER"); k {
	case "", string(KindCairn):
		kind = KindCairn
	case string(KindEtcd):
		kind = KindEtcd
	default:
		fmt.Fprintf(os.Stderr, "e2e: CAIRN_E2E_SERVER=%q: want cairn or etcd\n", k)
		return 2
	}
	if kind == KindEtcd {
		if _, err := os.Stat(etcdBinary); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: CAIRN_E2E_SERVER=etcd needs %s (Debian package etcd-server): %v\n", etcdBinary, err)
			return 2
		}
		return m.Run()
	}
	if bin := os.Getenv("CAIRN_E2E_BINARY"); bin != "" {
		cairnBinary = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "cairn-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 2
	}
	defer os.RemoveAll(dir)
	cairnBinary = filepath.Join(dir, "cairn")
	if err := buildCairn(cairnBinary); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building ./cmd/cairn: %v\n", err)
		return 2
	}
	return m.Run()
}

// buildCairn builds ./cmd/cairn of the enclosing module into out, without cgo.
func buildCairn(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.Command("go", "build", "-o", out, "./cmd/cairn")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

// MemberConfig says how to start a member. The zero value is a fresh
// single-member cluster of the kind under test with etcd's defaults.
type MemberConfig struct {
	Name    string     // --name; "m0" if empty
	Kind    ServerKind // Kind() if empty
	DataDir string     // an existing data dir to start from; a fresh one in t.TempDir() if empty
	Flags   []string   // extra server flags, etcd spelling, e.g. "--max-txn-ops=4"
	Env     []string   // extra environment, e.g. "ETCD_MAX_TXN_OPS=4"
	// FlagsAsEnv passes every flag (the harness's and Flags) as its ETCD_*
	// environment variable instead, leaving the command line empty.
	FlagsAsEnv bool

	// Cluster membership (StartCluster, AddMember fill these): the
	// --initial-cluster, token and state; empty means a cluster of one.
	InitialCluster string
	ClusterToken   string
	ClusterState   string
	// Learner: the member joins as a learner, which serves no
	// linearizable reads; readiness is probed with Status.
	Learner bool
}

// Member is one server process on loopback. Its methods are safe to call
// from the test goroutine only, except Client and the Etcdctl family.
type Member struct {
	t       testing.TB
	cfg     MemberConfig
	bin     string
	dataDir string
	fresh   bool // data dir created by the harness (may be wiped on a bind retry)

	ClientURL string // http://127.0.0.1:port
	PeerURL   string // http://127.0.0.1:port

	// MemberID and ClusterID are what the member reported in its first
	// Status; restarts must keep them.
	MemberID  uint64
	ClusterID uint64

	log *notifyBuffer // stdout and stderr of every run, in order

	mu      sync.Mutex
	proc    *process
	clients []*clientv3.Client
	client  *clientv3.Client
}

type process struct {
	cmd      *exec.Cmd
	exited   chan struct{} // closed when Wait returns
	err      error         // Wait's result, valid after exited
	expected bool          // the harness stopped it on purpose
}

// StartMember starts a member and waits until it serves linearizable reads.
// The member is stopped and its clients closed when the test ends.
func StartMember(t testing.TB, cfg MemberConfig) *Member {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "m0"
	}
	if cfg.Kind == "" {
		cfg.Kind = Kind()
	}
	m := &Member{t: t, cfg: cfg, log: newNotifyBuffer()}
	switch cfg.Kind {
	case KindEtcd:
		m.bin = etcdBinary
	case KindCairn:
		m.bin = cairnBinary
	default:
		t.Fatalf("unknown server kind %q", cfg.Kind)
	}
	m.dataDir = cfg.DataDir
	if m.dataDir == "" {
		m.dataDir = filepath.Join(t.TempDir(), cfg.Name+".data")
		m.fresh = true
	}
	t.Cleanup(m.cleanup)

	const attempts = 5
	for i := 0; ; i++ {
		m.pickPorts()
		err := m.start()
		if err == nil {
			return m
		}
		if !errors.Is(err, errBind) || i == attempts-1 {
			t.Fatalf("starting member %s: %v", cfg.Name, err)
		}
		t.Logf("member %s: port taken, retrying with new ports: %v", cfg.Name, err)
		if m.fresh {
			if err := os.RemoveAll(m.dataDir); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// ExpectStartFailure starts a server with cfg and checks that it exits with
// a non-zero status, without ever serving, and that its output contains
// every string in want. It returns the output.
func ExpectStartFailure(t testing.TB, cfg MemberConfig, want ...string) string {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "m0"
	}
	if cfg.Kind == "" {
		cfg.Kind = Kind()
	}
	m := &Member{t: t, cfg: cfg, log: newNotifyBuffer(), bin: cairnBinary, dataDir: cfg.DataDir}
	if cfg.Kind == KindEtcd {
		m.bin = etcdBinary
	}
	if m.dataDir == "" {
		m.dataDir = filepath.Join(t.TempDir(), cfg.Name+".data")
	}
	m.pickPorts()
	args, env := m.command()
	cmd := exec.Command(m.bin, args...)
	cmd.Env = env
	cmd.SysProcAttr = dieWithUs()
	cmd.Stdout, cmd.Stderr = m.log, m.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		out := m.log.String()
		if err == nil {
			t.Errorf("%s %q exited 0, want a failure\n%s", m.bin, args, out)
		}
		if strings.Contains(out, readyLog) {
			t.Errorf("%s %q served before failing\n%s", m.bin, args, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s %q: output lacks %q\n%s", m.bin, args, w, out)
			}
		}
		return out
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("%s %q still running after %v, want a start failure\n%s", m.bin, args, startTimeout, m.log)
		return ""
	}
}

func (m *Member) pickPorts() {
	m.ClientURL = "http://" + freeLoopbackAddr(m.t)
	m.PeerURL = "http://" + freeLoopbackAddr(m.t)
}

// freeLoopbackAddr returns 127.0.0.1:port for a port that was free a moment
// ago and that this test process has not handed out before.
//
// The ports come from below the kernel's ephemeral range (where bind to
// port 0 and outgoing connections take their local ports), so neither a
// client connection of a running test nor another process's probe can
// take the port between this probe and the server's bind: a cluster's
// members cannot pick new ports one by one once the initial cluster
// names them. Another test process picking at random from the same range
// at the same moment remains possible but unlikely; a single member's
// start retries on a taken port.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	lo, hi := probeRange()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		if hi <= lo {
			break
		}
		port := lo + rand.IntN(hi-lo)
		if portsGiven[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		portsGiven[port] = true
		return addr
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// FreeLoopbackAddr is freeLoopbackAddr for other test packages that start
// servers of their own next to the e2e members (services under a warden).
func FreeLoopbackAddr(t testing.TB) string {
	t.Helper()
	return freeLoopbackAddr(t)
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// probeRange is the range of ports freeLoopbackAddr picks from: up to
// 12000 ports below the first ephemeral port, and not below 10000.
func probeRange() (lo, hi int) {
	first := 32768 // Linux's default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				first = v
			}
		}
	}
	return max(10000, first-12000), first
}

// Name is the member's --name.
func (m *Member) Name() string { return m.cfg.Name }

// DataDir is the member's --data-dir.
func (m *Member) DataDir() string { return m.dataDir }

// Kind is the server implementation this member runs.
func (m *Member) Kind() ServerKind { return m.cfg.Kind }

// ClientAddr is the client listener as host:port.
func (m *Member) ClientAddr() string { return strings.TrimPrefix(m.ClientURL, "http://") }

func (m *Member) args() []string {
	args := []string{
		"--name=" + m.cfg.Name,
		"--data-dir=" + m.dataDir,
		"--listen-client-urls=" + m.ClientURL,
		"--advertise-client-urls=" + m.ClientURL,
		"--listen-peer-urls=" + m.PeerURL,
		"--initial-advertise-peer-urls=" + m.PeerURL,
		"--initial-cluster=" + m.cfg.Name + "=" + m.PeerURL,
		"--initial-cluster-state=new",
		"--initial-cluster-token=e2e-" + m.cfg.Name,
	}
	if m.cfg.InitialCluster != "" {
		state := m.cfg.ClusterState
		if state == "" {
			state = "new"
		}
		args[6] = "--initial-cluster=" + m.cfg.InitialCluster
		args[7] = "--initial-cluster-state=" + state
		args[8] = "--initial-cluster-token=" + m.cfg.ClusterToken
	}
	return append(args, m.cfg.Flags...)
}

// command returns the server's arguments and environment.
func (m *Member) command() (args, env []string) {
	args, env = m.args(), append(cleanEnv(), m.cfg.Env...)
	if m.cfg.FlagsAsEnv {
		for _, a := range args {
			env = append(env, flagToEnv(a))
		}
		args = nil
	}
	return args, env
}

// flagToEnv turns "--max-txn-ops=4" into "ETCD_MAX_TXN_OPS=4".
func flagToEnv(flag string) string {
	name, value, _ := strings.Cut(strings.TrimLeft(flag, "-"), "=")
	return "ETCD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "=" + value
}

// errBind marks a start that failed because a port was taken.
var errBind = errors.New("address already in use")

// start runs the server and waits until it is ready, it exits, or
// startTimeout passes. On failure the process is gone.
func (m *Member) start() error {
	m.mu.Lock()
	if m.proc != nil {
		select {
		case <-m.proc.exited:
		default:
			m.mu.Unlock()
			return errors.New("member already running")
		}
	}
	m.mu.Unlock()

	fmt.Fprintf(m.log, "\n=== e2e: starting %s %s (env as flags: %v, extra env: %q)\n", m.bin, strings.Join(m.args(), " "), m.cfg.FlagsAsEnv, m.cfg.Env)
	mark := m.log.Len()
	args, env := m.command()
	cmd := exec.Command(m.bin, args...)
	cmd.Env = env
	cmd.SysProcAttr = dieWithUs()
	cmd.Stdout = m.log
	cmd.Stderr = m.log
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	m.mu.Lock()
	m.proc = p
	m.mu.Unlock()

	err := m.waitReady(p)
	if err == nil {
		err = m.waitReadyLog(p, mark)
	}
	if err == nil {
		m.reconnectClients()
		return nil
	}
	m.terminate(p, syscall.SIGKILL)
	if strings.Contains(m.log.String()[mark:], "address already in use") {
		return fmt.Errorf("%w: %v", errBind, err)
	}
	return err
}

// waitReady polls a linearizable Get until it succeeds.
func (m *Member) waitReady(p *process) error {
	cli, err := m.newClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if m.cfg.Learner {
			_, lastErr = cli.Status(ctx, m.ClientURL)
		} else {
			_, lastErr = cli.Get(ctx, "e2e-readiness-probe")
		}
		cancel()
		if lastErr == nil {
			return m.recordIDs(cli)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("server exited before it was ready: %v", p.err)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: last Get error: %v", startTimeout, lastErr)
		}
	}
}

// readyLog is the line operators (and scripts) wait for; cairn logs it as
// etcd does.
const readyLog = "ready to serve client requests"

// waitReadyLog waits until this run of the server has logged readyLog. The
// server is already serving, so this should be immediate.
func (m *Member) waitReadyLog(p *process, mark int) error {
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		out, changed := m.log.snapshot()
		if strings.Contains(out[mark:], readyLog) {
			return nil
		}
		select {
		case <-changed:
		case <-p.exited:
			return fmt.Errorf("server exited: %v", p.err)
		case <-deadline.C:
			return fmt.Errorf("serving, but no %q in the log after %v", readyLog, waitTimeout)
		}
	}
}

// recordIDs remembers the member and cluster id on the first start and
// checks that a restart kept them.
func (m *Member) recordIDs(cli *clientv3.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	st, err := cli.Status(ctx, m.ClientURL)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	mid, cid := st.Header.MemberId, st.Header.ClusterId
	if mid == 0 || cid == 0 {
		return fmt.Errorf("status header has member_id %x, cluster_id %x; want both non-zero", mid, cid)
	}
	if m.MemberID == 0 {
		m.MemberID, m.ClusterID = mid, cid
		return nil
	}
	if mid != m.MemberID || cid != m.ClusterID {
		return fmt.Errorf("after restart member_id %x cluster_id %x, before %x %x", mid, cid, m.MemberID, m.ClusterID)
	}
	return nil
}

// terminate sends sig and waits for the process to exit, escalating to
// SIGKILL after stopTimeout. It reports whether the process exited on sig.
func (m *Member) terminate(p *process, sig syscall.Signal) bool {
	m.mu.Lock()
	p.expected = true
	m.mu.Unlock()
	select {
	case <-p.exited:
		return true
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return true
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return false
}

// checkNotCrashed fails the test if p exited without the harness asking.
func (m *Member) checkNotCrashed(p *process) {
	m.t.Helper()
	select {
	case <-p.exited:
		m.mu.Lock()
		expected := p.expected
		m.mu.Unlock()
		if !expected {
			m.t.Errorf("member %s exited on its own: %v", m.cfg.Name, p.err)
		}
	default:
	}
}

func (m *Member) current() *process {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// Stop sends SIGTERM and waits for the server to exit. A server that does
// not exit within stopTimeout is killed and the test fails.
func (m *Member) Stop() {
	m.t.Helper()
	p := m.current()
	if p == nil {
		return
	}
	m.checkNotCrashed(p)
	if !m.terminate(p, syscall.SIGTERM) {
		m.t.Errorf("member %s did not exit within %v of SIGTERM; killed", m.cfg.Name, stopTimeout)
	}
	fmt.Fprintf(m.log, "\n=== e2e: stopped (SIGTERM): %v\n", p.err)
}

// Kill sends SIGKILL and waits for the server to exit.
func (m *Member) Kill() {
	m.t.Helper()
	p := m.current()
	if p == nil {
		return
	}
	m.checkNotCrashed(p)
	m.terminate(p, syscall.SIGKILL)
	fmt.Fprintf(m.log, "\n=== e2e: killed (SIGKILL): %v\n", p.err)
}

// Restart starts the stopped or killed server again on the same data dir and
// ports and waits until it is ready. Clients from Client keep working.
func (m *Member) Restart() {
	m.t.Helper()
	const attempts = 5
	for i := 0; ; i++ {
		err := m.start()
		if err == nil {
			return
		}
		if !errors.Is(err, errBind) || i == attempts-1 {
			m.t.Fatalf("restarting member %s: %v", m.cfg.Name, err)
		}
		// Someone else holds one of our ports for a moment (another
		// test's port probe); wait until both are free again.
		waitFor(m.t, waitTimeout, "member ports to be free", func() bool {
			return portFree(m.ClientAddr()) && portFree(strings.TrimPrefix(m.PeerURL, "http://"))
		})
	}
}

func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Running reports whether the server process is alive.
func (m *Member) Running() bool {
	p := m.current()
	if p == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Log returns everything the server wrote to stdout and stderr so far.
func (m *Member) Log() string { return m.log.String() }

func (m *Member) cleanup() {
	m.mu.Lock()
	clients := m.clients
	m.clients, m.client = nil, nil
	p := m.proc
	m.mu.Unlock()
	for _, c := range clients {
		c.Close()
	}
	if p != nil {
		select {
		case <-p.exited:
			m.checkNotCrashed(p)
		default:
			if !m.terminate(p, syscall.SIGTERM) {
				m.t.Errorf("member %s did not exit within %v of SIGTERM; killed", m.cfg.Name, stopTimeout)
			}
		}
	}
	if m.t.Failed() {
		out := m.log.String()
		if len(out) > maxLogDump {
			out = "...(truncated)...\n" + out[len(out)-maxLogDump:]
		}
		m.t.Logf("output of member %s (%s):\n%s", m.cfg.Name, m.bin, out)
	}
}

// Client returns the member's shared client, created on first use and closed
// when the test ends. It survives Stop/Restart (it reconnects).
func (m *Member) Client() *clientv3.Client {
	m.t.Helper()
	m.mu.Lock()
	c := m.client
	m.mu.Unlock()
	if c != nil {
		return c
	}
	c = m.NewClient()
	m.mu.Lock()
	m.client = c
	m.mu.Unlock()
	return c
}

// NewClient returns a client of its own (its own connection and watch
// streams), closed when the test ends.
func (m *Member) NewClient() *clientv3.Client {
	m.t.Helper()
	c, err := m.newClient()
	if err != nil {
		m.t.Fatalf("client for %s: %v", m.ClientURL, err)
	}
	m.mu.Lock()
	m.clients = append(m.clients, c)
	m.mu.Unlock()
	return c
}

// reconnectClients makes the member's clients connect again at once. While
// the member was down, their connections backed off (gRPC's backoff grows
// to minutes); a request after a restart would wait out the backoff.
func (m *Member) reconnectClients() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.clients {
		if cc := c.ActiveConnection(); cc != nil {
			cc.ResetConnectBackoff()
		}
	}
}

func (m *Member) newClient() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{m.ClientURL},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// dieWithUs makes a child process get SIGKILL if the test binary dies
// (a panic skips cleanups), so no server outlives its test run.
func dieWithUs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// cleanEnv is the environment for child processes: ours without ETCD_* and
// ETCDCTL_* so that a developer's settings do not leak into a test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "ETCD_") || strings.HasPrefix(kv, "ETCDCTL_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// requireEtcdctl skips the test when etcdctl is not installed.
func requireEtcdctl(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(etcdctlBinary); err != nil {
		t.Skipf("%s not found (install the Debian package etcd-client): %v", etcdctlBinary, err)
	}
}

// ctlCommand prepares etcdctl (API v3) against endpoints.
func ctlCommand(ctx context.Context, endpoints string, args ...string) *exec.Cmd {
	full := append([]string{"--endpoints=" + endpoints, "--dial-timeout=5s", "--command-timeout=30s"}, args...)
	cmd := exec.CommandContext(ctx, etcdctlBinary, full...)
	cmd.Env = append(cleanEnv(), "ETCDCTL_API=3")
	cmd.SysProcAttr = dieWithUs()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Etcdctl runs /usr/bin/etcdctl with ETCDCTL_API=3 against this member and
// returns what it printed. err is non-nil when it exited non-zero.
func (m *Member) Etcdctl(args ...string) (stdout, stderr string, err error) {
	return m.EtcdctlIn("", args...)
}

// EtcdctlIn is Etcdctl with stdin.
func (m *Member) EtcdctlIn(stdin string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	return runCtl(ctlCommand(ctx, m.ClientURL, args...), stdin)
}

func runCtl(cmd *exec.Cmd, stdin string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// Ctl runs etcdctl, fails the test unless it exits 0, and returns stdout.
func (m *Member) Ctl(t testing.TB, args ...string) string {
	t.Helper()
	return m.CtlIn(t, "", args...)
}

// CtlIn is Ctl with stdin.
func (m *Member) CtlIn(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	requireEtcdctl(t)
	out, errOut, err := m.EtcdctlIn(stdin, args...)
	if err != nil {
		t.Fatalf("etcdctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// ExpectCtl runs etcdctl and checks that it exits 0 and prints exactly want.
func (m *Member) ExpectCtl(t testing.TB, want string, args ...string) {
	t.Helper()
	m.ExpectCtlIn(t, "", want, args...)
}

// ExpectCtlIn is ExpectCtl with stdin.
func (m *Member) ExpectCtlIn(t testing.TB, stdin, want string, args ...string) {
	t.Helper()
	if got := m.CtlIn(t, stdin, args...); got != want {
		t.Errorf("etcdctl %s:\n got stdout %q\nwant stdout %q", strings.Join(args, " "), got, want)
	}
}

// ExpectCtlError runs etcdctl and checks that it exits non-zero with the line
// "Error: "+wantErr on stderr (etcdctl also logs client warnings there). It
// returns stdout.
func (m *Member) ExpectCtlError(t testing.TB, wantErr string, args ...string) string {
	t.Helper()
	return m.ExpectCtlErrorIn(t, "", wantErr, args...)
}

// ExpectCtlErrorIn is ExpectCtlError with stdin.
func (m *Member) ExpectCtlErrorIn(t testing.TB, stdin, wantErr string, args ...string) string {
	t.Helper()
	requireEtcdctl(t)
	out, errOut, err := m.EtcdctlIn(stdin, args...)
	if err == nil {
		t.Errorf("etcdctl %s: exited 0, want error %q\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), wantErr, out, errOut)
		return out
	}
	if got := ctlErrorLine(errOut); got != "Error: "+wantErr {
		t.Errorf("etcdctl %s: error line %q, want %q\nstderr:\n%s", strings.Join(args, " "), got, "Error: "+wantErr, errOut)
	}
	return out
}

// ctlErrorLine returns the last "Error: ..." line etcdctl printed.
func ctlErrorLine(stderr string) string {
	lines := strings.Split(stderr, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "Error: ") {
			return lines[i]
		}
	}
	return ""
}

// CtlProc is an etcdctl running in the background (watch, lock, elect).
type CtlProc struct {
	t      testing.TB
	args   []string
	cmd    *exec.Cmd
	cancel context.CancelFunc
	stdout *notifyBuffer
	stderr *notifyBuffer
	exited chan struct{}
	err    error
}

// StartCtl starts etcdctl in the background with stdin closed (empty). It is
// killed when the test ends if still running.
func (m *Member) StartCtl(t testing.TB, args ...string) *CtlProc {
	t.Helper()
	return m.StartCtlIn(t, "", args...)
}

// StartCtlIn is StartCtl with stdin.
func (m *Member) StartCtlIn(t testing.TB, stdin string, args ...string) *CtlProc {
	t.Helper()
	requireEtcdctl(t)
	ctx, cancel := context.WithCancel(context.Background())
	p := &CtlProc{
		t: t, args: args, cmd: ctlCommand(ctx, m.ClientURL, args...), cancel: cancel,
		stdout: newNotifyBuffer(), stderr: newNotifyBuffer(), exited: make(chan struct{}),
	}
	p.cmd.Stdin = strings.NewReader(stdin)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("etcdctl %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("background etcdctl %s:\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout, p.stderr)
		}
	})
	return p
}

// Stdout returns what the process printed on stdout so far.
func (p *CtlProc) Stdout() string { return p.stdout.String() }

// Stderr returns what the process printed on stderr so far.
func (p *CtlProc) Stderr() string { return p.stderr.String() }

// WaitStdout waits until cond holds for stdout so far and returns it. It
// fails the test on timeout or when the process exits with cond false.
func (p *CtlProc) WaitStdout(desc string, cond func(stdout string) bool) string {
	p.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		out, changed := p.stdout.snapshot()
		if cond(out) {
			return out
		}
		select {
		case <-changed:
		case <-p.exited:
			out = p.stdout.String()
			if cond(out) {
				return out
			}
			p.t.Fatalf("etcdctl %s exited (%v) before %s\nstdout:\n%s\nstderr:\n%s", strings.Join(p.args, " "), p.err, desc, out, p.stderr)
		case <-deadline.C:
			p.t.Fatalf("etcdctl %s: no %s within %v\nstdout:\n%s\nstderr:\n%s", strings.Join(p.args, " "), desc, waitTimeout, out, p.stderr)
		}
	}
}

// WaitStdoutIs waits until stdout is exactly want.
func (p *CtlProc) WaitStdoutIs(want string) {
	p.t.Helper()
	got := p.WaitStdout(fmt.Sprintf("stdout %q", want), func(s string) bool { return len(s) >= len(want) })
	if got != want {
		p.t.Fatalf("etcdctl %s:\n got stdout %q\nwant stdout %q", strings.Join(p.args, " "), got, want)
	}
}

// Wait waits for the process to exit on its own and returns its error.
func (p *CtlProc) Wait() error {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(waitTimeout):
		p.t.Fatalf("etcdctl %s did not exit within %v\nstdout:\n%s\nstderr:\n%s", strings.Join(p.args, " "), waitTimeout, p.stdout, p.stderr)
		return nil
	}
}

// Exited reports whether the process has exited.
func (p *CtlProc) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process.
func (p *CtlProc) Signal(sig os.Signal) { _ = p.cmd.Process.Signal(sig) }

// Kill kills the process and waits for it.
func (p *CtlProc) Kill() {
	p.cancel()
	<-p.exited
}

// notifyBuffer is a goroutine-safe buffer that lets readers wait for writes.
type notifyBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newNotifyBuffer() *notifyBuffer { return &notifyBuffer{changed: make(chan struct{})} }

func (b *notifyBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return n, err
}

func (b *notifyBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *notifyBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// snapshot returns the contents and a channel closed on the next write.
func (b *notifyBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.changed
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, desc string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, desc)
		}
		<-tick.C
	}
}

// tctx returns a context for client calls, canceled after waitTimeout or
// when the test ends.
func tctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return c
}

// hexID formats a lease or member id as etcdctl prints it.
func hexID(id int64) string { return fmt.Sprintf("%016x", id) }

// parseHexID parses an id as etcdctl prints it.
func parseHexID(t testing.TB, s string) int64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		t.Fatalf("bad hex id %q: %v", s, err)
	}
	return int64(v)
}
