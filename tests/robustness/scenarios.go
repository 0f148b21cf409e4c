package robustness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/internal/failpoint"
	"github.com/cairn-kv/cairn/tests/e2e"
)

// Scenario is a cluster shape, a load and exactly one fault.
type Scenario struct {
	Name    string
	Members int      // 1 or 3
	Net     bool     // peer links through a PeerNet (for partitions)
	Flags   []string // extra server flags
	Traffic *TrafficConfig
	Fault   Fault
}

// Fault injects one fault into a running, loaded cluster and returns once
// it is over: every member that should run is running again and every
// link is healed. It waits on conditions, never on the clock alone.
type Fault struct {
	Name   string
	Inject func(e *Env)
}

// faultWait bounds each wait inside a fault.
const faultWait = 45 * time.Second

// snapshotFlags make the leader snapshot and compact its log often, so a
// follower that falls behind needs a snapshot.
var snapshotFlags = []string{"--snapshot-count=100", "--experimental-snapshot-catchup-entries=20"}

// leaseHeavy is traffic with many leased puts and revokes.
var leaseHeavy = func() *TrafficConfig { c := DefaultTraffic; c.LeaseHeavy = true; return &c }()

// Scenarios is every scenario, in the order of the short run.
func Scenarios() []*Scenario {
	scs := []*Scenario{
		{Name: "kill-single", Members: 1, Fault: Fault{"SIGKILL the only member, restart", killSome(pickAll)}},
		{Name: "kill-leader", Members: 3, Fault: Fault{"SIGKILL the leader, restart", killSome(pickLeader)}},
		{Name: "kill-follower", Members: 3, Fault: Fault{"SIGKILL a follower, restart", killSome(pickFollower)}},
		{Name: "kill-all", Members: 3, Fault: Fault{"SIGKILL every member, restart all", killSome(pickAll)}},
		{Name: "pause-leader", Members: 3, Fault: Fault{"SIGSTOP the leader until the others elect a new one, SIGCONT", pause(pickLeader)}},
		{Name: "pause-follower", Members: 3, Fault: Fault{"SIGSTOP a follower under load, SIGCONT", pause(pickFollower)}},
		{Name: "pause-single", Members: 1, Fault: Fault{"SIGSTOP the only member past the election timeout, SIGCONT", pause(pickAll)}},
		{Name: "stutter-leader", Members: 3, Fault: Fault{"SIGSTOP/SIGCONT the leader in bursts of 50-1500ms (slow, delayed member)", stutter(pickLeader)}},
		{Name: "blackhole-leader", Members: 3, Net: true, Fault: Fault{"black-hole every peer link of the leader until a new leader, heal", blackhole(pickLeader, false)}},
		{Name: "blackhole-follower", Members: 3, Net: true, Fault: Fault{"black-hole every peer link of a follower under load, heal", blackhole(pickFollower, false)}},
		{Name: "delay-leader", Members: 3, Net: true, Fault: Fault{"every peer link of the leader 60 ms slow under load, heal", degrade(pickLeader, 60*time.Millisecond, 0)}},
		{Name: "drop-leader", Members: 3, Net: true, Fault: Fault{"every peer link of the leader lossy (5% of chunks cut their connection) under load, heal", degrade(pickLeader, 0, 0.05)}},
		{Name: "drop-follower", Members: 3, Net: true, Fault: Fault{"every peer link of a follower slow (50 ms) and lossy (10%) under load, heal", degrade(pickFollower, 50*time.Millisecond, 0.10)}},
		{Name: "flap-leader", Members: 3, Net: true, Fault: Fault{"isolate and heal the leader's peer links six times, each cut a seeded 100-1500 ms (lossy, flapping link)", flap(pickLeader)}},
		{Name: "blackhole-follower-snapshot", Members: 3, Net: true, Flags: snapshotFlags,
			Fault: Fault{"black-hole a follower until the leader compacted past it, heal: it catches up by snapshot", blackhole(pickFollower, true)}},
		{Name: "member-replace", Members: 3, Fault: Fault{"remove a follower, wipe it, add a new empty member", replaceMember}},
		{Name: "compact-defrag", Members: 3, Fault: Fault{"physical compaction and defragmentation of every member under load", compactDefrag}},
		{Name: "lease-revoke-kill-leader", Members: 3, Traffic: leaseHeavy, Fault: Fault{"lease-heavy traffic, SIGKILL the leader, restart", killSome(pickLeader)}},
		{Name: "lease-expiry-kill-leader", Members: 3, Traffic: expiringLeases, Fault: Fault{"leases of 2s expire during the run; SIGKILL the leader, restart, until a lease expired", killThenExpiry}},
		{Name: "kill-all-unsynced", Members: 3, Traffic: fastTraffic, Fault: Fault{"SIGKILL every member in the middle of a write burst, restart all", killSome(pickAll)}},
	}
	for _, p := range []struct {
		point string
		who   picker
	}{
		{"raft-before-save", pickLeader},
		{"raft-after-save", pickFollower},
		{"apply-before-commit", pickLeader},
		{"apply-after-commit", pickFollower},
		{"compact-before-physical", pickFollower},
		{"compact-after-physical", pickLeader},
	} {
		scs = append(scs, &Scenario{Name: "crash-" + p.point, Members: 3,
			Fault: Fault{"crash point " + p.point + ", restart", crashAt(p.point, p.who)}})
	}
	scs = append(scs, &Scenario{Name: "crash-single-raft-before-save", Members: 1,
		Fault: Fault{"crash point raft-before-save on the only member, restart", crashAt("raft-before-save", pickAll)}})
	for _, p := range []struct {
		point  string
		leader bool
	}{
		{"snapshot-before-send", true},
		{"snapshot-after-receive", false},
		{"snapshot-before-install", false},
		{"snapshot-after-install", false},
	} {
		scs = append(scs, &Scenario{Name: "crash-" + p.point, Members: 3, Net: true, Flags: snapshotFlags,
			Fault: Fault{"a follower falls behind; crash point " + p.point + " during its snapshot catch-up, restart", crashSnapshot(p.point, p.leader)}})
	}
	return scs
}

