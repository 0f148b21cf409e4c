package watch_test

import (
	"fmt"
	"math/rand"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/internal/watch"
	"github.com/cairn-kv/cairn/internal/watch/watchtest"
)

// The oracle test drives a hub without its catch-up goroutine and
// interleaves, at random, writes (notified alone or in batches of several
// revisions), compactions, watch creation at past/compacted/future
// revisions, cancels, consumer pops, the three phases of catch-up rounds,
// progress requests and ticks, with tiny queue and batch bounds so watchers
// are demoted all the time. Then it checks every stream's responses against
// the store's event log: each watcher sees exactly the matching events from
// its start revision, in order, with no gap and no repeat (a prefix of them
// if it was canceled or compacted), and every progress notification is
// preceded by every event it vouches for.

var oracleKeys = []string{"a", "ab", "abc", "b", "ba", "bb", "c"}

type oracleWatcher struct {
	req      watch.WatchRequest
	id       int64
	effStart int64 // first revision the watcher is owed
}

type oracleStream struct {
	s        *watch.Stream
	got      []*watch.Response
	watchers map[int64]*oracleWatcher
	closed   bool
}

type oracle struct {
	t     *testing.T
	rng   *rand.Rand
	store *watchtest.Store
	hub   *watch.Hub

	pending  []*mvccpb.Event // written, not yet notified
	notified int64
	streams  []*oracleStream
	round    *watch.Round
	phase    int // 0 idle, 1 planned, 2 read
}

func TestOracleRandomInterleavings(t *testing.T) {
	seeds := 400
	if testing.Short() {
		seeds = 50
	}
	for seed := range seeds {
		runOracle(t, int64(seed), 300)
		if t.Failed() {
			return
		}
	}
}

func runOracle(t *testing.T, seed int64, steps int) {
	rng := rand.New(rand.NewSource(seed))
	st := watchtest.NewStore()
	opts := watch.WithManualCatchup(watch.Options{
		StreamBuffer:  1 + rng.Intn(5),
		CatchupEvents: 1 + rng.Intn(4),
	})
	if rng.Intn(4) == 0 {
		opts.CatchupWatchers = 1 + rng.Intn(2)
	}
	o := &oracle{t: t, rng: rng, store: st, hub: watch.NewHub(st, opts)}
	defer o.hub.Close()
	for range 1 + rng.Intn(3) {
		o.streams = append(o.streams, &oracleStream{s: o.hub.NewStream(), watchers: map[int64]*oracleWatcher{}})
	}
	// Some history before the first watcher.
	for range rng.Intn(8) {
		o.write()
	}
	o.flush()
	for range steps {
		o.step()
	}
	o.drain()
	o.verify(seed)
}

func (o *oracle) step() {
	switch n := o.rng.Intn(100); {
	case n < 30:
		o.write()
		if o.rng.Intn(3) > 0 {
			o.flush()
		}
	case n < 33:
		o.compact()
	case n < 45:
		o.create()
	case n < 50:
		o.cancel()
	case n < 70:
		o.pop(o.pick())
	case n < 90:
		o.catchupStep()
	case n < 95:
		if s := o.pick(); !s.closed {
			s.s.RequestProgress()
		}
	case n < 99:
		if s := o.pick(); !s.closed {
			s.s.ProgressTick()
		}
	default:
		if s := o.pick(); !s.closed && len(o.streams) > 1 {
			s.s.Close()
			s.closed = true
		}
	}
}

func (o *oracle) pick() *oracleStream { return o.streams[o.rng.Intn(len(o.streams))] }

func (o *oracle) key() string { return oracleKeys[o.rng.Intn(len(oracleKeys))] }

func (o *oracle) write() {
	var rev int64
	var evs []*mvccpb.Event
	switch o.rng.Intn(4) {
	case 0:
		rev, evs = o.store.Delete(o.key())
	case 1:
		var ops []watchtest.Op
		seen := map[string]bool{}
		for range 1 + o.rng.Intn(3) {
			k := o.key()
			if seen[k] {
				continue
			}
			seen[k] = true
			ops = append(ops, watchtest.Op{Key: k, Value: fmt.Sprint(o.rng.Intn(100)), Delete: o.rng.Intn(4) == 0})
		}
		rev, evs = o.store.Txn(ops...)
	default:
		rev, evs = o.store.Put(o.key(), fmt.Sprint(o.rng.Intn(100)))
	}
	_ = rev
	o.pending = append(o.pending, evs...)
}

// flush notifies everything written so far as one batch.
func (o *oracle) flush() {
	cur, _ := o.store.Revs()
	if cur == o.notified {
		return
	}
	o.hub.Notify(cur, o.pending)
	o.pending = nil
	o.notified = cur
}

