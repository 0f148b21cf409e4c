package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/internal/bench"
	"github.com/cairn-kv/cairn/tests/e2e"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ceilingBinary is tools/ceiling, built once by TestMain.
var ceilingBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-bench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ceilingBinary = filepath.Join(dir, "ceiling")
	cmd := exec.Command("go", "build", "-o", ceilingBinary, "github.com/cairn-kv/cairn/tools/ceiling")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building tools/ceiling: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := e2e.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// startCeiling runs the ceiling server on a free loopback port until the
// test ends and returns its address once it answers Status.
func startCeiling(t *testing.T) string {
	t.Helper()
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		var out bytes.Buffer
		cmd := exec.Command(ceilingBinary, "--listen-client-urls", "http://"+addr)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = bench.WaitReady(ctx, bench.Config{Endpoints: []string{addr}, DialTimeout: 2 * time.Second}, 20*time.Second, &out)
		cancel()
		select {
		case werr := <-exited:
			if attempt < 3 && strings.Contains(out.String(), "address already in use") {
				continue // the port was taken between Close and the bind
			}
			t.Fatalf("ceiling exited: %v\n%s", werr, out.String())
		default:
		}
		if err != nil {
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("ceiling not ready: %v\n%s", err, out.String())
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		})
		return addr
	}
}

// runBench runs cairn-bench in process with --json and decodes the report.
func runBench(t *testing.T, endpoint string, args ...string) *bench.Report {
	t.Helper()
	cmd := bench.NewCommand()
	all := append([]string{"--endpoints", endpoint, "--json", "--run-timeout", "60s", "--dial-timeout", "5s"}, args...)
	cmd.SetArgs(all)
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("cairn-bench %s: %v\n%s", strings.Join(all, " "), err, errOut.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("cairn-bench %s: output is not a JSON report: %v\n%s", strings.Join(all, " "), err, out.String())
	}
	return &rep
}

// checkCounts fails unless the run did exactly want requests, none failed,
// and the report is consistent.
func checkCounts(t *testing.T, name string, rep *bench.Report, want int64) {
	t.Helper()
	if rep.Errors != 0 || len(rep.ErrorSamples) != 0 {
		t.Errorf("%s: %d errors: %q", name, rep.Errors, rep.ErrorSamples)
	}
	if rep.Requests != want {
		t.Errorf("%s: %d requests succeeded, want %d", name, rep.Requests, want)
	}
	if int64(rep.Samples) != rep.Requests {
		t.Errorf("%s: percentiles from %d samples, want all %d", name, rep.Samples, rep.Requests)
	}
	hist := 0
	for _, b := range rep.Histogram {
		hist += b.Count
	}
	if int64(hist) != rep.Requests {
		t.Errorf("%s: histogram holds %d latencies, want %d", name, hist, rep.Requests)
	}
	l := rep.Latency
	if !(l.Fastest <= l.P10 && l.P10 <= l.P50 && l.P50 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Slowest) {
		t.Errorf("%s: percentiles out of order: %+v", name, l)
	}
	if rep.TotalSeconds <= 0 || rep.Throughput <= 0 {
		t.Errorf("%s: total %vs, %v req/s", name, rep.TotalSeconds, rep.Throughput)
	}
}

