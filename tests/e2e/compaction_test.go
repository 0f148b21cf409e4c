package e2e

import (
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

const (
	msgCompacted = "etcdserver: mvcc: required revision has been compacted"
	msgFutureRev = "etcdserver: mvcc: required revision is a future revision"
)

func TestCompactionEtcdctl(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	requireEtcdctl(t)
	for i := 1; i <= 5; i++ {
		m.ExpectCtl(t, "OK\n", "put", "k", fmt.Sprintf("v%d", i)) // revs 2..6
	}
	m.ExpectCtl(t, "OK\n", "put", "gone", "x") // rev 7
	m.ExpectCtl(t, "1\n", "del", "gone")       // rev 8

	m.ExpectCtl(t, "compacted revision 3\n", "compaction", "3")
	m.ExpectCtlError(t, msgCompacted, "get", "k", "--rev", "2")
	m.ExpectCtl(t, "k\nv2\n", "get", "k", "--rev", "3") // the compaction revision itself stays readable
	m.ExpectCtl(t, "k\nv5\n", "get", "k")
	m.ExpectCtlError(t, msgFutureRev, "get", "k", "--rev", "9")
	m.ExpectCtlError(t, msgCompacted, "compaction", "3")
	m.ExpectCtlError(t, msgCompacted, "compaction", "2")
	m.ExpectCtlError(t, msgFutureRev, "compaction", "100")

	m.ExpectCtl(t, "compacted revision 7\n", "compaction", "7", "--physical")
	m.ExpectCtlError(t, msgCompacted, "get", "k", "--rev", "6")
	m.ExpectCtl(t, "gone\nx\n", "get", "gone", "--rev", "7")
	m.ExpectCtl(t, "", "get", "gone")
	// Compaction does not change the latest state or the revision.
	m.ExpectCtlJSON(t, fmt.Sprintf(`{"header":{"revision":8},"kvs":[{"key":%q,"create_revision":2,"mod_revision":6,"version":5,"value":%q}],"count":1}`, b64("k"), b64("v5")), "get", "k")

	var hk []struct {
		HashKV struct {
			CompactRevision int64 `json:"compact_revision"`
		} `json:"HashKV"`
	}
	m.CtlJSON(t, &hk, "endpoint", "hashkv")
	if len(hk) != 1 || hk[0].HashKV.CompactRevision != 7 {
		t.Errorf("hashkv after compaction: %+v, want compact_revision 7", hk)
	}

	// A watch from a compacted revision is canceled by the server.
	w := m.StartCtl(t, "watch", "k", "--rev", "2")
	if err := w.Wait(); err == nil {
		t.Errorf("watch from a compacted revision exited 0")
	}
	// etcdctl prints both lines on stderr.
	if got := w.Stdout(); got != "" {
		t.Errorf("watch from a compacted revision: stdout %q, want none", got)
	}
	if want := "watch was canceled (" + msgCompacted + ")\n"; !strings.HasPrefix(w.Stderr(), want) && !strings.Contains(w.Stderr(), "\n"+want) {
		t.Errorf("watch from a compacted revision: stderr %q lacks the line %q", w.Stderr(), want)
	}
	if got := ctlErrorLine(w.Stderr()); got != "Error: watch is canceled by the server" {
		t.Errorf("watch from a compacted revision: error line %q, stderr %q", got, w.Stderr())
	}
}

func TestCompactionClient(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	cli := m.Client()
	for i := 1; i <= 5; i++ {
		mustPut(t, cli, "k", fmt.Sprint(i)) // revs 2..6
	}
	if _, err := cli.Compact(tctx(t), 4); err != nil {
		t.Fatal(err)
	}
	_, err := cli.Get(tctx(t), "k", clientv3.WithRev(3))
	expectRPCError(t, err, rpctypes.ErrCompacted, codes.OutOfRange)
	_, err = cli.Get(tctx(t), "k", clientv3.WithRev(7))
	expectRPCError(t, err, rpctypes.ErrFutureRev, codes.OutOfRange)
	_, err = cli.Compact(tctx(t), 4)
	expectRPCError(t, err, rpctypes.ErrCompacted, codes.OutOfRange)
	_, err = cli.Compact(tctx(t), 7)
	expectRPCError(t, err, rpctypes.ErrFutureRev, codes.OutOfRange)
	// The same errors inside a txn.
	_, err = cli.Txn(tctx(t)).Then(clientv3.OpGet("k", clientv3.WithRev(2))).Commit()
	expectRPCError(t, err, rpctypes.ErrCompacted, codes.OutOfRange)

	if r, err := cli.Get(tctx(t), "k", clientv3.WithRev(4)); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "3" {
		t.Errorf("get at the compaction revision: %+v %v", r, err)
	}
	if _, err := cli.Compact(tctx(t), 5, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}

	// A watch from before the compaction gets one canceled response that
	// names the compaction revision.
	wch := cli.Watch(tctx(t), "k", clientv3.WithRev(2))
	r := nextResponse(t, wch)
	if !r.Canceled || r.CompactRevision != 5 || len(r.Events) != 0 {
		t.Errorf("watch from compacted revision: canceled %v, compact revision %d, %d events; want true, 5, 0", r.Canceled, r.CompactRevision, len(r.Events))
	}
	if err := r.Err(); err != rpctypes.ErrCompacted {
		t.Errorf("watch from compacted revision: Err() %v, want %v", err, rpctypes.ErrCompacted)
	}
	// From the compaction revision itself the watch works: the latest
	// event at or after it is replayed.
	wch = cli.Watch(tctx(t), "k", clientv3.WithRev(5))
	var evs []*clientv3.Event
	for len(evs) < 2 {
		r = nextResponse(t, wch)
		if r.Canceled {
			t.Fatalf("watch from the compaction revision canceled: %v", r.Err())
		}
		evs = append(evs, r.Events...)
	}
	if got, want := eventsString(evs), "PUT k=4@5, PUT k=5@6"; got != want {
		t.Errorf("watch from the compaction revision: %s, want %s", got, want)
	}
}
