package e2e

import (
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// TestRestart stops a member gracefully, starts it again on the same data
// dir and checks that everything a client can observe survived: keys and
// their metadata, the revision, the compaction, history, the hash, leases.
func TestRestart(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	cli := m.Client()

	lease, err := cli.Grant(tctx(t), 600)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		mustPut(t, cli, "r/k", fmt.Sprint(i)) // revs 2..6
	}
	mustPut(t, cli, "r/leased", "l", clientv3.WithLease(lease.ID)) // rev 7
	mustPut(t, cli, "r/gone", "x")                                 // rev 8
	mustDel(t, cli, "r/gone")                                      // rev 9
	if _, err := cli.Compact(tctx(t), 4); err != nil {
		t.Fatal(err)
	}
	before, err := cli.Get(tctx(t), "r/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	hashBefore, err := cli.HashKV(tctx(t), m.ClientURL, 0)
	if err != nil {
		t.Fatal(err)
	}

	// No subtests: Stop, Kill and Restart report to the member's test.
	for _, how := range []string{"stop", "kill"} {
		func() {
			if how == "stop" {
				m.Stop()
			} else {
				m.Kill()
			}
			m.Restart()

			after, err := cli.Get(tctx(t), "r/", clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			if after.Header.Revision != 9 || len(after.Kvs) != len(before.Kvs) {
				t.Fatalf("after %s+restart: revision %d, %d keys; before: revision %d, %d keys", how,
					after.Header.Revision, len(after.Kvs), before.Header.Revision, len(before.Kvs))
			}
			for i := range after.Kvs {
				if a, b := kvString(after.Kvs[i]), kvString(before.Kvs[i]); a != b {
					t.Errorf("kv changed by %s+restart:\n before %v\n after  %v", how, b, a)
				}
			}
			h, err := cli.HashKV(tctx(t), m.ClientURL, 0)
			if err != nil {
				t.Fatal(err)
			}
			if h.Hash != hashBefore.Hash || h.CompactRevision != 4 {
				t.Errorf("hashkv after %s+restart: hash %d compact %d; before %d compact %d", how, h.Hash, h.CompactRevision, hashBefore.Hash, hashBefore.CompactRevision)
			}
			// The compaction survived, and the history after it.
			_, err = cli.Get(tctx(t), "r/k", clientv3.WithRev(3))
			expectRPCError(t, err, rpctypes.ErrCompacted, codes.OutOfRange)
			if r, err := cli.Get(tctx(t), "r/gone", clientv3.WithRev(8)); err != nil || len(r.Kvs) != 1 {
				t.Errorf("history at revision 8 after %s+restart: %v %v", how, r, err)
			}
			// The lease survived with its keys; its remaining TTL may have
			// been reset but never beyond the granted TTL.
			ttl, err := cli.TimeToLive(tctx(t), lease.ID, clientv3.WithAttachedKeys())
			if err != nil || ttl.TTL <= 0 || ttl.TTL > 600 || ttl.GrantedTTL != 600 || len(ttl.Keys) != 1 {
				t.Errorf("lease after %s+restart: %+v %v", how, ttl, err)
			}
		}()
	}

	// Revisions continue.
	if rev := mustPut(t, cli, "r/new", "n"); rev != 10 {
		t.Errorf("first put after restarts: revision %d, want 10", rev)
	}
	requireEtcdctl(t)
	m.ExpectCtl(t, "r/k\n4\n", "get", "r/k")
	m.ExpectCtl(t, "r/k\n2\n", "get", "r/k", "--rev", "4")
}

// kvString renders every field of a key-value.
func kvString(kv *mvccpb.KeyValue) string {
	return fmt.Sprintf("%q=%q create %d mod %d version %d lease %x", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
}
