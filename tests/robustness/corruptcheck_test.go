package robustness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/tests/e2e"
)

// TestCorruptionCheck changes one value in a stopped follower's store
// (valid checksums, wrong data: what a bug or a bad disk that pebble
// cannot see would leave) and checks etcd's corruption checks: with
// --experimental-initial-corrupt-check the member refuses to start; without
// it, it starts and the leader's periodic check
// (--experimental-corrupt-check-time) raises the CORRUPT alarm, after
// which the cluster refuses writes.
func TestCorruptionCheck(t *testing.T) {
	if e2e.Kind() != e2e.KindCairn {
		t.Skip("edits cairn's store")
	}
	c := e2e.StartCluster(t, 3, "--experimental-corrupt-check-time=500ms")
	cli := e2e.ClientOf(t, c.Members...)
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cli.Put(ctx, fmt.Sprintf("cc/%02d", i), fmt.Sprintf("v%d", i))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	c.WaitHashKVEqual()
	f := e2e.Others(c.Members, c.Leader())[0]
	bin := binaryOf(t, f.DataDir())
	args := cmdlineOf(t, f.DataDir())
	f.Stop()
	tamper(t, filepath.Join(f.DataDir(), "member"), "cc/05", "tampered")

	// Initial check: refuses to start.
	out, exited := runUntil(t, bin, append(append([]string(nil), args...), "--experimental-initial-corrupt-check=true"), 30*time.Second)
	if !exited {
		t.Errorf("member with a tampered store and the initial corruption check still running after 30s:\n%s", tail(out, 3000))
	} else if strings.Contains(out, "ready to serve client requests") {
		t.Errorf("member with a tampered store served before the initial corruption check failed:\n%s", tail(out, 3000))
	} else {
		t.Logf("initial check refused to start: %s", lastLine(out))
	}

	// Periodic check: the leader raises CORRUPT.
	cmd, logs := startProc(t, bin, args)
	defer func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	var alarms []*pb.AlarmMember
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := cli.AlarmList(ctx)
		cancel()
		if err == nil && len(r.Alarms) > 0 {
			alarms = r.Alarms
			break
		}
		timer := time.NewTimer(100 * time.Millisecond)
		<-timer.C
	}
	if len(alarms) == 0 {
		t.Fatalf("no alarm within 30s of starting the tampered member\n%s", tail(logs.String(), 3000))
	}
	for _, a := range alarms {
		if a.Alarm != pb.AlarmType_CORRUPT || a.MemberID != f.MemberID {
			t.Errorf("alarm %v, want CORRUPT for the tampered member %x", a, f.MemberID)
		}
	}
	t.Logf("alarms: %v", alarms)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := cli.Put(ctx, "cc/after", "x")
	cancel()
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("put after the CORRUPT alarm: %v, want a corrupt error", err)
	}
	// What the tampered member answers to a local read (reported, not
	// asserted: etcd serves serializable reads from a corrupt member too).
	fc, err := clientv3.New(clientv3.Config{Endpoints: []string{f.ClientURL}, DialTimeout: 2 * time.Second})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := fc.Get(ctx, "cc/05", clientv3.WithSerializable())
		cancel()
		if err == nil && len(r.Kvs) == 1 {
			t.Logf("tampered member's serializable read of cc/05 after the alarm: %q", r.Kvs[0].Value)
		} else {
			t.Logf("tampered member's serializable read of cc/05 after the alarm: %v", err)
		}
		fc.Close()
	}
}

// cmdlineOf returns the arguments of the running server with dataDir.
func cmdlineOf(t *testing.T, dataDir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), "--data-dir="+dataDir+"\x00") {
			continue
		}
		parts := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		return parts[1:]
	}
	t.Fatalf("no server process for %s", dataDir)
	return nil
}

// tamper rewrites the newest record of key in the store at dir with a new
// value, keeping everything else.
func tamper(t *testing.T, dir, key, value string) {
	t.Helper()
	eng, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	lo, hi := storage.KVSpan()
	it, err := eng.DB().NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	var recKey []byte
	var kv *mvccpb.KeyValue
	for it.SeekGE(lo); it.Valid() && string(it.Key()) < string(hi); it.Next() {
		rec := &mvccpb.KeyValue{}
		if err := proto.Unmarshal(it.Value(), rec); err != nil {
			it.Close()
			t.Fatalf("record %x: %v", it.Key(), err)
		}
		if string(rec.Key) == key {
			recKey = append(recKey[:0], it.Key()...)
			kv = rec
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if recKey == nil {
		t.Fatalf("no record of %s", key)
	}
	kv.Value = []byte(value)
	b, err := proto.Marshal(kv)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.DB().Set(recKey, b, nil); err != nil {
		t.Fatal(err)
	}
	if err := eng.Sync(); err != nil {
		t.Fatal(err)
	}
}

// startProc starts bin with args, its output collected.
func startProc(t *testing.T, bin string, args []string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = buf, buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, buf
}

// runUntil runs bin until it exits or timeout passes (then kills it), and
// returns its output and whether it exited on its own.
func runUntil(t *testing.T, bin string, args []string, timeout time.Duration) (string, bool) {
	t.Helper()
	cmd, buf := startProc(t, bin, args)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
		return buf.String(), true
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-done
		return buf.String(), false
	}
}
