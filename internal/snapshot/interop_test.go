//go:build linux

package snapshot

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// These tests check the format against the real etcd tools: etcd and etcdctl
// from the Debian packages etcd-server and etcd-client (etcd 3.4 there).

const etcdTimeout = 60 * time.Second

// etcdTools returns the paths of etcd and etcdctl, or skips the test.
func etcdTools(t *testing.T) (etcd, etcdctl string) {
	t.Helper()
	etcd, etcdctl = etcdToolsOrEmpty()
	if etcd == "" || etcdctl == "" {
		t.Skip("etcd or etcdctl not in PATH (install the Debian packages etcd-server and etcd-client); skipping interop test")
	}
	return etcd, etcdctl
}

// etcdToolsOrEmpty returns the paths of etcd and etcdctl, empty when missing.
func etcdToolsOrEmpty() (etcd, etcdctl string) {
	etcd, _ = exec.LookPath("etcd")
	etcdctl, _ = exec.LookPath("etcdctl")
	return etcd, etcdctl
}

// offlineTool returns the tool for the offline snapshot commands (status,
// restore): etcdutl where installed (etcd 3.5 moved them there, 3.6 removed
// them from etcdctl), etcdctl otherwise.
func offlineTool(etcdctl string) string {
	if etcdutl, err := exec.LookPath("etcdutl"); err == nil {
		return etcdutl
	}
	return etcdctl
}

// toolEnv is the environment of etcd and etcdctl: the test's, without any
// ETCD_ or ETCDCTL_ setting that would change their behaviour, and with the
// v3 API selected.
func toolEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") && !strings.HasPrefix(kv, "ETCDCTL_") {
			env = append(env, kv)
		}
	}
	return append(env, "ETCDCTL_API=3")
}

// runTool runs a tool to completion and returns its standard output.
func runTool(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = toolEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// etcdServer is a running etcd member.
type etcdServer struct {
	endpoint string
	cli      *clientv3.Client
}

// startEtcd starts a one-member etcd named n1 on free loopback ports and
// waits until it serves requests. prepare gets the member's peer URL and
// returns the data directory to start on (empty for a new member, or
// restored from a snapshot). The server is killed when the test ends. A
// start that loses its ports to another process is retried on new ones.
func startEtcd(t *testing.T, etcd string, prepare func(peerURL string) string) *etcdServer {
	t.Helper()
	var lastLog []byte
	for attempt := 0; attempt < 3; attempt++ {
		ports := freePorts(t, 2)
		clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		dataDir := prepare(peerURL)
		logPath := filepath.Join(t.TempDir(), "etcd.log")
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(etcd,
			"--name", "n1",
			"--data-dir", dataDir,
			"--listen-client-urls", clientURL,
			"--advertise-client-urls", clientURL,
			"--listen-peer-urls", peerURL,
			"--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "n1="+peerURL,
		)
		cmd.Env = toolEnv()
		cmd.Stdout, cmd.Stderr = logf, logf
		// The kernel kills etcd if the test binary dies first.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatalf("start etcd: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			logf.Close()
			close(exited)
		}()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}

		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{clientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			stop()
			t.Fatal(err)
		}
		ready := waitReady(cli, exited)
		if ready == nil {
			t.Cleanup(func() {
				cli.Close()
				stop()
			})
			return &etcdServer{endpoint: clientURL, cli: cli}
		}
		cli.Close()
		stop()
		lastLog, _ = os.ReadFile(logPath)
		if !bytes.Contains(lastLog, []byte("address already in use")) {
			t.Fatalf("etcd did not become ready: %v\nlog:\n%s", ready, lastLog)
		}
	}
	t.Fatalf("etcd could not get free ports in 3 attempts\nlog:\n%s", lastLog)
	return nil
}

