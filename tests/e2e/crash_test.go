package e2e

import (
	"context"
	"fmt"
	"path"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// writerLog is what one load goroutine knows about its writes: the ones
// acknowledged (in order, with their revision) and the one that failed, if
// any, whose fate is unknown.
type writerLog struct {
	acked    []int64 // acked[n] is the revision of write n
	inFlight bool    // write len(acked) was sent and not acknowledged
}

// TestCrashUnderLoad kills a member with SIGKILL while several clients write
// and checks, after a restart, the durability contract: every acknowledged
// write is there with its value and revision; a write whose acknowledgment
// was lost may or may not be there but is never partial (a two-key txn is
// both keys or neither) and nothing that was never sent appears; revisions
// continue past everything seen; a lease granted before the crash survives
// with no more than its TTL left.
func TestCrashUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		rounds       = 2
		putWriters   = 3
		maxPerWriter = 5000
		killAfter    = 300 // acknowledged writes per round before the kill
		loadTime     = 20 * time.Second
		leaseTTL     = 300
		opTimeout    = 5 * time.Second
	)
	m := StartMember(t, MemberConfig{})
	cli := m.Client()

	lease, err := cli.Grant(tctx(t), leaseTTL)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, cli, "leased", "l", clientv3.WithLease(lease.ID))

	var maxSeen int64
	for round := range rounds {
		putKey := func(w, n int) string { return fmt.Sprintf("crash/%d/put%d/%06d", round, w, n) }
		putVal := func(w, n int) string { return fmt.Sprintf("r%d-w%d-n%d", round, w, n) }
		txnKey := func(side string, n int) string { return fmt.Sprintf("crash/%d/txn/%s/%06d", round, side, n) }

		logs := make([]writerLog, putWriters+1) // the last one writes txns
		var total atomic.Int64
		stop := make(chan struct{})
		loadCtx, cancelLoad := context.WithTimeout(context.Background(), loadTime+opTimeout)
		var wg sync.WaitGroup
		for w := range putWriters + 1 {
			wcli := m.NewClient()
			wg.Go(func() {
				l := &logs[w]
				for n := 0; n < maxPerWriter; n++ {
					select {
					case <-stop:
						return
					case <-loadCtx.Done():
						return
					default:
					}
					ctx, cancel := context.WithTimeout(loadCtx, opTimeout)
					var rev int64
					var err error
					if w < putWriters {
						var r *clientv3.PutResponse
						if r, err = wcli.Put(ctx, putKey(w, n), putVal(w, n)); err == nil {
							rev = r.Header.Revision
						}
					} else {
						var r *clientv3.TxnResponse
						v := fmt.Sprint(n)
						if r, err = wcli.Txn(ctx).Then(clientv3.OpPut(txnKey("a", n), v), clientv3.OpPut(txnKey("b", n), v)).Commit(); err == nil {
							rev = r.Header.Revision
						}
					}
					cancel()
					if err != nil {
						l.inFlight = true
						return
					}
					l.acked = append(l.acked, rev)
					total.Add(1)
				}
			})
		}

		// Kill once enough writes were acknowledged, or when the load
		// time runs out.
		killDeadline := time.Now().Add(loadTime)
		tick := time.NewTicker(10 * time.Millisecond)
		for total.Load() < killAfter && time.Now().Before(killDeadline) {
			<-tick.C
		}
		tick.Stop()
		m.Kill()
		close(stop)
		wg.Wait()
		cancelLoad()
		if total.Load() == 0 {
			t.Fatalf("round %d: no write acknowledged before the kill", round)
		}
		t.Logf("round %d: killed after %d acknowledged writes", round, total.Load())

		m.Restart()

		for w, l := range logs {
			for _, rev := range l.acked {
				maxSeen = max(maxSeen, rev)
			}
			if w < putWriters {
				r, err := cli.Get(tctx(t), fmt.Sprintf("crash/%d/put%d/", round, w), clientv3.WithPrefix())
				if err != nil {
					t.Fatal(err)
				}
				checkPutWriter(t, r, l, func(n int) string { return putKey(w, n) }, func(n int) string { return putVal(w, n) })
				for _, kv := range r.Kvs {
					maxSeen = max(maxSeen, kv.ModRevision)
				}
				continue
			}
			ra, err := cli.Get(tctx(t), fmt.Sprintf("crash/%d/txn/a/", round), clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			rb, err := cli.Get(tctx(t), fmt.Sprintf("crash/%d/txn/b/", round), clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			// Both sides must hold the same writes, each at one revision.
			bySuffix := make(map[string]*mvccpb.KeyValue, len(rb.Kvs))
			for _, kv := range rb.Kvs {
				bySuffix[path.Base(string(kv.Key))] = kv
			}
			for _, a := range ra.Kvs {
				n := path.Base(string(a.Key))
				b, ok := bySuffix[n]
				if !ok {
					t.Errorf("round %d: txn %s wrote a without b", round, n)
					continue
				}
				delete(bySuffix, n)
				if string(a.Value) != string(b.Value) || a.ModRevision != b.ModRevision {
					t.Errorf("round %d: txn %s halves differ: %s@%d vs %s@%d", round, n, a.Value, a.ModRevision, b.Value, b.ModRevision)
				}
			}
			for n := range bySuffix {
				t.Errorf("round %d: txn %s wrote b without a", round, n)
			}
			checkPutWriter(t, ra, l, func(n int) string { return txnKey("a", n) }, func(n int) string { return fmt.Sprint(n) })
			for _, kv := range ra.Kvs {
				maxSeen = max(maxSeen, kv.ModRevision)
			}
		}

		// Revisions continue past everything seen.
		if rev := mustPut(t, cli, fmt.Sprintf("crash/%d/after", round), "x"); rev <= maxSeen {
			t.Errorf("round %d: first put after restart got revision %d, but revision %d was seen before", round, rev, maxSeen)
		} else {
			maxSeen = rev
		}

		// The lease survived; its remaining TTL never exceeds the granted.
		ttl, err := cli.TimeToLive(tctx(t), lease.ID, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		if ttl.TTL <= 0 || ttl.TTL > leaseTTL || ttl.GrantedTTL != leaseTTL || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "leased" {
			t.Errorf("round %d: lease after crash: TTL %d granted %d keys %q; want 0 < TTL <= %d, the key 'leased'", round, ttl.TTL, ttl.GrantedTTL, ttl.Keys, leaseTTL)
		}
	}
}

// checkPutWriter checks one writer's keys after the crash: writes 0..n-1
// acknowledged are all there with their value and revision; write n (in
// flight at the crash) may be there with its value; nothing else is.
func checkPutWriter(t *testing.T, r *clientv3.GetResponse, l writerLog, key, value func(int) string) {
	t.Helper()
	byKey := make(map[string]int, len(r.Kvs))
	for i, kv := range r.Kvs {
		byKey[string(kv.Key)] = i
	}
	for n, rev := range l.acked {
		i, ok := byKey[key(n)]
		if !ok {
			t.Errorf("acknowledged write %s (revision %d) lost", key(n), rev)
			continue
		}
		kv := r.Kvs[i]
		if string(kv.Value) != value(n) || kv.ModRevision != rev || kv.CreateRevision != rev || kv.Version != 1 {
			t.Errorf("acknowledged write %s=%s@%d reads back as %q mod %d create %d version %d",
				key(n), value(n), rev, kv.Value, kv.ModRevision, kv.CreateRevision, kv.Version)
		}
		delete(byKey, key(n))
	}
	n := len(l.acked)
	if i, ok := byKey[key(n)]; ok {
		if !l.inFlight {
			t.Errorf("write %s present but never sent", key(n))
		} else if got := string(r.Kvs[i].Value); got != value(n) {
			t.Errorf("unacknowledged write %s present with value %q, want %q", key(n), got, value(n))
		}
		delete(byKey, key(n))
	}
	var extra []string
	for k := range byKey {
		extra = append(extra, k)
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("%d keys present that were never written: %v", len(extra), extra)
	}
}
