package warden

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/pkg/discovery"
	"go.uber.org/zap/zaptest"
)

// fakeRegistry records the writes a runner asks for, in order.
type fakeRegistry struct {
	mu   sync.Mutex
	ops  []string // "put KEY STATUS PID" or "delete KEY"
	last map[string]discovery.Record
}

func (f *fakeRegistry) Put(key, value string, _ *Fence) {
	var r discovery.Record
	if err := json.Unmarshal([]byte(value), &r); err != nil {
		panic(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, fmt.Sprintf("put %s %s %d", key, r.Status, r.PID))
	f.last[key] = r
}

func (f *fakeRegistry) Delete(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, "delete "+key)
	delete(f.last, key)
}

func (f *fakeRegistry) CheckFence(context.Context, Fence) (bool, error) { return true, nil }

func (f *fakeRegistry) snapshot() ([]string, map[string]discovery.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]discovery.Record{}
	for k, v := range f.last {
		m[k] = v
	}
	return append([]string(nil), f.ops...), m
}

// fakeStarter starts fake processes that exit when told to, or at once
// with status exitAtOnce if that is set.
type fakeStarter struct {
	mu         sync.Mutex
	procs      []*fakeProc
	exitAtOnce string
	fail       error
}

func (s *fakeStarter) Start(ProcSpec) (Proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	p := &fakeProc{pid: 1000 + len(s.procs), done: make(chan struct{})}
	s.procs = append(s.procs, p)
	if s.exitAtOnce != "" {
		p.exit(s.exitAtOnce)
	}
	return p, nil
}

func (s *fakeStarter) started() []*fakeProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*fakeProc(nil), s.procs...)
}

type fakeProc struct {
	pid     int
	once    sync.Once
	done    chan struct{}
	status  string
	mu      sync.Mutex
	signals []syscall.Signal
}

func (p *fakeProc) Pid() int              { return p.pid }
func (p *fakeProc) Done() <-chan struct{} { return p.done }
func (p *fakeProc) ExitStatus() (string, bool) {
	return p.status, p.status == "exit status 0"
}
func (p *fakeProc) exit(status string) {
	p.once.Do(func() { p.status = status; close(p.done) })
}
func (p *fakeProc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	p.signals = append(p.signals, sig)
	p.mu.Unlock()
	if sig == syscall.SIGTERM || sig == syscall.SIGKILL {
		p.exit("signal: " + sig.String())
	}
	return nil
}

func testService(t *testing.T, yaml string) *Service {
	t.Helper()
	c, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c.Services[0]
}

func newTestRunner(t *testing.T, svc *Service, st Starter, check Checker) (*runner, *fakeRegistry) {
	reg := &fakeRegistry{last: map[string]discovery.Record{}}
	w := &Warden{name: "w1", hostname: "h1"}
	return &runner{svc: svc, w: w, reg: reg, starter: st, gate: hostGate{}, check: check,
		lg: zaptest.NewLogger(t), clock: RealClock{}, metrics: NewMetrics()}, reg
}

// runRunner runs r until stop is called; stop waits for it to return.
func runRunner(r *runner) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx) }()
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			panic("runner did not stop")
		}
	}
}

func waitUntil(t *testing.T, desc string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", desc)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunnerRestartsAfterExit(t *testing.T) {
	st := &fakeStarter{}
	r, reg := newTestRunner(t, testService(t, `services: [{name: a, command: x, backoff: {initial: 1ms}}]`), st, nil)
	stop := runRunner(r)
	defer stop()
	waitUntil(t, "first registration", func() bool { _, m := reg.snapshot(); return m["/services/a"].PID == 1000 })
	st.started()[0].exit("signal: killed")
	waitUntil(t, "second registration", func() bool { _, m := reg.snapshot(); return m["/services/a"].PID == 1001 })
	ops, m := reg.snapshot()
	if got := m["/services/a"]; got.Restarts != 1 || got.Warden != "w1" || got.Hostname != "h1" || got.Health != discovery.HealthNone {
		t.Errorf("record after restart = %+v", got)
	}
	want := []string{"put /services/a running 1000", "delete /services/a", "put /services/a running 1001"}
	if strings.Join(ops, "\n") != strings.Join(want, "\n") {
		t.Errorf("registry ops:\n%s\nwant:\n%s", strings.Join(ops, "\n"), strings.Join(want, "\n"))
	}
	stop()
	ops, _ = reg.snapshot()
	if ops[len(ops)-1] != "delete /services/a" {
		t.Errorf("after stop, last op %q, want the delete", ops[len(ops)-1])
	}
	if p := st.started()[1]; len(p.signals) == 0 || p.signals[0] != syscall.SIGTERM {
		t.Errorf("stop signals %v, want SIGTERM first", p.signals)
	}
}

