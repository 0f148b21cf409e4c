package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// txnInput is etcdctl txn's non-interactive input: compares, then success
// ops, then failure ops, each block ended by a blank line.
func txnInput(compares, success, failure []string) string {
	var b strings.Builder
	for _, block := range [][]string{compares, success, failure} {
		for _, l := range block {
			b.WriteString(l + "\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestTxnEtcdctl(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	requireEtcdctl(t)
	m.ExpectCtl(t, "OK\n", "put", "k1", "v1") // rev 2

	// Output: SUCCESS or FAILURE, then each op's output after a blank line.
	m.ExpectCtlIn(t, txnInput(
		[]string{`value("k1") = "v1"`},
		[]string{"put k2 x", "get k1", "del zz"},
		[]string{"put k3 y"}),
		"SUCCESS\n\nOK\n\nk1\nv1\n\n0\n", "txn") // rev 3
	m.ExpectCtlIn(t, txnInput(
		[]string{`version("k1") > "5"`},
		[]string{"put k2 never"},
		[]string{"get k1", "put k3 y"}),
		"FAILURE\n\nk1\nv1\n\nOK\n", "txn") // rev 4
	m.ExpectCtl(t, "k3\ny\n", "get", "k3")
	m.ExpectCtl(t, "k2\nx\n", "get", "k2")

	// All compares must hold; every write of one txn shares one revision.
	m.ExpectCtlJSONIn(t, txnInput(
		[]string{`create("k1") = "2"`, `mod("k1") = "2"`, `version("k1") = "1"`, `value("k2") = "x"`, `mod("k3") < "5"`, `value("k1") != "zz"`},
		[]string{"put k1 v2", "put k2 x2"},
		nil),
		`{"header":{"revision":5},"succeeded":true,"responses":[{"Response":{"ResponsePut":{"header":{"revision":5}}}},{"Response":{"ResponsePut":{"header":{"revision":5}}}}]}`,
		"txn")
	m.ExpectCtlJSON(t, fmt.Sprintf(`{"header":{"revision":5},"kvs":[`+
		`{"key":%q,"create_revision":2,"mod_revision":5,"version":2,"value":%q},`+
		`{"key":%q,"create_revision":3,"mod_revision":5,"version":2,"value":%q}],"count":2}`,
		b64("k1"), b64("v2"), b64("k2"), b64("x2")), "get", "k1", "k3")

	// One false compare fails the txn. A txn that writes nothing adds no
	// revision.
	m.ExpectCtlIn(t, txnInput([]string{`value("k1") = "v2"`, `mod("k1") < "5"`}, []string{"put k1 bad"}, nil), "FAILURE\n", "txn")
	m.ExpectCtlJSONIn(t, txnInput([]string{`mod("k1") > "4"`}, []string{"get k --prefix --keys-only"}, nil),
		fmt.Sprintf(`{"header":{"revision":5},"succeeded":true,"responses":[{"Response":{"ResponseRange":{"header":{"revision":5},"kvs":[`+
			`{"key":%q,"create_revision":2,"mod_revision":5,"version":2},`+
			`{"key":%q,"create_revision":3,"mod_revision":5,"version":2},`+
			`{"key":%q,"create_revision":4,"mod_revision":4,"version":1}],"count":3}}}]}`,
			b64("k1"), b64("k2"), b64("k3")),
		"txn")

	// A missing key compares as create/mod/version 0, but a value compare
	// on a missing key is always false (a missing value is not "").
	m.ExpectCtlIn(t, txnInput([]string{`create("nokey") = "0"`, `version("nokey") = "0"`, `mod("nokey") = "0"`}, []string{"put nokey 1"}, nil), "SUCCESS\n\nOK\n", "txn") // rev 6
	m.ExpectCtlIn(t, txnInput([]string{`value("missing") = ""`}, nil, []string{"del nokey"}), "FAILURE\n\n1\n", "txn")                                                    // rev 7

	// Errors.
	m.ExpectCtlErrorIn(t, txnInput(nil, []string{"put d 1", "put d 2"}, nil), "etcdserver: duplicate key given in txn request", "txn")
	m.ExpectCtlErrorIn(t, txnInput(nil, []string{"put d1 1", "del d --prefix"}, nil), "etcdserver: duplicate key given in txn request", "txn")
	m.ExpectCtlErrorIn(t, txnInput(nil, []string{`put "" 1`}, nil), "etcdserver: key is not provided", "txn")
	m.ExpectCtlJSON(t, `{"header":{"revision":7}}`, "get", "d", "--prefix")
}

func TestTxnClient(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	cli := m.Client()

	lease, err := cli.Grant(tctx(t), 600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(tctx(t), "leased", "v", clientv3.WithLease(lease.ID)); err != nil { // rev 2
		t.Fatal(err)
	}
	if _, err := cli.Put(tctx(t), "plain", "v"); err != nil { // rev 3
		t.Fatal(err)
	}

	t.Run("lease-compare", func(t *testing.T) {
		// etcdctl 3.4 cannot parse a lease compare (it panics), so this is
		// clientv3 only.
		for _, tc := range []struct {
			cmp  clientv3.Cmp
			want bool
		}{
			{clientv3.Compare(clientv3.LeaseValue("leased"), "=", lease.ID), true},
			{clientv3.Compare(clientv3.LeaseValue("leased"), "=", clientv3.NoLease), false},
			{clientv3.Compare(clientv3.LeaseValue("plain"), "=", clientv3.NoLease), true},
			{clientv3.Compare(clientv3.LeaseValue("plain"), "!=", lease.ID), true},
		} {
			r, err := cli.Txn(tctx(t)).If(tc.cmp).Commit()
			if err != nil {
				t.Fatal(err)
			}
			if r.Succeeded != tc.want {
				t.Errorf("compare %v: succeeded %v, want %v", tc.cmp, r.Succeeded, tc.want)
			}
		}
	})

	t.Run("range-compare", func(t *testing.T) {
		if _, err := cli.Put(tctx(t), "r/a", "1"); err != nil { // rev 4
			t.Fatal(err)
		}
		if _, err := cli.Put(tctx(t), "r/b", "2"); err != nil { // rev 5
			t.Fatal(err)
		}
		// A compare over a range holds only if it holds for every key.
		r, err := cli.Txn(tctx(t)).If(clientv3.Compare(clientv3.Version("r/").WithPrefix(), "=", 1)).Commit()
		if err != nil || !r.Succeeded {
			t.Errorf("all versions 1: %v %v", r, err)
		}
		r, err = cli.Txn(tctx(t)).If(clientv3.Compare(clientv3.ModRevision("r/").WithPrefix(), "<", 5)).Commit()
		if err != nil || r.Succeeded {
			t.Errorf("mod < 5 over r/a (4) and r/b (5) must fail: %v %v", r, err)
		}
	})

	t.Run("nested", func(t *testing.T) {
		r, err := cli.Txn(tctx(t)).If(clientv3.Compare(clientv3.Value("plain"), "=", "v")).Then(
			clientv3.OpPut("n/outer", "o"),
			clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.Version("n/outer"), "=", 0)},
				[]clientv3.Op{clientv3.OpPut("n/then", "t")},
				[]clientv3.Op{clientv3.OpPut("n/else", "e"), clientv3.OpGet("plain")},
			),
		).Commit() // rev 6
		if err != nil {
			t.Fatal(err)
		}
		if !r.Succeeded || len(r.Responses) != 2 || r.Header.Revision != 6 {
			t.Fatalf("outer txn: %+v", r)
		}
		// The inner compare sees the state before the txn: n/outer did
		// not exist yet, so the inner txn succeeds.
		inner := r.Responses[1].GetResponseTxn()
		if inner == nil || !inner.Succeeded || len(inner.Responses) != 1 || inner.Responses[0].GetResponsePut() == nil {
			t.Fatalf("inner txn response: %+v", inner)
		}
		g, err := cli.Get(tctx(t), "n/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if len(g.Kvs) != 2 || string(g.Kvs[0].Key) != "n/outer" || string(g.Kvs[1].Key) != "n/then" ||
			g.Kvs[0].ModRevision != 6 || g.Kvs[1].ModRevision != 6 {
			t.Errorf("after nested txn: %+v", g.Kvs)
		}

		// The same key in the outer and the inner txn is a duplicate...
		_, err = cli.Txn(tctx(t)).Then(
			clientv3.OpPut("n/dup", "1"),
			clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("n/dup", "2")}, nil),
		).Commit()
		expectRPCError(t, err, rpctypes.ErrDuplicateKey, codes.InvalidArgument)
		// ...but the two branches of one txn may write the same key.
		if _, err := cli.Txn(tctx(t)).Then(
			clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("n/branch", "t")}, []clientv3.Op{clientv3.OpPut("n/branch", "e")}),
		).Commit(); err != nil { // rev 7
			t.Errorf("same key in then and else: %v", err)
		}
	})

	t.Run("duplicates", func(t *testing.T) {
		_, err := cli.Txn(tctx(t)).Then(clientv3.OpPut("d", "1"), clientv3.OpPut("d", "2")).Commit()
		expectRPCError(t, err, rpctypes.ErrDuplicateKey, codes.InvalidArgument)
		_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut("d/x", "1"), clientv3.OpDelete("d/", clientv3.WithPrefix())).Commit()
		expectRPCError(t, err, rpctypes.ErrDuplicateKey, codes.InvalidArgument)
		// Overlapping deletes are not duplicates.
		if _, err := cli.Txn(tctx(t)).Then(clientv3.OpDelete("d/", clientv3.WithPrefix()), clientv3.OpDelete("d/x")).Commit(); err != nil {
			t.Errorf("overlapping deletes: %v", err)
		}
		// Reads do not conflict with writes.
		r, err := cli.Txn(tctx(t)).Then(clientv3.OpPut("d/y", "1"), clientv3.OpGet("d/y")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		// A read after a write in the same txn sees the write.
		if kvs := r.Responses[1].GetResponseRange().Kvs; len(kvs) != 1 || string(kvs[0].Value) != "1" {
			t.Errorf("get after put in one txn: %+v", kvs)
		}
	})
}

