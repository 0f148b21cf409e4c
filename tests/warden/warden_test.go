package warden

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/pkg/discovery"
	"github.com/cairn-kv/cairn/tests/e2e"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// redisService is one redis-server replica as a warden service, checked
// with PING.
func redisService(name string, port int) string {
	return fmt.Sprintf(`
  - name: %[1]s
    command: %[2]s
    args: ["--port", "%[3]d", "--save", "", "--appendonly", "no"]
    address: 127.0.0.1:%[3]d
    health: {send: "PING\r\n", expect: "+PONG", interval: 200ms, timeout: 500ms, failure_threshold: 2, start_period: 5s}
    backoff: {initial: 50ms, max: 1s}
    stop_grace: 2s
`, name, redisServer, port)
}

// TestRedisReplicaSet supervises three redis-server processes as the
// stand-in for a three-replica database, kills each with SIGKILL and checks
// that it is back, registered again with a new pid and one more restart,
// that watchers saw the key go first, and that SIGTERM deregisters all.
func TestRedisReplicaSet(t *testing.T) {
	if _, err := os.Stat(redisServer); err != nil {
		t.Skipf("%s not installed: %v", redisServer, err)
	}
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cli := m.Client()
	ports := []int{freePort(t), freePort(t), freePort(t)}
	cfg := "services:" + redisService("db1", ports[0]) + redisService("db2", ports[1]) + redisService("db3", ports[2])
	w := startWarden(t, "w1", cfg, endpoints(m), "--lease-ttl", "3s")

	for i := range ports {
		name := fmt.Sprintf("db%d", i+1)
		key := "/services/" + name
		before := waitRecord(t, cli, key, name+" registered healthy", func(r discovery.Record) bool {
			return r.Status == discovery.StatusRunning && r.Health == discovery.HealthHealthy
		})
		if before.Address != fmt.Sprintf("127.0.0.1:%d", ports[i]) || before.Warden != "w1" || before.Name != name || !alive(before.PID) {
			t.Fatalf("%s record %+v", name, before)
		}
		events := watchKey(t, cli, key)
		killed := time.Now()
		if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// The key goes before the service comes back. A health check
		// that ran between the kill and the warden seeing the exit may
		// first record the failed check (same pid, health failing).
		for {
			ev := events.next(t)
			if ev.Type == discovery.Delete {
				break
			}
			if ev.Record.PID != before.PID || ev.Record.Health != discovery.HealthFailing {
				t.Fatalf("%s: event after kill -9 is %v %+v, want the key deleted first", name, ev.Type, ev.Record)
			}
		}
		after := waitRecord(t, cli, key, name+" registered again", func(r discovery.Record) bool {
			return r.PID != before.PID && r.Health == discovery.HealthHealthy
		})
		recovered := time.Since(killed)
		t.Logf("%s: kill -9 of pid %d to pid %d registered healthy: %v", name, before.PID, after.PID, recovered)
		if after.Restarts != before.Restarts+1 || after.Status != discovery.StatusRunning || !alive(after.PID) {
			t.Errorf("%s after restart: %+v (before %+v)", name, after, before)
		}
		if pids := processesWith("redis-server", fmt.Sprintf(":%d", ports[i])); len(pids) != 1 || pids[0] != after.PID {
			t.Errorf("%s: redis processes on port %d: %v, want only %d", name, ports[i], pids, after.PID)
		}
		sample := fmt.Sprintf(`cairn_warden_restarts_total{service="%s"}`, name)
		if v := w.metric(sample); v != 1 {
			t.Errorf("%s = %v, want 1", sample, v)
		}
		sample = fmt.Sprintf(`cairn_warden_recovery_seconds_count{service="%s"}`, name)
		if v := w.metric(sample); v != 1 {
			t.Errorf("%s = %v, want 1", sample, v)
		}
	}

	// SIGTERM: every service stopped, every key gone, the lease revoked.
	recs, _, err := discovery.List(context.Background(), cli, "/services/")
	if err != nil || len(recs) != 3 {
		t.Fatalf("before SIGTERM: %v %+v", err, recs)
	}
	_, lease, _ := record(t, cli, "/services/db1")
	if err := w.stop(); err != nil {
		t.Fatalf("warden exit after SIGTERM: %v\n", err)
	}
	if recs, _, err = discovery.List(context.Background(), cli, "/services/"); err != nil || len(recs) != 0 {
		t.Errorf("after SIGTERM: %v, records %+v", err, recs)
	}
	for _, r := range recs {
		if alive(r.PID) {
			t.Errorf("%s (pid %d) still running after the warden stopped", r.Name, r.PID)
		}
	}
	for _, p := range ports {
		if pids := processesWith("redis-server", fmt.Sprintf(":%d", p)); len(pids) != 0 {
			t.Errorf("redis on port %d still running: %v", p, pids)
		}
	}
	ttl, err := cli.TimeToLive(context.Background(), clientv3.LeaseID(lease))
	if err != nil || ttl.TTL != -1 {
		t.Errorf("warden lease %x after SIGTERM: %v ttl %v, want revoked", lease, err, ttl)
	}
	if !strings.Contains(w.log(), `"msg":"warden stopped"`) {
		t.Errorf("warden log lacks its stop message")
	}
}

// tcpService is the test HTTP server as a warden service.
func tcpService(name, addr, extra string) string {
	return fmt.Sprintf(`
  - name: %[1]s
    command: %[2]s
    args: ["-addr", "%[3]s"]
    address: %[3]s
    health: {type: http, target: "http://%[3]s/healthz", interval: 100ms, timeout: 300ms, failure_threshold: 3, start_period: 5s}
    backoff: {initial: 50ms, max: 1s}
    stop_grace: 1s
%[4]s`, name, tcpServerBin, addr, extra)
}

