package storage_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

func open(t *testing.T, dir string) *storage.Engine {
	t.Helper()
	e, err := storage.Open(dir, storage.Options{CacheBytes: 1 << 20})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return e
}

func entry(index, term uint64, data string) *raftpb.Entry {
	e := &raftpb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(term), Type: raftpb.EntryNormal.Enum()}
	if data != "" {
		e.Data = []byte(data)
	}
	return e
}

// entries makes entries lo..hi of term, with data naming index and term.
func entries(lo, hi, term uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		out = append(out, entry(i, term, fmt.Sprintf("e%d.t%d", i, term)))
	}
	return out
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

func load(t *testing.T, e *storage.Engine) *storage.RaftState {
	t.Helper()
	st, err := e.LoadRaft()
	if err != nil {
		t.Fatalf("LoadRaft: %v", err)
	}
	return st
}

func wantEntries(t *testing.T, got, want []*raftpb.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d entries %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("entry [%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func wantHardState(t *testing.T, got, want *raftpb.HardState) {
	t.Helper()
	if got.GetTerm() != want.GetTerm() || got.GetVote() != want.GetVote() || got.GetCommit() != want.GetCommit() {
		t.Fatalf("hard state = %v, want %v", got, want)
	}
}

// rawEntryKey is the documented key of a log entry: 0x01 'e' <index:8 BE>.
func rawEntryKey(index uint64) []byte {
	k := []byte{0x01, 'e', 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint64(k[2:], index)
	return k
}

// rawEntryIndexes lists the indexes of the entries physically in the log.
func rawEntryIndexes(t *testing.T, e *storage.Engine) []uint64 {
	t.Helper()
	it, err := e.DB().NewIter(&pebble.IterOptions{LowerBound: []byte{0x01, 'e'}, UpperBound: []byte{0x01, 'f'}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []uint64
	for it.First(); it.Valid(); it.Next() {
		out = append(out, binary.BigEndian.Uint64(it.Key()[2:]))
	}
	return out
}

func TestRaftStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	st := load(t, e)
	if !st.Empty() {
		t.Fatalf("new engine: state %+v is not empty", st)
	}
	if st.HardState == nil || st.Snapshot == nil {
		t.Fatalf("new engine: nil hard state or snapshot metadata")
	}
	// Nothing to save is a no-op.
	if err := e.SaveRaft(&raftpb.HardState{}, nil, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := e.SaveRaft(nil, nil, 0, true); err != nil {
		t.Fatal(err)
	}
	if !load(t, e).Empty() {
		t.Fatal("empty SaveRaft made the state non-empty")
	}

	ents := entries(1, 5, 1)
	cc := &raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(7), Context: []byte(`{"name":"x"}`)}
	ccData, err := proto.Marshal(cc)
	if err != nil {
		t.Fatal(err)
	}
	ents = append(ents, &raftpb.Entry{Index: proto.Uint64(6), Term: proto.Uint64(2), Type: raftpb.EntryConfChange.Enum(), Data: ccData})
	ents = append(ents, entry(7, 2, "")) // a new leader's empty entry
	hs := hardState(2, 1, 6)
	if err := e.SaveRaft(hs, ents, 0, true); err != nil {
		t.Fatal(err)
	}
	check := func(e *storage.Engine) {
		t.Helper()
		st := load(t, e)
		if st.Empty() {
			t.Fatal("state is empty after SaveRaft")
		}
		wantHardState(t, st.HardState, hs)
		wantEntries(t, st.Entries, ents)
		if st.Snapshot.GetIndex() != 0 {
			t.Fatalf("snapshot index = %d, want 0", st.Snapshot.GetIndex())
		}
	}
	check(e)
	// Appending with an empty hard state keeps the old one.
	more := entries(8, 9, 2)
	if err := e.SaveRaft(&raftpb.HardState{}, more, 7, true); err != nil {
		t.Fatal(err)
	}
	ents = append(ents, more...)
	check(e)
	// A hard state alone changes only the hard state.
	hs = hardState(3, 0, 9)
	if err := e.SaveRaft(hs, nil, 9, true); err != nil {
		t.Fatal(err)
	}
	check(e)
	// All of it survives a restart.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = open(t, dir)
	defer e.Close()
	check(e)
}

func TestSaveRaftOverwritesConflictingTail(t *testing.T) {
	e := open(t, t.TempDir())
	defer e.Close()
	if err := e.SaveRaft(hardState(1, 1, 3), entries(1, 10, 1), 0, true); err != nil {
		t.Fatal(err)
	}
	// A new leader of term 2 replaces 6..10 with a shorter 6..7.
	if err := e.SaveRaft(hardState(2, 2, 3), entries(6, 7, 2), 10, true); err != nil {
		t.Fatal(err)
	}
	want := append(entries(1, 5, 1), entries(6, 7, 2)...)
	wantEntries(t, load(t, e).Entries, want)
	if got := rawEntryIndexes(t, e); len(got) != 7 {
		t.Fatalf("entries on disk %v, want 1..7 (the old tail dropped)", got)
	}
	// A longer replacement (no tail to drop) overwrites in place.
	if err := e.SaveRaft(hardState(3, 3, 3), entries(4, 9, 3), 7, true); err != nil {
		t.Fatal(err)
	}
	want = append(entries(1, 3, 1), entries(4, 9, 3)...)
	wantEntries(t, load(t, e).Entries, want)
	// Replacing exactly the last entry.
	if err := e.SaveRaft(nil, entries(9, 9, 4), 9, true); err != nil {
		t.Fatal(err)
	}
	want = append(want[:8], entries(9, 9, 4)...)
	wantEntries(t, load(t, e).Entries, want)
	// Replacing everything after the first entry with one entry.
	if err := e.SaveRaft(nil, entries(2, 2, 5), 9, true); err != nil {
		t.Fatal(err)
	}
	want = append(entries(1, 1, 1), entries(2, 2, 5)...)
	wantEntries(t, load(t, e).Entries, want)
	if got := rawEntryIndexes(t, e); len(got) != 2 {
		t.Fatalf("entries on disk %v, want 1..2", got)
	}
}

func TestSaveSnapshotTruncates(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	if err := e.SaveRaft(hardState(1, 1, 10), entries(1, 10, 1), 0, true); err != nil {
		t.Fatal(err)
	}
	meta := &raftpb.SnapshotMetadata{
		Index: proto.Uint64(6), Term: proto.Uint64(1),
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}, AutoLeave: proto.Bool(false)},
	}
	if err := e.SaveSnapshot(meta, 6); err != nil {
		t.Fatal(err)
	}
	check := func(e *storage.Engine) {
		t.Helper()
		st := load(t, e)
		if !proto.Equal(st.Snapshot, meta) {
			t.Fatalf("snapshot metadata = %v, want %v", st.Snapshot, meta)
		}
		wantEntries(t, st.Entries, entries(7, 10, 1))
		wantHardState(t, st.HardState, hardState(1, 1, 10))
		// Entries before the compact index are gone from disk, not only
		// hidden by the snapshot index.
		got := rawEntryIndexes(t, e)
		if len(got) == 0 || got[0] < 6 || got[len(got)-1] != 10 {
			t.Fatalf("entries on disk %v, want none before 6, last 10", got)
		}
	}
	check(e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = open(t, dir)
	defer e.Close()
	check(e)
	// The log goes on after the snapshot.
	if err := e.SaveRaft(nil, entries(11, 12, 2), 10, true); err != nil {
		t.Fatal(err)
	}
	wantEntries(t, load(t, e).Entries, append(entries(7, 10, 1), entries(11, 12, 2)...))
	// A snapshot past the end of the log (installed from a leader) leaves
	// no entries to replay.
	meta2 := &raftpb.SnapshotMetadata{Index: proto.Uint64(20), Term: proto.Uint64(3), ConfState: &raftpb.ConfState{Voters: []uint64{1}, AutoLeave: proto.Bool(false)}}
	if err := e.SaveSnapshot(meta2, 20); err != nil {
		t.Fatal(err)
	}
	st := load(t, e)
	if !proto.Equal(st.Snapshot, meta2) || len(st.Entries) != 0 {
		t.Fatalf("after a snapshot at 20: snapshot %v, %d entries; want %v and none", st.Snapshot, len(st.Entries), meta2)
	}
	if got := rawEntryIndexes(t, e); len(got) != 0 {
		t.Fatalf("entries on disk %v, want none", got)
	}
	if st.Empty() {
		t.Fatal("state with only a snapshot reports Empty")
	}
}

func TestLoadRaftReportsCorruptLog(t *testing.T) {
	t.Run("gap from a save", func(t *testing.T) {
		e := open(t, t.TempDir())
		defer e.Close()
		if err := e.SaveRaft(hardState(1, 1, 1), entries(1, 3, 1), 0, true); err != nil {
			t.Fatal(err)
		}
		if err := e.SaveRaft(nil, entries(5, 6, 1), 3, true); err != nil {
			t.Fatal(err)
		}
		if _, err := e.LoadRaft(); !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("LoadRaft with a gap at 4: err = %v, want ErrCorrupt", err)
		}
	})
	t.Run("missing entry in the middle", func(t *testing.T) {
		e := open(t, t.TempDir())
		defer e.Close()
		if err := e.SaveRaft(hardState(1, 1, 1), entries(1, 5, 1), 0, true); err != nil {
			t.Fatal(err)
		}
		if err := e.DB().Delete(rawEntryKey(3), pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if _, err := e.LoadRaft(); !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("LoadRaft with entry 3 missing: err = %v, want ErrCorrupt", err)
		}
	})
	t.Run("first entry after the snapshot missing", func(t *testing.T) {
		e := open(t, t.TempDir())
		defer e.Close()
		if err := e.SaveRaft(hardState(1, 1, 1), entries(1, 5, 1), 0, true); err != nil {
			t.Fatal(err)
		}
		meta := &raftpb.SnapshotMetadata{Index: proto.Uint64(2), Term: proto.Uint64(1), ConfState: &raftpb.ConfState{}}
		if err := e.SaveSnapshot(meta, 2); err != nil {
			t.Fatal(err)
		}
		if err := e.DB().Delete(rawEntryKey(3), pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if _, err := e.LoadRaft(); !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("LoadRaft with entry 3 (first after the snapshot at 2) missing: err = %v, want ErrCorrupt", err)
		}
	})
	t.Run("entry stored under the wrong index", func(t *testing.T) {
		e := open(t, t.TempDir())
		defer e.Close()
		if err := e.SaveRaft(hardState(1, 1, 1), entries(1, 3, 1), 0, true); err != nil {
			t.Fatal(err)
		}
		v, err := proto.Marshal(entry(9, 1, "x"))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.DB().Set(rawEntryKey(2), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if _, err := e.LoadRaft(); !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("LoadRaft: err = %v, want ErrCorrupt", err)
		}
	})
	for _, c := range []struct {
		name string
		key  []byte
	}{
		{"garbage entry", rawEntryKey(2)},
		{"garbage hard state", []byte{0x01, 'h'}},
		{"garbage snapshot metadata", []byte{0x01, 's'}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := open(t, t.TempDir())
			defer e.Close()
			if err := e.SaveRaft(hardState(1, 1, 1), entries(1, 3, 1), 0, true); err != nil {
				t.Fatal(err)
			}
			// 0xff is a field tag with wire type 7, which no protobuf has.
			if err := e.DB().Set(c.key, []byte{0xff, 0xff, 0xff}, pebble.Sync); err != nil {
				t.Fatal(err)
			}
			if _, err := e.LoadRaft(); !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("LoadRaft: err = %v, want ErrCorrupt", err)
			}
		})
	}
}
