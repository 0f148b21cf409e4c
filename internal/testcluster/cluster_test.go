package testcluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/internal/config"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func put(t *testing.T, cli *clientv3.Client, k, v string) {
	t.Helper()
	if _, err := cli.Put(ctx(t), k, v); err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
}

// get reads k linearizably (clientv3's default) and checks its value.
func get(t *testing.T, cli *clientv3.Client, who, k, want string) {
	t.Helper()
	r, err := cli.Get(ctx(t), k)
	if err != nil {
		t.Fatalf("get %s from %s: %v", k, who, err)
	}
	if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != want {
		t.Fatalf("get %s from %s: %v, want %q", k, who, r.Kvs, want)
	}
}

// checkAll reads every key from every running member.
func checkAll(t *testing.T, c *Cluster, want map[string]string) {
	t.Helper()
	for i, m := range c.Members {
		if !m.Running() {
			continue
		}
		for k, v := range want {
			get(t, c.MemberClient(i), m.Name, k, v)
		}
	}
}

func TestWritesReadBackFromAll(t *testing.T) {
	c := Start(t, 3)
	want := map[string]string{}
	for i := range c.Members {
		for j := 0; j < 3; j++ {
			k, v := fmt.Sprintf("via-%d/%d", i, j), fmt.Sprintf("v%d-%d", i, j)
			put(t, c.MemberClient(i), k, v)
			want[k] = v
			// Linearizable: readable from every member at once.
			for r := range c.Members {
				get(t, c.MemberClient(r), c.Members[r].Name, k, v)
			}
		}
	}
	put(t, c.Client(), "via-all", "x")
	want["via-all"] = "x"
	checkAll(t, c, want)
	c.WaitHashKVEqual()
}

func TestLeaderFailover(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []Option
		wantLog string // in the restarted member's log
	}{
		{"log", nil, ""},
		// The stopped leader misses more entries than the others keep,
		// so it catches up from a snapshot.
		{"snapshot", []Option{WithConfig(func(_ int, cfg *config.Config) {
			cfg.SnapshotCount = 10
			cfg.SnapshotCatchUpEntries = 5
		})}, "installed snapshot from leader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Start(t, 3, tc.opts...)
			want := map[string]string{}
			for j := 0; j < 5; j++ {
				k := fmt.Sprintf("before/%d", j)
				put(t, c.Client(), k, k)
				want[k] = k
			}
			old := c.Leader()
			c.Stop(old)
			lead := c.Leader()
			if lead == old {
				t.Fatalf("leader %d still leads after being stopped", old)
			}
			for j := 0; j < 50; j++ {
				k := fmt.Sprintf("after/%d", j)
				put(t, c.MemberClient((old+1+j%2)%3), k, k) // through both survivors
				want[k] = k
			}
			checkAll(t, c, want)

			c.Restart(old)
			c.WaitHashKVEqual()
			if tc.wantLog != "" && !strings.Contains(c.Members[old].log.tail(maxLog), tc.wantLog) {
				t.Errorf("%s caught up without %q in its log", c.Members[old].Name, tc.wantLog)
			}
			checkAll(t, c, want)
			put(t, c.MemberClient(old), "restarted", "yes")
			want["restarted"] = "yes"
			checkAll(t, c, want)
			c.WaitHashKVEqual()
		})
	}
}

func TestStopAllRestartAll(t *testing.T) {
	c := Start(t, 3)
	want := map[string]string{}
	for j := 0; j < 20; j++ {
		k := fmt.Sprintf("k/%02d", j)
		put(t, c.MemberClient(j%3), k, k)
		want[k] = k
	}
	if _, err := c.Client().Delete(ctx(t), "k/00"); err != nil {
		t.Fatal(err)
	}
	delete(want, "k/00")
	c.WaitHashKVEqual()
	r, err := c.MemberClient(0).Get(ctx(t), "k/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	rev := r.Header.Revision

	c.StopAll()
	c.RestartAll()
	c.Leader()
	checkAll(t, c, want)
	for i := range c.Members {
		r, err := c.MemberClient(i).Get(ctx(t), "k/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) != len(want) {
			t.Fatalf("%s: %d keys after restart, want %d", c.Members[i].Name, len(r.Kvs), len(want))
		}
		if r.Header.Revision != rev {
			t.Fatalf("%s: revision %d after restart, want %d", c.Members[i].Name, r.Header.Revision, rev)
		}
	}
	c.WaitHashKVEqual()
	put(t, c.Client(), "after-restart", "ok")
	want["after-restart"] = "ok"
	checkAll(t, c, want)
}
