package mvcc_test

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage"
)

// These tests pin down etcd's revision facts that clients depend on.

// apply runs fn as one write request in its own batch, commits and
// publishes, and returns the write's events.
func apply(t *testing.T, mb *member, fn func(w *mvcc.Write)) []*mvccpb.Event {
	t.Helper()
	b := mb.eng.DB().NewIndexedBatch()
	defer b.Close()
	w := mb.s.Write(b)
	fn(w)
	evs := w.End()
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	mb.s.Publish(mb.s.PendingRev())
	return evs
}

func mustPut(t *testing.T, w *mvcc.Write, key, val string, lease int64) {
	t.Helper()
	if _, err := w.Put([]byte(key), []byte(val), lease); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, s *mvcc.Store, key string, rev int64) *mvccpb.KeyValue {
	t.Helper()
	kv, err := s.Get([]byte(key), rev)
	if err != nil {
		t.Fatalf("Get(%q, %d): %v", key, rev, err)
	}
	return kv
}

func wantKV(t *testing.T, got *mvccpb.KeyValue, key, val string, create, mod, ver, lease int64) {
	t.Helper()
	want := &mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: create, ModRevision: mod, Version: ver, Lease: lease}
	if !proto.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestEmptyStoreIsAtRevision1(t *testing.T) {
	mb := openMember(t, "s", t.TempDir())
	defer mb.close(t)
	if r := mb.s.Rev(); r != 1 {
		t.Fatalf("Rev = %d, want 1", r)
	}
	res, err := mb.s.Range([]byte("a"), []byte{}, mvcc.RangeOptions{})
	if err != nil || res.Rev != 1 || res.Count != 0 || len(res.KVs) != 0 {
		t.Fatalf("Range on an empty store = %+v, %v; want revision 1, nothing", res, err)
	}
	if _, err := mb.s.Range([]byte("a"), nil, mvcc.RangeOptions{Rev: 2}); !errors.Is(err, mvcc.ErrFutureRev) {
		t.Fatalf("Range at 2: err = %v, want ErrFutureRev", err)
	}
	// Reopening an empty store keeps it at 1.
	mb.reopenStore(t)
	if r := mb.s.Rev(); r != 1 {
		t.Fatalf("Rev after reopen = %d, want 1", r)
	}
	// etcd allows compacting an empty store at its revision 1.
	b := mb.eng.DB().NewBatch()
	defer b.Close()
	if err := mb.s.ScheduleCompaction(b, 1); err != nil {
		t.Fatalf("ScheduleCompaction(1) on an empty store: %v", err)
	}
}

func TestFirstPutIsRevision2(t *testing.T) {
	mb := openMember(t, "s", t.TempDir())
	defer mb.close(t)
	evs := apply(t, mb, func(w *mvcc.Write) {
		if w.Rev() != 1 {
			t.Fatalf("Write.Rev before a change = %d, want 1", w.Rev())
		}
		mustPut(t, w, "foo", "bar", 0)
		if w.Rev() != 2 {
			t.Fatalf("Write.Rev after a change = %d, want 2", w.Rev())
		}
	})
	if len(evs) != 1 || evs[0].Type != mvccpb.Event_PUT {
		t.Fatalf("events = %v", evs)
	}
	wantKV(t, evs[0].Kv, "foo", "bar", 2, 2, 1, 0)
	if r := mb.s.Rev(); r != 2 {
		t.Fatalf("Rev = %d, want 2", r)
	}
	wantKV(t, mustGet(t, mb.s, "foo", 0), "foo", "bar", 2, 2, 1, 0)
	if kv := mustGet(t, mb.s, "foo", 1); kv != nil {
		t.Fatalf("foo at revision 1 = %v, want none", kv)
	}
}

func TestDeleteOfMissingKeyMakesNoRevision(t *testing.T) {
	mb := openMember(t, "s", t.TempDir())
	defer mb.close(t)
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "a", "1", 0) })
	for _, end := range [][]byte{nil, []byte("zz"), {}} {
		evs := apply(t, mb, func(w *mvcc.Write) {
			del, err := w.DeleteRange([]byte("b"), end)
			if err != nil || len(del) != 0 {
				t.Fatalf("DeleteRange(b, %q) = %v, %v; want nothing", end, del, err)
			}
		})
		if len(evs) != 0 {
			t.Fatalf("events = %v, want none", evs)
		}
		if r, p := mb.s.Rev(), mb.s.PendingRev(); r != 2 || p != 2 {
			t.Fatalf("Rev, PendingRev = %d, %d after deleting nothing; want 2, 2", r, p)
		}
	}
	// Nor does a second delete of a deleted key.
	apply(t, mb, func(w *mvcc.Write) { w.DeleteRange([]byte("a"), nil) })
	apply(t, mb, func(w *mvcc.Write) { w.DeleteRange([]byte("a"), nil) })
	if r := mb.s.Rev(); r != 3 {
		t.Fatalf("Rev = %d, want 3", r)
	}
}

