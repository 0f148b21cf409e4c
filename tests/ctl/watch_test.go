package ctl_test

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-kv/cairn/tests/e2e"
)

// writeHistory writes the same history under prefix and returns the
// revision before it. The last write is the sentinel key "zz-end".
func writeHistory(t *testing.T, m *e2e.Member, prefix string) int64 {
	t.Helper()
	base := revision(t, m)
	e := ep(m.ClientURL)
	cairnctl.must(t, e, "put", prefix+"a", "1")
	cairnctl.must(t, e, "put", prefix+"b", "2")
	cairnctl.must(t, e, "put", prefix+"a", "3")
	cairnctl.must(t, e, "del", prefix+"b")
	tx := fmt.Sprintf("\nput %sc x\nput %sd y\ndel %sa\n\n\n", prefix, prefix, prefix)
	if r := cairnctl.runEnv(t, tx, nil, e, "txn"); r.code != 0 {
		t.Fatalf("txn: %+v", r)
	}
	cairnctl.must(t, e, "put", prefix+"zz-end", "done")
	return base
}

// sentinelSeen reports whether out shows the whole sentinel event in any
// format (output arrives in pieces: the value or the closing brace must be
// there too).
func sentinelSeen(prefix string) func(string) bool {
	key := prefix + "zz-end"
	b64 := base64.StdEncoding.EncodeToString([]byte(key))
	return func(out string) bool {
		i := strings.Index(out, key)
		if i < 0 {
			i = strings.Index(out, b64)
		}
		if i < 0 {
			return false
		}
		rest := out[i:]
		return strings.Contains(rest, "\ndone\n") || strings.Contains(rest, "}\n") ||
			(strings.Contains(rest, `"Lease" : `) && strings.HasSuffix(rest, "\n"))
	}
}

var hdrRev = regexp.MustCompile(`("Revision" : |"revision":)("?base\+\d+"?|\d+)`)

func TestWatch(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	e := ep(m.ClientURL)
	ebase := writeHistory(t, m, "e/")
	cbase := writeHistory(t, m, "c/")
	for _, args := range [][]string{
		{"ETCDCTL_WATCH_KEY={p}a", "ETCDCTL_WATCH_RANGE_END={p}zz-f", "watch", "--rev={rev+1}"},
		{"watch", "--prefix", "{p}", "--rev={rev+1}"},
		{"watch", "--prefix", "{p}", "--rev={rev+1}", "--prev-kv", "-w", "json"},
		{"watch", "--prefix", "{p}", "--rev={rev+1}", "-w", "fields"},
		{"watch", "{p}a", "{p}zz-f", "--rev={rev+3}", "--prev-kv"},
		{"watch", "--rev={rev+1}", "--prefix", "{p}", "--", "sh", "-c", `echo "exec $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION"`},
	} {
		run := func(tl tool, prefix string, base int64) string {
			full := []string{e}
			var env []string
			for _, a := range args {
				if strings.HasPrefix(a, "ETCDCTL_") {
					env = append(env, expand(a, prefix, base))
					continue
				}
				full = append(full, expand(a, prefix, base))
			}
			b := tl.start(t, false, env, full...)
			cond := sentinelSeen(prefix)
			if args[len(args)-4] == "--" {
				// all 8 events ran the command
				cond = func(s string) bool { return strings.Count(s, "exec ") == 8 }
			}
			out := b.waitOut("the sentinel event", cond)
			b.kill()
			return out
		}
		// A response header carries the store's revision when it was
		// sent, not one of the history's: it is not the runs' to agree on
		// (ETCD_WATCH_REVISION, the same number, is compared as is).
		want := hdrRev.ReplaceAllString(seqNorm("e/", ebase)(run(etcdctl, "e/", ebase)), "${1}HDR")
		got := hdrRev.ReplaceAllString(seqNorm("c/", cbase)(run(cairnctl, "c/", cbase)), "${1}HDR")
		if got != want {
			t.Errorf("%q:\n etcdctl: %q\ncairnctl: %q", args, want, got)
		}
	}
}

