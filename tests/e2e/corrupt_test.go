package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

// corruptValue rewrites, in a stopped cairn member's data dir, the value
// stored for every revision of key: the data is wrong, yet every file is
// intact, so only a comparison with the peers can tell.
func corruptValue(t *testing.T, dataDir, key string) {
	t.Helper()
	eng, err := storage.Open(filepath.Join(dataDir, "member"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	lo, hi := storage.KVSpan()
	it, err := eng.DB().NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	b := eng.DB().NewBatch()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		var kv mvccpb.KeyValue
		if err := proto.Unmarshal(it.Value(), &kv); err != nil {
			t.Fatal(err)
		}
		if string(kv.Key) != key {
			continue
		}
		kv.Value = append(kv.Value, " (corrupted)"...)
		v, _ := proto.Marshal(&kv)
		if err := b.Set(append([]byte(nil), it.Key()...), v, nil); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("key %q not found in %s", key, dataDir)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptionChecks: a member whose data silently differs from its
// peers' refuses to start with the initial check, and without it is
// found by the leader's periodic check, which raises the CORRUPT alarm
// and stops writes.
func TestCorruptionChecks(t *testing.T) {
	if Kind() != KindCairn {
		t.Skip("corrupts cairn's data files")
	}
	c := StartCluster(t, 3, "--experimental-corrupt-check-time=500ms")
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, k := range []string{"a", "b", "c"} {
		if _, err := cli.Put(ctx, k, "v-"+k); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitHashKVEqual()
	lead := c.Leader()
	var f *Member
	for _, m := range c.Members {
		if m != lead {
			f = m
			break
		}
	}
	f.Stop()
	corruptValue(t, f.DataDir(), "b")

	ExpectStartFailure(t, MemberConfig{Name: f.Name(), DataDir: f.DataDir(), Flags: []string{"--experimental-initial-corrupt-check=true"}},
		"found data inconsistency with peers")

	f.Restart()
	waitFor(t, 30*time.Second, "the CORRUPT alarm for the corrupted member", func() bool {
		resp, err := cli.AlarmList(ctx)
		if err != nil {
			return false
		}
		for _, a := range resp.Alarms {
			if a.Alarm == etcdserverpb.AlarmType_CORRUPT && a.MemberID == f.MemberID {
				return true
			}
		}
		return false
	})
	if _, err := cli.Put(ctx, "d", "x"); err == nil || err.Error() != rpctypes.ErrCorrupt.Error() {
		t.Errorf("put with the CORRUPT alarm raised: %v, want %v", err, rpctypes.ErrCorrupt)
	}
}