func TestVersionResetsAfterDelete(t *testing.T) {
	mb := openMember(t, "s", t.TempDir())
	defer mb.close(t)
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "k", "1", 0) })      // 2
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "k", "2", 7) })      // 3
	apply(t, mb, func(w *mvcc.Write) { w.DeleteRange([]byte("k"), nil) }) // 4
	wantKV(t, mustGet(t, mb.s, "k", 3), "k", "2", 2, 3, 2, 7)
	if kv := mustGet(t, mb.s, "k", 4); kv != nil {
		t.Fatalf("k after delete = %v", kv)
	}
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "k", "3", 0) }) // 5
	wantKV(t, mustGet(t, mb.s, "k", 0), "k", "3", 5, 5, 1, 0)
	// Delete and put again inside one write: a new life in one revision.
	evs := apply(t, mb, func(w *mvcc.Write) {
		w.DeleteRange([]byte("k"), nil)
		mustPut(t, w, "k", "4", 0)
	}) // 6
	if len(evs) != 2 || evs[0].Type != mvccpb.Event_DELETE || evs[1].Type != mvccpb.Event_PUT {
		t.Fatalf("events = %v", evs)
	}
	wantKV(t, mustGet(t, mb.s, "k", 0), "k", "4", 6, 6, 1, 0)
	// The same after the index is rebuilt.
	mb.reopenStore(t)
	wantKV(t, mustGet(t, mb.s, "k", 0), "k", "4", 6, 6, 1, 0)
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "k", "5", 0) }) // 7
	wantKV(t, mustGet(t, mb.s, "k", 0), "k", "5", 6, 7, 2, 0)
}