func (o *oracle) compact() {
	// The apply loop notifies a revision before it can compact it.
	_, compacted := o.store.Revs()
	if o.notified > compacted {
		o.store.Compact(compacted + 1 + o.rng.Int63n(o.notified-compacted))
	}
}

func (o *oracle) create() {
	s := o.pick()
	if s.closed {
		return
	}
	var req watch.WatchRequest
	k := o.key()
	switch o.rng.Intn(5) {
	case 0:
		req.Key = []byte(k)
	case 1: // prefix
		end := []byte(k)
		end[len(end)-1]++
		req.Key, req.RangeEnd = []byte(k), end
	case 2:
		req.Key, req.RangeEnd = []byte(k), []byte{0}
	case 3:
		req.RangeEnd = []byte{0}
	default:
		k2 := o.key()
		if k2 == k {
			k2 += "z"
		}
		if k2 < k {
			k, k2 = k2, k
		}
		req.Key, req.RangeEnd = []byte(k), []byte(k2)
	}
	if o.rng.Intn(5) > 1 {
		req.StartRevision = 1 + o.rng.Int63n(o.notified+3)
	}
	req.NoPut = o.rng.Intn(8) == 0
	req.NoDelete = o.rng.Intn(8) == 0
	req.PrevKV = o.rng.Intn(3) == 0
	req.ProgressNotify = o.rng.Intn(2) == 0
	id, err := s.s.Watch(req)
	if err != nil {
		o.t.Fatalf("Watch(%+v): %v", req, err)
	}
	w := &oracleWatcher{req: req, id: id, effStart: req.StartRevision}
	if w.effStart == 0 {
		w.effStart = o.notified + 1
	}
	s.watchers[id] = w
}

func (o *oracle) cancel() {
	s := o.pick()
	if s.closed || len(s.watchers) == 0 {
		return
	}
	// Canceling a watcher the test already forgot (or a random id) is
	// fine too: the stream must answer nothing.
	id := int64(o.rng.Intn(len(s.watchers) + 2))
	_ = s.s.Cancel(id)
}

func (o *oracle) pop(s *oracleStream) bool {
	if s.closed {
		return false
	}
	got := s.s.Pop()
	s.got = append(s.got, got...)
	return len(got) > 0
}

func (o *oracle) catchupStep() {
	switch o.phase {
	case 0:
		if o.round = o.hub.CatchupPlan(); o.round != nil {
			o.phase = 1
		}
	case 1:
		o.hub.CatchupRead(o.round)
		o.phase = 2
	case 2:
		o.hub.CatchupFinish(o.round)
		o.round, o.phase = nil, 0
	}
}

// drain notifies the rest and runs catch-up and consumers to quiescence.
func (o *oracle) drain() {
	o.flush()
	for o.phase != 0 {
		o.catchupStep()
	}
	for i := 0; ; i++ {
		if i > 100000 {
			o.t.Fatal("catch-up does not converge")
		}
		more := o.hub.CatchupOnce()
		popped := false
		for _, s := range o.streams {
			if o.pop(s) {
				popped = true
			}
		}
		if !more && !popped {
			return
		}
	}
}

func holds(req watch.WatchRequest, key string) bool {
	k := string(req.Key)
	if k == "" {
		k = "\x00"
	}
	switch end := string(req.RangeEnd); {
	case end == "":
		return key == k
	case end == "\x00":
		return key >= k
	default:
		return key >= k && key < end
	}
}

func (w *oracleWatcher) expected(log []*mvccpb.Event) []*mvccpb.Event {
	var out []*mvccpb.Event
	for _, ev := range log {
		if ev.Kv.ModRevision < w.effStart || !holds(w.req, string(ev.Kv.Key)) {
			continue
		}
		if ev.Type == mvccpb.Event_PUT && w.req.NoPut || ev.Type == mvccpb.Event_DELETE && w.req.NoDelete {
			continue
		}
		out = append(out, ev)
	}
	return out
}

// valueAt is the oracle for prev_kv.
func valueAt(log []*mvccpb.Event, key []byte, rev int64) *mvccpb.KeyValue {
	var kv *mvccpb.KeyValue
	for _, ev := range log {
		if ev.Kv.ModRevision > rev {
			break
		}
		if string(ev.Kv.Key) == string(key) {
			kv = ev.Kv
			if ev.Type == mvccpb.Event_DELETE {
				kv = nil
			}
		}
	}
	return kv
}

