// Package warden holds cairn-warden's end-to-end tests: the built
// cairn-warden binary supervising real processes (redis-server, a small Go
// HTTP server built from testdata/tcpserver, shell one-liners) and
// registering them in real cairn members started by tests/e2e.
//
// Tests wait on conditions with deadlines, never on sleeps, and assert no
// timings; the time to recover from kill -9 is measured and logged.
package warden

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/pkg/discovery"
	"github.com/cairn-kv/cairn/tests/e2e"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	redisServer = "/usr/bin/redis-server"
	// waitTimeout bounds waiting for an effect in a test.
	waitTimeout = 30 * time.Second
)

var (
	wardenBin    string
	tcpServerBin string
	serverBinary string // cairn, for tests that start it with flags of their own
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-warden-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	wardenBin = filepath.Join(dir, "cairn-warden")
	tcpServerBin = filepath.Join(dir, "tcpserver")
	serverBinary = filepath.Join(dir, "cairn")
	for out, pkg := range map[string]string{wardenBin: "./cmd/cairn-warden", tcpServerBin: "./tests/warden/testdata/tcpserver", serverBinary: "./cmd/cairn"} {
		if err := build(out, pkg); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", pkg, err)
			os.RemoveAll(dir)
			os.Exit(2)
		}
	}
	code := e2e.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

func build(out, pkg string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

// wardenProc is one cairn-warden process.
type wardenProc struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	err     error
	metrics string // the metrics URL
}

// startWarden runs cairn-warden with config (YAML) against endpoints. It is
// stopped with SIGTERM at the end of the test; its log is shown if the test
// failed.
func startWarden(t *testing.T, name, config string, endpoints []string, flags ...string) *wardenProc {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &wardenProc{t: t, name: name, logPath: filepath.Join(dir, name+".log"), metrics: "http://" + freeAddr(t)}
	args := append([]string{"--config", cfgPath, "--endpoints", strings.Join(endpoints, ","), "--name", name,
		"--listen-metrics-urls", w.metrics}, flags...)
	w.start(args)
	t.Cleanup(func() {
		w.stop()
		if t.Failed() {
			b, _ := os.ReadFile(w.logPath)
			if len(b) > 200<<10 {
				b = b[len(b)-200<<10:]
			}
			t.Logf("log of warden %s:\n%s", name, b)
		}
	})
	return w
}

func (w *wardenProc) start(args []string) {
	w.t.Helper()
	f, err := os.OpenFile(w.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "=== test: starting %s %q\n", wardenBin, args)
	w.cmd = exec.Command(wardenBin, args...)
	w.cmd.Stdout, w.cmd.Stderr = f, f
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		w.err = cmd.Wait()
		close(exited)
	}(w.cmd, w.exited)
}

// restart starts the warden again with the same arguments.
func (w *wardenProc) restart() {
	w.t.Helper()
	<-w.exited
	w.start(w.cmd.Args[1:])
}

func (w *wardenProc) running() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the exit.
func (w *wardenProc) kill() {
	_ = w.cmd.Process.Kill()
	<-w.exited
}

// stop sends SIGTERM and waits (bounded) for the exit; it returns the
// exit error.
func (w *wardenProc) stop() error {
	if !w.running() {
		return w.err
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(waitTimeout):
		w.t.Errorf("warden %s did not exit within %v of SIGTERM; killing it", w.name, waitTimeout)
		w.kill()
	}
	return w.err
}

func (w *wardenProc) log() string {
	b, _ := os.ReadFile(w.logPath)
	return string(b)
}

// metric returns the value of one sample line of the warden's /metrics,
// e.g. `cairn_warden_restarts_total{service="db1"}`, or -1.
func (w *wardenProc) metric(sample string) float64 {
	resp, err := http.Get(w.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// freeAddr returns 127.0.0.1:port for a port that was free a moment ago
// and that no other call in this test run has returned (the e2e
// framework's probe, below the ephemeral port range).
func freeAddr(t *testing.T) string {
	t.Helper()
	return e2e.FreeLoopbackAddr(t)
}

func freePort(t *testing.T) int {
	_, p, _ := net.SplitHostPort(freeAddr(t))
	n, _ := strconv.Atoi(p)
	return n
}

func endpoints(ms ...*e2e.Member) []string {
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// record reads the record at key (ok false if there is none).
func record(t *testing.T, cli *clientv3.Client, key string) (discovery.Record, int64, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return discovery.Record{}, 0, false
	}
	r, err := discovery.Decode(key, resp.Kvs[0].Value)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return r, resp.Kvs[0].Lease, true
}

// waitRecord waits until the record at key satisfies cond and returns it.
func waitRecord(t *testing.T, cli *clientv3.Client, key, desc string, cond func(discovery.Record) bool) discovery.Record {
	t.Helper()
	var last discovery.Record
	var seen bool
	waitFor(t, desc, func() bool {
		r, _, ok := record(t, cli, key)
		last, seen = r, ok
		return ok && cond(r)
	})
	_ = seen
	return last
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, desc string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, desc)
		}
		<-tick.C
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// processesWith returns the pids of live processes whose command line
// (arguments joined by spaces; redis-server rewrites its own to
// "redis-server *:PORT") contains every one of substrings.
func processesWith(substrings ...string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		line := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		all := true
		for _, w := range substrings {
			all = all && strings.Contains(line, w)
		}
		if all && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// watchKey collects the events of key from now on.
type keyEvents struct {
	ch <-chan discovery.Event
}

func watchKey(t *testing.T, cli *clientv3.Client, key string) *keyEvents {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ctx2, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	resp, err := cli.Get(ctx2, key)
	if err != nil {
		t.Fatal(err)
	}
	return &keyEvents{ch: discovery.Watch(ctx, cli, key, discovery.AfterRevision(resp.Header.Revision))}
}

// next returns the next event, failing after waitTimeout.
func (k *keyEvents) next(t *testing.T) discovery.Event {
	t.Helper()
	select {
	case ev, ok := <-k.ch:
		if !ok {
			t.Fatal("watch ended")
		}
		return ev
	case <-time.After(waitTimeout):
		t.Fatal("no event within the timeout")
	}
	return discovery.Event{}
}

func pidOf(t *testing.T, addr string) int {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/pid")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func execCommand(ctx context.Context, bin string, args ...string) (string, error) {
	b, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(b), err
}

func killPid(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

func containsMsg(log, msg string) bool { return strings.Contains(log, `"msg":"`+msg+`"`) }
