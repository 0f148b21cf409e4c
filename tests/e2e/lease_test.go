package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

var grantedRE = regexp.MustCompile(`^lease ([0-9a-f]{16}) granted with TTL\((\d+)s\)\n$`)

// ctlGrant grants a lease with etcdctl, checks the output and returns the id.
func ctlGrant(t testing.TB, m *Member, ttl int64, wantTTL int64) int64 {
	t.Helper()
	out := m.Ctl(t, "lease", "grant", fmt.Sprint(ttl))
	g := grantedRE.FindStringSubmatch(out)
	if g == nil {
		t.Fatalf("lease grant %d: output %q, want %q", ttl, out, grantedRE)
	}
	if g[2] != fmt.Sprint(wantTTL) {
		t.Errorf("lease grant %d: granted TTL %ss, want %ds", ttl, g[2], wantTTL)
	}
	return parseHexID(t, g[1])
}

func TestLeaseEtcdctl(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	requireEtcdctl(t)

	long := ctlGrant(t, m, 1000, 1000)
	short := ctlGrant(t, m, 500, 500)
	if long == 0 || short == 0 || long == short {
		t.Fatalf("lease ids %x %x", long, short)
	}
	// Granting does not touch the key space: still revision 1.
	m.ExpectCtlJSON(t, `{"header":{"revision":1}}`, "get", "x")

	// json: the header fields are flattened into the response.
	var g struct {
		ID    int64  `json:"ID"`
		TTL   int64  `json:"TTL"`
		Error string `json:"Error"`
	}
	out := m.Ctl(t, "lease", "grant", "300", "-w", "json")
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatal(err)
	}
	m.ExpectJSON(t, out, fmt.Sprintf(`{"revision":1,"ID":%d,"TTL":300,"Error":""}`, g.ID))
	third := g.ID

	// Leases are listed soonest expiry first.
	m.ExpectCtl(t, fmt.Sprintf("found 3 leases\n%s\n%s\n%s\n", hexID(third), hexID(short), hexID(long)), "lease", "list")
	m.ExpectCtlJSON(t, fmt.Sprintf(`{"revision":1,"leases":[{"id":%d},{"id":%d},{"id":%d}]}`, third, short, long), "lease", "list")

	m.ExpectCtl(t, "OK\n", "put", "lk1", "a", "--lease="+hexID(short)) // rev 2
	m.ExpectCtl(t, "OK\n", "put", "lk2", "b", "--lease="+hexID(short)) // rev 3
	m.ExpectCtl(t, "OK\n", "put", "other", "c")                        // rev 4
	m.ExpectCtlJSON(t, fmt.Sprintf(`{"header":{"revision":4},"kvs":[{"key":%q,"create_revision":2,"mod_revision":2,"version":1,"value":%q,"lease":%d}],"count":1}`,
		b64("lk1"), b64("a"), short), "get", "lk1")

	t.Run("timetolive", func(t *testing.T) {
		// etcd lists attached keys in no particular order (map order).
		re := regexp.MustCompile(fmt.Sprintf(`^lease %s granted with TTL\(500s\), remaining\((\d+)s\), attached keys\(\[(?:lk1 lk2|lk2 lk1)\]\)\n$`, hexID(short)))
		out := m.Ctl(t, "lease", "timetolive", hexID(short), "--keys")
		g := re.FindStringSubmatch(out)
		if g == nil {
			t.Fatalf("timetolive --keys: %q, want match for %q", out, re)
		}
		if rem, _ := strconv.Atoi(g[1]); rem <= 0 || rem > 500 {
			t.Errorf("remaining %ds, want in (0, 500]", rem)
		}
		re = regexp.MustCompile(fmt.Sprintf(`^lease %s granted with TTL\(1000s\), remaining\((\d+)s\)\n$`, hexID(long)))
		if out := m.Ctl(t, "lease", "timetolive", hexID(long)); !re.MatchString(out) {
			t.Errorf("timetolive: %q, want match for %q", out, re)
		}
		var ttl struct {
			ID         int64    `json:"id"`
			TTL        int64    `json:"ttl"`
			GrantedTTL int64    `json:"granted-ttl"`
			Keys       [][]byte `json:"keys"`
		}
		out = m.Ctl(t, "lease", "timetolive", hexID(short), "--keys", "-w", "json")
		if err := json.Unmarshal([]byte(out), &ttl); err != nil {
			t.Fatal(err)
		}
		if ttl.TTL <= 0 || ttl.TTL > 500 {
			t.Errorf("json ttl %d, want in (0, 500]", ttl.TTL)
		}
		keys := []string{b64("lk1"), b64("lk2")}
		if len(ttl.Keys) == 2 && string(ttl.Keys[0]) == "lk2" {
			keys[0], keys[1] = keys[1], keys[0]
		}
		m.ExpectJSON(t, out, fmt.Sprintf(`{"revision":4,"id":%d,"ttl":%d,"granted-ttl":500,"keys":[%q,%q]}`, short, ttl.TTL, keys[0], keys[1]))
	})

	t.Run("keep-alive", func(t *testing.T) {
		m.ExpectCtl(t, fmt.Sprintf("lease %s keepalived with TTL(500)\n", hexID(short)), "lease", "keep-alive", "--once", hexID(short))
		m.ExpectCtlJSON(t, fmt.Sprintf(`{"revision":4,"ID":%d,"TTL":1000}`, long), "lease", "keep-alive", "--once", hexID(long))
		// The long-running form prints one line per keep-alive response.
		p := m.StartCtl(t, "lease", "keep-alive", hexID(third))
		want := fmt.Sprintf("lease %s keepalived with TTL(300)\n", hexID(third))
		got := p.WaitStdout("a keep-alive", func(s string) bool { return len(s) >= len(want) })
		if got[:len(want)] != want {
			t.Errorf("keep-alive output %q, want it to start with %q", got, want)
		}
		p.Kill()
	})

	t.Run("revoke", func(t *testing.T) {
		m.ExpectCtl(t, fmt.Sprintf("lease %s revoked\n", hexID(short)), "lease", "revoke", hexID(short))
		// Revoking deletes the attached keys in one revision.
		m.ExpectCtl(t, "other\nc\n", "get", "", "--prefix")
		m.ExpectCtlJSON(t, `{"header":{"revision":5}}`, "get", "lk1")
		m.ExpectCtl(t, "lk1\na\nlk2\nb\n", "get", "lk", "--prefix", "--rev", "4")
		m.ExpectCtl(t, fmt.Sprintf("lease %s already expired\n", hexID(short)), "lease", "timetolive", hexID(short))
		// A lease without keys is revoked without a new revision.
		m.ExpectCtl(t, fmt.Sprintf("lease %s revoked\n", hexID(third)), "lease", "revoke", hexID(third))
		m.ExpectCtlJSON(t, `{"header":{"revision":5}}`, "get", "lk1")
		m.ExpectCtl(t, fmt.Sprintf("found 1 leases\n%s\n", hexID(long)), "lease", "list")
	})

	t.Run("errors", func(t *testing.T) {
		m.ExpectCtlError(t, "failed to revoke lease (etcdserver: requested lease not found)", "lease", "revoke", hexID(short))
		m.ExpectCtlError(t, "etcdserver: requested lease not found", "put", "k", "v", "--lease=1234")
		m.ExpectCtlError(t, "etcdserver: requested lease not found", "lease", "keep-alive", "--once", "1234")
		m.ExpectCtl(t, "lease 0000000000001234 already expired\n", "lease", "timetolive", "1234")
	})
}

