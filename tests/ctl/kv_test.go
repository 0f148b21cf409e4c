package ctl_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/e2e"
)

// step is one command of a sequence; "{p}" is the prefix, "{rev+N}" the
// revision N writes after the sequence started.
type step struct {
	stdin string
	args  []string
}

func s(args ...string) step              { return step{args: args} }
func sIn(in string, args ...string) step { return step{stdin: in, args: args} }

var revRE = regexp.MustCompile(`\{rev\+(\d+)\}`)

func expand(a, prefix string, base int64) string {
	a = strings.ReplaceAll(a, "{p}", prefix)
	return revRE.ReplaceAllStringFunc(a, func(m string) string {
		n, _ := strconv.ParseInt(revRE.FindStringSubmatch(m)[1], 10, 64)
		return strconv.FormatInt(base+n, 10)
	})
}

// revision returns the member's current revision.
func revision(t testing.TB, m *e2e.Member) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := m.Client().Get(ctx, "\x00")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// runSequence runs steps with tl under prefix and returns each step's result.
func runSequence(t *testing.T, tl tool, m *e2e.Member, prefix string, steps []step) ([]result, int64) {
	t.Helper()
	base := revision(t, m)
	var out []result
	for _, st := range steps {
		args := []string{ep(m.ClientURL)}
		for _, a := range st.args {
			args = append(args, expand(a, prefix, base))
		}
		out = append(out, tl.runEnv(t, expand(st.stdin, prefix, base), nil, args...))
	}
	return out, base
}

// compareSequences runs steps through etcdctl under "e/" and cairnctl
// under "c/" on the same member and compares step by step.
func compareSequences(t *testing.T, m *e2e.Member, steps []step) {
	t.Helper()
	want, wbase := runSequence(t, etcdctl, m, "e/", steps)
	got, gbase := runSequence(t, cairnctl, m, "c/", steps)
	for i := range steps {
		wn, gn := seqNorm("e/", wbase), seqNorm("c/", gbase)
		if gn(got[i].stdout) != wn(want[i].stdout) {
			t.Errorf("step %d %q: stdout differs\n etcdctl: %q\ncairnctl: %q", i, steps[i].args, wn(want[i].stdout), gn(got[i].stdout))
		}
		if got[i].code != want[i].code {
			t.Errorf("step %d %q: exit %d, etcdctl %d\ncairnctl stderr: %s\netcdctl stderr: %s", i, steps[i].args, got[i].code, want[i].code, got[i].stderr, want[i].stderr)
		}
		if strings.ReplaceAll(got[i].errLine(), "c/", "P/") != strings.ReplaceAll(want[i].errLine(), "e/", "P/") {
			t.Errorf("step %d %q: error %q, etcdctl %q", i, steps[i].args, got[i].errLine(), want[i].errLine())
		}
	}
}

