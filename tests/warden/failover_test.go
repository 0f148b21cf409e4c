package warden

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/pkg/discovery"
	"github.com/cairn-kv/cairn/tests/e2e"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// waitLeaseExpired grants a lease of ttl seconds, never renews it, and
// waits until the cluster has expired it: at least ttl has passed for the
// cluster's lease clock.
func waitLeaseExpired(t *testing.T, cli *clientv3.Client, ttl int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	g, err := cli.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a probe lease to expire", func() bool {
		r, err := cli.TimeToLive(ctx, g.ID)
		return err == nil && r.TTL == -1
	})
}

// TestGroupFailover runs one service placed in a group of two wardens on
// a three-member cluster: a cairn member killed changes nothing; the
// leading warden killed with SIGKILL hands the service to the other one
// exactly once; the killed warden coming back does not start a second
// copy; a SIGTERM of the new leader hands the service back.
func TestGroupFailover(t *testing.T) {
	t.Parallel()
	c := e2e.StartCluster(t, 3)
	cli := c.Client()
	addr := freeAddr(t)
	cfg := "services:" + tcpService("web", addr, "    placement: {group: g1}\n")
	eps := c.Endpoints()
	wardens := map[string]*wardenProc{
		"wa": startWarden(t, "wa", cfg, eps, "--group", "g1", "--lease-ttl", "5s"),
		"wb": startWarden(t, "wb", cfg, eps, "--group", "g1", "--lease-ttl", "5s"),
	}
	first := waitRecord(t, cli, "/services/web", "web registered by a warden", func(r discovery.Record) bool { return r.Health == discovery.HealthHealthy })
	lead, other := wardens[first.Warden], wardens["wa"]
	if first.Warden == "wa" {
		other = wardens["wb"]
	}
	waitFor(t, "both wardens in the election", func() bool { return electionSize(t, cli, "g1", "web") == 2 })
	if pids := processesWith(addr); len(pids) != 1 || pids[0] != first.PID {
		t.Fatalf("servers on %s: %v, want only %d", addr, pids, first.PID)
	}

	// A cairn member dies (the leader, the hardest case): the wardens move
	// to the other endpoints and nothing changes, for longer than the TTL.
	c.Leader().Kill()
	waitLeaseExpired(t, cli, 5)
	if r, _, ok := record(t, cli, "/services/web"); !ok || r.PID != first.PID || r.Warden != first.Warden || r.Restarts != 0 {
		t.Fatalf("after a cairn member died: %+v (present %v), want unchanged %+v", r, ok, first)
	}
	if pids := processesWith(addr); len(pids) != 1 {
		t.Fatalf("servers on %s after a cairn member died: %v", addr, pids)
	}

	// The leading warden dies: its child goes with it, its lease expires,
	// and the other warden takes over, once.
	events := watchKey(t, cli, "/services/web")
	killed := time.Now()
	lead.kill()
	waitFor(t, "the dead warden's child to go", func() bool { return !alive(first.PID) })
	second := waitRecord(t, cli, "/services/web", "web registered by the other warden", func(r discovery.Record) bool {
		return r.Warden == other.name && r.Health == discovery.HealthHealthy
	})
	t.Logf("failover: warden %s killed, service registered by %s after %v", lead.name, other.name, time.Since(killed))
	if ev := events.next(t); ev.Type != discovery.Delete {
		t.Errorf("first event after the warden died: %v %+v, want the key deleted (lease expiry)", ev.Type, ev.Record)
	}
	for ev := events.next(t); ; ev = events.next(t) {
		if ev.Type != discovery.Put || ev.Record.Warden != other.name || ev.Record.PID != second.PID {
			t.Fatalf("event %v %+v during the failover; want only puts by %s of pid %d", ev.Type, ev.Record, other.name, second.PID)
		}
		if ev.Record.Health == discovery.HealthHealthy {
			break
		}
	}
	if v := other.metric(`cairn_warden_failovers_total{service="web"}`); v != 1 {
		t.Errorf("failovers on %s = %v, want 1", other.name, v)
	}
	if pids := processesWith(addr); len(pids) != 1 || pids[0] != second.PID || pidOf(t, addr) != second.PID {
		t.Errorf("servers on %s: %v, want only %d", addr, pids, second.PID)
	}

	// The old warden comes back: it campaigns, waits, and starts nothing.
	mark := len(lead.log())
	lead.restart()
	waitFor(t, "the restarted warden in the election", func() bool {
		return strings.Contains(lead.log()[mark:], `"msg":"campaigning for the service"`) && electionSize(t, cli, "g1", "web") == 2
	})
	if r, _, _ := record(t, cli, "/services/web"); r.PID != second.PID || r.Warden != other.name {
		t.Errorf("after the old warden came back: %+v", r)
	}
	if strings.Contains(lead.log()[mark:], `"msg":"started"`) {
		t.Errorf("the restarted warden started the service although %s runs it", other.name)
	}
	if pids := processesWith(addr); len(pids) != 1 {
		t.Errorf("servers on %s after the old warden came back: %v", addr, pids)
	}

	// SIGTERM of the new leader revokes its lease: the service moves back
	// at once (no TTL to wait for).
	if err := other.stop(); err != nil {
		t.Errorf("%s exit after SIGTERM: %v", other.name, err)
	}
	third := waitRecord(t, cli, "/services/web", "web back on "+lead.name, func(r discovery.Record) bool {
		return r.Warden == lead.name && r.Health == discovery.HealthHealthy
	})
	if pids := processesWith(addr); len(pids) != 1 || pids[0] != third.PID {
		t.Errorf("servers on %s: %v, want only %d", addr, pids, third.PID)
	}
}

