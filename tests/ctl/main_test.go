// Package ctl_test checks cairnctl end to end: every command runs through
// cairnctl and through the reference /usr/bin/etcdctl (3.4) against the
// same cairn server, and the outputs (simple, json, fields), exit codes and
// error lines must agree. Only what legitimately differs between two runs
// is normalized, each place saying why.
//
// CAIRN_E2E_SERVER=etcd runs the same comparisons against etcd 3.4
// servers (tests that need a cairn data dir skip).
package ctl_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/e2e"
)

const (
	etcdctlBin = "/usr/bin/etcdctl"
	runTimeout = 30 * time.Second
	waitTime   = 20 * time.Second
)

var cairnctlBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "cairnctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	cairnctlBin = filepath.Join(dir, "cairnctl")
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go env GOMOD:", err)
		return 2
	}
	build := exec.Command("go", "build", "-o", cairnctlBin, "./cmd/cairnctl")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building cairnctl: %v\n%s", err, out)
		return 2
	}
	return e2e.Main(m)
}

// result is one run of a CLI.
type result struct {
	stdout, stderr string
	code           int
}

// errLine is the last "Error: " line on stderr, or "".
func (r result) errLine() string {
	lines := strings.Split(r.stderr, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "Error: ") {
			return lines[i]
		}
	}
	return ""
}

// tool is a CLI under test: cairnctl or the reference etcdctl.
type tool struct {
	name string
	bin  string
}

var (
	etcdctl  = tool{"etcdctl", etcdctlBin}
	cairnctl = tool{"cairnctl", ""} // bin set lazily (after TestMain built it)
)

func (tl tool) path() string {
	if tl.name == "cairnctl" {
		return cairnctlBin
	}
	return tl.bin
}

// cleanEnv is our environment without ETCD_* and ETCDCTL_*.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "ETCD_") || strings.HasPrefix(kv, "ETCDCTL_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "ETCDCTL_API=3")
}

