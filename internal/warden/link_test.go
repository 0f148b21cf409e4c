package warden

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/e2e"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

// get returns key's value and lease ("" and 0 if absent).
func get(t *testing.T, cli *clientv3.Client, key string) (string, clientv3.LeaseID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return "", 0
	}
	return string(resp.Kvs[0].Value), clientv3.LeaseID(resp.Kvs[0].Lease)
}

func waitKey(t *testing.T, cli *clientv3.Client, key, desc string, cond func(value string, lease clientv3.LeaseID) bool) (string, clientv3.LeaseID) {
	t.Helper()
	var v string
	var l clientv3.LeaseID
	waitUntil(t, desc, func() bool { v, l = get(t, cli, key); return cond(v, l) })
	return v, l
}

// TestLink: writes go under the warden's lease; fenced writes only while
// the fence holds; deletes spare keys of other leases; a lost lease is
// replaced and every wanted key written again.
func TestLink(t *testing.T) {
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cli := m.Client()
	ctx := context.Background()
	l := newLink(m.NewClient(), 3*time.Second, zaptest.NewLogger(t))
	defer l.shutdown(5 * time.Second)

	l.Put("/services/a", "one", nil)
	_, lease1 := waitKey(t, cli, "/services/a", "the first write", func(v string, _ clientv3.LeaseID) bool { return v == "one" })
	if lease1 == 0 {
		t.Fatal("written without a lease")
	}

	// Fence: a key whose create revision we hold.
	fr, err := cli.Put(ctx, "/elect/x", "w1")
	if err != nil {
		t.Fatal(err)
	}
	fence := &Fence{Key: "/elect/x", Rev: fr.Header.Revision}
	l.Put("/services/b", "fenced", fence)
	waitKey(t, cli, "/services/b", "the fenced write", func(v string, _ clientv3.LeaseID) bool { return v == "fenced" })
	if ok, err := l.CheckFence(ctx, *fence); !ok || err != nil {
		t.Errorf("CheckFence = %v, %v; want true", ok, err)
	}
	// The fence key is recreated (another leader): the write must not happen.
	if _, err := cli.Delete(ctx, "/elect/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/elect/x", "w2"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.CheckFence(ctx, *fence); ok {
		t.Errorf("CheckFence holds after the key was recreated")
	}
	l.Put("/services/b", "stale", fence)
	l.Put("/services/c", "marker", nil) // written after b's attempt
	waitKey(t, cli, "/services/c", "the marker", func(v string, _ clientv3.LeaseID) bool { return v == "marker" })
	if v, _ := get(t, cli, "/services/b"); v != "fenced" {
		t.Errorf("fenced write went through after the fence changed: %q", v)
	}

	// Delete spares a key written by someone else.
	if _, err := cli.Put(ctx, "/services/other", "theirs"); err != nil {
		t.Fatal(err)
	}
	l.Delete("/services/other")
	l.Delete("/services/c")
	waitKey(t, cli, "/services/c", "the delete", func(v string, _ clientv3.LeaseID) bool { return v == "" })
	if v, _ := get(t, cli, "/services/other"); v != "theirs" {
		t.Errorf("deleted another writer's key: %q", v)
	}

	// The lease is revoked behind the link's back: a new one, keys again.
	if _, err := cli.Revoke(ctx, lease1); err != nil {
		t.Fatal(err)
	}
	_, lease2 := waitKey(t, cli, "/services/a", "the key rewritten under a new lease", func(v string, l clientv3.LeaseID) bool {
		return v == "one" && l != 0 && l != lease1
	})

	// Shutdown revokes the lease: the keys go.
	l.shutdown(5 * time.Second)
	if v, _ := get(t, cli, "/services/a"); v != "" {
		t.Errorf("key still there after shutdown: %q", v)
	}
	ttl, err := cli.TimeToLive(ctx, lease2)
	if err != nil || ttl.TTL != -1 {
		t.Errorf("lease after shutdown: %v %v", ttl, err)
	}
}