func TestTxnTooManyOps(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{Flags: []string{"--max-txn-ops=4"}})
	cli := m.Client()

	ops := func(n int) []clientv3.Op {
		var o []clientv3.Op
		for i := range n {
			o = append(o, clientv3.OpPut(fmt.Sprintf("k%d", i), "v"))
		}
		return o
	}
	cmps := func(n int) []clientv3.Cmp {
		var o []clientv3.Cmp
		for i := range n {
			o = append(o, clientv3.Compare(clientv3.Version(fmt.Sprintf("k%d", i)), "<", 100))
		}
		return o
	}
	if _, err := cli.Txn(tctx(t)).If(cmps(4)...).Then(ops(4)...).Else(ops(4)...).Commit(); err != nil {
		t.Errorf("4 compares, 4+4 ops with --max-txn-ops=4: %v", err)
	}
	// Each of compares, success and failure is limited on its own.
	_, err := cli.Txn(tctx(t)).Then(ops(5)...).Commit()
	expectRPCError(t, err, rpctypes.ErrTooManyOps, codes.InvalidArgument)
	_, err = cli.Txn(tctx(t)).Else(ops(5)...).Commit()
	expectRPCError(t, err, rpctypes.ErrTooManyOps, codes.InvalidArgument)
	_, err = cli.Txn(tctx(t)).If(cmps(5)...).Commit()
	expectRPCError(t, err, rpctypes.ErrTooManyOps, codes.InvalidArgument)

	var lines []string
	for i := range 5 {
		lines = append(lines, fmt.Sprintf("put k%d v", i))
	}
	m.ExpectCtlErrorIn(t, txnInput(nil, lines, nil), "etcdserver: too many operations in txn request", "txn")
	m.ExpectCtlIn(t, txnInput(nil, lines[:4], nil), "SUCCESS\n\nOK\n\nOK\n\nOK\n\nOK\n", "txn")
}

// expectRPCError checks that err is the etcd error want (as the client
// library returns it) with gRPC code code.
func expectRPCError(t testing.TB, err, want error, code codes.Code) {
	t.Helper()
	if err == nil {
		t.Errorf("no error, want %q", want)
		return
	}
	if !errors.Is(err, want) {
		t.Errorf("error %q (%T), want %q", err, err, want)
		return
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) && ee.Code() != code {
		t.Errorf("error %q has code %v, want %v", err, ee.Code(), code)
	}
}
