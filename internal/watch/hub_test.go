package watch_test

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/internal/watch"
	"github.com/cairn-kv/cairn/internal/watch/watchtest"
)

// store is the in-memory fake; writes go through apply, which notifies.
type fixture struct {
	t     *testing.T
	store *watchtest.Store
	hub   *watch.Hub
}

func newFixture(t *testing.T, opts watch.Options) *fixture {
	t.Helper()
	st := watchtest.NewStore()
	h := watch.NewHub(st, opts)
	t.Cleanup(h.Close)
	return &fixture{t: t, store: st, hub: h}
}

func (f *fixture) put(key, value string) int64 {
	rev, evs := f.store.Put(key, value)
	f.hub.Notify(rev, evs)
	return rev
}

func (f *fixture) del(key string) int64 {
	rev, evs := f.store.Delete(key)
	if len(evs) == 0 {
		f.t.Fatalf("delete of missing key %q", key)
	}
	f.hub.Notify(rev, evs)
	return rev
}

func (f *fixture) txn(ops ...watchtest.Op) int64 {
	rev, evs := f.store.Txn(ops...)
	f.hub.Notify(rev, evs)
	return rev
}

// reader drains a stream the way the gRPC send loop does, waiting on Ready
// with a deadline.
type reader struct {
	t   *testing.T
	s   *watch.Stream
	got []*watch.Response
}

const waitLimit = 10 * time.Second

// until pops until cond holds for the responses received so far.
func (r *reader) until(what string, cond func([]*watch.Response) bool) {
	r.t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for !cond(r.got) {
		select {
		case <-r.s.Ready():
			r.got = append(r.got, r.s.Pop()...)
		case <-deadline.C:
			r.t.Fatalf("timed out waiting for %s; got %s", what, dump(r.got))
		}
	}
}

// next waits for n more responses and returns them.
func (r *reader) next(n int) []*watch.Response {
	r.t.Helper()
	start := len(r.got)
	r.until(fmt.Sprintf("%d responses", n), func(got []*watch.Response) bool { return len(got) >= start+n })
	out := r.got[start : start+n]
	if len(r.got) > start+n {
		r.t.Fatalf("unexpected extra responses: %s", dump(r.got[start+n:]))
	}
	return out
}

// quiet checks that nothing is queued now. Only meaningful when no
// background work can still produce responses.
func (r *reader) quiet() {
	r.t.Helper()
	if got := r.s.Pop(); len(got) != 0 {
		r.t.Fatalf("unexpected responses: %s", dump(got))
	}
}

func dump(rs []*watch.Response) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "\n  id=%d rev=%d created=%v canceled=%v compact=%d reason=%q events=%s",
			r.WatchID, r.Revision, r.Created, r.Canceled, r.CompactRevision, r.CancelReason, evString(r.Events))
	}
	return b.String()
}

