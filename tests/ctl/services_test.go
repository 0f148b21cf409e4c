package ctl_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/e2e"
)

// TestServices: `cairnctl services` reads the registry that cairn-warden
// writes (records under /services/), through the global flags.
func TestServices(t *testing.T) {
	t.Parallel()
	m := e2e.StartMember(t, e2e.MemberConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := `{"name":"db1","hostname":"h1","address":"127.0.0.1:20000","pid":4242,"warden":"w1",` +
		`"started_at":"2026-11-22T01:00:00Z","restarts":2,"status":"running","health":"passing"}`
	if _, err := m.Client().Put(ctx, "/services/db1", rec); err != nil {
		t.Fatal(err)
	}
	out := cairnctl.must(t, ep(m.ClientURL), "services")
	for _, want := range []string{"NAME", "ADDRESS", "db1", "127.0.0.1:20000", "4242", "running", "w1"} {
		if !strings.Contains(out, want) {
			t.Errorf("cairnctl services: output lacks %q\n%s", want, out)
		}
	}
	got := cairnctl.must(t, ep(m.ClientURL), "services", "get", "db1")
	if !strings.Contains(got, `"pid": 4242`) && !strings.Contains(got, `"pid":4242`) {
		t.Errorf("cairnctl services get db1:\n%s", got)
	}
	if r := cairnctl.run(t, ep(m.ClientURL), "services", "get", "nope"); r.code == 0 {
		t.Errorf("cairnctl services get of an unknown service exited 0:\n%s", r.stdout)
	}
}