// revision is the server's current revision, read through cairn-bench's
// own client settings.
func revision(t *testing.T, endpoint string) int64 {
	t.Helper()
	cs, err := (&bench.Config{Endpoints: []string{endpoint}, Conns: 1, Clients: 1, DialTimeout: 5 * time.Second}).Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cs.For(0).Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// runAllWorkloads runs every workload briefly against endpoint, a fresh
// server at revision 1, and checks the counts.
func runAllWorkloads(t *testing.T, endpoint string) {
	rev0 := revision(t, endpoint)
	rep := runBench(t, endpoint, "put", "--total", "400", "--clients", "20", "--conns", "4",
		"--key-space-size", "100", "--val-size", "256")
	checkCounts(t, "put", rep, 400)
	if got := revision(t, endpoint); got != rev0+400 {
		t.Errorf("after 400 puts the revision is %d, want %d", got, rev0+400)
	}
	if rep.Workload != "put" || rep.Flags["clients"] != "20" || rep.Flags["val-size"] != "256" {
		t.Errorf("put: workload %q flags %v", rep.Workload, rep.Flags)
	}

	rep = runBench(t, endpoint, "put", "--total", "50", "--sequential-keys", "--key-space-size", "50", "--rate", "500")
	checkCounts(t, "put --rate", rep, 50)

	for _, c := range []string{"l", "s"} {
		rep = runBench(t, endpoint, "range", "bench-key", "--prefill", "64", "--consistency", c, "--total", "300", "--clients", "10", "--conns", "2")
		checkCounts(t, "range --consistency="+c, rep, 300)
	}

	rev1 := revision(t, endpoint)
	rep = runBench(t, endpoint, "txn-put", "--total", "200", "--clients", "10", "--txn-ops", "3", "--key-space-size", "50")
	checkCounts(t, "txn-put", rep, 200)
	if got := revision(t, endpoint); got != rev1+200 {
		t.Errorf("after 200 write txns the revision is %d, want %d", got, rev1+200)
	}

	rev2 := revision(t, endpoint)
	rep = runBench(t, endpoint, "txn-mixed", "--total", "300", "--clients", "10", "--rw-ratio", "2", "--key-space-size", "50", "--consistency", "s")
	checkCounts(t, "txn-mixed", rep, 300)
	if rep.Extra["writes_sent"] != 100 || rep.Extra["reads_sent"] != 200 {
		t.Errorf("txn-mixed --rw-ratio 2: %v, want 100 writes and 200 reads", rep.Extra)
	}
	if got := revision(t, endpoint); got != rev2+100 {
		t.Errorf("after 100 write txns the revision is %d, want %d", got, rev2+100)
	}

	rep = runBench(t, endpoint, "lease-keepalive", "--total", "300", "--clients", "10", "--conns", "2")
	checkCounts(t, "lease-keepalive", rep, 300)

	// 3 streams x 5 watchers on 4 keys: keys 0-2 have 4 watchers, key 3
	// has 3; 100 puts are 25 per key: 3*25*4 + 25*3 = 375 events.
	rep = runBench(t, endpoint, "watch", "--streams", "3", "--watch-per-stream", "5", "--watched-key-total", "4",
		"--put-total", "100", "--clients", "4", "--conns", "2", "--key-size", "8", "--val-size", "16")
	checkCounts(t, "watch", rep, 375)
	if rep.Extra["events_expected"] != 375 || rep.Extra["events_delivered"] != 375 || rep.Extra["puts"] != 100 || rep.Extra["watchers"] != 15 {
		t.Errorf("watch: %v", rep.Extra)
	}

	rep = runBench(t, endpoint, "watch-latency", "--total", "40", "--put-rate", "0", "--clients", "8", "--conns", "2", "--val-size", "256")
	checkCounts(t, "watch-latency", rep, 320)
	if rep.Extra["events_delivered"] != 320 || rep.Extra["watchers"] != 8 {
		t.Errorf("watch-latency: %v", rep.Extra)
	}

	rep = runBench(t, endpoint, "--target-leader", "put", "--total", "20")
	checkCounts(t, "put --target-leader", rep, 20)
}

func TestWorkloadsAgainstCairn(t *testing.T) {
	m := e2e.StartMember(t, e2e.MemberConfig{})
	runAllWorkloads(t, m.ClientAddr())
}

func TestWorkloadsAgainstCeiling(t *testing.T) {
	runAllWorkloads(t, startCeiling(t))
}

// A run against a dead endpoint ends (bounded by --run-timeout) and
// reports its requests as errors; requests + errors is the total.
func TestErrorsAreCounted(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	cmd := bench.NewCommand()
	cmd.SetArgs([]string{"--endpoints", dead, "--json", "--run-timeout", "2s", "put", "--total", "30", "--clients", "3"})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if rep.Requests != 0 || rep.Errors != 30 || len(rep.ErrorSamples) == 0 {
		t.Fatalf("against a dead endpoint: %d ok, %d errors %q; want 0 and 30", rep.Requests, rep.Errors, rep.ErrorSamples)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"put", "--key-size", "2", "--key-space-size", "1000"},
		{"put", "--clients", "0"},
		{"range", "k", "--consistency", "x"},
		{"txn-put", "--txn-ops", "0"},
		{"txn-put", "--txn-ops", "2", "--key-space-size", "1"},
		{"watch", "--put-total", "1000", "--val-size", "2"},
	} {
		cmd := bench.NewCommand()
		cmd.SetArgs(append([]string{"--endpoints", "127.0.0.1:1"}, args...))
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		if err := cmd.Execute(); err == nil {
			t.Errorf("cairn-bench %v: no error\n%s", args, out.String())
		}
	}
}

// --user authenticates: with auth enabled on cairn, a run with the root
// user's credentials succeeds and one without them fails every request.
func TestUserAuth(t *testing.T) {
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cli := m.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.UserAdd(ctx, "root", "rootpw"); err != nil {
		if status.Code(err) == codes.Unimplemented {
			// Runs against etcd (CAIRN_E2E_SERVER=etcd) until cairn
			// serves the Auth service.
			t.Skipf("%s has no Auth service yet: %v", m.Kind(), err)
		}
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	rep := runBench(t, m.ClientAddr(), "--user", "root:rootpw", "put", "--total", "50", "--clients", "5")
	checkCounts(t, "put --user", rep, 50)
	if rep.Flags["user"] != "root" {
		t.Errorf("flags record user %q, want the name without the password", rep.Flags["user"])
	}
	if _, ok := rep.Flags["password"]; ok {
		t.Errorf("flags record the password")
	}
	rep = runBench(t, m.ClientAddr(), "--user", "root", "--password", "rootpw", "range", "k", "--total", "20")
	checkCounts(t, "range --user --password", rep, 20)

	rep = runBench(t, m.ClientAddr(), "put", "--total", "10")
	if rep.Requests != 0 || rep.Errors != 10 {
		t.Errorf("without credentials: %d ok, %d errors; want 0 and 10", rep.Requests, rep.Errors)
	}
}
