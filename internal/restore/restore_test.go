package restore

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/membership"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/snapshot"
	"github.com/cairn-kv/cairn/internal/storage"
)

// writeSnapshot makes a snapshot file of an old cluster: key "a" put at
// revisions 2 and 4, "b" put at 3 with lease 7 and deleted at 5,
// compacted at 3; one member; consistent index 100.
func writeSnapshot(t *testing.T, dir string) string {
	t.Helper()
	w, err := snapshot.NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	put := func(main int64, tomb bool, kv *mvccpb.KeyValue) {
		v, err := proto.Marshal(kv)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.PutKV(snapshot.Revision{Main: main}, tomb, v); err != nil {
			t.Fatal(err)
		}
	}
	put(2, false, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1})
	put(3, false, &mvccpb.KeyValue{Key: []byte("b"), Value: []byte("x"), CreateRevision: 3, ModRevision: 3, Version: 1, Lease: 7})
	put(4, false, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("2"), CreateRevision: 2, ModRevision: 4, Version: 2})
	put(5, true, &mvccpb.KeyValue{Key: []byte("b"), ModRevision: 5})
	if err := w.PutLease(snapshot.Lease{ID: 7, TTL: 60, RemainingTTL: 30}); err != nil {
		t.Fatal(err)
	}
	if err := w.PutMember(snapshot.Member{ID: 0x8e9e05c52164694d, Name: "old", PeerURLs: []string{"http://localhost:2380"}}); err != nil {
		t.Fatal(err)
	}
	if err := w.SetMeta(snapshot.Meta{ConsistentIndex: 100, Term: 3, ScheduledCompactRev: 3, FinishedCompactRev: 3}); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "snap.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRestoreNewCluster(t *testing.T) {
	dir := t.TempDir()
	snap := writeSnapshot(t, dir)
	ic := "n1=http://127.0.0.1:1,n2=http://127.0.0.1:2,n3=http://127.0.0.1:3"
	var lastDone, lastTotal int64
	calls := 0
	for _, name := range []string{"n1", "n2", "n3"} {
		o := Options{
			SnapshotPath: snap, Name: name, DataDir: filepath.Join(dir, name),
			InitialCluster: ic, InitialClusterToken: "tok",
			InitialAdvertisePeerURLs: []string{"http://127.0.0.1:" + name[1:]},
			Progress:                 func(d, tot int64) { calls++; lastDone, lastTotal = d, tot },
		}
		if err := Restore(context.Background(), o); err != nil {
			t.Fatalf("restore %s: %v", name, err)
		}
	}
	if calls == 0 || lastDone != lastTotal || lastTotal == 0 {
		t.Errorf("progress: %d calls, last %d of %d", calls, lastDone, lastTotal)
	}

	var clusterIDs []uint64
	for _, name := range []string{"n1", "n2", "n3"} {
		eng, err := storage.Open(filepath.Join(dir, name, "member"), storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		v, ok, err := storage.GetMeta(eng.DB(), storage.MetaCluster)
		if err != nil || !ok {
			t.Fatalf("%s: identity: %v %v", name, ok, err)
		}
		var id membership.Identity
		if err := json.Unmarshal(v, &id); err != nil {
			t.Fatal(err)
		}
		clusterIDs = append(clusterIDs, id.ClusterID)
		want := membership.ComputeMemberID([]string{"http://127.0.0.1:" + name[1:]}, "tok")
		if id.MemberID != want || id.Name != name {
			t.Errorf("%s: identity %+v, want member %x", name, id, want)
		}

		set, err := membership.Load(eng.DB(), id.ClusterID)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range set.Members() {
			names = append(names, m.Name)
		}
		if got := strings.Join(names, ","); len(set.Members()) != 3 || strings.Contains(got, "old") {
			t.Errorf("%s: members %s, want n1..n3 only", name, got)
		}

		st, err := eng.LoadRaft()
		if err != nil {
			t.Fatal(err)
		}
		if st.Snapshot.GetIndex() != 3 || st.Snapshot.GetTerm() != 1 || len(st.Snapshot.GetConfState().GetVoters()) != 3 ||
			st.HardState.GetCommit() != 3 || st.HardState.GetTerm() != 1 {
			t.Errorf("%s: raft state snapshot %v hardstate %v", name, st.Snapshot, st.HardState)
		}

		kv, err := mvcc.Open(eng.DB())
		if err != nil {
			t.Fatal(err)
		}
		if cur, compacted := kv.Revs(); cur != 5 || compacted != 3 {
			t.Errorf("%s: revisions %d compacted %d, want 5 and 3", name, cur, compacted)
		}
		res, err := kv.Range([]byte("a"), []byte("c"), mvcc.RangeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.KVs) != 1 || string(res.KVs[0].Value) != "2" || res.KVs[0].Version != 2 {
			t.Errorf("%s: range a..c = %v, want a=2 only", name, res.KVs)
		}
		if got, err := kv.Get([]byte("b"), 4); err != nil || got == nil || got.Lease != 7 {
			t.Errorf("%s: b at revision 4 = %v, %v", name, got, err)
		}
		if _, ok, _ := storage.GetMeta(eng.DB(), storage.MetaScheduledCompact); !ok {
			t.Errorf("%s: compaction state lost", name)
		}
		n := 0
		lo, hi := storage.LeaseSpan()
		it, err := eng.DB().NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		for ok := it.SeekGE(lo); ok && string(it.Key()) < string(hi); ok = it.Next() {
			n++
		}
		it.Close()
		if n != 1 {
			t.Errorf("%s: %d leases, want 1", name, n)
		}
		eng.Close()
	}
	if clusterIDs[0] != clusterIDs[1] || clusterIDs[1] != clusterIDs[2] {
		t.Errorf("members restored from one file disagree on the cluster id: %x", clusterIDs)
	}
	plain := membership.ComputeClusterID([]uint64{
		membership.ComputeMemberID([]string{"http://127.0.0.1:1"}, "tok"),
		membership.ComputeMemberID([]string{"http://127.0.0.1:2"}, "tok"),
		membership.ComputeMemberID([]string{"http://127.0.0.1:3"}, "tok"),
	})
	if clusterIDs[0] == plain {
		t.Errorf("restored cluster id %x equals the id of a cluster bootstrapped with the same flags", plain)
	}
}

