package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// currentRev returns the member's current revision.
func currentRev(t testing.TB, cli *clientv3.Client) int64 {
	t.Helper()
	r, err := cli.Get(tctx(t), "e2e-current-revision-probe")
	if err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision
}

func mustPut(t testing.TB, cli *clientv3.Client, k, v string, opts ...clientv3.OpOption) int64 {
	t.Helper()
	r, err := cli.Put(tctx(t), k, v, opts...)
	if err != nil {
		t.Fatalf("put %q: %v", k, err)
	}
	return r.Header.Revision
}

func mustDel(t testing.TB, cli *clientv3.Client, k string, opts ...clientv3.OpOption) int64 {
	t.Helper()
	r, err := cli.Delete(tctx(t), k, opts...)
	if err != nil {
		t.Fatalf("delete %q: %v", k, err)
	}
	return r.Header.Revision
}

// TestWatchEtcdctl drives watches with the real etcdctl. A watch that must
// not miss the writes made after it starts is opened at --rev current+1, so
// the test never races the watch's creation.
func TestWatchEtcdctl(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	requireEtcdctl(t)
	cli := m.Client()

	t.Run("key", func(t *testing.T) {
		next := currentRev(t, cli) + 1
		w := m.StartCtl(t, "watch", "w", "--rev", fmt.Sprint(next))
		mustPut(t, cli, "w", "a")
		mustPut(t, cli, "wx", "not watched")
		mustPut(t, cli, "w", "c")
		mustDel(t, cli, "w")
		// A DELETE prints the key and an empty value line.
		w.WaitStdoutIs("PUT\nw\na\nPUT\nw\nc\nDELETE\nw\n\n")
	})

	t.Run("range", func(t *testing.T) {
		next := currentRev(t, cli) + 1
		w := m.StartCtl(t, "watch", "r1", "r3", "--rev", fmt.Sprint(next))
		mustPut(t, cli, "r0", "no")
		mustPut(t, cli, "r1", "a")
		mustPut(t, cli, "r2", "b")
		mustPut(t, cli, "r3", "no")
		mustPut(t, cli, "r1", "c")
		w.WaitStdoutIs("PUT\nr1\na\nPUT\nr2\nb\nPUT\nr1\nc\n")
	})

	var prefixFrom int64
	t.Run("prefix-prev-kv", func(t *testing.T) {
		prefixFrom = currentRev(t, cli) + 1
		w := m.StartCtl(t, "watch", "p", "--prefix", "--prev-kv", "--rev", fmt.Sprint(prefixFrom))
		mustPut(t, cli, "p1", "a")
		mustPut(t, cli, "p1", "b")
		mustDel(t, cli, "p1")
		mustPut(t, cli, "q", "not watched")
		mustPut(t, cli, "p2", "c")
		// With --prev-kv an event prints the previous key and value first.
		w.WaitStdoutIs("PUT\np1\na\n" +
			"PUT\np1\na\np1\nb\n" +
			"DELETE\np1\nb\np1\n\n" +
			"PUT\np2\nc\n")
	})

	t.Run("past-rev", func(t *testing.T) {
		// History is replayed from --rev, then live events follow.
		w := m.StartCtl(t, "watch", "p", "--prefix", "--rev", fmt.Sprint(prefixFrom))
		hist := "PUT\np1\na\nPUT\np1\nb\nDELETE\np1\n\nPUT\np2\nc\n"
		w.WaitStdoutIs(hist)
		mustPut(t, cli, "p3", "d")
		w.WaitStdoutIs(hist + "PUT\np3\nd\n")
		// From the first revision: everything ever written under w.
		w1 := m.StartCtl(t, "watch", "w", "--rev", "1")
		w1.WaitStdoutIs("PUT\nw\na\nPUT\nw\nc\nDELETE\nw\n\n")
	})

	t.Run("json", func(t *testing.T) {
		next := currentRev(t, cli) + 1
		w := m.StartCtl(t, "watch", "j", "--rev", fmt.Sprint(next), "-w", "json")
		r1 := mustPut(t, cli, "j", "v")
		line1 := w.WaitStdout("first event", func(s string) bool { return strings.Count(s, "\n") >= 1 })
		r2 := mustDel(t, cli, "j")
		out := w.WaitStdout("second event", func(s string) bool { return strings.Count(s, "\n") >= 2 })
		lines := strings.SplitAfter(out, "\n")
		if len(lines) != 3 || lines[2] != "" || lines[0] != line1 {
			t.Fatalf("want two json lines, got %q", out)
		}
		// The header of a live event carries the event's revision. A
		// DELETE event has type 1 and a kv with only key and mod_revision.
		m.ExpectJSON(t, lines[0], fmt.Sprintf(`{"Header":{"revision":%d},"Events":[{"kv":{"key":%q,"create_revision":%d,"mod_revision":%d,"version":1,"value":%q}}],"CompactRevision":0,"Canceled":false,"Created":false}`,
			r1, b64("j"), r1, r1, b64("v")))
		m.ExpectJSON(t, lines[1], fmt.Sprintf(`{"Header":{"revision":%d},"Events":[{"type":1,"kv":{"key":%q,"mod_revision":%d}}],"CompactRevision":0,"Canceled":false,"Created":false}`,
			r2, b64("j"), r2))
	})

	t.Run("no-rev", func(t *testing.T) {
		// Without --rev the watch starts at whatever revision is current
		// when it is created. Write a marker until the watch reports it,
		// then check that everything after is reported exactly.
		w := m.StartCtl(t, "watch", "n", "--prefix")
		const maxMarkers = 200
		seen := false
		for i := 0; i < maxMarkers && !seen; i++ {
			mustPut(t, cli, "n/marker", fmt.Sprint(i))
			seen = waitOutputBriefly(w, fmt.Sprintf("PUT\nn/marker\n%d\n", i))
		}
		if !seen {
			t.Fatalf("watch never reported any of %d markers", maxMarkers)
		}
		before := w.Stdout()
		mustPut(t, cli, "n/x", "1")
		mustDel(t, cli, "n/x")
		w.WaitStdoutIs(before + "PUT\nn/x\n1\nDELETE\nn/x\n\n")
	})
}