func TestLeaseClient(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	cli := m.Client()

	g, err := cli.Grant(tctx(t), 100)
	if err != nil {
		t.Fatal(err)
	}
	if g.TTL != 100 || g.ID == 0 || g.Error != "" {
		t.Fatalf("grant: %+v", g)
	}
	mustPut(t, cli, "a", "1", clientv3.WithLease(g.ID))
	ttl, err := cli.TimeToLive(tctx(t), g.ID, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	if ttl.ID != g.ID || ttl.GrantedTTL != 100 || ttl.TTL <= 0 || ttl.TTL > 100 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "a" {
		t.Errorf("timetolive: %+v", ttl)
	}
	ka, err := cli.KeepAliveOnce(tctx(t), g.ID)
	if err != nil || ka.TTL != 100 || ka.ID != g.ID {
		t.Errorf("keepaliveonce: %+v %v", ka, err)
	}

	// A lease's keys move with put: re-putting without the lease detaches.
	mustPut(t, cli, "a", "2")
	ttl, err = cli.TimeToLive(tctx(t), g.ID, clientv3.WithAttachedKeys())
	if err != nil || len(ttl.Keys) != 0 {
		t.Errorf("after re-put without lease: %+v %v", ttl, err)
	}
	mustPut(t, cli, "b", "1", clientv3.WithLease(g.ID))
	// --ignore-lease keeps the key's lease.
	mustPut(t, cli, "b", "2", clientv3.WithIgnoreLease())
	if r, err := cli.Get(tctx(t), "b"); err != nil || r.Kvs[0].Lease != int64(g.ID) || string(r.Kvs[0].Value) != "2" {
		t.Errorf("put with ignore-lease: %+v %v", r, err)
	}
	_, err = cli.Put(tctx(t), "b", "3", clientv3.WithIgnoreLease(), clientv3.WithLease(g.ID))
	expectRPCError(t, err, rpctypes.ErrLeaseProvided, codes.InvalidArgument)

	if _, err := cli.Revoke(tctx(t), g.ID); err != nil {
		t.Fatal(err)
	}
	if r, err := cli.Get(tctx(t), "", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Key) != "a" {
		t.Errorf("after revoke: %+v %v", r, err)
	}
	ttl, err = cli.TimeToLive(tctx(t), g.ID)
	if err != nil || ttl.TTL != -1 {
		t.Errorf("timetolive of a revoked lease: TTL %d err %v, want -1, nil", ttl.TTL, err)
	}

	_, err = cli.Revoke(tctx(t), g.ID)
	expectRPCError(t, err, rpctypes.ErrLeaseNotFound, codes.NotFound)
	_, err = cli.KeepAliveOnce(tctx(t), g.ID)
	expectRPCError(t, err, rpctypes.ErrLeaseNotFound, codes.NotFound)
	_, err = cli.Put(tctx(t), "x", "y", clientv3.WithLease(g.ID))
	expectRPCError(t, err, rpctypes.ErrLeaseNotFound, codes.NotFound)
	_, err = cli.Grant(tctx(t), 9_000_000_001)
	expectRPCError(t, err, rpctypes.ErrLeaseTTLTooLarge, codes.OutOfRange)
}

// TestLeaseExpiry lets a short lease run out and checks that its keys are
// deleted (seen through a watch) and the lease is gone.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	cli := m.Client()

	// A TTL below the minimum (1.5 election timeouts, rounded up: 2s with
	// the default 1s election timeout) is raised to it.
	g, err := cli.Grant(tctx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if g.TTL != 2 {
		t.Errorf("grant 1s: TTL %d, want the 2s minimum", g.TTL)
	}
	rev := mustPut(t, cli, "exp", "v", clientv3.WithLease(g.ID))
	wch := cli.Watch(tctx(t), "exp", clientv3.WithRev(rev+1))
	resp := nextResponse(t, wch)
	if len(resp.Events) != 1 || resp.Events[0].Type != mvccpb.DELETE || resp.Events[0].Kv.ModRevision != rev+1 {
		t.Fatalf("want the key's DELETE at revision %d, got %s", rev+1, eventsString(resp.Events))
	}
	ttl, err := cli.TimeToLive(tctx(t), g.ID)
	if err != nil || ttl.TTL != -1 {
		t.Errorf("expired lease: TTL %d err %v, want -1", ttl.TTL, err)
	}
	_, err = cli.KeepAliveOnce(tctx(t), g.ID)
	expectRPCError(t, err, rpctypes.ErrLeaseNotFound, codes.NotFound)
}
