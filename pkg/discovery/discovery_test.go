package discovery_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/pkg/discovery"
	"github.com/cairn-kv/cairn/tests/e2e"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

func put(t *testing.T, cli *clientv3.Client, key string, r discovery.Record) {
	t.Helper()
	b, _ := json.Marshal(r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, string(b)); err != nil {
		t.Fatal(err)
	}
}

func del(t *testing.T, cli *clientv3.Client, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
}

func TestListWatchAddresses(t *testing.T) {
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cli := m.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	put(t, cli, "/services/b", discovery.Record{Name: "db", Address: "10.0.0.2:1", Status: "running"})
	put(t, cli, "/services/a", discovery.Record{Name: "db", Address: "10.0.0.1:1", Status: "running"})
	if _, err := cli.Put(ctx, "/services/junk", "not json"); err != nil {
		t.Fatal(err)
	}
	recs, rev, err := discovery.List(ctx, cli, "/services/")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Key != "/services/a" || recs[1].Key != "/services/b" || recs[0].ModRevision == 0 {
		t.Fatalf("List = %+v", recs)
	}

	addrs := discovery.NewAddresses(ctx, cli, "/services/", "db")
	defer addrs.Close()
	waitAddrs := func(want string) {
		t.Helper()
		for {
			ch := addrs.Changed()
			if got := strings.Join(addrs.List(), ","); got == want {
				return
			}
			select {
			case <-ch:
			case <-ctx.Done():
				t.Fatalf("addresses = %q, want %q", strings.Join(addrs.List(), ","), want)
			}
		}
	}
	waitAddrs("10.0.0.1:1,10.0.0.2:1")

	// Changes after List's revision: nothing before it, everything after.
	events := discovery.Watch(ctx, cli, "/services/", discovery.AfterRevision(rev))
	del(t, cli, "/services/a")
	put(t, cli, "/services/b", discovery.Record{Name: "db", Address: "10.0.0.2:1", Status: "failed"})
	put(t, cli, "/services/c", discovery.Record{Name: "other", Address: "10.0.0.3:1", Status: "running"})
	var got []string
	for len(got) < 3 {
		select {
		case ev := <-events:
			got = append(got, ev.Type.String()+" "+ev.Key+" "+ev.Record.Status)
		case <-ctx.Done():
			t.Fatalf("events so far: %q", got)
		}
	}
	want := []string{"DELETE /services/a ", "PUT /services/b failed", "PUT /services/c running"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events %q, want %q", got, want)
	}
	// a is gone, b failed, c is another service.
	waitAddrs("")
	put(t, cli, "/services/d", discovery.Record{Name: "db", Address: "10.0.0.4:1", Status: "running"})
	waitAddrs("10.0.0.4:1")
}
