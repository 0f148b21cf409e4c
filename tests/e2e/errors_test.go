package e2e

import (
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

const (
	msgEmptyKey      = "etcdserver: key is not provided"
	msgLeaseNotFound = "etcdserver: requested lease not found"
	msgTooLarge      = "etcdserver: request is too large"
)

// TestErrorsDefaultLimits checks request validation on a member with
// etcd's defaults (--max-request-bytes 1.5 MiB).
func TestErrorsDefaultLimits(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	cli := m.Client()

	t.Run("empty-key", func(t *testing.T) {
		_, err := cli.Put(tctx(t), "", "v")
		expectRPCError(t, err, rpctypes.ErrEmptyKey, codes.InvalidArgument)
		_, err = cli.Get(tctx(t), "")
		expectRPCError(t, err, rpctypes.ErrEmptyKey, codes.InvalidArgument)
		_, err = cli.Delete(tctx(t), "")
		expectRPCError(t, err, rpctypes.ErrEmptyKey, codes.InvalidArgument)
		_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut("", "v")).Commit()
		expectRPCError(t, err, rpctypes.ErrEmptyKey, codes.InvalidArgument)
		_, err = cli.Txn(tctx(t)).If(clientv3.Compare(clientv3.Version(""), "=", 0)).Commit()
		expectRPCError(t, err, rpctypes.ErrEmptyKey, codes.InvalidArgument)

		requireEtcdctl(t)
		m.ExpectCtlError(t, msgEmptyKey, "put", "", "v")
		m.ExpectCtlError(t, msgEmptyKey, "get", "")
		m.ExpectCtlError(t, msgEmptyKey, "del", "")
	})

	t.Run("unknown-lease", func(t *testing.T) {
		const unknown = clientv3.LeaseID(0x1234)
		_, err := cli.Put(tctx(t), "k", "v", clientv3.WithLease(unknown))
		expectRPCError(t, err, rpctypes.ErrLeaseNotFound, codes.NotFound)
		_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut("k", "v", clientv3.WithLease(unknown))).Commit()
		expectRPCError(t, err, rpctypes.ErrLeaseNotFound, codes.NotFound)
		_, err = cli.Revoke(tctx(t), unknown)
		expectRPCError(t, err, rpctypes.ErrLeaseNotFound, codes.NotFound)

		requireEtcdctl(t)
		m.ExpectCtlError(t, msgLeaseNotFound, "put", "k", "v", "--lease=1234")
		m.ExpectCtlError(t, "failed to revoke lease ("+msgLeaseNotFound+")", "lease", "revoke", "1234")
		// Nothing was written.
		m.ExpectCtlJSON(t, `{"header":{"revision":1}}`, "get", "k")
	})

	t.Run("request-too-large", func(t *testing.T) {
		const limit = 3 * 1024 * 1024 / 2 // etcd's default --max-request-bytes
		// Well under the limit: accepted and read back whole.
		big := strings.Repeat("a", 1024*1024)
		if _, err := cli.Put(tctx(t), "big", big); err != nil {
			t.Fatalf("1 MiB put: %v", err)
		}
		if r, err := cli.Get(tctx(t), "big"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != big {
			t.Fatalf("1 MiB get: err %v", err)
		}
		// Over the limit (but within gRPC's message limit, which etcd
		// sets 512 KiB above it): etcd's own error.
		tooBig := strings.Repeat("b", limit+1)
		_, err := cli.Put(tctx(t), "toobig", tooBig)
		expectRPCError(t, err, rpctypes.ErrRequestTooLarge, codes.InvalidArgument)
		_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut("toobig", tooBig)).Commit()
		expectRPCError(t, err, rpctypes.ErrRequestTooLarge, codes.InvalidArgument)

		requireEtcdctl(t)
		// put reads the value from stdin when it is not an argument.
		m.ExpectCtlErrorIn(t, tooBig, msgTooLarge, "put", "toobig")
		m.ExpectCtl(t, "", "get", "toobig", "--keys-only")
	})
}

// TestErrorsSmallRequestLimit runs a member with a small --max-request-bytes.
func TestErrorsSmallRequestLimit(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{Flags: []string{"--max-request-bytes=4096"}})
	cli := m.Client()

	if _, err := cli.Put(tctx(t), "small", strings.Repeat("s", 1024)); err != nil {
		t.Fatalf("1 KiB put under a 4 KiB limit: %v", err)
	}
	_, err := cli.Put(tctx(t), "large", strings.Repeat("l", 4097))
	expectRPCError(t, err, rpctypes.ErrRequestTooLarge, codes.InvalidArgument)
	// Many small ops add up.
	var ops []clientv3.Op
	for i := range 8 {
		ops = append(ops, clientv3.OpPut(string(rune('a'+i)), strings.Repeat("x", 1024)))
	}
	_, err = cli.Txn(tctx(t)).Then(ops...).Commit()
	expectRPCError(t, err, rpctypes.ErrRequestTooLarge, codes.InvalidArgument)
	// Reads are not limited by it: the response may be larger.
	for i := range 8 {
		mustPut(t, cli, "r/"+string(rune('a'+i)), strings.Repeat("x", 1024))
	}
	if r, err := cli.Get(tctx(t), "r/", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 8 {
		t.Errorf("8 KiB read from a 4 KiB-limit member: %v", err)
	}

	requireEtcdctl(t)
	m.ExpectCtlErrorIn(t, strings.Repeat("l", 4097), msgTooLarge, "put", "large")
	m.ExpectCtl(t, "small\n\n", "get", "small", "--keys-only")
	m.ExpectCtl(t, "", "get", "large", "--keys-only")
}
