package ctl_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/tests/e2e"
)

func freePeerURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// fill writes n keys snap/NN=value-NN.
func fill(t *testing.T, m *e2e.Member, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 1; i <= n; i++ {
		if _, err := m.Client().Put(ctx, fmt.Sprintf("snap/%02d", i), fmt.Sprintf("value-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// checkRestored starts a cairn member from dir and checks it serves the
// n keys fill wrote.
func checkRestored(t *testing.T, name, dir string, n int) {
	t.Helper()
	r := e2e.StartMember(t, e2e.MemberConfig{Name: name, Kind: e2e.KindCairn, DataDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := r.Client().Get(ctx, "snap/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != n {
		t.Fatalf("restored member serves %d keys, want %d", len(resp.Kvs), n)
	}
	for i, kv := range resp.Kvs {
		if k, v := fmt.Sprintf("snap/%02d", i+1), fmt.Sprintf("value-%02d", i+1); string(kv.Key) != k || string(kv.Value) != v {
			t.Errorf("restored kv %d: %s=%s, want %s=%s", i, kv.Key, kv.Value, k, v)
		}
	}
}

func TestSnapshot(t *testing.T) {
	t.Parallel()
	if e2e.Kind() != e2e.KindCairn {
		t.Skip("restores into cairn data dirs")
	}
	m := e2e.StartMember(t, e2e.MemberConfig{})
	fill(t, m, 12)
	dir := t.TempDir()
	e := ep(m.ClientURL)

	// save: the same message; the file is complete (no .part left).
	fe, fc := filepath.Join(dir, "etcdctl.db"), filepath.Join(dir, "cairnctl.db")
	we := etcdctl.run(t, e, "snapshot", "save", fe)
	wc := cairnctl.run(t, e, "snapshot", "save", fc)
	compare(t, []string{"snapshot", "save"}, we, wc, replaceAll(fe, "FILE", fc, "FILE"))
	if _, err := os.Stat(fc + ".part"); !os.IsNotExist(err) {
		t.Errorf("%s.part left behind: %v", fc, err)
	}

	// status: both tools read both files the same, in every format.
	for _, f := range []string{fe, fc} {
		for _, w := range []string{"simple", "json", "fields", "table"} {
			same(t, nil, "-w", w, "snapshot", "status", f)
		}
	}
	same(t, nil, ep(m.ClientURL, m.ClientURL), "snapshot", "save", filepath.Join(dir, "two.db"))

	// restore into a new data dir; a cairn member serves it.
	peer := freePeerURL(t)
	data := filepath.Join(dir, "restored.data")
	cairnctl.must(t, "snapshot", "restore", fc, "--data-dir", data, "--name", "restored",
		"--initial-cluster", "restored="+peer, "--initial-advertise-peer-urls", peer, "--initial-cluster-token", "tok")
	checkRestored(t, "restored", data, 12)

	// A data dir that exists is refused; so is a missing file.
	r := cairnctl.run(t, "snapshot", "restore", fc, "--data-dir", data, "--name", "restored",
		"--initial-cluster", "restored="+peer, "--initial-advertise-peer-urls", peer)
	if r.code != 1 || !strings.Contains(r.errLine(), "exists") {
		t.Errorf("restore into an existing dir: exit %d %q", r.code, r.stderr)
	}
	r = cairnctl.run(t, "snapshot", "restore", filepath.Join(dir, "missing.db"), "--data-dir", filepath.Join(dir, "x"))
	if r.code != 1 || !strings.Contains(r.errLine(), "missing.db") {
		t.Errorf("restore of a missing file: exit %d %q", r.code, r.stderr)
	}
	// A truncated file fails the hash check, and says what to try.
	b, err := os.ReadFile(fc)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(bad, b[:len(b)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	r = cairnctl.run(t, "snapshot", "restore", bad, "--data-dir", filepath.Join(dir, "bad.data"))
	if r.code == 0 {
		t.Errorf("restore of a truncated snapshot succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.data")); !os.IsNotExist(err) {
		t.Errorf("failed restore left its data dir: %v", err)
	}
}

// TestSnapshotFromEtcd moves data from etcd to cairn: etcdctl saves a
// snapshot of an etcd member, cairnctl restores it, cairn serves it.
func TestSnapshotFromEtcd(t *testing.T) {
	t.Parallel()
	if e2e.Kind() != e2e.KindCairn {
		t.Skip("restores into a cairn data dir")
	}
	if _, err := os.Stat("/usr/bin/etcd"); err != nil {
		t.Skip("/usr/bin/etcd not installed")
	}
	m := e2e.StartMember(t, e2e.MemberConfig{Kind: e2e.KindEtcd})
	fill(t, m, 7)
	dir := t.TempDir()
	f := filepath.Join(dir, "etcd.db")
	etcdctl.must(t, ep(m.ClientURL), "snapshot", "save", f)
	same(t, nil, "-w", "json", "snapshot", "status", f)
	peer := freePeerURL(t)
	data := filepath.Join(dir, "from-etcd.data")
	cairnctl.must(t, "snapshot", "restore", f, "--data-dir", data, "--name", "frometcd",
		"--initial-cluster", "frometcd="+peer, "--initial-advertise-peer-urls", peer)
	checkRestored(t, "frometcd", data, 7)
}
