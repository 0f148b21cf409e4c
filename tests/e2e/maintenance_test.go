package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// versionRE matches a version string etcd clients accept.
const versionRE = `3\.\d+\.\d+`

type ctlStatus struct {
	Endpoint string `json:"Endpoint"`
	Status   struct {
		Header           ctlHeader `json:"header"`
		Version          string    `json:"version"`
		DbSize           int64     `json:"dbSize"`
		Leader           uint64    `json:"leader"`
		RaftIndex        uint64    `json:"raftIndex"`
		RaftTerm         uint64    `json:"raftTerm"`
		RaftAppliedIndex uint64    `json:"raftAppliedIndex"`
		DbSizeInUse      int64     `json:"dbSizeInUse"`
		IsLearner        bool      `json:"isLearner"`
		Errors           []string  `json:"errors"`
	} `json:"Status"`
}

type ctlHashKV struct {
	Endpoint string `json:"Endpoint"`
	HashKV   struct {
		Header          ctlHeader `json:"header"`
		Hash            uint32    `json:"hash"`
		CompactRevision int64     `json:"compact_revision"`
	} `json:"HashKV"`
}

func TestEndpointEtcdctl(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	requireEtcdctl(t)
	cli := m.Client()
	for i := range 3 {
		mustPut(t, cli, fmt.Sprintf("k%d", i), "v") // revs 2..4
	}

	t.Run("status", func(t *testing.T) {
		// endpoint, id, version, db size, is leader, is learner, raft term,
		// raft index, raft applied index, errors (none: empty, with the
		// trailing ", ").
		re := regexp.MustCompile(fmt.Sprintf(`^%s, %x, (%s), ([\d.]+ [kMG]?B), true, false, (\d+), (\d+), (\d+), \n$`,
			regexp.QuoteMeta(m.ClientURL), m.MemberID, versionRE))
		out := m.Ctl(t, "endpoint", "status")
		if !re.MatchString(out) {
			t.Errorf("endpoint status: %q, want match for %q", out, re)
		}

		var st []ctlStatus
		m.CtlJSON(t, &st, "endpoint", "status")
		if len(st) != 1 {
			t.Fatalf("endpoint status json: %+v", st)
		}
		s := st[0].Status
		if st[0].Endpoint != m.ClientURL || s.Header.MemberID != m.MemberID || s.Header.ClusterID != m.ClusterID ||
			s.Header.Revision != 4 || s.Leader != m.MemberID || s.IsLearner || len(s.Errors) != 0 {
			t.Errorf("endpoint status json: %+v", st[0])
		}
		if !regexp.MustCompile(`^` + versionRE).MatchString(s.Version) {
			t.Errorf("version %q, want 3.x.y", s.Version)
		}
		if s.DbSize <= 0 || s.DbSizeInUse <= 0 || s.DbSizeInUse > s.DbSize {
			t.Errorf("dbSize %d, dbSizeInUse %d: want 0 < in use <= size", s.DbSize, s.DbSizeInUse)
		}
		if s.RaftTerm < 1 || s.RaftTerm != s.Header.RaftTerm || s.RaftIndex < 4 || s.RaftAppliedIndex > s.RaftIndex || s.RaftAppliedIndex == 0 {
			t.Errorf("raft term %d (header %d), index %d, applied %d", s.RaftTerm, s.Header.RaftTerm, s.RaftIndex, s.RaftAppliedIndex)
		}

		// The same through the client.
		r, err := cli.Status(tctx(t), m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		if r.Leader != m.MemberID || r.Version != s.Version || r.RaftTerm != s.RaftTerm {
			t.Errorf("client status %+v, etcdctl %+v", r, s)
		}
	})

	t.Run("health", func(t *testing.T) {
		// etcdctl 3.4 prints the health line on stderr.
		out, errOut, err := m.Etcdctl("endpoint", "health")
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^%s is healthy: successfully committed proposal: took = \S+$`, regexp.QuoteMeta(m.ClientURL)))
		if err != nil || !re.MatchString(out+errOut) {
			t.Errorf("endpoint health: err %v, stdout %q, stderr %q; want match for %q", err, out, errOut, re)
		}
		var h []struct {
			Endpoint string `json:"endpoint"`
			Health   bool   `json:"health"`
			Took     string `json:"took"`
			Error    string `json:"error"`
		}
		m.CtlJSON(t, &h, "endpoint", "health")
		if len(h) != 1 || h[0].Endpoint != m.ClientURL || !h[0].Health || h[0].Took == "" || h[0].Error != "" {
			t.Errorf("endpoint health json: %+v", h)
		}
	})

	t.Run("hashkv", func(t *testing.T) {
		hash := func(args ...string) ctlHashKV {
			t.Helper()
			var hk []ctlHashKV
			m.CtlJSON(t, &hk, append([]string{"endpoint", "hashkv"}, args...)...)
			if len(hk) != 1 || hk[0].Endpoint != m.ClientURL || hk[0].HashKV.Header.MemberID != m.MemberID {
				t.Fatalf("hashkv json: %+v", hk)
			}
			return hk[0]
		}
		h1 := hash()
		// Never compacted: etcd reports compact_revision -1.
		if h1.HashKV.Header.Revision != 4 || h1.HashKV.CompactRevision != -1 {
			t.Errorf("hashkv: %+v", h1)
		}
		// The hash is etcd's (CRC-32C over the revision keys and the
		// encoded key-values), so the same history hashes the same on
		// etcd and on cairn: this is what etcd 3.4 gives for k0, k1, k2
		// = "v" at revisions 2, 3, 4.
		if h1.HashKV.Hash != 3194447918 {
			t.Errorf("hashkv of the fixed history: %d, etcd gives 3194447918", h1.HashKV.Hash)
		}
		m.ExpectCtl(t, fmt.Sprintf("%s, %d\n", m.ClientURL, h1.HashKV.Hash), "endpoint", "hashkv")
		if h := hash(); h.HashKV.Hash != h1.HashKV.Hash {
			t.Errorf("hash changed without writes: %d then %d", h1.HashKV.Hash, h.HashKV.Hash)
		}
		mustPut(t, cli, "k0", "changed") // rev 5
		h2 := hash()
		if h2.HashKV.Hash == h1.HashKV.Hash || h2.HashKV.Header.Revision != 5 {
			t.Errorf("hash after a write: %+v (before %d)", h2, h1.HashKV.Hash)
		}
		// etcd 3.7 (so cairn) also says which revision it hashed; 3.4
		// has no such field.
		hr, err := cli.HashKV(tctx(t), m.ClientURL, 0)
		if err != nil {
			t.Fatal(err)
		}
		wantHashRev := hr.Header.Revision
		if Kind() == KindEtcd {
			wantHashRev = 0
		}
		if hr.HashRevision != wantHashRev || hr.Hash != h2.HashKV.Hash {
			t.Errorf("HashKV via client: hash %d hash_revision %d; want %d, %d", hr.Hash, hr.HashRevision, h2.HashKV.Hash, wantHashRev)
		}
		// The hash at a revision does not depend on later writes.
		if h := hash("--rev", "4"); h.HashKV.Hash != h1.HashKV.Hash {
			t.Errorf("hashkv --rev 4 = %d, hash at revision 4 was %d", h.HashKV.Hash, h1.HashKV.Hash)
		}
	})

	t.Run("alarm", func(t *testing.T) {
		m.ExpectCtl(t, "", "alarm", "list")
		m.ExpectCtl(t, "", "alarm", "disarm")
		r, err := cli.AlarmList(tctx(t))
		if err != nil || len(r.Alarms) != 0 {
			t.Errorf("alarm list: %+v %v", r, err)
		}
	})

	t.Run("defrag", func(t *testing.T) {
		m.ExpectCtl(t, fmt.Sprintf("Finished defragmenting etcd member[%s]\n", m.ClientURL), "defrag")
		if _, err := cli.Defragment(tctx(t), m.ClientURL); err != nil {
			t.Error(err)
		}
		m.ExpectCtl(t, "k0\nchanged\n", "get", "k0")
	})
}

// TestSnapshot saves a snapshot with etcdctl, checks it with etcdctl
// snapshot status, restores it with etcdctl snapshot restore and serves the
// restored data dir with etcd itself: the file must be an etcd snapshot.
func TestSnapshot(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	requireEtcdctl(t)
	cli := m.Client()
	lease, err := cli.Grant(tctx(t), 3600)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		mustPut(t, cli, fmt.Sprintf("snap/%02d", i), fmt.Sprintf("value-%d", i)) // revs 2..11
	}
	mustPut(t, cli, "snap/leased", "l", clientv3.WithLease(lease.ID)) // rev 12
	mustDel(t, cli, "snap/00")                                        // rev 13
	if _, err := cli.Compact(tctx(t), 5); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "snap.db")
	m.ExpectCtl(t, fmt.Sprintf("Snapshot saved at %s\n", file), "snapshot", "save", file)
	m.ExpectCtl(t, "OK\n", "put", "snap/after", "x") // not in the snapshot

	var st struct {
		Hash      uint32 `json:"hash"`
		Revision  int64  `json:"revision"`
		TotalKey  int    `json:"totalKey"`
		TotalSize int64  `json:"totalSize"`
	}
	out := m.Ctl(t, "snapshot", "status", file, "-w", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("snapshot status json %q: %v", out, err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	// etcdctl reports the revision of the last key in the snapshot and
	// counts every bbolt key (ours and etcd's bookkeeping), so only the
	// revision is exact.
	if st.Revision != 13 || st.TotalKey < 11 || st.TotalSize <= 0 || st.TotalSize > fi.Size() {
		t.Errorf("snapshot status: %+v (file size %d), want revision 13", st, fi.Size())
	}
	m.ExpectCtl(t, fmt.Sprintf("%x, 13, %d, %s\n", st.Hash, st.TotalKey, humanSize(st.TotalSize)), "snapshot", "status", file)

	// Restore with etcdctl, serve with etcd.
	if _, err := os.Stat(etcdBinary); err != nil {
		t.Skipf("restored snapshot not served: %s missing", etcdBinary)
	}
	restored := filepath.Join(t.TempDir(), "restored.data")
	peer := "http://" + freeLoopbackAddr(t)
	m.Ctl(t, "snapshot", "restore", file, "--data-dir", restored, "--name", "restored",
		"--initial-cluster", "restored="+peer, "--initial-advertise-peer-urls", peer)
	e := StartMember(t, MemberConfig{Name: "restored", Kind: KindEtcd, DataDir: restored})
	ecli := e.Client()
	r, err := ecli.Get(tctx(t), "snap/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.Revision != 13 || len(r.Kvs) != 10 {
		t.Fatalf("restored: revision %d, %d keys; want 13, 10", r.Header.Revision, len(r.Kvs))
	}
	for i, kv := range r.Kvs[:9] {
		if k, v := fmt.Sprintf("snap/%02d", i+1), fmt.Sprintf("value-%d", i+1); string(kv.Key) != k || string(kv.Value) != v || kv.ModRevision != int64(i+3) {
			t.Errorf("restored kv %d: %s=%s@%d, want %s=%s@%d", i, kv.Key, kv.Value, kv.ModRevision, k, v, i+3)
		}
	}
	if kv := r.Kvs[9]; string(kv.Key) != "snap/leased" || kv.Lease != int64(lease.ID) {
		t.Errorf("restored leased key: %+v", kv)
	}
	// The lease came along; the compaction did too.
	if ttl, err := ecli.TimeToLive(tctx(t), lease.ID); err != nil || ttl.TTL <= 0 || ttl.GrantedTTL != 3600 {
		t.Errorf("restored lease: %+v %v", ttl, err)
	}
	if _, err := ecli.Get(tctx(t), "snap/01", clientv3.WithRev(4)); err == nil {
		t.Errorf("restored store serves revision 4, compacted at 5 before the snapshot")
	}
}

// humanSize formats bytes as etcdctl does (go-humanize's Bytes: SI units,
// one decimal below 10, rounded to a tenth first).
func humanSize(n int64) string {
	if n < 10 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"B", "kB", "MB", "GB", "TB"}
	e := math.Floor(math.Log(float64(n)) / math.Log(1000))
	val := math.Floor(float64(n)/math.Pow(1000, e)*10+0.5) / 10
	if val < 10 {
		return fmt.Sprintf("%.1f %s", val, units[int(e)])
	}
	return fmt.Sprintf("%.0f %s", val, units[int(e)])
}
