package robustness

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/tests/e2e"
)

// Regressions the scenarios found, each reduced to its shortest
// deterministic form against a real server.

// TestWatchFromCompactionRevision: a watch from exactly the compaction
// revision gets the delete at that revision (stutter-leader, randomized
// run; the same bug as etcd-io/etcd#18089; fixed in d0f288d).
func TestWatchFromCompactionRevision(t *testing.T) {
	if e2e.Kind() != e2e.KindCairn {
		t.Skip("Debian's etcd 3.4.23 predates the fix of etcd-io/etcd#18089")
	}
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cli := m.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range []string{"a", "b"} {
		if _, err := cli.Put(ctx, "key1", v); err != nil {
			t.Fatal(err)
		}
	}
	d, err := cli.Delete(ctx, "key1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "key1", "c"); err != nil {
		t.Fatal(err)
	}
	rev := d.Header.Revision
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	wr := <-cli.Watch(ctx, "key", clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err := wr.Err(); err != nil {
		t.Fatalf("watch from the compaction revision %d: %v", rev, err)
	}
	var got []string
	for _, ev := range wr.Events {
		got = append(got, Event{Delete: ev.Type == clientv3.EventTypeDelete, KV: toKV(ev.Kv)}.String())
	}
	if len(wr.Events) != 2 || wr.Events[0].Type != clientv3.EventTypeDelete || wr.Events[0].Kv.ModRevision != rev ||
		wr.Events[1].Type != clientv3.EventTypePut || string(wr.Events[1].Kv.Value) != "c" {
		t.Fatalf("watch from the compaction revision %d got %q, want the delete at %d and the put of c", rev, got, rev)
	}
}
