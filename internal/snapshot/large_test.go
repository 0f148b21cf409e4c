//go:build linux

package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// TestLargeSnapshot bulk-loads CAIRN_SNAPSHOT_LARGE_KEYS revisions (e.g.
// 2000000), reads them back and compares the status with etcdctl's. It is
// skipped unless the variable is set: it needs about 200 bytes of disk per
// key, twice.
func TestLargeSnapshot(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CAIRN_SNAPSHOT_LARGE_KEYS"))
	if n <= 0 {
		t.Skip("set CAIRN_SNAPSHOT_LARGE_KEYS to run")
	}
	dir := t.TempDir()
	start := time.Now()
	w, err := NewWriter(dir)
	must(t, err)
	defer w.Close()
	kv := &mvccpb.KeyValue{Value: make([]byte, 100)}
	for i := range n {
		// Every key is written twice, the second time 1000 revisions later.
		k := i
		kv.Version = 1
		if i >= 1000 && i%2 == 0 {
			k, kv.Version = i-1000, 2
		}
		kv.Key = fmt.Appendf(kv.Key[:0], "/registry/large/%09d", k)
		kv.CreateRevision, kv.ModRevision = int64(k+2), int64(i+2)
		must(t, w.PutKV(Revision{Main: int64(i + 2)}, false, mustMarshal(kv)))
	}
	must(t, w.Finish())
	path := filepath.Join(dir, "large.db")
	out, err := os.Create(path)
	must(t, err)
	size, err := w.WriteTo(out)
	must(t, err)
	must(t, out.Close())
	must(t, w.Close())
	t.Logf("wrote %d revisions, %d bytes, in %v", n, size, time.Since(start))

	start = time.Now()
	r, err := Open(path, false)
	must(t, err)
	defer r.Close()
	count, next := 0, int64(2)
	must(t, r.ForEachKV(func(rev Revision, tombstone bool, kv []byte) error {
		if rev.Main != next || rev.Sub != 0 || tombstone || len(kv) == 0 {
			return fmt.Errorf("record %d: revision %+v tombstone %v", count, rev, tombstone)
		}
		count++
		next++
		return nil
	}))
	if count != n {
		t.Fatalf("read %d records, wrote %d", count, n)
	}
	t.Logf("verified and read back in %v", time.Since(start))
	if _, etcdctl := etcdToolsOrEmpty(); etcdctl != "" {
		compareStatus(t, r, etcdctl, path)
	}
}