// waitReady waits until the server answers a linearizable read, the process
// exits, or the deadline passes.
func waitReady(cli *clientv3.Client, exited <-chan struct{}) error {
	deadline := time.Now().Add(etcdTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Get(ctx, "cairn-readiness-probe")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", etcdTimeout, err)
		}
		select {
		case <-exited:
			return errors.New("etcd exited")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// etcdctlStatus runs `etcdctl snapshot status -w json`.
func etcdctlStatus(t *testing.T, etcdctl, path string) Status {
	t.Helper()
	out := runTool(t, offlineTool(etcdctl), "snapshot", "status", path, "-w", "json")
	var st Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("etcdctl snapshot status output %q: %v", out, err)
	}
	return st
}

func compareStatus(t *testing.T, r *Reader, etcdctl, path string) {
	t.Helper()
	got, err := r.Status()
	if err != nil {
		t.Fatal(err)
	}
	want := etcdctlStatus(t, etcdctl, path)
	// etcd before 3.6 does not report the version.
	if want.Version == "" {
		got.Version = ""
	}
	if got != want {
		t.Errorf("Status = %+v, etcdctl snapshot status = %+v", got, want)
	}
	t.Logf("status %+v", got)
}

// TestEtcdctlStatusOfCairnSnapshot: etcdctl computes the same status as
// Reader.Status for a file cairn wrote.
func TestEtcdctlStatusOfCairnSnapshot(t *testing.T) {
	_, etcdctl := etcdTools(t)
	f := newFixture(10, 3000, 700)
	path := f.write(t, t.TempDir(), nil)
	r, err := Open(path, false)
	must(t, err)
	defer r.Close()
	compareStatus(t, r, etcdctl, path)
}

// TestEtcdRestoresCairnSnapshot: etcdctl restores a cairn snapshot and etcd,
// started on the result, serves every key with its revisions, the history
// below the current revision, and the leases.
func TestEtcdRestoresCairnSnapshot(t *testing.T) {
	etcd, etcdctl := etcdTools(t)
	f := newFixture(11, 2000, 500)
	// No compaction: the whole history must be readable.
	f.meta.ScheduledCompactRev, f.meta.FinishedCompactRev = 0, 0
	// etcd refuses a cluster version newer than its own.
	f.meta.ClusterVersion = ""
	// With auth on, every request would need credentials.
	f.authOn = false
	path := f.write(t, t.TempDir(), nil)

	srv := startEtcd(t, etcd, func(peerURL string) string {
		dataDir := filepath.Join(t.TempDir(), "restored")
		runTool(t, offlineTool(etcdctl), "snapshot", "restore", path,
			"--data-dir", dataDir,
			"--name", "n1",
			"--initial-cluster", "n1="+peerURL,
			"--initial-advertise-peer-urls", peerURL)
		return dataDir
	})
	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()

	for _, rev := range []int64{f.hist.rev, f.hist.rev / 2, 2} {
		want := f.hist.stateAt(rev)
		resp, err := srv.cli.Get(ctx, "key/", clientv3.WithPrefix(), clientv3.WithRev(rev))
		if err != nil {
			t.Fatalf("get at revision %d: %v", rev, err)
		}
		if resp.Header.Revision != f.hist.rev {
			t.Errorf("header revision %d, want %d", resp.Header.Revision, f.hist.rev)
		}
		got := map[string]*mvccpb.KeyValue{}
		for _, kv := range resp.Kvs {
			got[string(kv.Key)] = kv
		}
		if len(got) != len(want) {
			t.Errorf("revision %d: etcd has %d keys, want %d", rev, len(got), len(want))
		}
		for _, k := range sortedKeys(want) {
			if !proto.Equal(got[k], want[k]) {
				t.Fatalf("revision %d, key %s: etcd has %v, want %v", rev, k, got[k], want[k])
			}
		}
		t.Logf("revision %d: %d keys match", rev, len(got))
	}

	// etcdctl lease list prints "found N leases" and one hex ID per line.
	out := runTool(t, etcdctl, "--endpoints", srv.endpoint, "lease", "list")
	listed := map[int64]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n")[1:] {
		id, err := strconv.ParseUint(strings.TrimSpace(line), 16, 64)
		if err != nil {
			t.Fatalf("lease list line %q: %v", line, err)
		}
		listed[int64(id)] = true
	}
	live := f.hist.stateAt(f.hist.rev)
	for _, l := range f.leases {
		if !listed[l.ID] {
			t.Errorf("lease %x missing from etcdctl lease list:\n%s", l.ID, out)
			continue
		}
		ttl, err := srv.cli.TimeToLive(ctx, clientv3.LeaseID(l.ID), clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		var wantKeys []string
		for _, k := range sortedKeys(live) {
			if live[k].Lease == l.ID {
				wantKeys = append(wantKeys, k)
			}
		}
		var gotKeys []string
		for _, k := range ttl.Keys {
			gotKeys = append(gotKeys, string(k))
		}
		slices.Sort(gotKeys)
		if ttl.GrantedTTL != l.TTL || ttl.TTL <= 0 || strings.Join(gotKeys, ",") != strings.Join(wantKeys, ",") {
			t.Errorf("lease %x: granted %d, remaining %d, %d keys; want granted %d, %d keys", l.ID, ttl.GrantedTTL, ttl.TTL, len(gotKeys), l.TTL, len(wantKeys))
		}
	}
	if len(listed) != len(f.leases) {
		t.Errorf("etcd lists %d leases, want %d", len(listed), len(f.leases))
	}
}

// TestReadEtcdSnapshot: a snapshot saved by etcdctl from a real etcd reads
// back with every record, the leases, the members and the meta state.
func TestReadEtcdSnapshot(t *testing.T) {
	etcd, etcdctl := etcdTools(t)
	var peer string
	srv := startEtcd(t, etcd, func(peerURL string) string {
		peer = peerURL
		return filepath.Join(t.TempDir(), "fresh")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*etcdTimeout)
	defer cancel()

	var leases []Lease
	for _, ttl := range []int64{600, 1200} {
		resp, err := srv.cli.Grant(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, Lease{ID: int64(resp.ID), TTL: ttl})
	}
	txns := randomTxns(12, 300, 60, []int64{leases[0].ID, leases[1].ID})
	hist := newHistory()
	apply := func(ops []op) {
		t.Helper()
		var tops []clientv3.Op
		for _, o := range ops {
			switch {
			case o.Delete:
				tops = append(tops, clientv3.OpDelete(o.Key))
			case o.Lease != 0:
				tops = append(tops, clientv3.OpPut(o.Key, o.Value, clientv3.WithLease(clientv3.LeaseID(o.Lease))))
			default:
				tops = append(tops, clientv3.OpPut(o.Key, o.Value))
			}
		}
		resp, err := srv.cli.Txn(ctx).Then(tops...).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if want := hist.apply(ops); resp.Header.Revision != want {
			t.Fatalf("etcd committed at revision %d, the model at %d", resp.Header.Revision, want)
		}
	}
	for _, ops := range txns[:200] {
		apply(ops)
	}
	compactRev := hist.rev - 50
	if _, err := srv.cli.Compact(ctx, compactRev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	for _, ops := range txns[200:] {
		apply(ops)
	}

	path := filepath.Join(t.TempDir(), "etcd.snapshot")
	runTool(t, etcdctl, "--endpoints", srv.endpoint, "snapshot", "save", path)
	r, err := Open(path, false)
	must(t, err)
	defer r.Close()

	diffEntries(t, readKVs(t, r), hist.compacted(compactRev))

	var got []Lease
	must(t, r.ForEachLease(func(l Lease) error { got = append(got, l); return nil }))
	slices.SortFunc(got, func(a, b Lease) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(leases, func(a, b Lease) int { return cmp.Compare(a.ID, b.ID) })
	if fmt.Sprint(got) != fmt.Sprint(leases) {
		t.Errorf("leases: got %+v, want %+v", got, leases)
	}

	members, err := r.Members()
	must(t, err)
	if len(members) != 1 || members[0].Name != "n1" || len(members[0].PeerURLs) != 1 || members[0].PeerURLs[0] != peer ||
		len(members[0].ClientURLs) != 1 || members[0].ClientURLs[0] != srv.endpoint || members[0].IsLearner {
		t.Errorf("members: %+v, want n1 with peer %s and client %s", members, peer, srv.endpoint)
	}
	status, err := srv.cli.Status(ctx, srv.endpoint)
	must(t, err)
	if members[0].ID != status.Header.MemberId {
		t.Errorf("member ID %x, etcd says %x", members[0].ID, status.Header.MemberId)
	}

	meta, err := r.Meta()
	must(t, err)
	if meta.ConsistentIndex == 0 || meta.ConsistentIndex > status.RaftIndex ||
		meta.ScheduledCompactRev != compactRev || meta.FinishedCompactRev != compactRev ||
		!strings.HasPrefix(meta.ClusterVersion, "3.") {
		t.Errorf("meta %+v: want consistent index in (0, %d], compaction at %d, a 3.x cluster version", meta, status.RaftIndex, compactRev)
	}
	// etcd writes term and confState from 3.5 on.
	if !strings.HasPrefix(status.Version, "3.4.") && (meta.Term == 0 || meta.ConfState == nil) {
		t.Errorf("etcd %s: meta %+v lacks term or confState", status.Version, meta)
	}
	t.Logf("etcd %s meta: %+v", status.Version, meta)

	alarms, err := r.Alarms()
	must(t, err)
	if len(alarms) != 0 {
		t.Errorf("alarms: %+v", alarms)
	}
	compareStatus(t, r, etcdctl, path)
}
