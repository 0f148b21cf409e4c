package mvcc_test

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/internal/mvcc"
)

// TestCompactionKeepsTombstoneAtCompactionRevision: a delete at exactly the
// compaction revision must survive the compaction, so that a watch from
// that revision (which the watch hub serves, as etcd does) gets the delete
// event; the same holds, with the same HashKV, after the index is rebuilt
// from the records. Found by tests/robustness (stutter-leader, a watch from
// revision 51 whose first event was the one at 53) and etcd-io/etcd#18089.
func TestCompactionKeepsTombstoneAtCompactionRevision(t *testing.T) {
	mb := openMember(t, "s", t.TempDir())
	defer mb.close(t)
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "k", "v2", 0) })        // 2
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "k", "v3", 0) })        // 3
	apply(t, mb, func(w *mvcc.Write) { w.DeleteRange([]byte("k"), nil) })    // 4
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "k", "v6", 0) })        // 5
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "gone", "x", 0) })      // 6
	apply(t, mb, func(w *mvcc.Write) { w.DeleteRange([]byte("gone"), nil) }) // 7
	apply(t, mb, func(w *mvcc.Write) { mustPut(t, w, "other", "y", 0) })     // 8
	compact := func(rev int64) {
		t.Helper()
		b := mb.eng.DB().NewBatch()
		defer b.Close()
		if err := mb.s.ScheduleCompaction(b, rev); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		if _, err := mb.s.CompactPhysical(1); err != nil {
			t.Fatal(err)
		}
	}
	events := func(from int64) string {
		t.Helper()
		var out string
		err := mb.s.Events(from, 8, func(ev *mvccpb.Event) bool {
			out += fmt.Sprintf("%s %s@%d ", ev.Type, ev.Kv.Key, ev.Kv.ModRevision)
			return true
		})
		if err != nil {
			t.Fatalf("Events(%d): %v", from, err)
		}
		return out
	}

	compact(4)
	const want4 = "DELETE k@4 PUT k@5 PUT gone@6 DELETE gone@7 PUT other@8 "
	if got := events(4); got != want4 {
		t.Fatalf("events from the compaction revision 4:\n got %s\nwant %s", got, want4)
	}
	h1, _, _, err := mb.s.HashKV(8)
	if err != nil {
		t.Fatal(err)
	}
	mb.reopenStore(t)
	if got := events(4); got != want4 {
		t.Fatalf("after reopen, events from 4:\n got %s\nwant %s", got, want4)
	}
	if h2, _, _, err := mb.s.HashKV(8); err != nil || h2 != h1 {
		t.Fatalf("HashKV after reopen = %d, %v; before %d", h2, err, h1)
	}
	if kv := mustGet(t, mb.s, "k", 4); kv != nil {
		t.Fatalf("k at the compaction revision 4 = %v, want deleted", kv)
	}

	// A later compaction removes the tombstone; the index stays in step
	// with the records (same HashKV before and after a rebuild).
	compact(7)
	const want7 = "DELETE gone@7 PUT other@8 "
	if got := events(7); got != want7 {
		t.Fatalf("events from the compaction revision 7:\n got %s\nwant %s", got, want7)
	}
	h3, _, _, err := mb.s.HashKV(8)
	if err != nil {
		t.Fatal(err)
	}
	mb.reopenStore(t)
	if h4, _, _, err := mb.s.HashKV(8); err != nil || h4 != h3 {
		t.Fatalf("HashKV after the second compaction and a reopen = %d, %v; before %d", h4, err, h3)
	}
	wantKV(t, mustGet(t, mb.s, "k", 8), "k", "v6", 5, 5, 1, 0)
}