func TestRestoreErrors(t *testing.T) {
	dir := t.TempDir()
	snap := writeSnapshot(t, dir)
	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	noHash := filepath.Join(dir, "nohash.db")
	if err := os.WriteFile(noHash, data[:len(data)-32], 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.db")
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)-40] ^= 0xff
	if err := os.WriteFile(bad, flipped, 0o600); err != nil {
		t.Fatal(err)
	}
	exists := filepath.Join(dir, "exists")
	if err := os.Mkdir(exists, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"data dir exists", Options{SnapshotPath: snap, DataDir: exists}, `data-dir "` + exists + `" exists`},
		{"unknown name", Options{SnapshotPath: snap, Name: "x", InitialCluster: "default=http://localhost:2380"}, `couldn't find local name "x" in the initial cluster configuration`},
		{"peer urls differ", Options{SnapshotPath: snap, InitialAdvertisePeerURLs: []string{"http://127.0.0.1:9"}, InitialCluster: "default=http://localhost:2380"},
			"--initial-cluster has default=http://localhost:2380 but missing from --initial-advertise-peer-urls=http://127.0.0.1:9"},
		{"no such file", Options{SnapshotPath: filepath.Join(dir, "none.db")}, "no such file or directory"},
		{"missing hash", Options{SnapshotPath: noHash}, "snapshot missing hash but --skip-hash-check=false"},
		{"hash mismatch", Options{SnapshotPath: bad}, "expected sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.o.DataDir == "" {
				tc.o.DataDir = filepath.Join(dir, "out-"+strings.ReplaceAll(tc.name, " ", "-"))
			}
			err := Restore(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if tc.o.DataDir != exists {
				if _, err := os.Stat(tc.o.DataDir); !os.IsNotExist(err) {
					t.Errorf("a failed restore left %s behind (%v)", tc.o.DataDir, err)
				}
			}
		})
	}
	// A database file without its trailer restores with --skip-hash-check.
	if err := Restore(context.Background(), Options{SnapshotPath: noHash, SkipHashCheck: true, DataDir: filepath.Join(dir, "skip")}); err != nil {
		t.Fatalf("restore with skip-hash-check: %v", err)
	}
}

// A cancelled restore removes what it wrote.
func TestRestoreCancelled(t *testing.T) {
	dir := t.TempDir()
	snap := writeSnapshot(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := Options{SnapshotPath: snap, DataDir: filepath.Join(dir, "out"), WALDir: filepath.Join(dir, "wal")}
	o.Progress = func(done, total int64) { cancel() }
	if err := Restore(ctx, o); err != context.Canceled {
		t.Fatalf("cancelled restore: %v, want context.Canceled", err)
	}
	for _, d := range []string{o.DataDir, o.WALDir} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("a cancelled restore left %s behind (%v)", d, err)
		}
	}
}
