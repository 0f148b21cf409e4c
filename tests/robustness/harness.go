package robustness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/internal/failpoint"
	"github.com/cairn-kv/cairn/tests/e2e"
)

// SeedEnv replays a run: the seed that run printed.
const SeedEnv = "CAIRN_ROBUSTNESS_SEED"

// Bounds of one run. None is a timing assertion on cairn's speed: each is
// a generous deadline after which the run reports that something never
// happened.
const (
	warmupOps      = 100              // acknowledged operations before the fault
	afterOps       = 100              // and after it
	phaseTimeout   = 45 * time.Second // for each of those
	RecoveryBound  = 30 * time.Second // the cluster serves again within this after a fault
	catchUpTimeout = 30 * time.Second // watches reach the final revision
	hashTimeout    = 30 * time.Second // members agree on HashKV
	compactEvery   = 200 * time.Millisecond
	offsetEvery    = 250 * time.Millisecond
	maxOffsetWatch = 10
)

// Env is one run's cluster, traffic and recorders, as a fault sees them.
type Env struct {
	T        *testing.T
	Scenario *Scenario
	Seed     uint64
	Rnd      *rand.Rand
	Members  []*e2e.Member
	Cluster  *e2e.Cluster      // nil for a single member
	FC       *e2e.FaultCluster // when the scenario needs peer-link faults
	Hist     *History
	Traffic  *Traffic
	// FailpointDir holds one file per member name; writing a spec there
	// arms that member's crash points (failpoint.FileEnvVar).
	FailpointDir string

	mu        sync.Mutex
	full      map[*e2e.Member]*Watcher
	fullDone  []WatchRecord // full watches of members that left
	notes     []string
	pinned    map[*e2e.Member]*clientv3.Client
	watchCli  *clientv3.Client
	offsets   []*Watcher
	compacted int64
	// compactLog is every compaction sent (time and revision), shown
	// when a watch check fails.
	compactLog []string
}

// Note adds a line to the run's summary.
func (e *Env) Note(format string, args ...any) {
	e.mu.Lock()
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
	e.mu.Unlock()
	e.T.Logf(format, args...)
}

