package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

const msgNoSpace = "etcdserver: mvcc: database space exceeded"

// TestQuota fills a member with a small --quota-backend-bytes and checks the
// user-visible contract of the NOSPACE alarm: it is raised, writes (and
// lease grants) are refused with etcd's error while reads and deletes work,
// and once space is back (compaction and defrag in etcd; cairn may reclaim
// it in the background) `alarm disarm` lets writes through again.
func TestQuota(t *testing.T) {
	t.Parallel()
	const (
		quota     = 2 << 20
		valueSize = 64 << 10
		maxPuts   = 20 * quota / valueSize // far more than fits
		fillTime  = 90 * time.Second
	)
	m := StartMember(t, MemberConfig{Flags: []string{fmt.Sprintf("--quota-backend-bytes=%d", quota)}})
	requireEtcdctl(t)
	cli := m.Client()

	// Incompressible values, the same in every run.
	rng := rand.New(rand.NewChaCha8([32]byte{'c', 'a', 'i', 'r', 'n'}))
	value := func() string {
		b := make([]byte, valueSize)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return string(b)
	}

	acked := 0
	var fillErr error
	deadline := time.Now().Add(fillTime)
	for acked < maxPuts && time.Now().Before(deadline) {
		if _, fillErr = cli.Put(tctx(t), fmt.Sprintf("fill/%05d", acked), value()); fillErr != nil {
			break
		}
		acked++
	}
	if fillErr == nil {
		t.Fatalf("%d puts of %d bytes (%d bytes) into a %d-byte quota, no error", acked, valueSize, acked*valueSize, quota)
	}
	expectRPCError(t, fillErr, rpctypes.ErrNoSpace, codes.ResourceExhausted)
	t.Logf("quota %d: %d puts of %d bytes acknowledged before NOSPACE", quota, acked, valueSize)
	if acked == 0 {
		t.Fatalf("the first put was refused: the empty store is already over a %d-byte quota", quota)
	}

	// The alarm is raised, for this member.
	al, err := cli.AlarmList(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(al.Alarms) != 1 || al.Alarms[0].MemberID != m.MemberID || al.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("alarm list: %+v", al.Alarms)
	}
	alarmLine := fmt.Sprintf("memberID:%d alarm:NOSPACE \n", m.MemberID)
	m.ExpectCtl(t, alarmLine, "alarm", "list")
	// etcd 3.4 leaves the header out of alarm responses; 3.7 (and so
	// cairn) fills it in like any other.
	wantAlarms := fmt.Sprintf(`"alarms":[{"memberID":%d,"alarm":1}]`, m.MemberID)
	if Kind() == KindEtcd {
		m.ExpectCtlJSON(t, `{`+wantAlarms+`}`, "alarm", "list")
	} else {
		m.ExpectCtlJSON(t, fmt.Sprintf(`{"header":{"revision":%d},%s}`, currentRev(t, cli), wantAlarms), "alarm", "list")
	}
	// Status lists the alarm among its errors, as the alarm's protobuf
	// text: etcd 3.4 prints "memberID:N alarm:NOSPACE "; etcd 3.7's
	// protobuf library varies the spacing on purpose, so match loosely.
	var st []ctlStatus
	m.CtlJSON(t, &st, "endpoint", "status")
	errRE := regexp.MustCompile(fmt.Sprintf(`^memberID:\s*%d\s+alarm:\s*NOSPACE\s*$`, m.MemberID))
	if len(st) != 1 || len(st[0].Status.Errors) != 1 || !errRE.MatchString(st[0].Status.Errors[0]) {
		t.Errorf("endpoint status errors under NOSPACE: %+v, want one matching %q", st, errRE)
	}

	// Writes are refused, whatever their size.
	_, err = cli.Put(tctx(t), "small", "v")
	expectRPCError(t, err, rpctypes.ErrNoSpace, codes.ResourceExhausted)
	_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut("small", "v")).Commit()
	expectRPCError(t, err, rpctypes.ErrNoSpace, codes.ResourceExhausted)
	_, err = cli.Grant(tctx(t), 60)
	expectRPCError(t, err, rpctypes.ErrNoSpace, codes.ResourceExhausted)
	m.ExpectCtlError(t, msgNoSpace, "put", "small", "v")
	m.ExpectCtlError(t, "failed to grant lease ("+msgNoSpace+")", "lease", "grant", "60")

	// Reads work and see every acknowledged put.
	r, err := cli.Get(tctx(t), "fill/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || r.Count != int64(acked) {
		t.Fatalf("count under NOSPACE: %v err %v, want %d", r, err, acked)
	}
	m.ExpectCtl(t, "fill/00000\n\n", "get", "fill/00000", "--keys-only")
	// A read-only txn is not a write.
	if _, err := cli.Txn(tctx(t)).Then(clientv3.OpGet("fill/00000")).Commit(); err != nil {
		t.Errorf("read-only txn under NOSPACE: %v", err)
	}

	// Deletes work.
	m.ExpectCtl(t, fmt.Sprintf("%d\n", acked), "del", "fill/", "--prefix")
	rev := currentRev(t, cli)
	m.ExpectCtl(t, fmt.Sprintf("compacted revision %d\n", rev), "compaction", fmt.Sprint(rev), "--physical")
	m.ExpectCtl(t, fmt.Sprintf("Finished defragmenting etcd member[%s]\n", m.ClientURL), "defrag")

	// Disarm until a write goes through: etcd has the space back right
	// after defrag; cairn may need its background compaction to finish.
	// Disarming while still full only lets the next write re-raise it.
	waitDeadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for attempt := 1; ; attempt++ {
		out := m.Ctl(t, "alarm", "disarm")
		// disarm prints the alarms it cleared: ours, or none if it was
		// already cleared.
		if out != alarmLine && out != "" {
			t.Errorf("alarm disarm printed %q, want %q", out, alarmLine)
		}
		_, err := cli.Put(tctx(t), "after", "ok")
		if err == nil {
			t.Logf("write accepted after %d disarm attempt(s)", attempt)
			break
		}
		if !errors.Is(err, rpctypes.ErrNoSpace) {
			t.Fatalf("put after disarm: %v", err)
		}
		if time.Now().After(waitDeadline) {
			t.Fatalf("writes still refused with NOSPACE %d disarms after deleting everything, compacting and defragmenting", attempt)
		}
		<-tick.C
	}
	m.ExpectCtl(t, "", "alarm", "list")
	m.ExpectCtl(t, "after\nok\n", "get", "after")
	if _, err := cli.Grant(tctx(t), 60); err != nil {
		t.Errorf("lease grant after disarm: %v", err)
	}
	// And the space is usable again for real data.
	for i := range 4 {
		if _, err := cli.Put(tctx(t), fmt.Sprintf("again/%d", i), value()); err != nil {
			t.Fatalf("put %d after recovery: %v", i, err)
		}
	}
}