func evString(evs []*mvccpb.Event) string {
	var parts []string
	for _, ev := range evs {
		s := fmt.Sprintf("%s %s@%d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision)
		if ev.Type == mvccpb.Event_PUT {
			s += "=" + string(ev.Kv.Value)
		}
		if ev.PrevKv != nil {
			s += fmt.Sprintf(" (prev %s@%d)", ev.PrevKv.Value, ev.PrevKv.ModRevision)
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func (f *fixture) stream() *reader {
	return &reader{t: f.t, s: f.hub.NewStream()}
}

func mustWatch(t *testing.T, r *reader, req watch.WatchRequest) int64 {
	t.Helper()
	id, err := r.s.Watch(req)
	if err != nil {
		t.Fatalf("Watch(%+v): %v", req, err)
	}
	return id
}

func wantCreated(t *testing.T, r *watch.Response, id, rev int64) {
	t.Helper()
	if !r.Created || r.Canceled || r.WatchID != id || r.Revision != rev {
		t.Fatalf("want created id=%d rev=%d, got %s", id, rev, dump([]*watch.Response{r}))
	}
}

func wantEvents(t *testing.T, r *watch.Response, id int64, want string) {
	t.Helper()
	if r.WatchID != id || r.Created || r.Canceled {
		t.Fatalf("want events for %d, got %s", id, dump([]*watch.Response{r}))
	}
	if got := evString(r.Events); got != want {
		t.Fatalf("watch %d: events %s, want %s", id, got, want)
	}
}

func TestSyncedDelivery(t *testing.T) {
	f := newFixture(t, watch.Options{})
	f.put("x", "0")
	r := f.stream()
	single := mustWatch(t, r, watch.WatchRequest{Key: []byte("a")})
	prefix := mustWatch(t, r, watch.WatchRequest{Key: []byte("b"), RangeEnd: []byte("c")})
	from := mustWatch(t, r, watch.WatchRequest{Key: []byte("c"), RangeEnd: []byte{0}})
	all := mustWatch(t, r, watch.WatchRequest{RangeEnd: []byte{0}})
	if single != 0 || prefix != 1 || from != 2 || all != 3 {
		t.Fatalf("auto ids %d %d %d %d, want 0..3", single, prefix, from, all)
	}
	for i, got := range r.next(4) {
		wantCreated(t, got, int64(i), 1)
	}

	f.put("a", "1")  // 2: single, all
	f.put("b1", "2") // 3: prefix, all
	f.put("c", "3")  // 4: from, all
	f.del("a")       // 5: single, all
	f.put("ab", "4") // 6: all
	got := r.next(9)
	// The order between watchers within one revision is not specified.
	sort.SliceStable(got, func(i, j int) bool {
		if got[i].Revision != got[j].Revision {
			return got[i].Revision < got[j].Revision
		}
		return got[i].WatchID < got[j].WatchID
	})
	wantEvents(t, got[0], single, "[PUT a@2=1]")
	wantEvents(t, got[1], all, "[PUT a@2=1]")
	wantEvents(t, got[2], prefix, "[PUT b1@3=2]")
	wantEvents(t, got[3], all, "[PUT b1@3=2]")
	wantEvents(t, got[4], from, "[PUT c@4=3]")
	wantEvents(t, got[5], all, "[PUT c@4=3]")
	wantEvents(t, got[6], single, "[DELETE a@5]")
	wantEvents(t, got[7], all, "[DELETE a@5]")
	wantEvents(t, got[8], all, "[PUT ab@6=4]")
	if got[8].Revision != 6 {
		t.Fatalf("header revision %d, want 6", got[8].Revision)
	}
	r.quiet()
}

func TestNotifyBatchOfSeveralRevisions(t *testing.T) {
	f := newFixture(t, watch.Options{})
	r := f.stream()
	id := mustWatch(t, r, watch.WatchRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	r.next(1)
	r1, e1 := f.store.Put("k1", "a")
	_, e2 := f.store.Put("zz", "b")
	r3, e3 := f.store.Put("k2", "c")
	f.hub.Notify(r3, append(append(e1, e2...), e3...))
	got := r.next(1)
	wantEvents(t, got[0], id, fmt.Sprintf("[PUT k1@%d=a, PUT k2@%d=c]", r1, r3))
	if got[0].Revision != r3 {
		t.Fatalf("header revision %d, want %d", got[0].Revision, r3)
	}
}

func TestNotifyIgnoresOldRevisions(t *testing.T) {
	// Written before the hub existed, notified after: the hub started at
	// revision 1 and drops it.
	st := watchtest.NewStore()
	rev1, evs1 := st.Put("a", "1")
	h := watch.NewHub(st, watch.Options{})
	defer h.Close()
	f := &fixture{t: t, store: st, hub: h}
	r := f.stream()
	id := mustWatch(t, r, watch.WatchRequest{Key: []byte("a")})
	h.Notify(rev1, evs1)
	rev2, evs2 := st.Put("a", "2")
	h.Notify(rev2, append(evs1, evs2...)) // a batch reaching back is trimmed too
	got := r.next(2)
	wantCreated(t, got[0], id, 1)
	wantEvents(t, got[1], id, "[PUT a@2=2]")
}

func TestNotifyRejectsDisorder(t *testing.T) {
	f := newFixture(t, watch.Options{})
	_, e1 := f.store.Put("a", "1")
	r2, e2 := f.store.Put("a", "2")
	defer func() {
		if recover() == nil {
			t.Fatal("Notify with events out of order did not panic")
		}
	}()
	f.hub.Notify(r2, append(e2, e1...))
}

func TestCatchupFromPast(t *testing.T) {
	// Batches of 2 events force several catch-up rounds.
	f := newFixture(t, watch.Options{CatchupEvents: 2})
	for i := range 9 {
		f.put(fmt.Sprintf("k%d", i%3), fmt.Sprint(i)) // revs 1..9
	}
	r := f.stream()
	id := mustWatch(t, r, watch.WatchRequest{Key: []byte("k1"), StartRevision: 3})
	var evs []*mvccpb.Event
	r.until("catch-up of k1", func(got []*watch.Response) bool {
		evs = nil
		for _, g := range got {
			evs = append(evs, g.Events...)
		}
		return len(evs) >= 2
	})
	wantCreated(t, r.got[0], id, 9)
	if got := evString(evs); got != "[PUT k1@5=4, PUT k1@8=7]" {
		t.Fatalf("caught up %s", got)
	}
	// Whether the watcher joined the synced set yet or not, the next event
	// arrives exactly once.
	rev := f.put("k1", "new")
	got := r.until2(1)
	wantEvents(t, got[0], id, fmt.Sprintf("[PUT k1@%d=new]", rev))
	r.quiet()
}

// until2 waits for n responses after the ones seen so far.
func (r *reader) until2(n int) []*watch.Response {
	r.t.Helper()
	start := len(r.got)
	r.until("more responses", func(got []*watch.Response) bool { return len(got) >= start+n })
	return r.got[start:]
}

func TestFutureStartRevision(t *testing.T) {
	f := newFixture(t, watch.Options{})
	f.put("a", "1")
	r := f.stream()
	id := mustWatch(t, r, watch.WatchRequest{Key: []byte("a"), StartRevision: 4})
	wantCreated(t, r.next(1)[0], id, 1)
	f.put("a", "2") // 2
	f.put("a", "3") // 3
	f.put("a", "4") // 4
	wantEvents(t, r.next(1)[0], id, "[PUT a@4=4]")
}

func TestCompactedStart(t *testing.T) {
	f := newFixture(t, watch.Options{})
	for i := range 6 {
		f.put("a", fmt.Sprint(i))
	}
	f.store.Compact(5)
	r := f.stream()
	below := mustWatch(t, r, watch.WatchRequest{ID: 10, Key: []byte("a"), StartRevision: 3})
	at := mustWatch(t, r, watch.WatchRequest{ID: 11, Key: []byte("a"), StartRevision: 5})
	after := mustWatch(t, r, watch.WatchRequest{ID: 12, Key: []byte("a"), StartRevision: 6})
	r.until("compaction notices and catch-up", func(got []*watch.Response) bool { return len(got) >= 6 })
	byID := map[int64][]*watch.Response{}
	for _, g := range r.got {
		byID[g.WatchID] = append(byID[g.WatchID], g)
	}
	for id, want := range map[int64]int64{below: 5} {
		rs := byID[id]
		if len(rs) != 2 || !rs[0].Created {
			t.Fatalf("watch %d: %s", id, dump(rs))
		}
		n := rs[1]
		if n.CompactRevision != want || !n.Canceled || n.Created || n.Revision != 0 || len(n.Events) != 0 {
			t.Fatalf("watch %d: compaction notice %s, want CompactRevision %d", id, dump([]*watch.Response{n}), want)
		}
	}
	// A watch from the compaction revision itself is served, as in etcd.
	if rs := byID[at]; len(rs) != 2 || evString(rs[1].Events) != "[PUT a@5=4, PUT a@6=5]" {
		t.Fatalf("watch from 5: %s", dump(rs))
	}
	if rs := byID[after]; len(rs) != 2 || evString(rs[1].Events) != "[PUT a@6=5]" {
		t.Fatalf("watch from 6: %s", dump(rs))
	}
	// The id stays taken until the client cancels it, as in etcd.
	if _, err := r.s.Watch(watch.WatchRequest{ID: below, Key: []byte("a")}); err != watch.ErrDuplicateID {
		t.Fatalf("reuse of compacted id: %v", err)
	}
	r.next(1)
	if err := r.s.Cancel(below); err != nil {
		t.Fatal(err)
	}
	if got := r.next(1)[0]; got.WatchID != below || !got.Canceled || got.CancelReason != "" {
		t.Fatalf("cancel of compacted watcher: %s", dump([]*watch.Response{got}))
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t, watch.Options{})
	f.put("a", "1")
	r := f.stream()
	if _, err := r.s.Watch(watch.WatchRequest{Key: []byte("a"), StartRevision: -1}); err != watch.ErrNegativeStart {
		t.Fatalf("negative start: %v", err)
	}
	if _, err := r.s.Watch(watch.WatchRequest{Key: []byte("b"), RangeEnd: []byte("a")}); err != watch.ErrEmptyRange {
		t.Fatalf("inverted range: %v", err)
	}
	if _, err := r.s.Watch(watch.WatchRequest{Key: []byte("b"), RangeEnd: []byte("b")}); err != watch.ErrEmptyRange {
		t.Fatalf("empty range: %v", err)
	}
	id := mustWatch(t, r, watch.WatchRequest{ID: 7, Key: []byte("a")})
	if _, err := r.s.Watch(watch.WatchRequest{ID: 7, Key: []byte("b")}); err != watch.ErrDuplicateID {
		t.Fatalf("duplicate id: %v", err)
	}
	got := r.next(5)
	for i, reason := range []string{
		"etcdserver: mvcc: required revision has been compacted",
		"mvcc: watcher range is empty",
		"mvcc: watcher range is empty",
	} {
		g := got[i]
		if g.WatchID != -1 || !g.Created || !g.Canceled || g.CancelReason != reason || g.Revision != 1 {
			t.Fatalf("refusal %d: %s", i, dump([]*watch.Response{g}))
		}
	}
	wantCreated(t, got[3], id, 1)
	if g := got[4]; g.WatchID != -1 || !g.Canceled || g.CancelReason != watch.ErrDuplicateID.Error() {
		t.Fatalf("duplicate refusal: %s", dump([]*watch.Response{g}))
	}
	if err := r.s.Cancel(99); err != watch.ErrWatcherNotExist {
		t.Fatalf("cancel unknown: %v", err)
	}
	r.quiet()
}

func TestAutoIDsSkipClientIDs(t *testing.T) {
	f := newFixture(t, watch.Options{})
	r := f.stream()
	mustWatch(t, r, watch.WatchRequest{ID: 1, Key: []byte("a")})
	var ids []int64
	for range 3 {
		ids = append(ids, mustWatch(t, r, watch.WatchRequest{Key: []byte("a")}))
	}
	if fmt.Sprint(ids) != "[0 2 3]" {
		t.Fatalf("auto ids %v, want [0 2 3]", ids)
	}
}

func TestCancel(t *testing.T) {
	f := newFixture(t, watch.Options{})
	r := f.stream()
	id := mustWatch(t, r, watch.WatchRequest{Key: []byte("a")})
	r.next(1)
	f.put("a", "1")
	if err := r.s.Cancel(id); err != nil {
		t.Fatal(err)
	}
	f.put("a", "2")
	got := r.next(2)
	wantEvents(t, got[0], id, "[PUT a@1=1]")
	if !got[1].Canceled || got[1].WatchID != id || got[1].Revision != 1 {
		t.Fatalf("cancel response %s", dump(got[1:]))
	}
	r.quiet()
}

func TestFilters(t *testing.T) {
	f := newFixture(t, watch.Options{})
	r := f.stream()
	noPut := mustWatch(t, r, watch.WatchRequest{Key: []byte("a"), NoPut: true})
	noDel := mustWatch(t, r, watch.WatchRequest{Key: []byte("a"), NoDelete: true})
	r.next(2)
	f.put("a", "1")
	wantEvents(t, r.next(1)[0], noDel, "[PUT a@1=1]")
	f.del("a")
	wantEvents(t, r.next(1)[0], noPut, "[DELETE a@2]")
	// The NoPut watcher gets nothing for a put.
	f.txn(watchtest.Op{Key: "a", Value: "x"})
	wantEvents(t, r.next(1)[0], noDel, "[PUT a@3=x]")
	r.quiet()
}

func TestPrevKV(t *testing.T) {
	f := newFixture(t, watch.Options{})
	r := f.stream()
	with := mustWatch(t, r, watch.WatchRequest{Key: []byte("a"), PrevKV: true})
	without := mustWatch(t, r, watch.WatchRequest{Key: []byte("a")})
	r.next(2)
	f.put("a", "1")
	f.put("a", "2")
	f.del("a")
	got := r.next(6)
	var w, wo []string
	for _, g := range got {
		if g.WatchID == with {
			w = append(w, evString(g.Events))
		} else if g.WatchID == without {
			wo = append(wo, evString(g.Events))
		}
	}
	if fmt.Sprint(w) != "[[PUT a@1=1] [PUT a@2=2 (prev 1@1)] [DELETE a@3 (prev 2@2)]]" {
		t.Fatalf("with prev_kv: %v", w)
	}
	if fmt.Sprint(wo) != "[[PUT a@1=1] [PUT a@2=2] [DELETE a@3]]" {
		t.Fatalf("without prev_kv (shared events modified?): %v", wo)
	}
	// Catch-up responses get prev_kv too.
	r2 := f.stream()
	id := mustWatch(t, r2, watch.WatchRequest{Key: []byte("a"), StartRevision: 2, PrevKV: true})
	r2.until("catch-up", func(got []*watch.Response) bool { return len(got) >= 2 })
	if got := evString(r2.got[1].Events); got != "[PUT a@2=2 (prev 1@1), DELETE a@3 (prev 2@2)]" || r2.got[1].WatchID != id {
		t.Fatalf("catch-up with prev_kv: %s", dump(r2.got))
	}
}

func TestSlowWatcherDoesNotBlockNotify(t *testing.T) {
	const revs = 2000
	f := newFixture(t, watch.Options{StreamBuffer: 4, CatchupEvents: 50})
	slow := f.stream()
	fast := f.stream()
	slowID := mustWatch(t, slow, watch.WatchRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	fastID := mustWatch(t, fast, watch.WatchRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	fast.next(1)

	// The fast reader keeps up in the background; the slow one reads
	// nothing while every revision is notified.
	fastDone := make(chan []*mvccpb.Event)
	go func() {
		var evs []*mvccpb.Event
		for len(evs) < revs {
			<-fast.s.Ready()
			for _, g := range fast.s.Pop() {
				evs = append(evs, g.Events...)
			}
		}
		fastDone <- evs
	}()
	for i := range revs {
		f.put(fmt.Sprintf("k%04d", i), "v")
	}
	queued := slow.s.QueueLen()
	if queued > 4 {
		t.Fatalf("slow stream queued %d responses, bound is 4", queued)
	}
	check := func(name string, evs []*mvccpb.Event) {
		t.Helper()
		if len(evs) != revs {
			t.Fatalf("%s: %d events, want %d", name, len(evs), revs)
		}
		for i, ev := range evs {
			if ev.Kv.ModRevision != int64(i+1) {
				t.Fatalf("%s: event %d has revision %d", name, i, ev.Kv.ModRevision)
			}
		}
	}
	select {
	case evs := <-fastDone:
		check("fast", evs)
	case <-time.After(waitLimit):
		t.Fatal("fast watcher starved by the slow one")
	}
	// Now the slow reader drains: it catches up from the store, in order.
	var evs []*mvccpb.Event
	slow.until("slow catch-up", func(got []*watch.Response) bool {
		evs = evs[:0]
		for _, g := range got {
			if g.WatchID == slowID {
				evs = append(evs, g.Events...)
			}
		}
		return len(evs) >= revs
	})
	check("slow", evs)
	_ = fastID
}

func TestProgressRequest(t *testing.T) {
	f := newFixture(t, watch.WithManualCatchup(watch.Options{}))
	f.put("a", "1")
	f.put("a", "2")
	r := f.stream()

	r.s.RequestProgress() // no watchers: etcd sends nothing
	r.quiet()

	mustWatch(t, r, watch.WatchRequest{Key: []byte("a")})
	r.next(1)
	r.s.RequestProgress()
	if g := r.next(1)[0]; !g.IsProgress() || g.WatchID != -1 || g.Revision != 2 {
		t.Fatalf("progress %s", dump([]*watch.Response{g}))
	}

	// An unsynced watcher defers the answer until it caught up, and the
	// answer comes after its events.
	old := mustWatch(t, r, watch.WatchRequest{Key: []byte("a"), StartRevision: 1})
	r.next(1)
	r.s.RequestProgress()
	r.s.RequestProgress()
	r.quiet()
	for f.hub.CatchupOnce() {
	}
	got := r.next(2)
	wantEvents(t, got[0], old, "[PUT a@1=1, PUT a@2=2]")
	if g := got[1]; !g.IsProgress() || g.WatchID != -1 || g.Revision != 2 {
		t.Fatalf("deferred progress %s", dump(got))
	}

	// A watcher waiting for a future start revision defers it too.
	mustWatch(t, r, watch.WatchRequest{Key: []byte("z"), StartRevision: 4})
	r.next(1)
	r.s.RequestProgress()
	f.put("b", "3")
	r.quiet()
	f.put("b", "4")
	if g := r.next(1)[0]; !g.IsProgress() || g.Revision != 4 {
		t.Fatalf("progress after future start: %s", dump([]*watch.Response{g}))
	}
}

func TestProgressRequestWaitsForFullQueue(t *testing.T) {
	f := newFixture(t, watch.WithManualCatchup(watch.Options{StreamBuffer: 2}))
	r := f.stream()
	id := mustWatch(t, r, watch.WatchRequest{Key: []byte("a")})
	f.put("a", "1") // queue: created, event: full
	r.s.RequestProgress()
	got := r.next(2)
	wantCreated(t, got[0], id, 0)
	// Pop freed the queue; the progress follows.
	if g := r.next(1)[0]; !g.IsProgress() || g.Revision != 1 {
		t.Fatalf("progress after drain: %s", dump(r.got))
	}
}

func TestProgressTick(t *testing.T) {
	f := newFixture(t, watch.WithManualCatchup(watch.Options{}))
	f.put("a", "1")
	r := f.stream()
	id := mustWatch(t, r, watch.WatchRequest{Key: []byte("a"), ProgressNotify: true})
	mustWatch(t, r, watch.WatchRequest{Key: []byte("a")}) // no progress_notify
	behind := mustWatch(t, r, watch.WatchRequest{Key: []byte("b"), StartRevision: 1, ProgressNotify: true})
	r.next(3)

	r.s.ProgressTick()
	if g := r.next(1)[0]; !g.IsProgress() || g.WatchID != id || g.Revision != 1 {
		t.Fatalf("tick: %s", dump([]*watch.Response{g}))
	}
	f.put("a", "2")
	r.next(2) // events for both watchers on a
	r.s.ProgressTick()
	r.quiet() // events since the last tick: elided
	r.s.ProgressTick()
	if g := r.next(1)[0]; !g.IsProgress() || g.WatchID != id || g.Revision != 2 {
		t.Fatalf("tick after quiet period: %s", dump([]*watch.Response{g}))
	}
	for f.hub.CatchupOnce() {
	}
	r.s.ProgressTick()
	got := r.next(2)
	if got[0].WatchID == behind {
		got[0], got[1] = got[1], got[0]
	}
	if got[1].WatchID != behind || !got[1].IsProgress() {
		t.Fatalf("synced watcher without events gets ticks: %s", dump(got))
	}
}

func TestRestore(t *testing.T) {
	f := newFixture(t, watch.Options{})
	r := f.stream()
	id := mustWatch(t, r, watch.WatchRequest{Key: []byte("a")})
	r.next(1)
	// The store moves on without Notify (a snapshot was installed).
	f.store.Put("a", "1")
	f.store.Put("b", "2")
	f.store.Put("a", "3")
	f.hub.Restore()
	if f.hub.Rev() != 3 {
		t.Fatalf("hub revision %d after restore", f.hub.Rev())
	}
	r.until("catch-up after restore", func(got []*watch.Response) bool { return len(got) >= 2 })
	wantEvents(t, r.got[1], id, "[PUT a@1=1, PUT a@3=3]")
	f.put("a", "4")
	wantEvents(t, r.until2(1)[0], id, "[PUT a@4=4]")
}

func TestCloseStream(t *testing.T) {
	f := newFixture(t, watch.Options{})
	r := f.stream()
	mustWatch(t, r, watch.WatchRequest{Key: []byte("a")})
	mustWatch(t, r, watch.WatchRequest{Key: []byte("a"), StartRevision: 1})
	r.s.Close()
	f.put("a", "1")
	if _, err := r.s.Watch(watch.WatchRequest{Key: []byte("a")}); err != watch.ErrStreamClosed {
		t.Fatalf("watch on closed stream: %v", err)
	}
	r.quiet()
	if synced, unsynced := f.hub.WatcherCounts(); synced != 0 || unsynced != 0 {
		t.Fatal("closed stream left watchers in the hub")
	}
}

// foreignErrors is a store whose errors are not the watch package's values,
// like a store with its own sentinels.
type foreignErrors struct {
	*watchtest.Store
	fail atomic.Int32 // fail this many Events calls
}

func (s *foreignErrors) Events(from, to int64, fn func(ev *mvccpb.Event) bool) error {
	if s.fail.Load() > 0 {
		s.fail.Add(-1)
		return errors.New("disk on fire")
	}
	if err := s.Store.Events(from, to, fn); err != nil {
		return fmt.Errorf("store: %v", err) // not wrapped: a different value
	}
	return nil
}

// TestCompactionRacingRead: compaction lands between the hub's look at the
// compacted revision and its read; the store's error is not ErrCompacted.
// The watcher still gets its notice in the next round.
func TestCompactionRacingRead(t *testing.T) {
	st := &foreignErrors{Store: watchtest.NewStore()}
	h := watch.NewHub(st, watch.WithManualCatchup(watch.Options{}))
	defer h.Close()
	f := &fixture{t: t, store: st.Store, hub: h}
	for i := range 6 {
		f.put("a", fmt.Sprint(i))
	}
	r := f.stream()
	id := mustWatch(t, r, watch.WatchRequest{Key: []byte("a"), StartRevision: 2})
	st.BeforeEvents = func(from, to int64) { st.Compact(4) }
	round := h.CatchupPlan()
	h.CatchupRead(round)
	if !h.CatchupFinish(round) {
		t.Fatal("compaction during the read: no retry")
	}
	st.BeforeEvents = nil
	for h.CatchupOnce() {
	}
	got := r.next(2)
	wantCreated(t, got[0], id, 6)
	if got[1].CompactRevision != 4 || !got[1].Canceled {
		t.Fatalf("want compaction notice at 4: %s", dump(got))
	}
}

// TestStoreErrorRetried: after a failed read, catch-up tries again after
// RetryDelay on the injected clock, without any write to wake it.
func TestStoreErrorRetried(t *testing.T) {
	st := &foreignErrors{Store: watchtest.NewStore()}
	st.fail.Store(1)
	retry := make(chan time.Time)
	asked := make(chan time.Duration, 1)
	h := watch.NewHub(st, watch.Options{After: func(d time.Duration) <-chan time.Time {
		asked <- d
		return retry
	}, RetryDelay: time.Second})
	defer h.Close()
	f := &fixture{t: t, store: st.Store, hub: h}
	for i := range 3 {
		f.put("a", fmt.Sprint(i))
	}
	r := f.stream()
	id := mustWatch(t, r, watch.WatchRequest{Key: []byte("a"), StartRevision: 1})
	select {
	case d := <-asked:
		if d != time.Second {
			t.Fatalf("retry after %v", d)
		}
	case <-time.After(waitLimit):
		t.Fatal("no retry scheduled after a store error")
	}
	// Nothing else will wake catch-up (a Pop would): only the clock.
	select {
	case retry <- time.Time{}:
	case <-time.After(waitLimit):
		t.Fatal("catch-up is not waiting for the retry clock")
	}
	got := r.next(2)
	wantCreated(t, got[0], id, 3)
	wantEvents(t, got[1], id, "[PUT a@1=0, PUT a@2=1, PUT a@3=2]")
}