// waitOutputBriefly reports whether the process prints sub within a short
// while. It is for probing (retrying a write until a fresh watch sees it),
// never for asserting.
func waitOutputBriefly(p *CtlProc, sub string) bool {
	deadline := time.NewTimer(200 * time.Millisecond)
	defer deadline.Stop()
	for {
		out, changed := p.stdout.snapshot()
		if strings.Contains(out, sub) {
			return true
		}
		select {
		case <-changed:
		case <-p.exited:
			return strings.Contains(p.stdout.String(), sub)
		case <-deadline.C:
			return false
		}
	}
}

// nextResponse returns the next watch response or fails the test.
func nextResponse(t testing.TB, wch clientv3.WatchChan) clientv3.WatchResponse {
	t.Helper()
	select {
	case r, ok := <-wch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return r
	case <-time.After(waitTimeout):
		t.Fatalf("no watch response within %v", waitTimeout)
	}
	panic("unreachable")
}

// eventsString renders events compactly: "PUT k=v@rev" / "DELETE k@rev",
// with " prev=v" when a previous kv is attached.
func eventsString(evs []*clientv3.Event) string {
	var s []string
	for _, ev := range evs {
		e := fmt.Sprintf("%s %s", ev.Type, ev.Kv.Key)
		if ev.Type == mvccpb.PUT {
			e += "=" + string(ev.Kv.Value)
		}
		e += fmt.Sprintf("@%d", ev.Kv.ModRevision)
		if ev.PrevKv != nil {
			e += " prev=" + string(ev.PrevKv.Value)
		}
		s = append(s, e)
	}
	return strings.Join(s, ", ")
}

