package snapshot

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// fixture is everything a test snapshot holds.
type fixture struct {
	hist     *history
	leases   []Lease
	members  []Member
	removed  []uint64
	alarms   []Alarm
	users    []AuthUser
	roles    []AuthRole
	authOn   bool
	authRev  uint64
	meta     Meta
	metaKeys int // records SetMeta writes into meta and cluster
}

func newFixture(seed uint64, txns, nkeys int) *fixture {
	f := &fixture{
		leases: []Lease{
			{ID: 0x694d7a4c1c5a1201, TTL: 3600},
			{ID: 0x694d7a4c1c5a1202, TTL: 7200, RemainingTTL: 5000},
			{ID: 0x694d7a4c1c5a1203, TTL: 86400},
		},
		members: []Member{
			{ID: 0x8e9e05c52164694d, Name: "n1", PeerURLs: []string{"http://10.0.0.1:2380"}, ClientURLs: []string{"http://10.0.0.1:2379"}},
			{ID: 0x91bc3c398fb3c146, Name: "n2", PeerURLs: []string{"http://10.0.0.2:2380", "http://10.0.1.2:2380"}, ClientURLs: []string{"http://10.0.0.2:2379"}},
			{ID: 0xfd422379fda50e48, PeerURLs: []string{"http://10.0.0.3:2380"}, IsLearner: true},
		},
		removed: []uint64{0x1234, 0xabcdef0123456789},
		alarms:  []Alarm{{MemberID: 0x8e9e05c52164694d, Alarm: etcdserverpb.AlarmType_NOSPACE}},
		users:   []AuthUser{{Name: "alice", User: []byte("\n\x05alice")}, {Name: "root", User: []byte("\n\x04root")}},
		roles:   []AuthRole{{Name: "root", Role: []byte("\n\x04root")}},
		authOn:  true,
		authRev: 7,
		meta: Meta{
			ConsistentIndex:     123456,
			Term:                9,
			ScheduledCompactRev: 50,
			FinishedCompactRev:  40,
			ConfState:           &raftpb.ConfState{Voters: []uint64{0x8e9e05c52164694d, 0x91bc3c398fb3c146}, Learners: []uint64{0xfd422379fda50e48}},
			ClusterVersion:      "3.6.0",
		},
		metaKeys: 6,
	}
	ids := []int64{f.leases[0].ID, f.leases[1].ID, f.leases[2].ID}
	f.hist = newHistory()
	for _, ops := range randomTxns(seed, txns, nkeys, ids) {
		f.hist.apply(ops)
	}
	return f
}