// TestWatchLive checks events that arrive while watching, interactive
// mode with progress requests, and the exit when the server goes away.
func TestWatchLive(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	e := ep(m.ClientURL)
	w := cairnctl.start(t, false, nil, e, "watch", "live/", "--prefix")
	// The watch is registered once its stream is up; a put before that
	// could be missed, so keep writing a probe until one is seen.
	waitFor(t, "the watch to see a probe", func() bool {
		cairnctl.must(t, e, "put", "live/probe", "p")
		return strings.Contains(w.stdout(), "live/probe")
	})
	cairnctl.must(t, e, "put", "live/k", "v1")
	cairnctl.must(t, e, "del", "live/k")
	w.waitOut("the delete", func(s string) bool { return strings.Contains(s, "DELETE\nlive/k\n\n") })
	if !strings.Contains(w.stdout(), "PUT\nlive/k\nv1\n") {
		t.Errorf("live watch output lacks the put:\n%s", w.stdout())
	}

	// Interactive: the same lines through both tools print the same.
	rev := revision(t, m)
	for _, tl := range []tool{etcdctl, cairnctl} {
		b := tl.start(t, true, nil, e, "watch", "-i")
		b.write(fmt.Sprintf("watch live/k --rev=%d\n", rev-1))
		b.waitOut("the interactive watch events", func(s string) bool { return strings.Contains(s, "DELETE") })
		b.write("progress\n")
		b.waitOut("a progress notification", func(s string) bool { return strings.Contains(s, "progress notify:") })
		b.write("bogus\n")
		want := "PUT\nlive/k\nv1\nDELETE\nlive/k\n\nprogress notify: " + strconv.FormatInt(rev, 10) + "\n"
		if got := b.stdout(); got != want {
			t.Errorf("%s watch -i: %q, want %q", tl.name, got, want)
		}
		waitFor(t, tl.name+" complaint about a bad line", func() bool { return strings.Contains(b.stderr(), "Invalid command bogus") })
		b.kill()
	}

	// A failing command ends the watch with exit 1, in both modes.
	for _, tl := range []tool{etcdctl, cairnctl} {
		b := tl.start(t, false, nil, e, "watch", "live/k", fmt.Sprintf("--rev=%d", rev-1), "--", "false")
		if code := b.wait(); code != 1 || !strings.Contains(b.stderr(), `command ["false"] error (exit status 1)`) {
			t.Errorf("%s watch -- false: exit %d\n%s", tl.name, code, b.stderr())
		}
		b = tl.start(t, true, nil, e, "watch", "-i")
		b.write(fmt.Sprintf("watch live/k --rev=%d -- false\n", rev-1))
		if code := b.wait(); code != 1 || !strings.Contains(b.stderr(), `command ["false"] error (exit status 1)`) {
			t.Errorf("%s watch -i with -- false: exit %d\n%s", tl.name, code, b.stderr())
		}
	}

	// A watch runs until interrupted.
	if w.hasExited() {
		t.Errorf("watch exited on its own: %s", w.stderr())
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(); code == 0 {
		t.Errorf("watch exited 0 after SIGTERM")
	}
}

func TestLease(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	e := ep(m.ClientURL)
	idRE := regexp.MustCompile(`(?m)lease ([0-9a-f]{16}) granted`)
	type run struct {
		id   string
		outs []string
	}
	do := func(tl tool, prefix string) run {
		out := tl.must(t, e, "lease", "grant", "1000")
		sub := idRE.FindStringSubmatch(out)
		if sub == nil {
			t.Fatalf("%s lease grant: %q", tl.name, out)
		}
		id := sub[1]
		dec, _ := strconv.ParseInt(id, 16, 64)
		r := run{id: id, outs: []string{out}}
		base := revision(t, m)
		for _, args := range [][]string{
			{"lease", "grant", "500", "-w", "json"},
			{"lease", "grant", "500", "-w", "fields"},
			{"put", prefix + "k1", "v", "--lease=" + id},
			{"put", prefix + "k2", "v", "--lease=" + id, "-w", "json"},
			{"lease", "timetolive", id, "--keys"},
			{"lease", "timetolive", id, "-w", "json"},
			{"lease", "timetolive", id, "--keys", "-w", "fields"},
			{"lease", "keep-alive", "--once", id},
			{"lease", "keep-alive", "--once", id, "-w", "json"},
			{"lease", "keep-alive", "--once", id, "-w", "fields"},
			{"put", prefix + "k1", "w", "--ignore-lease", "--prev-kv", "-w", "fields"},
			{"lease", "revoke", id},
			{"lease", "revoke", id},
			{"lease", "timetolive", id},
			{"get", prefix, "--prefix", "-w", "json"},
		} {
			res := tl.run(t, append([]string{e}, args...)...)
			o := seqNorm(prefix, base)(res.stdout) + fmt.Sprintf("exit %d %s\n", res.code, res.errLine())
			// Lease ids are chosen by the server per grant, the one
			// thing besides revisions that two runs cannot share;
			// remaining TTLs tick while the test runs.
			o = strings.NewReplacer(id, "ID", strconv.FormatInt(dec, 10), "ID").Replace(o)
			o = regexp.MustCompile(`remaining\(\d+s\)|"ttl":\d+|"TTL" : \d+|"ID":\d+|"ID" : \d+`).ReplaceAllString(o, "X")
			r.outs = append(r.outs, sortLeaseKeys(o))
		}
		return r
	}
	want := do(etcdctl, "e/")
	got := do(cairnctl, "c/")
	if strings.Replace(got.outs[0], got.id, "ID", 1) != strings.Replace(want.outs[0], want.id, "ID", 1) {
		t.Errorf("lease grant: %q, etcdctl %q", got.outs[0], want.outs[0])
	}
	for i := 1; i < len(want.outs); i++ {
		if got.outs[i] != want.outs[i] {
			t.Errorf("lease step %d:\n etcdctl: %q\ncairnctl: %q", i, want.outs[i], got.outs[i])
		}
	}
	same(t, nil, e, "lease", "list")
	same(t, nil, e, "lease", "list", "-w", "json")
	same(t, nil, e, "lease", "list", "-w", "fields")

	// keep-alive without --once renews (every third of the TTL) until the
	// lease is revoked, then says so and exits 0.
	out := cairnctl.must(t, e, "lease", "grant", "3")
	id := idRE.FindStringSubmatch(out)[1]
	ka := cairnctl.start(t, false, nil, e, "lease", "keep-alive", id)
	ka.waitOut("a renewal", func(s string) bool { return strings.Contains(s, "lease "+id+" keepalived with TTL(3)") })
	cairnctl.must(t, e, "lease", "revoke", id)
	ka.waitOut("the revocation", func(s string) bool { return strings.Contains(s, "lease "+id+" expired or revoked.") })
	if code := ka.wait(); code != 0 {
		t.Errorf("keep-alive exit %d after revoke\n%s", code, ka.stderr())
	}
}

// sortLeaseKeys puts the keys attached to a lease in order: etcd lists
// them in map order, which differs from run to run.
func sortLeaseKeys(s string) string {
	s = regexp.MustCompile(`attached keys\(\[([^]]*)\]\)`).ReplaceAllStringFunc(s, func(m string) string {
		inner := strings.TrimSuffix(strings.TrimPrefix(m, "attached keys(["), "])")
		ks := strings.Fields(inner)
		sort.Strings(ks)
		return "attached keys([" + strings.Join(ks, " ") + "])"
	})
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); {
		j := i
		for j < len(lines) && strings.HasPrefix(lines[j], `"Key" : `) {
			j++
		}
		sort.Strings(lines[i:j])
		i = j + 1
	}
	return strings.Join(lines, "\n")
}
