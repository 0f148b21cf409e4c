package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"
)

const testCluster = 0xc1

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// recorder is a Handler that records what it is given.
type recorder struct {
	mu          sync.Mutex
	byFrom      map[uint64][]*raftpb.Message
	count       map[raftpb.MessageType]int
	unreachable map[uint64]int
	snaps       []snapReport
	gate        chan struct{} // if set, Process waits for it to be closed
	processErr  error
}

func newRecorder() *recorder {
	return &recorder{
		byFrom:      map[uint64][]*raftpb.Message{},
		count:       map[raftpb.MessageType]int{},
		unreachable: map[uint64]int{},
	}
}

func (r *recorder) Process(ctx context.Context, m *raftpb.Message) error {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byFrom[m.GetFrom()] = append(r.byFrom[m.GetFrom()], m)
	r.count[m.GetType()]++
	return r.processErr
}

func (r *recorder) ReportUnreachable(id uint64) {
	r.mu.Lock()
	r.unreachable[id]++
	r.mu.Unlock()
}

func (r *recorder) ReportSnapshot(id uint64, failed bool) {
	r.mu.Lock()
	r.snaps = append(r.snaps, snapReport{id, failed})
	r.mu.Unlock()
}

func (r *recorder) received(from uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byFrom[from])
}

func (r *recorder) messages(from uint64) []*raftpb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*raftpb.Message(nil), r.byFrom[from]...)
}

func (r *recorder) typeCount(typ raftpb.MessageType) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[typ]
}

func (r *recorder) unreachableCount(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[id]
}

func (r *recorder) snapshotReports() []snapReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]snapReport(nil), r.snaps...)
}

// msg builds a message; Index carries a per-sender sequence number.
func msg(typ raftpb.MessageType, from, to, seq uint64) *raftpb.Message {
	return &raftpb.Message{Type: typ.Enum(), From: proto.Uint64(from), To: proto.Uint64(to), Index: proto.Uint64(seq), Term: proto.Uint64(1)}
}

// member is a transport served on a loopback port.
type member struct {
	id   uint64
	tr   *Transport
	rec  *recorder
	reg  *prometheus.Registry
	logs *observer.ObservedLogs
	srv  *http.Server
	ln   net.Listener
	url  string
	// protos records "path proto" of the requests served.
	protos sync.Map
}

func (m *member) served(path, proto string) bool {
	_, ok := m.protos.Load(path + " " + proto)
	return ok
}

type memberOpt func(*Config, *http.Server)

func withCluster(c uint64) memberOpt { return func(cfg *Config, _ *http.Server) { cfg.ClusterID = c } }

func withH2C() memberOpt {
	return func(cfg *Config, srv *http.Server) {
		cfg.UnencryptedHTTP2 = true
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		srv.Protocols = &p
	}
}

func withConfig(f func(*Config)) memberOpt { return func(cfg *Config, _ *http.Server) { f(cfg) } }

// testConfig reconnects quickly and pings often, but declares a peer
// silent only after a long time: a loaded test machine must not turn a
// slow pong into lost messages. Tests about silent peers use
// withSilenceAfter.
func testConfig(cfg *Config) {
	cfg.PingInterval = 20 * time.Millisecond
	cfg.IdleTimeout = 30 * time.Second
	cfg.DialTimeout = 10 * time.Second
	cfg.BackoffMin = 5 * time.Millisecond
	cfg.BackoffMax = 50 * time.Millisecond
}

// withSilenceAfter sets a short IdleTimeout, for tests of dead links.
func withSilenceAfter(d time.Duration) memberOpt {
	return func(cfg *Config, _ *http.Server) {
		cfg.IdleTimeout = d
		cfg.DialTimeout = d
	}
}