func TestRunnerCrashLoopFails(t *testing.T) {
	st := &fakeStarter{exitAtOnce: "exit status 3"}
	r, reg := newTestRunner(t, testService(t, `services: [{name: a, command: x, max_restarts: 3, backoff: {initial: 1ms, max: 4ms}}]`), st, nil)
	stop := runRunner(r)
	defer stop()
	waitUntil(t, "failed record", func() bool { _, m := reg.snapshot(); return m["/services/a"].Status == discovery.StatusFailed })
	_, m := reg.snapshot()
	rec := m["/services/a"]
	if !strings.Contains(rec.Reason, "3 restarts within 1m0s; last: exit status 3") || rec.Restarts != 3 {
		t.Errorf("failed record %+v", rec)
	}
	if n := len(st.started()); n != 4 {
		t.Errorf("started %d times, want 4 (the first start and 3 restarts)", n)
	}
}

func TestRunnerStartErrorCountsAsFailure(t *testing.T) {
	st := &fakeStarter{fail: errors.New("no such file")}
	r, reg := newTestRunner(t, testService(t, `services: [{name: a, command: x, max_restarts: 2, backoff: {initial: 1ms}}]`), st, nil)
	stop := runRunner(r)
	defer stop()
	waitUntil(t, "failed record", func() bool { _, m := reg.snapshot(); return m["/services/a"].Status == discovery.StatusFailed })
	_, m := reg.snapshot()
	if !strings.Contains(m["/services/a"].Reason, "start: no such file") {
		t.Errorf("reason %q", m["/services/a"].Reason)
	}
}

func TestRunnerHealthThreshold(t *testing.T) {
	var mu sync.Mutex
	healthy := true
	st := &fakeStarter{}
	// Once told, the first process fails its checks; the second passes.
	check := func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if healthy || len(st.started()) > 1 {
			return nil
		}
		return errors.New("refused")
	}
	svc := testService(t, `services: [{name: a, command: x, address: "127.0.0.1:1", health: {interval: 2ms, failure_threshold: 3, start_period: 0s}, backoff: {initial: 1ms}}]`)
	r, reg := newTestRunner(t, svc, st, check)
	stop := runRunner(r)
	defer stop()
	waitUntil(t, "registration", func() bool { _, m := reg.snapshot(); return m["/services/a"].Health == discovery.HealthHealthy })
	mu.Lock()
	healthy = false
	mu.Unlock()
	waitUntil(t, "registration of the new process", func() bool { _, m := reg.snapshot(); return m["/services/a"].PID == 1001 })
	ops, _ := reg.snapshot()
	// healthy, failing (first failure), then gone before the stop, then back.
	want := []string{"put /services/a running 1000", "put /services/a running 1000", "delete /services/a", "put /services/a running 1001"}
	if strings.Join(ops, "\n") != strings.Join(want, "\n") {
		t.Errorf("registry ops:\n%s\nwant:\n%s", strings.Join(ops, "\n"), strings.Join(want, "\n"))
	}
	if p := st.started()[0]; len(p.signals) == 0 || p.signals[0] != syscall.SIGTERM {
		t.Errorf("unhealthy process got %v, want SIGTERM", p.signals)
	}
}

func TestRunnerRestartPolicy(t *testing.T) {
	for _, tt := range []struct {
		policy, exit string
		starts       int
	}{
		{RestartNever, "exit status 1", 1},
		{RestartOnFailure, "exit status 0", 1},
		{RestartOnFailure, "exit status 1", 3},
		{RestartAlways, "exit status 0", 3},
	} {
		t.Run(tt.policy+" "+tt.exit, func(t *testing.T) {
			st := &fakeStarter{exitAtOnce: tt.exit}
			svc := testService(t, fmt.Sprintf(`services: [{name: a, command: x, restart: %s, max_restarts: 2, backoff: {initial: 1ms}}]`, tt.policy))
			r, _ := newTestRunner(t, svc, st, nil)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); r.run(ctx) }()
			if tt.starts == 3 {
				waitUntil(t, "the failed state", func() bool { return len(st.started()) == 3 })
			}
			// The runner waits for the end now; give it a chance to go wrong.
			deadline := time.Now().Add(50 * time.Millisecond)
			for time.Now().Before(deadline) && len(st.started()) <= tt.starts {
				time.Sleep(time.Millisecond)
			}
			cancel()
			<-done
			if n := len(st.started()); n != tt.starts {
				t.Errorf("started %d times, want %d", n, tt.starts)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: Duration{D: 100 * time.Millisecond}, Max: Duration{D: time.Second}, Multiplier: 2}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := backoffDelay(b, i); got != w*time.Millisecond {
			t.Errorf("backoffDelay(%d) = %v, want %v", i, got, w*time.Millisecond)
		}
	}
}