// killThenExpiry kills and restarts the leader, then lets the traffic run
// until a put found its lease expired.
func killThenExpiry(e *Env) {
	killSome(pickLeader)(e)
	deadline := time.Now().Add(faultWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		for _, op := range e.Hist.Ops() {
			if op.Req.Kind == OpPutLease && strings.Contains(op.Resp.Err, "lease not found") {
				return
			}
		}
		<-tick.C
	}
}

// expiringLeases is lease-heavy traffic whose leases expire (the leader
// revokes them) during the run.
var expiringLeases = func() *TrafficConfig {
	c := DefaultTraffic
	c.LeaseHeavy, c.ExpiringLeases, c.LeaseTTL = true, true, 2
	return &c
}()

// fastTraffic writes as fast as the clients can.
var fastTraffic = func() *TrafficConfig { c := DefaultTraffic; c.Tick = time.Millisecond; c.Clients = 6; return &c }()

// picker chooses the members a fault hits.
type picker func(e *Env) []*e2e.Member

func pickLeader(e *Env) []*e2e.Member   { return []*e2e.Member{e.Leader()} }
func pickFollower(e *Env) []*e2e.Member { return []*e2e.Member{e.Follower()} }
func pickAll(e *Env) []*e2e.Member      { return append([]*e2e.Member(nil), e.Members...) }

// restart starts the given stopped members again at once (a quorum may
// need all of them).
func restart(e *Env, ms []*e2e.Member) {
	if len(ms) == 1 {
		ms[0].Restart()
		return
	}
	e2e.StartAll(e.T, ms, "")
}