// electionSize counts the campaigners of a service's election.
func electionSize(t *testing.T, cli *clientv3.Client, group, service string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/cairn-warden/elect/"+group+"/"+service+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return -1
	}
	return int(resp.Count)
}

// TestCairnUnreachable: with its only cairn member down, the warden goes
// on supervising (a killed service is restarted); when cairn is back and
// the old lease is gone, it registers again under a new lease.
func TestCairnUnreachable(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cli := m.Client()
	addr := freeAddr(t)
	w := startWarden(t, "w1", "services:"+tcpService("web", addr, ""), endpoints(m), "--lease-ttl", "2s")
	before := waitRecord(t, cli, "/services/web", "web registered", func(r discovery.Record) bool { return r.Health == discovery.HealthHealthy })
	_, lease1, _ := record(t, cli, "/services/web")

	m.Stop()
	waitFor(t, "the warden to notice its lease is lost", func() bool {
		return strings.Contains(w.log(), `"msg":"lease lost; getting a new one and registering again"`)
	})
	if err := killPid(before.PID); err != nil {
		t.Fatal(err)
	}
	var restarted int
	waitFor(t, "the service restarted without cairn", func() bool {
		restarted = pidOf(t, addr)
		return restarted != 0 && restarted != before.PID
	})

	m.Restart()
	after := waitRecord(t, cli, "/services/web", "web registered again", func(r discovery.Record) bool { return r.PID == restarted })
	_, lease2, _ := record(t, cli, "/services/web")
	if lease2 == lease1 || after.Restarts != 1 || after.Health != discovery.HealthHealthy {
		t.Errorf("after cairn came back: lease %x (old %x), record %+v", lease2, lease1, after)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	waitFor(t, "the old lease to be gone", func() bool {
		r, err := cli.TimeToLive(ctx, clientv3.LeaseID(lease1))
		return err == nil && r.TTL == -1
	})
}

// TestPausedWardenStopsItsCopy pauses (SIGSTOP) the leading warden of a
// group until its lease expires and the other warden takes over, then
// resumes it: it must stop its copy at once and never write the key
// again (its writes are fenced by its election key).
func TestPausedWardenStopsItsCopy(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cli := m.Client()
	addr := freeAddr(t)
	cfg := "services:" + tcpService("web", addr, "    placement: {group: g2}\n")
	wardens := map[string]*wardenProc{
		"wa": startWarden(t, "wa", cfg, endpoints(m), "--group", "g2", "--lease-ttl", "2s"),
		"wb": startWarden(t, "wb", cfg, endpoints(m), "--group", "g2", "--lease-ttl", "2s"),
	}
	first := waitRecord(t, cli, "/services/web", "web registered", func(r discovery.Record) bool { return r.Health == discovery.HealthHealthy })
	lead, other := wardens[first.Warden], wardens["wa"]
	if first.Warden == "wa" {
		other = wardens["wb"]
	}
	waitFor(t, "both wardens in the election", func() bool { return electionSize(t, cli, "g2", "web") == 2 })
	events := watchKey(t, cli, "/services/web")

	if err := lead.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The paused warden's lease expires; the other one wins the election.
	// (Its copy cannot bind the address while the paused warden's child
	// holds it, so it keeps restarting until that one is gone.)
	waitFor(t, "the paused warden to leave the election", func() bool { return electionSize(t, cli, "g2", "web") == 1 })
	if err := lead.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the resumed warden to stop its copy", func() bool { return !alive(first.PID) })
	final := waitRecord(t, cli, "/services/web", "web registered by the other warden", func(r discovery.Record) bool {
		return r.Warden == other.name && r.Health == discovery.HealthHealthy
	})
	if pids := processesWith(addr); len(pids) != 1 || pids[0] != final.PID {
		t.Errorf("servers on %s: %v, want only %d", addr, pids, final.PID)
	}
	for ev := events.next(t); ; ev = events.next(t) {
		if ev.Type == discovery.Put && ev.Record.Warden != other.name {
			t.Errorf("the paused warden wrote the key after losing the election: %+v", ev.Record)
		}
		if ev.Type == discovery.Put && ev.Record.PID == final.PID && ev.Record.Health == discovery.HealthHealthy {
			break
		}
	}
	if !strings.Contains(lead.log(), `"msg":"lost the election; stopping the service"`) {
		t.Errorf("the resumed warden did not log losing the election")
	}
	if !lead.running() {
		t.Errorf("the resumed warden exited: %v", lead.err)
	}
}
