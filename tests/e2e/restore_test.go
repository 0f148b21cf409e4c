package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/internal/restore"
)

// restoreFixture is a keyspace with history, a compaction and a lease,
// written through any etcd-API server, and what a restored server must
// show of it.
type restoreFixture struct {
	compactRev int64 // the compaction revision
	lastRev    int64 // the revision after the last write
	leaseID    clientv3.LeaseID
	kvs        []*mvccpb.KeyValue // every live key at lastRev
	aAfter     *mvccpb.KeyValue   // key a at compactRev+1
}

func writeRestoreFixture(t *testing.T, cli *clientv3.Client) *restoreFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := &restoreFixture{}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := cli.Put(ctx, "a", "1")
	must(err)
	_, err = cli.Put(ctx, "b", "1")
	must(err)
	r, err := cli.Put(ctx, "a", "2")
	must(err)
	f.compactRev = r.Header.Revision
	_, err = cli.Put(ctx, "a", "3")
	must(err)
	lg, err := cli.Grant(ctx, 600)
	must(err)
	f.leaseID = lg.ID
	_, err = cli.Put(ctx, "leased", "x", clientv3.WithLease(lg.ID))
	must(err)
	_, err = cli.Delete(ctx, "b")
	must(err)
	for i := 0; i < 50; i++ {
		_, err = cli.Put(ctx, fmt.Sprintf("k/%03d", i), fmt.Sprintf("v%d", i))
		must(err)
	}
	_, err = cli.Compact(ctx, f.compactRev, clientv3.WithCompactPhysical())
	must(err)
	g, err := cli.Get(ctx, "", clientv3.WithFromKey())
	must(err)
	f.kvs, f.lastRev = g.Kvs, g.Header.Revision
	a, err := cli.Get(ctx, "a", clientv3.WithRev(f.compactRev+1))
	must(err)
	f.aAfter = a.Kvs[0]
	return f
}

// check asserts that the server behind cli holds the fixture's data.
func (f *restoreFixture) check(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := cli.Get(ctx, "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	if g.Header.Revision != f.lastRev {
		t.Errorf("revision %d after restore, want %d", g.Header.Revision, f.lastRev)
	}
	if len(g.Kvs) != len(f.kvs) {
		t.Fatalf("%d keys after restore, want %d", len(g.Kvs), len(f.kvs))
	}
	for i, kv := range g.Kvs {
		w := f.kvs[i]
		if string(kv.Key) != string(w.Key) || string(kv.Value) != string(w.Value) || kv.CreateRevision != w.CreateRevision ||
			kv.ModRevision != w.ModRevision || kv.Version != w.Version || kv.Lease != w.Lease {
			t.Errorf("key %d after restore: %v, want %v", i, kv, w)
		}
	}
	// History after the compaction revision is there; before it, it is
	// compacted.
	a, err := cli.Get(ctx, "a", clientv3.WithRev(f.compactRev+1))
	if err != nil || len(a.Kvs) != 1 || string(a.Kvs[0].Value) != string(f.aAfter.Value) || a.Kvs[0].ModRevision != f.aAfter.ModRevision {
		t.Errorf("a at revision %d after restore: %v, %v; want %v", f.compactRev+1, a, err, f.aAfter)
	}
	if _, err := cli.Get(ctx, "a", clientv3.WithRev(f.compactRev-1)); err != rpctypes.ErrCompacted {
		t.Errorf("get below the compaction revision after restore: %v, want %v", err, rpctypes.ErrCompacted)
	}
	ttl, err := cli.TimeToLive(ctx, f.leaseID, clientv3.WithAttachedKeys())
	if err != nil || ttl.TTL <= 0 || ttl.GrantedTTL != 600 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "leased" {
		t.Errorf("lease %x after restore: %+v, %v; want granted 600, alive, key leased", f.leaseID, ttl, err)
	}
	// The restored store takes writes where the old one left off.
	p, err := cli.Put(ctx, "after", "restore")
	if err != nil || p.Header.Revision != f.lastRev+1 {
		t.Errorf("put after restore: %v, %v; want revision %d", p, err, f.lastRev+1)
	}
}

// TestRestoreFromEtcdSnapshot moves a real etcd's data into cairn: one
// `etcdctl snapshot save` against etcd, one restore, and every key,
// value, revision, lease and the compaction come along.
func TestRestoreFromEtcdSnapshot(t *testing.T) {
	if Kind() != KindCairn {
		t.Skip("restores into cairn")
	}
	requireEtcdctl(t)
	if _, err := os.Stat(etcdBinary); err != nil {
		t.Skipf("needs etcd (%v)", err)
	}
	src := StartMember(t, MemberConfig{Name: "etcd-src", Kind: KindEtcd})
	f := writeRestoreFixture(t, src.Client())
	snap := filepath.Join(t.TempDir(), "etcd.snap.db")
	src.Ctl(t, "snapshot", "save", snap)
	src.Stop()

	dir := filepath.Join(t.TempDir(), "restored")
	if err := restore.Restore(context.Background(), restore.Options{SnapshotPath: snap, Name: "m0", DataDir: dir}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	m := StartMember(t, MemberConfig{Name: "m0", DataDir: dir})
	f.check(t, m.Client())
	if m.ClusterID == src.ClusterID {
		t.Errorf("restored member kept the old cluster id %x", src.ClusterID)
	}
	// It survives a restart like any member.
	m.Kill()
	m.Restart()
	if _, err := m.Client().Get(context.Background(), "after"); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreCluster restores a cairn snapshot into a new 3-member
// cluster: every member has the data and they agree on it.
func TestRestoreCluster(t *testing.T) {
	if Kind() != KindCairn {
		t.Skip("restores into cairn")
	}
	src := StartMember(t, MemberConfig{Name: "src"})
	f := writeRestoreFixture(t, src.Client())
	snap := filepath.Join(t.TempDir(), "cairn.snap.db")
	out, err := os.Create(snap)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := src.Client().Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	src.Stop()

	c := StartPreparedCluster(t, 3, func(p Prepared) {
		err := restore.Restore(context.Background(), restore.Options{
			SnapshotPath: snap, Name: p.Name, DataDir: p.DataDir,
			InitialCluster: p.InitialCluster, InitialClusterToken: p.Token,
			InitialAdvertisePeerURLs: []string{p.PeerURL},
		})
		if err != nil {
			t.Fatalf("restore %s: %v", p.Name, err)
		}
	})
	f.check(t, c.Client())
	c.WaitHashKVEqual()
	for _, m := range c.Members {
		resp, err := m.Client().Get(context.Background(), "leased", clientv3.WithSerializable())
		if err != nil || len(resp.Kvs) != 1 {
			t.Errorf("member %s: leased key %v, %v", m.Name(), resp, err)
		}
		if m.ClusterID == src.ClusterID {
			t.Errorf("member %s kept the old cluster id", m.Name())
		}
	}
}
