package ctl_test

import (
	"context"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/tests/e2e"
)

// lockLine matches what lock and elect print once they hold: the key
// (name/lease id in hex) and the value.
var lockKey = regexp.MustCompile(`^([^\n]+)/([0-9a-f]+)\n`)

func TestLockAndElect(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	e := ep(m.ClientURL)

	for _, pair := range [][2]tool{{cairnctl, etcdctl}, {etcdctl, cairnctl}} {
		holder, waiter := pair[0], pair[1]
		h := holder.start(t, false, nil, e, "lock", "L")
		out := h.waitOut("the lock", func(s string) bool { return strings.HasSuffix(s, "\n\n") })
		if sub := lockKey.FindStringSubmatch(out); sub == nil || sub[1] != "L" || strings.Count(out, "\n") != 2 {
			t.Fatalf("%s lock printed %q, want the key L/<lease> and an empty value", holder.name, out)
		}
		// The waiter's command runs only once the holder lets go.
		w := waiter.start(t, false, nil, e, "lock", "L", "--", "sh", "-c", `echo "got $ETCD_LOCK_KEY"; exit 7`)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		waitFor(t, "the waiter to queue", func() bool {
			r, err := m.Client().Get(ctx, "L/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			return err == nil && r.Count == 2
		})
		cancel()
		if w.stdout() != "" {
			t.Fatalf("%s lock ran its command while %s held the lock: %q", waiter.name, holder.name, w.stdout())
		}
		h.signal(syscall.SIGTERM)
		if code := h.wait(); code != 0 {
			t.Errorf("%s lock: exit %d after SIGTERM\n%s", holder.name, code, h.stderr())
		}
		w.waitOut("the command's output", func(s string) bool { return strings.HasPrefix(s, "got L/") })
		if code := w.wait(); code != 1 || !strings.Contains(w.stderr(), "Error: exit status 7") {
			t.Errorf("%s lock: exit %d, want 1 and the command's status 7\n%s", waiter.name, code, w.stderr())
		}
	}
	same(t, nil, e, "lock")

	// elect: an observer sees each leader; a second candidate takes over
	// when the first resigns.
	obs := cairnctl.start(t, false, nil, e, "elect", "-l", "E")
	first := etcdctl.start(t, false, nil, e, "elect", "E", "p1")
	first.waitOut("leadership", func(s string) bool { return strings.HasSuffix(s, "\np1\n") })
	obs.waitOut("the first leader", func(s string) bool { return strings.Contains(s, "\np1\n") })
	second := cairnctl.start(t, false, nil, e, "elect", "E", "p2")
	first.signal(syscall.SIGTERM)
	if code := first.wait(); code != 0 {
		t.Errorf("etcdctl elect: exit %d", code)
	}
	out := second.waitOut("leadership", func(s string) bool { return strings.HasSuffix(s, "\np2\n") })
	if sub := lockKey.FindStringSubmatch(out); sub == nil || sub[1] != "E" {
		t.Errorf("cairnctl elect printed %q", out)
	}
	obs.waitOut("the second leader", func(s string) bool { return strings.Contains(s, "\np2\n") })
	second.signal(syscall.SIGINT)
	if code := second.wait(); code != 0 {
		t.Errorf("cairnctl elect: exit %d\n%s", code, second.stderr())
	}
	obs.signal(syscall.SIGTERM)
	if code := obs.wait(); code != 0 {
		t.Errorf("cairnctl elect -l: exit %d\n%s", code, obs.stderr())
	}
	same(t, nil, e, "elect")
	same(t, nil, e, "elect", "E")
	same(t, nil, e, "elect", "E", "p", "-l")
}

func TestMakeMirror(t *testing.T) {
	t.Parallel()
	src := e2e.StartMember(t, e2e.MemberConfig{Name: "src"})
	dst := e2e.StartMember(t, e2e.MemberConfig{Name: "dst"})
	e := ep(src.ClientURL)
	for _, k := range []string{"a", "b", "c"} {
		cairnctl.must(t, e, "put", "m/"+k, "v-"+k)
	}
	cairnctl.must(t, e, "put", "other", "x")
	mm := cairnctl.start(t, false, nil, e, "make-mirror", "--prefix=m/", "--dest-prefix=n/", "--report-interval=100ms", dst.ClientURL)
	dumpDst := func() string {
		r := cairnctl.run(t, ep(dst.ClientURL), "get", "", "--from-key")
		return r.stdout
	}
	waitFor(t, "the base copy", func() bool { return dumpDst() == "n/a\nv-a\nn/b\nv-b\nn/c\nv-c\n" })
	cairnctl.must(t, e, "put", "m/d", "v-d")
	cairnctl.must(t, e, "del", "m/a")
	txn := "\nput m/e 1\nput m/f 2\ndel m/b\n\n\n"
	if r := cairnctl.runEnv(t, txn, nil, e, "txn"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	waitFor(t, "the updates", func() bool { return dumpDst() == "n/c\nv-c\nn/d\nv-d\nn/e\n1\nn/f\n2\n" })
	// progress counts: 3 copied + 1 put + 1 delete + 3 in the txn.
	mm.waitOut("the count", func(s string) bool { return strings.HasSuffix(s, "\n8\n") || s == "8\n" })
	mm.signal(syscall.SIGTERM)
	if code := mm.wait(); code != 0 {
		t.Errorf("make-mirror: exit %d\n%s", code, mm.stderr())
	}
	same(t, nil, e, "make-mirror")
	same(t, nil, e, "make-mirror", "--dest-prefix=x", "--no-dest-prefix", dst.ClientURL)
}

func TestCheckPerf(t *testing.T) {
	m := e2e.StartMember(t, e2e.MemberConfig{})
	e := ep(m.ClientURL)
	// A short run: the verdict depends on the machine, so only the report's
	// shape and the clean-up are checked.
	r := cairnctl.run(t, e, "check", "perf", "--load=s", "--duration=2s", "--prefix=/perf/", "--auto-compact")
	lines := regexp.MustCompile(`(?m)^(PASS|FAIL)(: (Throughput is|Throughput too low:) \d+ writes/s)?$`)
	if (r.code != 0 && r.code != 1) || !lines.MatchString(r.stdout) || !strings.Contains(r.stdout, "Compacted with revision") {
		t.Errorf("check perf: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.HasSuffix(r.stdout, "PASS\n") != (r.code == 0) {
		t.Errorf("check perf: verdict and exit code %d disagree:\n%s", r.code, r.stdout)
	}
	if got := cairnctl.must(t, e, "get", "/perf/", "--prefix", "--count-only"); got != "0\n" {
		t.Errorf("check perf left %s keys", got)
	}
	cairnctl.must(t, e, "put", "/perf/x", "y")
	same(t, nil, e, "check", "perf", "--prefix=/perf/")
	same(t, nil, e, "check", "perf", "--load=huge")

	// datascale: the small load, memory read from /metrics before and after.
	r = cairnctl.run(t, e, "check", "datascale", "--prefix=/scale/", "--auto-compact")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Start data scale check for work load [10000 key-value pairs, 1024 bytes per key-value, 50 concurrent clients].\n") ||
		!regexp.MustCompile(`(?m)^PASS: Approximate system memory used : -?\d+\.\d\d MB\.$`).MatchString(r.stdout) {
		t.Errorf("check datascale: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if got := cairnctl.must(t, e, "get", "/scale/", "--prefix", "--count-only"); got != "0\n" {
		t.Errorf("check datascale left %s keys", got)
	}
	cairnctl.must(t, e, "put", "/scale/x", "y")
	same(t, nil, e, "check", "datascale", "--prefix=/scale/")
	same(t, nil, e, "check", "datascale", "--load=huge")
}

func TestMisc(t *testing.T) {
	t.Parallel()
	bash := cairnctl.must(t, "completion", "bash")
	if !strings.Contains(bash, "bash completion") || !strings.Contains(bash, "cairnctl") {
		t.Errorf("completion bash: %.200q", bash)
	}
	if zsh := cairnctl.must(t, "completion", "zsh"); !strings.HasPrefix(zsh, "#compdef cairnctl") {
		t.Errorf("completion zsh: %.200q", zsh)
	}
	// version: etcdctl's two lines with the version cairn implements, then
	// cairnctl's own; the version numbers are what differ.
	want := etcdctl.must(t, "version")
	got := cairnctl.must(t, "version")
	num := regexp.MustCompile(`\d+\.\d+(\.\d+)?`)
	gotLines := strings.SplitAfter(got, "\n")
	if len(gotLines) < 3 || num.ReplaceAllString(strings.Join(gotLines[:2], ""), "V") != num.ReplaceAllString(want, "V") ||
		!strings.HasPrefix(gotLines[2], "cairnctl version: ") {
		t.Errorf("version: %q, etcdctl %q", got, want)
	}
	help := cairnctl.must(t, "--help")
	for _, c := range []string{"get", "put", "del", "txn", "watch", "lease grant", "member add", "endpoint status", "snapshot restore", "lock", "elect", "make-mirror", "check perf", "defrag", "move-leader", "alarm list", "compaction", "version"} {
		if !regexp.MustCompile(`(?m)^\t` + regexp.QuoteMeta(c) + ` +\S`).MatchString(help) {
			t.Errorf("--help lacks command %q", c)
		}
	}
}