// Endpoints lists the client URLs of the current members.
func (e *Env) Endpoints() []string {
	var eps []string
	for _, m := range e.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Leader is the member the running members agree leads.
func (e *Env) Leader() *e2e.Member {
	if len(e.Members) == 1 {
		return e.Members[0]
	}
	return e2e.WaitLeaderAmong(e.T, e2e.Running(e.Members)...)
}

// Follower is a running member that is not the leader.
func (e *Env) Follower() *e2e.Member {
	l := e.Leader()
	others := e2e.Others(e2e.Running(e.Members), l)
	return others[e.Rnd.IntN(len(others))]
}

// Arm writes spec to m's failpoint file (empty disarms).
func (e *Env) Arm(m *e2e.Member, spec string) {
	e.T.Helper()
	if err := os.WriteFile(filepath.Join(e.FailpointDir, m.Name()), []byte(spec), 0o644); err != nil {
		e.T.Fatal(err)
	}
}

// WaitExit waits until m's process has exited on its own (a crash point
// fired) and returns false if it has not within timeout.
func (e *Env) WaitExit(m *e2e.Member, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for m.Running() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// WaitOps waits until n more operations than now are acknowledged and
// reports whether they were within timeout.
func (e *Env) WaitOps(n int, timeout time.Duration) bool {
	want := e.Traffic.Acked() + n
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for e.Traffic.Acked() < want {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// startFull opens m's watch of every traffic key from revision 1 on a
// client that talks to m alone.
func (e *Env) startFull(m *e2e.Member) {
	cli, err := newClient([]string{m.ClientURL})
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { cli.Close() })
	w := StartWatcher(cli, "full@"+m.Name(), WatchSpec{Key: -1, StartRev: 1}, e.Hist)
	e.mu.Lock()
	e.full[m] = w
	e.pinned[m] = cli
	e.mu.Unlock()
}

// DropMember takes m out of the run (member replace): its full watch is
// kept for comparison but need not reach the end.
func (e *Env) DropMember(m *e2e.Member) {
	e.mu.Lock()
	w := e.full[m]
	delete(e.full, m)
	e.mu.Unlock()
	if w != nil {
		w.Stop()
		e.mu.Lock()
		e.fullDone = append(e.fullDone, WatchRecord{Name: w.Name, Spec: w.Spec, Resps: w.Resps()})
		e.mu.Unlock()
	}
	var ms []*e2e.Member
	for _, x := range e.Members {
		if x != m {
			ms = append(ms, x)
		}
	}
	e.Members = ms
}

// AddMember adds m to the run. Its history starts after compactions, so
// it gets no full watch; HashKV still compares it.
func (e *Env) AddMember(m *e2e.Member) { e.Members = append(e.Members, m) }

// minFullRev is the lowest revision every full watch has delivered.
func (e *Env) minFullRev() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	lo := int64(-1)
	for _, w := range e.full {
		if r := w.LastRev(); lo < 0 || r < lo {
			lo = r
		}
	}
	return lo
}

// compactor compacts every compactEvery, never past what a full watch
// still needs (so that the reference history stays complete).
func (e *Env) compactor(cli *clientv3.Client, stop <-chan struct{}) {
	tick := time.NewTicker(compactEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		target := e.minFullRev() - 20
		e.mu.Lock()
		done := e.compacted
		e.mu.Unlock()
		if target <= done || target < 2 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Compact(ctx, target)
		cancel()
		// A failed compaction may still have happened: count it, the
		// checkers only use this to excuse what a compaction explains.
		_ = err
		e.noteCompacted(target)
		e.mu.Lock()
		e.compactLog = append(e.compactLog, fmt.Sprintf("t=%v:%d", time.Duration(e.Hist.Now()).Round(time.Millisecond), target))
		e.mu.Unlock()
	}
}

// noteCompacted records that the keyspace may be compacted up to rev.
func (e *Env) noteCompacted(rev int64) {
	e.mu.Lock()
	e.compacted = max(e.compacted, rev)
	e.mu.Unlock()
}

// offsetWatches opens watches at revisions a little behind the head,
// with random options, and asks for progress notifications.
func (e *Env) offsetWatches(cli *clientv3.Client, rnd *rand.Rand, stop <-chan struct{}) {
	tick := time.NewTicker(offsetEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = cli.RequestProgress(ctx)
		cancel()
		e.mu.Lock()
		n := len(e.offsets)
		e.mu.Unlock()
		if n >= maxOffsetWatch {
			continue
		}
		head := e.minFullRev()
		if head < 1 {
			continue
		}
		spec := WatchSpec{
			Key:      -1,
			StartRev: max(1, head-int64(rnd.IntN(40))),
			PrevKV:   rnd.IntN(2) == 0,
			Progress: rnd.IntN(2) == 0,
		}
		if rnd.IntN(3) == 0 {
			spec.Key = rnd.IntN(NumKeys)
		}
		switch rnd.IntN(5) {
		case 0:
			spec.NoPut = true
		case 1:
			spec.NoDelete = true
		}
		w := StartWatcher(cli, fmt.Sprintf("offset%d", n), spec, e.Hist)
		e.mu.Lock()
		e.offsets = append(e.offsets, w)
		e.mu.Unlock()
	}
}

// Run runs one scenario with one seed: a cluster, traffic, the fault,
// recovery, and every checker. Violations fail t.
func Run(t *testing.T, sc *Scenario, seed uint64) *Report {
	t.Logf("scenario %s seed %d (replay: %s=%d go test ./tests/robustness -run 'TestRobustness/%s$')", sc.Name, seed, SeedEnv, seed, sc.Name)
	fpDir := t.TempDir()
	t.Setenv(failpoint.FileEnvVar, filepath.Join(fpDir, "{name}"))
	e := &Env{T: t, Scenario: sc, Seed: seed, Rnd: rand.New(rand.NewPCG(seed, 0xfa17)), Hist: NewHistory(),
		FailpointDir: fpDir, full: map[*e2e.Member]*Watcher{}, pinned: map[*e2e.Member]*clientv3.Client{}}
	phases := newPhases()
	flags := append([]string{"--experimental-watch-progress-notify-interval=300ms"}, sc.Flags...)
	if sc.Members == 1 {
		e.Members = []*e2e.Member{e2e.StartMember(t, e2e.MemberConfig{Flags: flags})}
	} else if sc.Net {
		e.FC = e2e.StartFaultCluster(t, sc.Members, flags...)
		e.Cluster = e.FC.Cluster
	} else {
		// Without proxies a member that is down refuses connections at
		// once; behind a PeerNet front its peers wait for a stream
		// timeout, which only slows a run down.
		e.Cluster = e2e.StartCluster(t, sc.Members, flags...)
	}
	if e.Cluster != nil {
		e.Members = append([]*e2e.Member(nil), e.Cluster.Members...)
	}

	admin, err := newClient(e.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	phases.mark("start")
	rev0 := currentRev(t, admin)
	for _, m := range e.Members {
		e.startFull(m)
	}
	e.watchCli, err = newClient(e.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer e.watchCli.Close()

	tcfg := DefaultTraffic
	if sc.Traffic != nil {
		tcfg = *sc.Traffic
	}
	e.Traffic, err = StartTraffic(tcfg, e.Endpoints(), e.Hist, seed)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); e.compactor(admin, stop) }()
	go func() { defer bg.Done(); e.offsetWatches(e.watchCli, rand.New(rand.NewPCG(seed, 0x0ff5)), stop) }()
	stopAll := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		e.Traffic.Stop()
		bg.Wait()
	}
	defer stopAll()

	r := &Report{}
	warm, after := warmupOps, afterOps
	if seed != 1 {
		// Randomized runs have time for more traffic around the fault.
		warm, after = 3*warm, 3*after
	}
	if !e.WaitOps(warm, phaseTimeout) {
		t.Fatalf("warm-up: fewer than %d operations acknowledged in %v", warm, phaseTimeout)
	}
	phases.mark("warm-up")
	t.Logf("fault: %s", sc.Fault.Name)
	sc.Fault.Inject(e)
	phases.mark("fault")
	faultEnd := time.Now()
	if took, ok := waitServing(admin, RecoveryBound); !ok {
		r.violate("recovery: the cluster did not serve a linearizable read and a write within %v after the fault", RecoveryBound)
	} else {
		e.Note("serving again %v after the fault ended", took.Round(time.Millisecond))
	}
	if !e.WaitOps(after, phaseTimeout) {
		r.violate("recovery: fewer than %d operations acknowledged in %v after the fault", after, phaseTimeout)
	}
	stopAll()
	phases.mark("after fault")
	t.Logf("traffic stopped %v after the fault; %d operations acknowledged", time.Since(faultEnd).Round(time.Millisecond), e.Traffic.Acked())

	if tcfg.ExpiringLeases {
		expired := 0
		for _, op := range e.Hist.Ops() {
			if op.Req.Kind == OpPutLease && strings.Contains(op.Resp.Err, "lease not found") {
				expired++
			}
		}
		if expired == 0 {
			t.Errorf("no put failed with \"lease not found\": no lease expired while the traffic ran, the scenario tested nothing")
		}
		e.Note("%d puts found their lease expired", expired)
	}
	final := currentRev(t, admin)
	in := e.collect(rev0, final)
	in.VisualizeDir = filepath.Join(os.TempDir(), fmt.Sprintf("cairn-robustness-%s-%d", sc.Name, seed))
	phases.mark("watch catch-up")
	checkHashKV(r, e.Members)
	phases.mark("hashkv")
	rep := Check(in)
	phases.mark("check")
	e.Note("phases: %s", phases)
	rep.Violations = append(r.Violations, rep.Violations...)
	rep.Notes = append(append(e.notes, r.Notes...), rep.Notes...)
	t.Logf("%s seed %d: %s", sc.Name, seed, rep)
	if !rep.OK() {
		e.mu.Lock()
		t.Logf("compactions: %s", strings.Join(e.compactLog, " "))
		e.mu.Unlock()
		t.Errorf("%s seed %d: %d violations (replay with %s=%d)", sc.Name, seed, len(rep.Violations), SeedEnv, seed)
	}
	return rep
}

// phases times the steps of a run, for its summary.
type phases struct {
	last  time.Time
	steps []string
}

func newPhases() *phases { return &phases{last: time.Now()} }

func (p *phases) mark(name string) {
	now := time.Now()
	p.steps = append(p.steps, fmt.Sprintf("%s %v", name, now.Sub(p.last).Round(10*time.Millisecond)))
	p.last = now
}

func (p *phases) String() string { return strings.Join(p.steps, ", ") }

// collect waits until the watches caught up with final and returns what
// everything recorded.
func (e *Env) collect(rev0, final int64) CheckInput {
	deadline := time.Now().Add(catchUpTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		behind := 0
		e.mu.Lock()
		for _, w := range e.full {
			if w.LastRev() < final && !w.Ended() {
				behind++
			}
		}
		for _, w := range e.offsets {
			if w.LastRev() < final && !w.Ended() {
				behind++
			}
		}
		e.mu.Unlock()
		if behind == 0 || time.Now().After(deadline) {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = e.watchCli.RequestProgress(ctx)
		e.mu.Lock()
		for _, cli := range e.pinned {
			_ = cli.RequestProgress(ctx)
		}
		e.mu.Unlock()
		cancel()
		<-tick.C
	}
	in := CheckInput{Ops: append(e.Hist.Ops(), e.Hist.Expiries()...), Rev0: rev0, Final: final}
	e.mu.Lock()
	defer e.mu.Unlock()
	in.MaxCompacted = e.compacted
	for _, m := range e.Members {
		if w := e.full[m]; w != nil {
			w.Stop()
			in.Full = append(in.Full, WatchRecord{Name: w.Name, Spec: w.Spec, Resps: w.Resps(), Complete: true})
		}
	}
	in.Full = append(in.Full, e.fullDone...)
	for _, w := range e.offsets {
		w.Stop()
		in.Offsets = append(in.Offsets, WatchRecord{Name: w.Name, Spec: w.Spec, Started: w.Started, Resps: w.Resps(), Complete: true})
	}
	return in
}

// currentRev reads the revision linearizably, retrying until a deadline.
func currentRev(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	deadline := time.Now().Add(RecoveryBound)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := cli.Get(ctx, "robustness-rev-probe")
		cancel()
		if err == nil {
			return r.Header.Revision
		}
		if time.Now().After(deadline) {
			t.Fatalf("reading the current revision: %v", err)
		}
	}
}

// waitServing waits until a linearizable read succeeds, and returns how
// long that took.
func waitServing(cli *clientv3.Client, bound time.Duration) (time.Duration, bool) {
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < bound {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "robustness-rev-probe")
		cancel()
		if err == nil {
			return time.Since(start), true
		}
		<-tick.C
	}
	return time.Since(start), false
}

// checkHashKV waits until every running member reports the same HashKV
// at the same revision.
func checkHashKV(r *Report, ms []*e2e.Member) {
	deadline := time.Now().Add(hashTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last []string
	for {
		last = last[:0]
		var hash uint32
		var rev int64
		agree := true
		for i, m := range ms {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			resp, err := m.Client().HashKV(ctx, m.ClientURL, 0)
			cancel()
			if err != nil {
				agree = false
				last = append(last, fmt.Sprintf("%s: %v", m.Name(), err))
				continue
			}
			last = append(last, fmt.Sprintf("%s: hash %d at revision %d (compact %d)", m.Name(), resp.Hash, resp.Header.Revision, resp.CompactRevision))
			if i == 0 {
				hash, rev = resp.Hash, resp.Header.Revision
			} else if resp.Hash != hash || resp.Header.Revision != rev {
				agree = false
			}
		}
		if agree {
			r.note("HashKV agrees: %s", strings.Join(last, "; "))
			return
		}
		if time.Now().After(deadline) {
			r.violate("HashKV: members disagree after %v: %s", hashTimeout, strings.Join(last, "; "))
			return
		}
		<-tick.C
	}
}