func killSome(pick picker) func(e *Env) {
	return func(e *Env) {
		ms := pick(e)
		for _, m := range ms {
			m.Kill()
		}
		e.Note("killed %s", names(ms))
		if len(ms) < len(e.Members) && !e.WaitOps(50, faultWait) {
			e.T.Errorf("the remaining members served fewer than 50 operations in %v", faultWait)
		}
		restart(e, ms)
	}
}

func names(ms []*e2e.Member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name())
	}
	return strings.Join(s, ",")
}

// pidOf finds the server process of m by its data dir.
func pidOf(e *Env, m *e2e.Member) int {
	e.T.Helper()
	want := "--data-dir=" + m.DataDir()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		e.T.Fatal(err)
	}
	for _, d := range ents {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == want {
				return pid
			}
		}
	}
	e.T.Fatalf("no process with %s", want)
	return 0
}

func pause(pick picker) func(e *Env) {
	return func(e *Env) {
		m := pick(e)[0]
		wasLeader := len(e.Members) > 1 && m.MemberID == e.Leader().MemberID
		pid := pidOf(e, m)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			e.T.Fatal(err)
		}
		cont := func() {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				e.T.Errorf("SIGCONT %s: %v", m.Name(), err)
			}
		}
		defer cont()
		e.Note("stopped %s (SIGSTOP)", m.Name())
		switch {
		case len(e.Members) == 1:
			// Nobody can notice a lone member's pause but its clients:
			// wait until requests have failed on it for longer than an
			// election timeout.
			waitFailures(e, 20)
		case wasLeader:
			// e.Leader asks the running (not the stopped) members;
			// wait until the others elected one of themselves.
			e2e.WaitLeaderAmong(e.T, e2e.Others(e.Members, m)...)
		default:
			if !e.WaitOps(100, faultWait) {
				e.T.Errorf("the others served fewer than 100 operations in %v", faultWait)
			}
		}
	}
}

// stutter stops and continues m a number of times, each stop 50 to 1500
// ms (a seeded draw: some shorter and some longer than the election
// timeout), with the traffic running in between. Its peers see its
// messages delayed, as over a slow link.
func stutter(pick picker) func(e *Env) {
	return func(e *Env) {
		m := pick(e)[0]
		pid := pidOf(e, m)
		var stops []string
		for i := 0; i < 6; i++ {
			d := time.Duration(50+e.Rnd.IntN(1450)) * time.Millisecond
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				e.T.Fatal(err)
			}
			// The pause itself is the fault: nothing waits on it.
			timer := time.NewTimer(d)
			<-timer.C
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				e.T.Fatal(err)
			}
			stops = append(stops, d.String())
			if !e.WaitOps(20, faultWait) {
				e.T.Errorf("fewer than 20 operations in %v after a stop of %s", faultWait, m.Name())
			}
		}
		e.Note("stopped %s %d times: %s", m.Name(), len(stops), strings.Join(stops, " "))
	}
}

// flap cuts every peer link of the member picked first (black hole) and
// heals them, six times, each cut 100 to 1500 ms (a seeded draw), with
// traffic in between. Connections that lost data stay silent until the
// members replace them, as after packet loss that TCP cannot repair.
func flap(pick picker) func(e *Env) {
	return func(e *Env) {
		m := pick(e)[0]
		var cuts []string
		for i := 0; i < 6; i++ {
			d := time.Duration(100+e.Rnd.IntN(1400)) * time.Millisecond
			e.FC.Isolate(m)
			// The cut itself is the fault: nothing waits on it.
			timer := time.NewTimer(d)
			<-timer.C
			e.FC.Heal()
			cuts = append(cuts, d.String())
			if !e.WaitOps(20, faultWait) {
				e.T.Errorf("fewer than 20 operations in %v after cutting %s off", faultWait, m.Name())
			}
		}
		e.Note("cut %s off %d times: %s", m.Name(), len(cuts), strings.Join(cuts, " "))
	}
}