// write stores f into a new snapshot file and returns its path.
func (f *fixture) write(t testing.TB, dir string, order []int) string {
	t.Helper()
	w, err := NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if order == nil {
		order = make([]int, len(f.hist.entries))
		for i := range order {
			order[i] = i
		}
	}
	if err := w.SetMeta(Meta{ConsistentIndex: 1, ClusterVersion: "3.4.0"}); err != nil {
		t.Fatal(err)
	}
	for _, i := range order {
		e := f.hist.entries[i]
		if err := w.PutKV(e.Rev, e.Tombstone, mustMarshal(e.KV)); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range f.leases {
		must(t, w.PutLease(l))
	}
	for _, m := range f.members {
		must(t, w.PutMember(m))
	}
	for _, id := range f.removed {
		must(t, w.PutRemovedMember(id))
	}
	for _, a := range f.alarms {
		must(t, w.PutAlarm(a.MemberID, a.Alarm))
	}
	for _, u := range f.users {
		must(t, w.PutAuthUser(u.Name, u.User))
	}
	for _, r := range f.roles {
		must(t, w.PutAuthRole(r.Name, r.Role))
	}
	must(t, w.SetAuth(f.authOn, f.authRev))
	must(t, w.SetMeta(f.meta)) // replaces the first SetMeta
	if _, err := w.WriteTo(new(bytes.Buffer)); !errors.Is(err, ErrNotFinished) {
		t.Fatalf("WriteTo before Finish: %v, want ErrNotFinished", err)
	}
	must(t, w.Finish())
	if err := w.PutLease(Lease{ID: 1}); !errors.Is(err, ErrFinished) {
		t.Fatalf("PutLease after Finish: %v, want ErrFinished", err)
	}

	path := filepath.Join(dir, "snap.db")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := w.WriteTo(out)
	if err != nil {
		t.Fatal(err)
	}
	must(t, out.Close())
	if n != w.Size() {
		t.Fatalf("WriteTo wrote %d bytes, Size says %d", n, w.Size())
	}
	if n%512 != 32 {
		t.Fatalf("snapshot size %d: size %% 512 = %d, want 32", n, n%512)
	}
	return path
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readKVs returns the key bucket of r.
func readKVs(t testing.TB, r *Reader) []entry {
	t.Helper()
	var out []entry
	err := r.ForEachKV(func(rev Revision, tombstone bool, kv []byte) error {
		var m mvccpb.KeyValue
		if err := proto.Unmarshal(kv, &m); err != nil {
			return err
		}
		out = append(out, entry{Rev: rev, Tombstone: tombstone, KV: &m})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffEntries(t testing.TB, got, want []entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("key bucket has %d records, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.Rev != w.Rev || g.Tombstone != w.Tombstone || !proto.Equal(g.KV, w.KV) {
			t.Fatalf("record %d: got rev %+v tombstone %v %v; want rev %+v tombstone %v %v",
				i, g.Rev, g.Tombstone, g.KV, w.Rev, w.Tombstone, w.KV)
		}
	}
}

func (f *fixture) check(t *testing.T, r *Reader) {
	t.Helper()
	diffEntries(t, readKVs(t, r), f.hist.entries)

	var leases []Lease
	must(t, r.ForEachLease(func(l Lease) error { leases = append(leases, l); return nil }))
	if !reflect.DeepEqual(leases, f.leases) {
		t.Errorf("leases: got %+v, want %+v", leases, f.leases)
	}
	members, err := r.Members()
	must(t, err)
	if !reflect.DeepEqual(members, f.members) {
		t.Errorf("members: got %+v, want %+v", members, f.members)
	}
	removed, err := r.RemovedMembers()
	must(t, err)
	if !reflect.DeepEqual(removed, f.removed) {
		t.Errorf("removed members: got %x, want %x", removed, f.removed)
	}
	alarms, err := r.Alarms()
	must(t, err)
	if !reflect.DeepEqual(alarms, f.alarms) {
		t.Errorf("alarms: got %+v, want %+v", alarms, f.alarms)
	}
	users, err := r.AuthUsers()
	must(t, err)
	roles, err := r.AuthRoles()
	must(t, err)
	if !reflect.DeepEqual(users, f.users) || !reflect.DeepEqual(roles, f.roles) {
		t.Errorf("auth: got users %q roles %q, want %q %q", users, roles, f.users, f.roles)
	}
	on, rev, err := r.Auth()
	must(t, err)
	if on != f.authOn || rev != f.authRev {
		t.Errorf("auth: got enabled %v revision %d, want %v %d", on, rev, f.authOn, f.authRev)
	}

	meta, err := r.Meta()
	must(t, err)
	if !proto.Equal(meta.ConfState, f.meta.ConfState) {
		t.Errorf("confState: got %v, want %v", meta.ConfState, f.meta.ConfState)
	}
	wantMeta := f.meta
	meta.ConfState, wantMeta.ConfState = nil, nil
	if meta != wantMeta {
		t.Errorf("meta: got %+v, want %+v", meta, wantMeta)
	}

	st, err := r.Status()
	must(t, err)
	wantKeys := len(f.hist.entries) + len(f.leases) + len(f.members) + len(f.removed) + len(f.alarms) +
		len(f.users) + len(f.roles) + 2 /* authEnabled, authRevision */ + 1 /* storageVersion */ + f.metaKeys
	if st.Revision != f.hist.rev || st.TotalKey != wantKeys || st.Version != StorageVersion || st.TotalSize%4096 != 0 {
		t.Errorf("status %+v: want revision %d, %d keys, version %s, page-aligned size", st, f.hist.rev, wantKeys, StorageVersion)
	}
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(1, 3000, 700)
	t.Logf("%d records, revision %d", len(f.hist.entries), f.hist.rev)
	dir := t.TempDir()
	path := f.write(t, dir, nil)
	r, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f.check(t, r)

	// Only the snapshot itself is left: the writer removed its database.
	ents, err := os.ReadDir(dir)
	must(t, err)
	if len(ents) != 1 {
		t.Errorf("dir holds %d files after Close, want only the snapshot", len(ents))
	}
}

func TestRoundTripAnyOrder(t *testing.T) {
	f := newFixture(2, 2000, 300)
	order := make([]int, len(f.hist.entries))
	for i := range order {
		order[i] = len(order) - 1 - i
	}
	path := f.write(t, t.TempDir(), order)
	r, err := Open(path, false)
	must(t, err)
	defer r.Close()
	f.check(t, r)
}

// TestDeterministic: the same input gives the same file, so the same
// revision-ordered state always hashes the same.
func TestDeterministic(t *testing.T) {
	f := newFixture(3, 500, 100)
	a, err := os.ReadFile(f.write(t, t.TempDir(), nil))
	must(t, err)
	b, err := os.ReadFile(f.write(t, t.TempDir(), nil))
	must(t, err)
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same snapshot differ")
	}
}

func TestCorruptionDetected(t *testing.T) {
	f := newFixture(4, 1000, 200)
	path := f.write(t, t.TempDir(), nil)
	orig, err := os.ReadFile(path)
	must(t, err)

	for _, off := range []int{4096 + 100, len(orig) / 2, len(orig) - 1 /* in the trailer */} {
		bad := bytes.Clone(orig)
		bad[off] ^= 0x40
		must(t, os.WriteFile(path, bad, 0o600))
		_, err := Open(path, false)
		if !errors.Is(err, ErrIntegrity) {
			t.Fatalf("byte %d flipped: Open = %v, want ErrIntegrity", off, err)
		}
		t.Logf("byte %d flipped: %v", off, err)
	}

	// Without its trailer the file is a bare database: refused unless the
	// check is skipped, then read as before.
	must(t, os.WriteFile(path, orig[:len(orig)-32], 0o600))
	if _, err := Open(path, false); !errors.Is(err, ErrMissingHash) {
		t.Fatalf("Open without trailer = %v, want ErrMissingHash", err)
	}
	r, err := Open(path, true)
	must(t, err)
	defer r.Close()
	f.check(t, r)

	// A damaged trailer passes when the check is skipped.
	bad := bytes.Clone(orig)
	bad[len(bad)-1] ^= 1
	must(t, os.WriteFile(path, bad, 0o600))
	r2, err := Open(path, true)
	must(t, err)
	defer r2.Close()
	f.check(t, r2)
}

func TestEmptySnapshot(t *testing.T) {
	w, err := NewWriter(t.TempDir())
	must(t, err)
	defer w.Close()
	must(t, w.Finish())
	path := filepath.Join(t.TempDir(), "empty.db")
	out, err := os.Create(path)
	must(t, err)
	_, err = w.WriteTo(out)
	must(t, err)
	must(t, out.Close())

	r, err := Open(path, false)
	must(t, err)
	defer r.Close()
	st, err := r.Status()
	must(t, err)
	// storageVersion and authRevision, as a fresh etcd store holds.
	if st.Revision != 0 || st.TotalKey != 2 || st.Version != StorageVersion {
		t.Errorf("empty snapshot status %+v", st)
	}
	meta, err := r.Meta()
	must(t, err)
	if !reflect.DeepEqual(meta, Meta{}) {
		t.Errorf("empty snapshot meta %+v", meta)
	}
}

func TestInvalidInput(t *testing.T) {
	w, err := NewWriter(t.TempDir())
	must(t, err)
	defer w.Close()
	for name, err := range map[string]error{
		"negative revision": w.PutKV(Revision{Main: -1}, false, []byte{1}),
		"empty kv":          w.PutKV(Revision{Main: 2}, false, nil),
		"lease 0":           w.PutLease(Lease{TTL: 5}),
		"member 0":          w.PutMember(Member{Name: "x"}),
		"alarm NONE":        w.PutAlarm(1, etcdserverpb.AlarmType_NONE),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRevisionKey(t *testing.T) {
	for _, tc := range []struct {
		rev       Revision
		tombstone bool
		hex       string
	}{
		{Revision{Main: 2}, false, "0000000000000002" + "5f" + "0000000000000000"},
		{Revision{Main: 0x0102030405060708, Sub: 3}, true, "0102030405060708" + "5f" + "0000000000000003" + "74"},
	} {
		k := appendRevKey(nil, tc.rev, tc.tombstone)
		if got := bytesHex(k); got != tc.hex {
			t.Errorf("key of %+v tombstone %v = %s, want %s", tc.rev, tc.tombstone, got, tc.hex)
		}
		rev, tomb, err := parseRevKey(k)
		if err != nil || rev != tc.rev || tomb != tc.tombstone {
			t.Errorf("parse %s = %+v %v %v", tc.hex, rev, tomb, err)
		}
	}
	for _, bad := range [][]byte{make([]byte, 16), append(make([]byte, 17), 'x'), make([]byte, 17)} {
		if _, _, err := parseRevKey(bad); err == nil {
			t.Errorf("parse %x accepted", bad)
		}
	}
}

func bytesHex(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// BenchmarkWriter measures bulk loading: b.N revisions of 100-byte values in
// revision order, then Finish and WriteTo.
func BenchmarkWriter(b *testing.B) {
	w, err := NewWriter(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	kv := &mvccpb.KeyValue{Value: bytes.Repeat([]byte("v"), 100), Version: 1}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		kv.Key = []byte("bench/key/" + string(rune('a'+i%26)) + bytesHex(uint64Bytes(uint64(i))))
		kv.CreateRevision, kv.ModRevision = int64(i+2), int64(i+2)
		if err := w.PutKV(Revision{Main: int64(i + 2)}, false, mustMarshal(kv)); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Finish(); err != nil {
		b.Fatal(err)
	}
	n, err := w.WriteTo(discard{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/float64(b.N), "file-bytes/op")
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
