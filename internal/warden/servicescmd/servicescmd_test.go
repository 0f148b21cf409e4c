package servicescmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/pkg/discovery"
	"github.com/cairn-kv/cairn/tests/e2e"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func dialer(m *e2e.Member) func() (*clientv3.Client, error) {
	return func() (*clientv3.Client, error) {
		return clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	}
}

func put(t *testing.T, cli *clientv3.Client, key string, r discovery.Record) {
	t.Helper()
	b, _ := json.Marshal(r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, string(b)); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, m *e2e.Member, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := NewCommand(dialer(m), &out)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.Execute()
	return out.String(), err
}

func TestServicesCommand(t *testing.T) {
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cli := m.Client()
	start := time.Now().Add(-90 * time.Second).UTC()
	put(t, cli, "/services/db1", discovery.Record{Name: "replSet1", Hostname: "h1", Address: "127.0.0.1:20000", PID: 41, Warden: "w1", StartedAt: start, Restarts: 2, Status: "running", Health: "healthy"})
	put(t, cli, "/services/db2", discovery.Record{Name: "db2", Hostname: "h2", Address: "127.0.0.1:30000", Warden: "w2", Restarts: 5, Status: "failed", Reason: "5 restarts within 1m0s"})
	put(t, cli, "/other/x", discovery.Record{Name: "x", Status: "running"})

	for _, args := range [][]string{nil, {"list"}} {
		out, err := run(t, m, args...)
		if err != nil {
			t.Fatalf("services %v: %v\n%s", args, err, out)
		}
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("services %v: want a header and 2 rows:\n%s", args, out)
		}
		for i, want := range []string{
			`^NAME +ADDRESS +HOST +PID +STATUS +RESTARTS +SINCE +WARDEN$`,
			`^replSet1 +127\.0\.0\.1:20000 +h1 +41 +running +2 +1m3\ds ago +w1$`,
			`^db2 +127\.0\.0\.1:30000 +h2 +- +failed +5 +- +w2$`,
		} {
			if !regexp.MustCompile(want).MatchString(lines[i]) {
				t.Errorf("services %v line %d = %q, want /%s/", args, i, lines[i], want)
			}
		}
	}
	out, err := run(t, m, "list", "--prefix", "/other/")
	if err != nil || !strings.Contains(out, "\nx ") || strings.Contains(out, "replSet1") {
		t.Errorf("list --prefix /other/: %v\n%s", err, out)
	}

	for _, name := range []string{"replSet1", "db1"} {
		out, err = run(t, m, "get", name)
		if err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		var r discovery.Record
		if err := json.Unmarshal([]byte(out), &r); err != nil || r.Name != "replSet1" || r.PID != 41 || !r.StartedAt.Equal(start) {
			t.Errorf("get %s: %v, %+v\n%s", name, err, r, out)
		}
	}
	if out, err = run(t, m, "get", "nope"); err == nil || !strings.Contains(err.Error(), `service "nope" not found under /services/`) {
		t.Errorf("get nope: %v\n%s", err, out)
	}
}

func TestServicesWatch(t *testing.T) {
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cli := m.Client()
	out := &syncBuffer{}
	cmd := NewCommand(dialer(m), out)
	cmd.SetArgs([]string{"watch"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	// The watch starts at the revision current when it connects: keep
	// writing a marker until it shows up, then the real changes.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "/services/marker") {
		if time.Now().After(deadline) {
			t.Fatalf("watch printed nothing:\n%s", out)
		}
		put(t, cli, "/services/marker", discovery.Record{Name: "marker", Status: "running"})
		time.Sleep(50 * time.Millisecond)
	}
	put(t, cli, "/services/db1", discovery.Record{Name: "db1", Hostname: "h1", Address: "127.0.0.1:20000", PID: 7, Warden: "w1", Restarts: 1, Status: "running", Health: "healthy"})
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	if _, err := cli.Delete(dctx, "/services/db1"); err != nil {
		t.Fatal(err)
	}
	dcancel()
	want := "PUT /services/db1 name=db1 address=127.0.0.1:20000 host=h1 pid=7 status=running health=healthy restarts=1 warden=w1\nDELETE /services/db1\n"
	deadline = time.Now().Add(20 * time.Second)
	for !strings.HasSuffix(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("watch output:\n%s\nwant it to end with:\n%s", out, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not stop when its context was canceled")
	}
}