func TestWatchClient(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	cli := m.Client()

	t.Run("created-and-progress", func(t *testing.T) {
		wctx, cancel := context.WithCancel(tctx(t))
		defer cancel()
		wch := cli.Watch(wctx, "prog", clientv3.WithCreatedNotify())
		rev := currentRev(t, cli)
		created := nextResponse(t, wch)
		if !created.Created || len(created.Events) != 0 || created.Header.Revision == 0 || created.Header.Revision > rev {
			t.Fatalf("created response: %+v (current revision %d)", created, rev)
		}
		// Writes elsewhere move the revision without events for us; a
		// progress notification tells the watcher it has seen
		// everything up to the current revision.
		last := mustPut(t, cli, "elsewhere", "1")
		last = max(last, mustPut(t, cli, "elsewhere", "2"))
		if err := cli.RequestProgress(wctx); err != nil {
			t.Fatal(err)
		}
		p := nextResponse(t, wch)
		if !p.IsProgressNotify() || p.Header.Revision != last {
			t.Fatalf("progress response: notify %v, revision %d, events %d; want notify at revision %d",
				p.IsProgressNotify(), p.Header.Revision, len(p.Events), last)
		}
		r := mustPut(t, cli, "prog", "x")
		ev := nextResponse(t, wch)
		if got, want := eventsString(ev.Events), fmt.Sprintf("PUT prog=x@%d", r); got != want {
			t.Errorf("event after progress: %s, want %s", got, want)
		}
	})

	t.Run("prev-kv-and-filters", func(t *testing.T) {
		wctx, cancel := context.WithCancel(tctx(t))
		defer cancel()
		start := currentRev(t, cli) + 1
		all := cli.Watch(wctx, "f/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(start))
		noPut := cli.Watch(wctx, "f/", clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithRev(start))
		noDel := cli.Watch(wctx, "f/", clientv3.WithPrefix(), clientv3.WithFilterDelete(), clientv3.WithRev(start))
		r1 := mustPut(t, cli, "f/a", "1")
		r2 := mustPut(t, cli, "f/a", "2")
		r3 := mustDel(t, cli, "f/a")
		r4 := mustPut(t, cli, "f/b", "3")
		collect := func(wch clientv3.WatchChan, n int) string {
			var evs []*clientv3.Event
			for len(evs) < n {
				evs = append(evs, nextResponse(t, wch).Events...)
			}
			return eventsString(evs)
		}
		if got, want := collect(all, 4), fmt.Sprintf("PUT f/a=1@%d, PUT f/a=2@%d prev=1, DELETE f/a@%d prev=2, PUT f/b=3@%d", r1, r2, r3, r4); got != want {
			t.Errorf("prev-kv watch:\n got %s\nwant %s", got, want)
		}
		if got, want := collect(noPut, 1), fmt.Sprintf("DELETE f/a@%d", r3); got != want {
			t.Errorf("no-put watch: got %s, want %s", got, want)
		}
		if got, want := collect(noDel, 3), fmt.Sprintf("PUT f/a=1@%d, PUT f/a=2@%d, PUT f/b=3@%d", r1, r2, r4); got != want {
			t.Errorf("no-delete watch: got %s, want %s", got, want)
		}
	})

	t.Run("txn-is-one-response", func(t *testing.T) {
		wctx, cancel := context.WithCancel(tctx(t))
		defer cancel()
		wch := cli.Watch(wctx, "t/", clientv3.WithPrefix(), clientv3.WithRev(currentRev(t, cli)+1))
		r, err := cli.Txn(tctx(t)).Then(clientv3.OpPut("t/a", "1"), clientv3.OpPut("t/b", "2"), clientv3.OpDelete("t/c")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		rev := r.Header.Revision
		// All events of one revision arrive in one response.
		resp := nextResponse(t, wch)
		if got, want := eventsString(resp.Events), fmt.Sprintf("PUT t/a=1@%d, PUT t/b=2@%d", rev, rev); got != want {
			t.Errorf("txn events: got %s, want %s", got, want)
		}
	})

	t.Run("history", func(t *testing.T) {
		// Replaying from revision 1 yields every event in revision order.
		wctx, cancel := context.WithCancel(tctx(t))
		defer cancel()
		end := currentRev(t, cli)
		wch := cli.Watch(wctx, "", clientv3.WithPrefix(), clientv3.WithRev(1))
		var last int64
		n := 0
		for last < end {
			resp := nextResponse(t, wch)
			for _, ev := range resp.Events {
				if ev.Kv.ModRevision < last {
					t.Fatalf("event %s out of order after revision %d", eventsString([]*clientv3.Event{ev}), last)
				}
				last = ev.Kv.ModRevision
				n++
			}
		}
		if last != end || n == 0 {
			t.Errorf("history ended at revision %d after %d events, want %d", last, n, end)
		}
	})
}
