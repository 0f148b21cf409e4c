package api_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/tests/e2e"
)

// These tests run a real member (tests/e2e builds ./cmd/cairn once).
func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

// TestReadOnlyTxnSeesAcknowledgedWrites: a read-only txn is served from
// the member's store after a ReadIndex, not through Raft. Through another
// connection than the writer's, it must still see every write
// acknowledged before it started, in its compares and in its ranges.
func TestReadOnlyTxnSeesAcknowledgedWrites(t *testing.T) {
	m := e2e.StartMember(t, e2e.MemberConfig{})
	writer, reader := m.Client(), m.NewClient()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 1; i <= 200; i++ {
		v := strconv.Itoa(i)
		put, err := writer.Put(ctx, "k", v)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := reader.Txn(ctx).
			If(clientv3.Compare(clientv3.Value("k"), "=", v)).
			Then(clientv3.OpGet("k")).
			Else(clientv3.OpGet("k")).
			Commit()
		if err != nil {
			t.Fatal(err)
		}
		if !resp.Succeeded {
			t.Fatalf("put %d acknowledged at revision %d: the txn's compare did not see it (header revision %d)", i, put.Header.Revision, resp.Header.Revision)
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) != 1 || string(kvs[0].Value) != v {
			t.Fatalf("put %d acknowledged: the txn's range read %v", i, kvs)
		}
		if resp.Header.Revision < put.Header.Revision {
			t.Fatalf("txn header revision %d below the acknowledged put's %d", resp.Header.Revision, put.Header.Revision)
		}
		if got := resp.Responses[0].GetResponseRange().Header.Revision; got != resp.Header.Revision {
			t.Fatalf("range inside the txn at revision %d, txn at %d", got, resp.Header.Revision)
		}
	}
}

// TestReadOnlyTxnReadsOneRevision: while txns write "a" and "b" together,
// read-only txns comparing and reading both must always find them equal.
func TestReadOnlyTxnReadsOneRevision(t *testing.T) {
	m := e2e.StartMember(t, e2e.MemberConfig{})
	writer, reader := m.Client(), m.NewClient()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := writer.Txn(ctx).Then(clientv3.OpPut("a", "0"), clientv3.OpPut("b", "0")).Commit(); err != nil {
		t.Fatal(err)
	}
	const writes = 300
	var wg sync.WaitGroup
	wg.Add(1)
	errC := make(chan error, 1)
	go func() {
		defer wg.Done()
		for i := 1; i <= writes; i++ {
			v := strconv.Itoa(i)
			if _, err := writer.Txn(ctx).Then(clientv3.OpPut("a", v), clientv3.OpPut("b", v)).Commit(); err != nil {
				errC <- err
				return
			}
		}
	}()
	for n := 0; n < 2000; n++ {
		resp, err := reader.Txn(ctx).
			If(clientv3.Compare(clientv3.Version("a"), ">", 0)).
			Then(clientv3.OpGet("a"), clientv3.OpGet("b")).
			Commit()
		if err != nil {
			t.Fatal(err)
		}
		a := resp.Responses[0].GetResponseRange().Kvs
		b := resp.Responses[1].GetResponseRange().Kvs
		if len(a) != 1 || len(b) != 1 || string(a[0].Value) != string(b[0].Value) || a[0].ModRevision != b[0].ModRevision {
			t.Fatalf("txn at revision %d read a=%v b=%v", resp.Header.Revision, a, b)
		}
		if string(a[0].Value) == fmt.Sprint(writes) {
			break
		}
	}
	wg.Wait()
	select {
	case err := <-errC:
		t.Fatal(err)
	default:
	}
}