func (tl tool) command(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, tl.path(), args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runEnv runs the tool to completion with stdin and extra environment.
func (tl tool) runEnv(t testing.TB, stdin string, env []string, args ...string) result {
	t.Helper()
	if tl.name == "etcdctl" {
		if _, err := os.Stat(etcdctlBin); err != nil {
			t.Skipf("%s not installed (Debian package etcd-client): %v", etcdctlBin, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := tl.command(ctx, env, args...)
	var o, e bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s %q: %v", tl.name, args, err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: o.String(), stderr: e.String(), code: code}
}

func (tl tool) run(t testing.TB, args ...string) result { return tl.runEnv(t, "", nil, args...) }

// must runs the tool and fails the test unless it exits 0.
func (tl tool) must(t testing.TB, args ...string) string {
	t.Helper()
	r := tl.run(t, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout:\n%s\nstderr:\n%s", tl.name, strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func ep(urls ...string) string { return "--endpoints=" + strings.Join(urls, ",") }

// same runs args through both tools and checks that stdout, the exit code
// and the error line agree after norm (nil: no normalization).
func same(t testing.TB, norm func(string) string, args ...string) result {
	t.Helper()
	return sameIn(t, "", norm, args...)
}

func sameIn(t testing.TB, stdin string, norm func(string) string, args ...string) result {
	t.Helper()
	want := etcdctl.runEnv(t, stdin, nil, args...)
	got := cairnctl.runEnv(t, stdin, nil, args...)
	compare(t, args, want, got, norm)
	return got
}

func compare(t testing.TB, args []string, want, got result, norm func(string) string) {
	t.Helper()
	if norm == nil {
		norm = func(s string) string { return s }
	}
	if norm(got.stdout) != norm(want.stdout) {
		t.Errorf("%s: stdout differs\n etcdctl: %q\ncairnctl: %q\n(normalized)\n etcdctl: %q\ncairnctl: %q",
			strings.Join(args, " "), want.stdout, got.stdout, norm(want.stdout), norm(got.stdout))
	}
	if got.code != want.code {
		t.Errorf("%s: exit code %d, etcdctl %d\ncairnctl stderr:\n%s\netcdctl stderr:\n%s", strings.Join(args, " "), got.code, want.code, got.stderr, want.stderr)
	}
	if got.errLine() != want.errLine() {
		t.Errorf("%s: error line %q, etcdctl %q", strings.Join(args, " "), got.errLine(), want.errLine())
	}
}

// bg is a CLI running in the background (watch, lock, elect, keep-alive).
type bg struct {
	t      testing.TB
	name   string
	args   []string
	cmd    *exec.Cmd
	cancel context.CancelFunc
	stdin  *os.File // write end, nil when stdin is empty

	mu      sync.Mutex
	out     bytes.Buffer
	errBuf  bytes.Buffer
	changed chan struct{}
	exited  chan struct{}
	err     error
}

type bgWriter struct {
	b   *bg
	buf *bytes.Buffer
}

func (w bgWriter) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	n, err := w.buf.Write(p)
	close(w.b.changed)
	w.b.changed = make(chan struct{})
	return n, err
}

// start runs the tool in the background; with openStdin its stdin stays
// open (a pipe) until closeStdin or the end of the test.
func (tl tool) start(t testing.TB, openStdin bool, env []string, args ...string) *bg {
	t.Helper()
	if tl.name == "etcdctl" {
		if _, err := os.Stat(etcdctlBin); err != nil {
			t.Skipf("%s not installed: %v", etcdctlBin, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &bg{t: t, name: tl.name, args: args, cancel: cancel, changed: make(chan struct{}), exited: make(chan struct{})}
	b.cmd = tl.command(ctx, env, args...)
	b.cmd.Stdout = bgWriter{b, &b.out}
	b.cmd.Stderr = bgWriter{b, &b.errBuf}
	if openStdin {
		rd, wr, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		b.cmd.Stdin, b.stdin = rd, wr
		defer rd.Close()
	}
	if err := b.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		b.kill()
		if t.Failed() {
			t.Logf("background %s %q:\nstdout:\n%s\nstderr:\n%s", b.name, args, b.stdout(), b.stderr())
		}
	})
	return b
}

func (b *bg) write(s string) {
	b.t.Helper()
	if _, err := b.stdin.WriteString(s); err != nil {
		b.t.Fatalf("%s stdin: %v", b.name, err)
	}
}

func (b *bg) closeStdin() {
	if b.stdin != nil {
		b.stdin.Close()
	}
}

func (b *bg) stdout() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

func (b *bg) stderr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.errBuf.String()
}

// waitOut waits until cond holds on stdout (or fails the test).
func (b *bg) waitOut(desc string, cond func(string) bool) string {
	b.t.Helper()
	deadline := time.NewTimer(waitTime)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		out, ch := b.out.String(), b.changed
		b.mu.Unlock()
		if cond(out) {
			return out
		}
		select {
		case <-ch:
		case <-b.exited:
			if out := b.stdout(); cond(out) {
				return out
			}
			b.t.Fatalf("%s %q exited (%v) before %s\nstdout:\n%s\nstderr:\n%s", b.name, b.args, b.err, desc, b.stdout(), b.stderr())
		case <-deadline.C:
			b.t.Fatalf("%s %q: no %s within %v\nstdout:\n%s\nstderr:\n%s", b.name, b.args, desc, waitTime, out, b.stderr())
		}
	}
}

// wait waits for the process to exit on its own and returns its exit code.
func (b *bg) wait() int {
	b.t.Helper()
	select {
	case <-b.exited:
	case <-time.After(waitTime):
		b.t.Fatalf("%s %q did not exit within %v\nstdout:\n%s\nstderr:\n%s", b.name, b.args, waitTime, b.stdout(), b.stderr())
	}
	if ee, ok := b.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return 0
}

func (b *bg) hasExited() bool {
	select {
	case <-b.exited:
		return true
	default:
		return false
	}
}

func (b *bg) signal(sig os.Signal) { _ = b.cmd.Process.Signal(sig) }

func (b *bg) kill() {
	b.cancel()
	<-b.exited
	b.closeStdin()
}

// waitFor polls cond every 20ms until it holds or the deadline passes.
func waitFor(t testing.TB, desc string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTime, desc)
		}
		<-tick.C
	}
}