func TestKVSequences(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	compareSequences(t, m, []step{
		s("put", "{p}a", "1"),
		s("put", "{p}b", "2", "--prev-kv"),
		s("put", "{p}a", "3", "--prev-kv", "-w", "json"),
		s("put", "{p}a", "4", "--prev-kv", "-w", "fields"),
		sIn("from stdin\nsecond line\n", "put", "{p}c"),
		s("put", "{p}c", "--ignore-value", "--prev-kv"),
		s("put", "{p}d", "-w", "protobuf"),
		s("get", "{p}", "--prefix"),
		s("get", "{p}", "--prefix", "-w", "json"),
		s("get", "{p}", "--prefix", "-w", "fields"),
		s("get", "{p}", "--prefix", "--keys-only"),
		s("get", "{p}", "--prefix", "--print-value-only"),
		s("get", "{p}", "--prefix", "--limit=2", "-w", "fields"),
		s("get", "{p}", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"),
		s("get", "{p}", "--prefix", "--sort-by=value", "--order=ascend", "-w", "json"),
		s("get", "{p}a", "{p}c", "-w", "fields"),
		s("get", "{p}a", "--rev={rev+1}", "-w", "json"),
		s("get", "{p}a", "--consistency=s"),
		s("get", "{p}zz", "-w", "fields"),
		s("del", "{p}b", "--prev-kv"),
		s("del", "{p}b", "-w", "fields"),
		s("del", "{p}a", "{p}c", "-w", "json", "--prev-kv"),
		s("put", "{p}x/1", "one"),
		s("put", "{p}x/2", "two"),
		s("del", "{p}x/", "--prefix", "--prev-kv", "-w", "fields"),
		s("del", "{p}", "--prefix"),
		s("get", "{p}", "--prefix", "-w", "json"),
		s("compaction", "{rev+2}"),
		s("get", "{p}a", "--rev={rev+1}"),
	})
}

func TestTxnSequences(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	txn := "mod(\"{p}a\") > \"0\"\n\nput {p}a \"overwrote a\"\nget {p}a\n\nput {p}a \"created a\"\nput {p}b \"some extra key\"\n\n"
	compareSequences(t, m, []step{
		sIn(txn, "txn"),
		sIn(txn, "txn", "-w", "json"),
		sIn(txn, "txn", "-w", "fields"),
		sIn(txn, "txn", "-i"),
		sIn("val(\"{p}a\") = \"overwrote a\"\nversion(\"{p}b\") = \"1\"\n\ndel {p}b --prev-kv\nget {p} --prefix --keys-only\n\n\n", "txn", "-w", "fields"),
		sIn("create(\"{p}zz\") = \"0\"\n\nput {p}zz 1 --prev-kv\n\n\n", "txn", "--interactive"),
		// errors: bad comparisons and requests exit 3 (ExitInvalidInput).
		sIn("bogus(\"{p}a\") = \"1\"\n\n\n\n", "txn"),
		sIn("mod(\"{p}a\") > \"x\"\n\n\n\n", "txn"),
		sIn("mod(\"{p}a\" > 1\n\n\n\n", "txn"),
		sIn("\nput {p}a\n\n\n", "txn"),
		sIn("\nfoo {p}a b\n\n\n", "txn"),
		sIn("mod(\"{p}a\") > \"0\"\n", "txn"),
		sIn("\nput {p}a b --lease=zz\n\n\n", "txn"),
		s("txn", "extra"),
	})
}

// TestReadOnlyFormats compares reads of one quiet server in every format.
func TestReadOnlyFormats(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	e := ep(m.ClientURL)
	cairnctl.must(t, e, "put", "k1", "v1")
	cairnctl.must(t, e, "put", "k2", "v 2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.Client().Put(ctx, "bin", "\x00\xff\n"); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"simple", "json", "fields"} {
		same(t, nil, e, "-w", w, "get", "k", "--prefix")
		same(t, nil, e, "-w", w, "get", "", "--from-key")
		same(t, nil, e, "-w", w, "get", "bin", "--hex")
		same(t, nil, e, "-w", w, "member", "list")
		if !(w == "fields" && e2e.Kind() == e2e.KindEtcd) { // etcdctl 3.4 panics on etcd 3.4's header-less alarm response
			same(t, nil, e, "-w", w, "alarm", "list")
		}
		same(t, nil, e, "-w", w, "endpoint", "hashkv")
		same(t, nil, e, "-w", w, "endpoint", "status")
	}
	// Watch in protobuf: the raw WatchResponse bytes, one write per response.
	var outs []string
	for _, tl := range []tool{etcdctl, cairnctl} {
		b := tl.start(t, false, nil, e, "watch", "k2", "--rev=2", "-w", "protobuf")
		outs = append(outs, b.waitOut("the event", func(s string) bool { return strings.Contains(s, "v 2") }))
		b.kill()
	}
	if outs[0] != outs[1] {
		t.Errorf("watch -w protobuf: %q, etcdctl %q", outs[1], outs[0])
	}
	same(t, nil, e, "-w", "table", "member", "list")
	same(t, nil, e, "-w", "table", "endpoint", "status")
	same(t, nil, e, "-w", "table", "endpoint", "hashkv")
	same(t, nil, e, "--hex", "-w", "json", "get", "k1")

	// endpoint health prints how long the check took: that timing is the
	// one thing normalized.
	took := regexp.MustCompile(`took = [0-9.]+[µnm]?s|"took":"[^"]*"|"Took" : [0-9.]+[µnm]?s|\| +[0-9.]+[µnm]?s \|`)
	norm := func(s string) string { return took.ReplaceAllString(s, "TOOK") }
	for _, w := range []string{"simple", "json", "fields"} {
		want := etcdctl.run(t, e, "-w", w, "endpoint", "health")
		got := cairnctl.run(t, e, "-w", w, "endpoint", "health")
		// simple prints health on stderr, as etcdctl does.
		want.stdout += norm(want.stderr)
		got.stdout += norm(got.stderr)
		compare(t, []string{"endpoint", "health", "-w", w}, want, got, norm)
	}

	// --count-only is newer than etcdctl 3.4: checked against the client.
	if got := cairnctl.must(t, e, "get", "k", "--prefix", "--count-only"); got != "2\n" {
		t.Errorf("get --count-only: %q, want 2", got)
	}
	if got := cairnctl.must(t, e, "get", "k", "--prefix", "--count-only", "-w", "fields"); !strings.Contains(got, `"Count" : 2`) || strings.Contains(got, `"Key"`) {
		t.Errorf("get --count-only -w fields:\n%s", got)
	}
}

// TestEnv checks ETCDCTL_* variables: they set global flags, and a
// variable that conflicts with a flag is an error, as in etcdctl.
func TestEnv(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cairnctl.must(t, ep(m.ClientURL), "put", "envkey", "envval")
	env := []string{"ETCDCTL_ENDPOINTS=" + m.ClientURL, "ETCDCTL_WRITE_OUT=json", "ETCDCTL_DIAL_TIMEOUT=3s"}
	want := etcdctl.runEnv(t, "", env, "get", "envkey")
	got := cairnctl.runEnv(t, "", env, "get", "envkey")
	compare(t, []string{"get envkey (env)"}, want, got, nil)
	if !strings.HasPrefix(got.stdout, "{") {
		t.Errorf("ETCDCTL_WRITE_OUT=json ignored: %q", got.stdout)
	}
	want = etcdctl.runEnv(t, "", env, ep(m.ClientURL), "get", "envkey")
	got = cairnctl.runEnv(t, "", env, ep(m.ClientURL), "get", "envkey")
	if got.code != want.code || got.code == 0 {
		t.Errorf("env and flag conflict: exit %d, etcdctl %d", got.code, want.code)
	}
	if !strings.Contains(got.stderr, `conflicting environment variable "ETCDCTL_ENDPOINTS"`) {
		t.Errorf("conflict message: %q", got.stderr)
	}
}

// TestErrors compares exit codes and error lines of bad usage and
// failures.
func TestErrors(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	e := ep(m.ClientURL)
	for _, args := range [][]string{
		{"get"},
		{"get", "a", "--order=sideways"},
		{"get", "a", "--sort-by=color"},
		{"get", "a", "--consistency=x"},
		{"get", "a", "b", "--prefix"},
		{"get", "a", "--prefix", "--from-key"},
		{"get", "a", "-w", "table"},
		{"get", "a", "--print-value-only", "-w", "json"},
		{"-w", "yaml", "get", "a"},
		{"put"},
		{"put", "a", "b", "--lease=zz"},
		{"put", "a", "b", "--ignore-value"},
		{"del"},
		{"del", "a", "b", "c"},
		{"del", "a", "--prefix", "--from-key"},
		{"compaction"},
		{"compaction", "x"},
		{"compaction", "1000"},
		{"lease", "grant"},
		{"lease", "grant", "x"},
		{"lease", "revoke", "zz"},
		{"lease", "revoke", "1234"},
		{"lease", "timetolive"},
		{"lease", "keep-alive", "--once", "1234"},
		{"member", "remove"},
		{"member", "remove", "zz"},
		{"member", "add"},
		{"member", "add", "x"},
		{"member", "update", "1234"},
		{"move-leader"},
		{"move-leader", "zz"},
		{"watch"},
		{"watch", "a", "--"},
		{"watch", "a", "b", "--prefix"},
		{"snapshot", "save"},
		{"snapshot", "status"},
		{"snapshot", "status", "/nonexistent/file"},
	} {
		same(t, nil, append([]string{e}, args...)...)
	}
	// The program name is the one legitimate difference in these.
	progName := func(s string) string { return strings.ReplaceAll(s, "cairnctl", "etcdctl") }
	want := etcdctl.run(t, e, "nosuchcommand")
	got := cairnctl.run(t, e, "nosuchcommand")
	got.stderr = progName(got.stderr)
	compare(t, []string{"nosuchcommand"}, want, got, nil)
	// A bad flag prints the command's usage on stdout (its layout is
	// cobra's, not etcdctl 3.4's hand-made one) and the error.
	want = etcdctl.run(t, e, "get", "a", "--nosuchflag")
	got = cairnctl.run(t, e, "get", "a", "--nosuchflag")
	compare(t, []string{"get", "a", "--nosuchflag"}, want, got, func(string) string { return "" })
	if !strings.Contains(got.stdout, "--prefix") {
		t.Errorf("bad flag: usage not printed:\n%s", got.stdout)
	}
	// An endpoint nobody listens on: both fail after the timeouts with
	// "context deadline exceeded"; cairnctl adds a hint naming the endpoint.
	dead := []string{"--endpoints=127.0.0.1:1", "--dial-timeout=1s", "--command-timeout=1s", "get", "a"}
	want = etcdctl.run(t, dead...)
	got = cairnctl.run(t, dead...)
	compare(t, dead, want, got, nil)
	if !strings.Contains(got.stderr, "127.0.0.1:1") || !strings.Contains(got.stderr, "--endpoints") {
		t.Errorf("dial failure: no hint naming the endpoint and --endpoints:\n%s", got.stderr)
	}
}