func (o *oracle) verify(seed int64) {
	t := o.t
	log := o.store.Log()
	for si, s := range o.streams {
		if s.closed {
			continue
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d stream %d: %s\nresponses:%s", seed, si, fmt.Sprintf(format, args...), dump(s.got))
		}
		type state struct {
			w         *oracleWatcher
			want      []*mvccpb.Event
			got       int
			lastRev   int64 // highest header revision seen
			finished  bool  // canceled or compacted
			compacted bool
			canceled  bool
		}
		states := map[int64]*state{}
		live := func() []*state {
			var out []*state
			for _, st := range states {
				if !st.finished {
					out = append(out, st)
				}
			}
			return out
		}
		// vouch checks that a progress at rev was preceded by every
		// event owed up to rev.
		vouch := func(st *state, rev int64) {
			n := 0
			for _, ev := range st.want {
				if ev.Kv.ModRevision <= rev {
					n++
				}
			}
			if st.got != n {
				fail("progress at %d for watch %d after %d of the %d events owed", rev, st.w.id, st.got, n)
			}
		}
		for _, r := range s.got {
			switch {
			case r.Created && r.Canceled:
				fail("unexpected refusal")
			case r.Created:
				w := s.watchers[r.WatchID]
				if w == nil || states[r.WatchID] != nil && !states[r.WatchID].finished {
					fail("created for unknown or live id %d", r.WatchID)
				}
				if w.effStart == 0 {
					// Created concurrently with writes: the created
					// revision tells where "now" was.
					w.effStart = r.Revision + 1
				}
				if w.req.StartRevision == 0 && w.effStart != r.Revision+1 {
					fail("created revision %d, watcher starts at %d", r.Revision, w.effStart)
				}
				states[r.WatchID] = &state{w: w, want: w.expected(log), lastRev: r.Revision}
			case r.WatchID == watch.InvalidWatchID:
				if !r.IsProgress() {
					fail("unexpected response for id -1")
				}
				for _, st := range live() {
					vouch(st, r.Revision)
				}
			default:
				st := states[r.WatchID]
				if st != nil && st.compacted && r.Canceled && r.CompactRevision == 0 && !st.canceled {
					// The client's cancel of a compacted watcher is
					// answered, as etcd does.
					st.canceled = true
					continue
				}
				if st == nil || st.finished {
					fail("response for unknown or finished id %d", r.WatchID)
				}
				switch {
				case r.CompactRevision != 0:
					if !r.Canceled || r.CompactRevision <= lastEventRev(st.want[:st.got]) {
						fail("bad compaction notice for %d", r.WatchID)
					}
					st.finished, st.compacted = true, true
				case r.Canceled:
					st.finished, st.canceled = true, true
				case r.IsProgress():
					if r.Revision < st.lastRev {
						fail("progress revision %d behind %d for %d", r.Revision, st.lastRev, r.WatchID)
					}
					st.lastRev = r.Revision
					vouch(st, r.Revision)
				default:
					if r.Revision < st.lastRev {
						fail("header revision %d behind %d for %d", r.Revision, st.lastRev, r.WatchID)
					}
					st.lastRev = r.Revision
					for _, ev := range r.Events {
						if st.got >= len(st.want) {
							fail("watch %d: extra event %s", r.WatchID, evString([]*mvccpb.Event{ev}))
						}
						want := st.want[st.got]
						if ev.Kv != want.Kv || ev.Type != want.Type {
							fail("watch %d: event %d is %s, want %s", r.WatchID, st.got,
								evString([]*mvccpb.Event{ev}), evString([]*mvccpb.Event{want}))
						}
						if ev.Kv.ModRevision > r.Revision {
							fail("event revision above header revision")
						}
						if ev.PrevKv != nil {
							if !st.w.req.PrevKV {
								fail("prev_kv not asked for")
							}
							if pv := valueAt(log, ev.Kv.Key, ev.Kv.ModRevision-1); pv != ev.PrevKv {
								fail("wrong prev_kv")
							}
						}
						st.got++
					}
				}
			}
		}
		for id, st := range states {
			if !st.finished && st.got != len(st.want) {
				fail("watch %d got %d of %d events", id, st.got, len(st.want))
			}
		}
		if s.s.ProgressPending() {
			// Only a watcher waiting for a future start revision may
			// hold the answer back once everything is caught up.
			waiting := false
			for _, st := range live() {
				waiting = waiting || st.w.req.StartRevision > o.notified
			}
			if !waiting {
				fail("progress request never answered")
			}
		}
		// Every watcher created on the stream showed up.
		for id := range s.watchers {
			if states[id] == nil {
				fail("watch %d never created", id)
			}
		}
	}
}

func lastEventRev(evs []*mvccpb.Event) int64 {
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Kv.ModRevision
}