func TestWriteSharesOneMainRevision(t *testing.T) {
	mb := openMember(t, "s", t.TempDir())
	defer mb.close(t)
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "c", "0", 0) }) // 2
	evs := apply(t, mb, func(w *mvcc.Write) {
		mustPut(t, w, "b", "1", 0)
		mustPut(t, w, "a", "1", 0)
		mustPut(t, w, "b", "2", 0) // same key twice: version 2, same create
		if _, err := w.DeleteRange([]byte("c"), nil); err != nil {
			t.Fatal(err)
		}
	}) // 3
	if r := mb.s.Rev(); r != 3 {
		t.Fatalf("Rev = %d, want 3", r)
	}
	wantTypes := []mvccpb.Event_EventType{mvccpb.Event_PUT, mvccpb.Event_PUT, mvccpb.Event_PUT, mvccpb.Event_DELETE}
	if len(evs) != len(wantTypes) {
		t.Fatalf("events = %v", evs)
	}
	for i, ev := range evs {
		if ev.Type != wantTypes[i] || ev.Kv.ModRevision != 3 {
			t.Fatalf("event %d = %v, want type %v at revision 3", i, ev, wantTypes[i])
		}
	}
	wantKV(t, mustGet(t, mb.s, "b", 0), "b", "2", 3, 3, 2, 0)
	// On disk: one record per change, all at main revision 3, sub
	// revisions 0, 1, 2, 3 in the order of the changes; the deletion has
	// the tombstone marker.
	_, hi := storage.KVSpan()
	it, err := mb.eng.DB().NewIter(&pebble.IterOptions{LowerBound: storage.KVKeyLowerBound(3), UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	type rec struct {
		main, sub int64
		tomb      bool
		key       string
	}
	var got []rec
	for it.First(); it.Valid(); it.Next() {
		main, sub, tomb, ok := storage.ParseKVKey(it.Key())
		if !ok {
			t.Fatalf("bad key %x", it.Key())
		}
		kv := &mvccpb.KeyValue{}
		if err := proto.Unmarshal(it.Value(), kv); err != nil {
			t.Fatal(err)
		}
		got = append(got, rec{main, sub, tomb, string(kv.Key)})
	}
	want := []rec{{3, 0, false, "b"}, {3, 1, false, "a"}, {3, 2, false, "b"}, {3, 3, true, "c"}}
	if len(got) != len(want) {
		t.Fatalf("records = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("records = %v, want %v", got, want)
		}
	}
	// Events replays them in the same order, the deletion as etcd
	// reports it: only the key and the revision.
	var replay []*mvccpb.Event
	if err := mb.s.Events(3, 3, func(ev *mvccpb.Event) bool { replay = append(replay, ev); return true }); err != nil {
		t.Fatal(err)
	}
	if d := diffEvents(replay, evs); d != "" {
		t.Fatalf("Events(3, 3): %s", d)
	}
	del := &mvccpb.KeyValue{Key: []byte("c"), ModRevision: 3}
	if !proto.Equal(replay[3].Kv, del) {
		t.Fatalf("delete event kv = %v, want %v", replay[3].Kv, del)
	}
}

// TestCompactionKeepsLatestBelow: a key last changed before the compaction
// revision stays readable at and after it; a key deleted at or before it
// is gone, even after the records are removed and the index rebuilt.
func TestCompactionKeepsLatestBelow(t *testing.T) {
	mb := openMember(t, "s", t.TempDir())
	defer mb.close(t)
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "live", "1", 0) })      // 2
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "gone", "1", 0) })      // 3
	apply(t, mb, func(w *mvcc.Write) { w.DeleteRange([]byte("gone"), nil) }) // 4
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "other", "1", 0) })     // 5
	b := mb.eng.DB().NewBatch()
	if err := mb.s.ScheduleCompaction(b, 4); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = mb.eng.DB().NewBatch()
	defer b.Close()
	if err := mb.s.ScheduleCompaction(b, 4); !errors.Is(err, mvcc.ErrCompacted) {
		t.Fatalf("second ScheduleCompaction(4): err = %v, want ErrCompacted", err)
	}
	if err := mb.s.ScheduleCompaction(b, 6); !errors.Is(err, mvcc.ErrFutureRev) {
		t.Fatalf("ScheduleCompaction(6): err = %v, want ErrFutureRev", err)
	}
	if _, err := mb.s.CompactPhysical(1); err != nil {
		t.Fatal(err)
	}
	for _, reopen := range []bool{false, true} {
		if reopen {
			mb.reopenStore(t)
		}
		for _, rev := range []int64{4, 5} {
			wantKV(t, mustGet(t, mb.s, "live", rev), "live", "1", 2, 2, 1, 0)
			if kv := mustGet(t, mb.s, "gone", rev); kv != nil {
				t.Fatalf("gone at %d = %v (reopen %v)", rev, kv, reopen)
			}
		}
		if _, err := mb.s.Get([]byte("live"), 3); !errors.Is(err, mvcc.ErrCompacted) {
			t.Fatalf("Get at 3: err = %v, want ErrCompacted", err)
		}
		if c := mb.s.CompactRev(); c != 4 {
			t.Fatalf("CompactRev = %d, want 4", c)
		}
	}
	v, ok, err := storage.GetMeta(mb.eng.DB(), storage.MetaFinishedCompact)
	if err != nil || !ok || storage.U64(v) != 4 {
		t.Fatalf("finished compaction meta = %v, %v, %v; want 4", storage.U64(v), ok, err)
	}
}

// TestReopenAfterPhysicalCompactionKeepsCreateAndVersion: after the records
// below the compaction are removed and the index is rebuilt from what
// remains, the next put of a key must still carry the key's create revision
// and count its version from its real history (etcd rebuilds both from the
// stored KeyValue).
func TestReopenAfterPhysicalCompactionKeepsCreateAndVersion(t *testing.T) {
	mb := openMember(t, "s", t.TempDir())
	defer mb.close(t)
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "k", "1", 0) }) // 2
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "k", "2", 0) }) // 3
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "k", "3", 0) }) // 4
	b := mb.eng.DB().NewBatch()
	if err := mb.s.ScheduleCompaction(b, 4); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := mb.s.CompactPhysical(10); err != nil {
		t.Fatal(err)
	}
	mb.reopenStore(t)
	wantKV(t, mustGet(t, mb.s, "k", 0), "k", "3", 2, 4, 3, 0)
	evs := apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "k", "4", 0) }) // 5
	if len(evs) != 1 {
		t.Fatalf("events = %v", evs)
	}
	wantKV(t, evs[0].Kv, "k", "4", 2, 5, 4, 0)
	wantKV(t, mustGet(t, mb.s, "k", 0), "k", "4", 2, 5, 4, 0)
}