// waitFailures waits until n more operations than now have failed.
func waitFailures(e *Env, n int) {
	count := func() int {
		k := 0
		for _, op := range e.Hist.Ops() {
			if op.Resp.Unknown {
				k++
			}
		}
		return k
	}
	want := count() + n
	deadline := time.Now().Add(faultWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for count() < want && time.Now().Before(deadline) {
		<-tick.C
	}
}

// degrade makes every peer link of the member picked first slow (each
// chunk held for delay) and lossy (each chunk's connection cut with
// probability drop) while the traffic goes on, then heals.
func degrade(pick picker, delay time.Duration, drop float64) func(e *Env) {
	return func(e *Env) {
		m := pick(e)[0]
		e.FC.Degrade(m, delay, drop)
		e.Note("degraded %s's peer links: delay %v, drop %.0f%%", m.Name(), delay, drop*100)
		if !e.WaitOps(100, faultWait) {
			e.T.Errorf("fewer than 100 operations in %v with %s's links degraded", faultWait, m.Name())
		}
		e.FC.Heal()
	}
}

func blackhole(pick picker, needSnapshot bool) func(e *Env) {
	return func(e *Env) {
		m := pick(e)[0]
		wasLeader := len(e.Members) > 1 && m.MemberID == e.Leader().MemberID
		mark := len(m.Log())
		e.FC.Isolate(m)
		e.Note("isolated %s (leader %v)", m.Name(), wasLeader)
		if wasLeader {
			e2e.WaitLeaderAmong(e.T, e2e.Others(e.Members, m)...)
		}
		n := 100
		if needSnapshot {
			n = 300 // more writes than a snapshot (100) and the catch-up entries (20)
		}
		if !e.WaitOps(n, faultWait) {
			e.T.Errorf("the others served fewer than %d operations in %v", n, faultWait)
		}
		e.FC.Heal()
		if needSnapshot && !waitLog(m, mark, "received snapshot", faultWait) {
			e.T.Errorf("%s never received a snapshot after the heal", m.Name())
		}
	}
}

// waitLog waits until m logged want after byte offset mark.
func waitLog(m *e2e.Member, mark int, want string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if l := m.Log(); len(l) > mark && strings.Contains(l[mark:], want) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

// crashAt arms point on a member to exit on one of its next hits, waits
// for the crash, and restarts the member unarmed.
func crashAt(point string, pick picker) func(e *Env) {
	return func(e *Env) {
		if e.Seed != 1 && len(e.Members) > 1 {
			// Randomized runs crash the leader or a follower.
			pick = []picker{pickLeader, pickFollower}[e.Rnd.IntN(2)]
		}
		m := pick(e)[0]
		n := 1 + e.Rnd.IntN(10)
		action := "exit"
		if e.Seed != 1 && e.Rnd.IntN(2) == 0 {
			action = "panic" // deferred calls run, unlike exit
		}
		crash(e, m, fmt.Sprintf("%s=%d*%s", point, n, action), func() {})
	}
}

// crash arms spec on m, runs during (which makes the point reachable),
// waits for m to exit, disarms and restarts it.
func crash(e *Env, m *e2e.Member, spec string, during func()) {
	e.T.Helper()
	e2e.ExpectExit(e.T, m)
	e.Arm(m, spec)
	e.Note("armed %s on %s", spec, m.Name())
	during()
	armed := time.Now()
	exited := e.WaitExit(m, faultWait)
	fired := time.Since(armed)
	e.Arm(m, "")
	if !exited {
		e.T.Errorf("crash point %q never fired on %s within %v", spec, m.Name(), faultWait)
		m.Kill()
	} else if l := m.Log(); !strings.Contains(l, fmt.Sprintf(": exit %d", failpoint.ExitCode)) && !strings.Contains(l, ": panic") {
		e.T.Errorf("%s exited, but not at the crash point:\n%s", m.Name(), tail(m.Log(), 4000))
	}
	start := time.Now()
	mark := len(m.Log())
	restart(e, []*e2e.Member{m})
	if d := time.Since(start); d > 3*time.Second {
		e.T.Logf("slow restart of %s (%v); its warnings since:\n%s", m.Name(), d, warnings(m.Log()[mark:]))
	}
	e.Note("%s fired %v after arming (or the heal); restart took %v", spec, fired.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// warnings picks the warning and error lines of a server log.
func warnings(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"level":"warn"`) || strings.Contains(l, `"level":"error"`) || strings.Contains(l, "=== e2e") {
			out = append(out, l[:min(len(l), 400)])
		}
	}
	return strings.Join(out, "\n")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// crashSnapshot isolates a follower until the leader compacted its log
// past it, arms point on the leader (sending) or the follower (receiving,
// installing), heals, and restarts whoever crashed.
func crashSnapshot(point string, onLeader bool) func(e *Env) {
	return func(e *Env) {
		lead := e.Leader()
		f := e.Follower()
		e.FC.Isolate(f)
		e.Note("isolated %s", f.Name())
		if !e.WaitOps(300, faultWait) {
			e.T.Errorf("the others served fewer than 300 operations in %v", faultWait)
		}
		target := f
		if onLeader {
			target = lead
		}
		crash(e, target, point+"=exit", func() { e.FC.Heal() })
		if onLeader {
			// The follower still needs its snapshot: the new leader sends it.
			mark := 0
			if !waitLog(f, mark, "received snapshot", faultWait) {
				e.T.Errorf("%s never received a snapshot", f.Name())
			}
		}
	}
}

// replaceMember removes a follower, kills and wipes it, and adds a new
// member with an empty data dir in its place.
func replaceMember(e *Env) {
	t := e.T
	f := e.Follower()
	rest := e2e.Others(e.Members, f)
	cli := e2e.ClientOf(t, rest...)
	e2e.ExpectExit(t, f)
	if !retry(faultWait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cli.MemberRemove(ctx, f.MemberID)
		return err
	}) {
		t.Fatalf("member remove %s never succeeded", f.Name())
	}
	e.Note("removed %s", f.Name())
	// A removed member stops on its own; kill it if it has not.
	f.Kill()
	if err := os.RemoveAll(f.DataDir()); err != nil {
		t.Fatal(err)
	}
	e.DropMember(f)
	e.Cluster.Members = rest
	j := e.Cluster.NewJoiner("m" + fmt.Sprint(3))
	if !retry(faultWait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cli.MemberAdd(ctx, []string{j.PeerURL})
		return err
	}) {
		t.Fatalf("member add never succeeded")
	}
	e.Cluster.StartJoining(j)
	e.AddMember(j)
	e.Note("added %s with an empty data dir", j.Name())
}

// retry calls f until it succeeds or timeout passes.
func retry(timeout time.Duration, f func() error) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return true
		}
		if errors.Is(err, rpctypes.ErrMemberNotFound) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

// compactDefrag compacts physically and defragments every member while
// the traffic runs.
func compactDefrag(e *Env) {
	cli := e2e.ClientOf(e.T, e.Members...)
	for round := 0; round < 3; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := cli.Get(ctx, "robustness-rev-probe")
		if err == nil {
			rev := max(2, min(r.Header.Revision-5, e.minFullRev()-5))
			e.noteCompacted(rev)
			_, err = cli.Compact(ctx, rev, clientv3.WithCompactPhysical())
		}
		cancel()
		if err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
			e.Note("compact: %v", err)
		}
		for _, m := range e.Members {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := cli.Defragment(ctx, m.ClientURL)
			cancel()
			if err != nil {
				e.T.Errorf("defragment %s: %v", m.Name(), err)
			}
		}
		if !e.WaitOps(30, faultWait) {
			e.T.Errorf("fewer than 30 operations in %v during compaction and defrag", faultWait)
		}
	}
	e.Note("3 rounds of physical compaction and defragmentation")
}