// waitPending waits until the fake clock has exactly the timers want
// pending (the runner is blocked on them).
func waitPending(t *testing.T, c *FakeClock, want ...time.Duration) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		ch := c.Changed()
		got := c.Pending()
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("pending timers %v, want %v", got, want)
		}
	}
}

// TestRunnerRestartWindowFakeClock: restarts older than the window do not
// count towards max_restarts.
func TestRunnerRestartWindowFakeClock(t *testing.T) {
	st := &fakeStarter{}
	svc := testService(t, `services: [{name: a, command: x, max_restarts: 1, restart_window: 10s, backoff: {initial: 1s, multiplier: 1, reset_after: 1h}}]`)
	r, reg := newTestRunner(t, svc, st, nil)
	clock := NewFakeClock(time.Unix(1000, 0))
	r.clock = clock
	stop := runRunner(r)
	defer stop()

	waitUntil(t, "first start", func() bool { return len(st.started()) == 1 })
	st.started()[0].exit("exit status 1") // restart 1 at t=0
	waitPending(t, clock, time.Second)
	clock.Advance(time.Second)
	waitUntil(t, "second start", func() bool { return len(st.started()) == 2 })
	clock.Advance(11 * time.Second) // restart 1 leaves the window
	st.started()[1].exit("exit status 1")
	waitPending(t, clock, time.Second) // restarted, not failed
	clock.Advance(time.Second)
	waitUntil(t, "third start", func() bool { return len(st.started()) == 3 })
	st.started()[2].exit("exit status 1") // restart 2 within the window of 10s
	waitUntil(t, "failed", func() bool { _, m := reg.snapshot(); return m["/services/a"].Status == discovery.StatusFailed })
	if n := len(st.started()); n != 3 {
		t.Errorf("started %d times, want 3", n)
	}
}

// TestRunnerBackoffFakeClock: the delay grows by the multiplier up to max,
// and goes back to initial after reset_after healthy.
func TestRunnerBackoffFakeClock(t *testing.T) {
	st := &fakeStarter{}
	svc := testService(t, `services: [{name: a, command: x, max_restarts: 0, backoff: {initial: 1s, max: 3s, multiplier: 2, reset_after: 5s}}]`)
	r, _ := newTestRunner(t, svc, st, nil)
	clock := NewFakeClock(time.Unix(1000, 0))
	r.clock = clock
	stop := runRunner(r)
	defer stop()

	for i, want := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second} {
		waitUntil(t, "a start", func() bool { return len(st.started()) == i+1 })
		st.started()[i].exit("exit status 1")
		waitPending(t, clock, want)
		clock.Advance(want)
	}
	waitUntil(t, "a start", func() bool { return len(st.started()) == 5 })
	clock.Advance(5 * time.Second) // healthy (no check: registered at start) for reset_after
	st.started()[4].exit("exit status 1")
	waitPending(t, clock, time.Second)
}

// TestRunnerHealthIntervalFakeClock: checks run at once, every 50ms until
// the first success, then every interval.
func TestRunnerHealthIntervalFakeClock(t *testing.T) {
	var mu sync.Mutex
	checks, pass := 0, false
	check := func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		checks++
		if pass {
			return nil
		}
		return errors.New("not yet")
	}
	st := &fakeStarter{}
	svc := testService(t, `services: [{name: a, command: x, address: "127.0.0.1:1", health: {interval: 5s, start_period: 1m}}]`)
	r, reg := newTestRunner(t, svc, st, check)
	clock := NewFakeClock(time.Unix(1000, 0))
	r.clock = clock
	stop := runRunner(r)
	defer stop()
	waitPending(t, clock, startPoll) // the first check ran at once and failed
	mu.Lock()
	pass = true
	mu.Unlock()
	clock.Advance(startPoll)
	waitPending(t, clock, 5*time.Second)
	if _, m := reg.snapshot(); m["/services/a"].Health != discovery.HealthHealthy {
		t.Errorf("not registered healthy after the first passing check: %+v", m)
	}
	mu.Lock()
	defer mu.Unlock()
	if checks != 2 {
		t.Errorf("%d checks, want 2", checks)
	}
}