// TestStoppedProcessFailsHealthCheck stops (SIGSTOP) the child so that it
// cannot answer its health check, and checks that the warden replaces it.
func TestStoppedProcessFailsHealthCheck(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cli := m.Client()
	addr := freeAddr(t)
	w := startWarden(t, "w1", "services:"+tcpService("web", addr, ""), endpoints(m), "--lease-ttl", "3s")
	before := waitRecord(t, cli, "/services/web", "web registered", func(r discovery.Record) bool { return r.Health == discovery.HealthHealthy })
	if got := pidOf(t, addr); got != before.PID {
		t.Fatalf("the server on %s has pid %d, the record says %d", addr, got, before.PID)
	}
	events := watchKey(t, cli, "/services/web")
	stopped := time.Now()
	if err := syscall.Kill(before.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// First the record says the checks are failing, then the key goes.
	for ev := events.next(t); ev.Type != discovery.Delete; ev = events.next(t) {
		if ev.Record.Health != discovery.HealthFailing || ev.Record.PID != before.PID {
			t.Fatalf("unexpected event while stopped: %v %+v", ev.Type, ev.Record)
		}
	}
	after := waitRecord(t, cli, "/services/web", "web registered again", func(r discovery.Record) bool {
		return r.PID != before.PID && r.Health == discovery.HealthHealthy
	})
	t.Logf("SIGSTOP of pid %d to pid %d registered healthy: %v", before.PID, after.PID, time.Since(stopped))
	if after.Restarts != 1 || pidOf(t, addr) != after.PID {
		t.Errorf("after restart: %+v, server pid %d", after, pidOf(t, addr))
	}
	waitFor(t, "the stopped process to be killed", func() bool { return !alive(before.PID) })
	if v := w.metric(`cairn_warden_health_check_failures_total{service="web"}`); v < 3 {
		t.Errorf("health check failures metric %v, want >= 3", v)
	}
}

// TestCrashLoopBecomesFailed: a service that always exits is restarted
// max_restarts times, then marked failed, with the reason in its key.
func TestCrashLoopBecomesFailed(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cli := m.Client()
	dir := t.TempDir()
	starts := filepath.Join(dir, "starts")
	// The shell line, its environment and its working directory all count.
	cfg := fmt.Sprintf(`
services:
  - name: crasher
    shell: "echo $GREETING >> starts; exit 3"
    env: {GREETING: started}
    dir: %s
    max_restarts: 3
    restart_window: 1m
    backoff: {initial: 20ms, max: 100ms}
`, dir)
	w := startWarden(t, "w1", cfg, endpoints(m), "--lease-ttl", "3s")
	r := waitRecord(t, cli, "/services/crasher", "crasher marked failed", func(r discovery.Record) bool { return r.Status == discovery.StatusFailed })
	if !strings.Contains(r.Reason, "3 restarts within 1m0s; last: exit status 3") || r.Restarts != 3 || r.Warden != "w1" {
		t.Errorf("failed record %+v", r)
	}
	b, err := os.ReadFile(starts)
	if err != nil || strings.Count(string(b), "started") != 4 {
		t.Errorf("the service started %d times (%v), want 4 (first start and 3 restarts)", strings.Count(string(b), "started"), err)
	}
	if !strings.Contains(w.log(), `"msg":"service failed; giving up"`) {
		t.Errorf("warden log lacks the failure")
	}
	if v := w.metric(`cairn_warden_service_failed{service="crasher"}`); v != 1 {
		t.Errorf("service_failed metric %v, want 1", v)
	}
}

// TestBadConfig: the warden refuses to start on an invalid file and names
// every problem with its service and field.
func TestBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tt := range []struct {
		name, file string
		want       []string
	}{
		{"fields", `
services:
  - name: db1
    command: /bin/true
    health: {type: tcp, target: "127.0.0.1:1", interval: 0s}
  - name: db2
    shell: "x"
    restart: sometimes
    placement: {group: ""}
`, []string{`service "db1": health.interval: must be > 0`, `service "db2": restart: must be always, on-failure or never, not "sometimes"`,
			`service "db2": placement.group: must be a non-empty name`, "3 errors"}},
		{"shorthand", `{"etcd": {"replSet1": {"key": "/services/db1"}}}`, []string{`service "replSet1": shorthand wants exactly one PROGRAM`}},
		{"yaml", "services: [", []string{"not valid YAML or JSON"}},
	} {
		path := filepath.Join(dir, tt.name+".yaml")
		if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		out, err := execCommand(ctx, wardenBin, "--config", path, "--endpoints", "127.0.0.1:1")
		cancel()
		if err == nil {
			t.Errorf("%s: warden started on a bad file", tt.name)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", tt.name, w, out)
			}
		}
		if !strings.Contains(out, path) {
			t.Errorf("%s: output does not name the file:\n%s", tt.name, out)
		}
	}
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`{"etcd": {"replSet1": {"key": "/services/db1", "mongod": "mongod --port 20000 --dbpath /data/db/replSet1 --replSet rs"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if out, err := execCommand(ctx, wardenBin, "--config", good, "--check-config"); err != nil || !strings.Contains(out, "1 services, OK") {
		t.Errorf("--check-config on the shorthand: %v\n%s", err, out)
	}
}