// startMember starts member id on addr ("127.0.0.1:0" for a free port).
func startMember(t testing.TB, id uint64, addr string, opts ...memberOpt) *member {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	m := &member{id: id, rec: newRecorder(), reg: prometheus.NewRegistry(), logs: logs, ln: ln,
		url: "http://" + ln.Addr().String(), srv: &http.Server{}}
	cfg := Config{ClusterID: testCluster, ID: id, Handler: m.rec, Registerer: m.reg,
		Logger: zap.New(core)}
	testConfig(&cfg)
	for _, o := range opts {
		o(&cfg, m.srv)
	}
	m.tr, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h := m.tr.Handler()
	mux.Handle(PathPrefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.protos.Store(r.URL.Path+" "+r.Proto, true)
		h.ServeHTTP(w, r)
	}))
	m.srv.Handler = mux
	m.srv.ErrorLog = nil
	go func() { _ = m.srv.Serve(ln) }()
	t.Cleanup(m.stop)
	t.Cleanup(func() {
		if t.Failed() {
			m.dump(t)
		}
	})
	return m
}

// dump logs the member's log lines and peer states, for a failed test.
func (m *member) dump(t testing.TB) {
	for _, e := range m.logs.All() {
		t.Logf("member %x log: %s %s %v", m.id, e.Level, e.Message, e.ContextMap())
	}
	for _, id := range m.tr.Peers() {
		st, _ := m.tr.Status(id)
		t.Logf("member %x peer %x: %+v unreachable reports %d", m.id, id, st, m.rec.unreachableCount(id))
	}
	m.rec.mu.Lock()
	for from, ms := range m.rec.byFrom {
		t.Logf("member %x received %d from %x", m.id, len(ms), from)
	}
	m.rec.mu.Unlock()
}

// stop closes the transport and the server (idempotent).
func (m *member) stop() {
	_ = m.tr.Close()
	_ = m.srv.Close()
}

// connect makes every member a peer of every other.
func connect(t testing.TB, ms ...*member) {
	t.Helper()
	for _, a := range ms {
		for _, b := range ms {
			if a != b {
				if err := a.tr.AddPeer(b.id, []string{b.url}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, a := range ms {
		for _, b := range ms {
			if a != b {
				waitActive(t, a, b.id)
			}
		}
	}
}

func waitActive(t testing.TB, m *member, peer uint64) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%x to see %x active", m.id, peer), func() bool {
		st, ok := m.tr.Status(peer)
		return ok && st.Active
	})
}

func waitInactive(t testing.TB, m *member, peer uint64) PeerStatus {
	t.Helper()
	var st PeerStatus
	waitFor(t, 10*time.Second, fmt.Sprintf("%x to see %x inactive", m.id, peer), func() bool {
		var ok bool
		st, ok = m.tr.Status(peer)
		return ok && !st.Active && st.Err != nil
	})
	return st
}

// checkInOrder checks that the messages from one sender carry increasing
// sequence numbers from 1 (gaps allowed only if allowGaps).
func checkInOrder(t testing.TB, msgs []*raftpb.Message, allowGaps bool) {
	t.Helper()
	checkSeq(t, msgs, 0, allowGaps)
}

// checkConsecutive checks that msgs carry consecutive sequence numbers,
// from whatever the first one has.
func checkConsecutive(t testing.TB, msgs []*raftpb.Message) {
	t.Helper()
	if len(msgs) > 0 {
		checkSeq(t, msgs, msgs[0].GetIndex()-1, false)
	}
}

func checkSeq(t testing.TB, msgs []*raftpb.Message, last uint64, allowGaps bool) {
	t.Helper()
	for i, m := range msgs {
		seq := m.GetIndex()
		if seq <= last || (!allowGaps && seq != last+1) {
			t.Fatalf("message %d has sequence %d after %d", i, seq, last)
		}
		last = seq
	}
}

func isErr(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// metricValue is a counter's or gauge's value, or a histogram's count.
func metricValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	switch {
	case d.Counter != nil:
		return d.GetCounter().GetValue()
	case d.Gauge != nil:
		return d.GetGauge().GetValue()
	case d.Histogram != nil:
		return float64(d.GetHistogram().GetSampleCount())
	}
	return 0
}
