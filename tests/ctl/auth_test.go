package ctl_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/tests/e2e"
)

// TestAuth runs the user, role and auth commands through both tools (each
// on its own user and role names), then turns authentication on and
// checks --user, --password and the refusals. The server is etcd: cairn
// does not serve the Auth service yet ("unknown service
// etcdserverpb.Auth"), and the point here is the client side.
func TestAuth(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/usr/bin/etcd"); err != nil {
		t.Skip("/usr/bin/etcd not installed")
	}
	m := e2e.StartMember(t, e2e.MemberConfig{Kind: e2e.KindEtcd})
	compareSequences(t, m, []step{
		s("user", "add", "{p}u:pw"),
		sIn("secret\n", "user", "add", "{p}v", "--interactive=false"),
		s("user", "add", "{p}w", "--new-user-password=x", "-w", "fields"),
		s("role", "add", "{p}r"),
		s("role", "add", "{p}r2", "-w", "json"),
		s("role", "grant-permission", "{p}r", "readwrite", "{p}a", "{p}b"),
		s("role", "grant-permission", "{p}r", "read", "--prefix", "{p}p/"),
		s("role", "grant-permission", "{p}r", "write", "--from-key", "{p}q"),
		s("role", "grant-permission", "{p}r", "read", "{p}single", "-w", "fields"),
		s("role", "grant-permission", "{p}r", "bogus", "a"),
		s("role", "grant-permission", "{p}r", "read", "a", "b", "--prefix"),
		s("user", "grant-role", "{p}u", "{p}r"),
		s("user", "grant-role", "{p}u", "{p}r2", "-w", "json"),
		s("user", "get", "{p}u"),
		s("user", "get", "{p}u", "-w", "json"),
		s("user", "get", "{p}u", "--detail"),
		s("user", "get", "{p}u", "--detail", "-w", "fields"),
		s("user", "get", "{p}u", "-w", "fields"),
		s("role", "get", "{p}r"),
		s("role", "get", "{p}r", "-w", "json"),
		s("role", "get", "{p}r", "-w", "fields"),
		s("role", "get", "{p}nope"),
		s("role", "revoke-permission", "{p}r", "{p}a", "{p}b"),
		s("role", "revoke-permission", "{p}r", "{p}p/", "--prefix"),
		s("role", "revoke-permission", "{p}r", "{p}q", "--from-key", "-w", "json"),
		s("role", "revoke-permission", "{p}r", "{p}single"),
		s("user", "revoke-role", "{p}u", "{p}r2"),
		s("role", "delete", "{p}r2"),
		s("user", "delete", "{p}w"),
		s("user", "delete", "{p}w"),
		s("user", "add"),
		s("user", "grant-role", "x"),
		s("role", "grant-permission", "x"),
	})
	e := ep(m.ClientURL)
	for _, w := range []string{"simple", "json", "fields"} {
		same(t, nil, e, "-w", w, "user", "list")
		same(t, nil, e, "-w", w, "role", "list")
	}

	same(t, nil, e, "auth", "enable") // no root user yet: refused
	cairnctl.must(t, e, "user", "add", "root:rootpw")
	cairnctl.must(t, e, "user", "grant-role", "root", "root")
	if out := cairnctl.must(t, e, "auth", "enable"); out != "Authentication Enabled\n" {
		t.Errorf("auth enable: %q", out)
	}
	cairnctl.must(t, e, "--user=root:rootpw", "put", "e/a", "1")
	for _, args := range [][]string{
		{"--user=root:rootpw", "get", "e/a"},
		{"--user=root", "--password=rootpw", "get", "e/a", "-w", "json"},
		{"--user=e/u:pw", "get", "e/a"},
		{"--user=e/u:pw", "get", "e/zzz"},
		{"--user=root:wrong", "get", "e/a"},
		{"get", "e/a"},
		{"--user=root:rootpw", "--password=x", "get", "e/a"},
	} {
		same(t, nil, append([]string{e}, args...)...)
	}
	// Streams carry the token too: a snapshot needs root.
	snap := filepath.Join(t.TempDir(), "auth.db")
	want := etcdctl.run(t, e, "--user=root:rootpw", "snapshot", "save", snap)
	got := cairnctl.run(t, e, "--user=root:rootpw", "snapshot", "save", snap+"2")
	compare(t, []string{"snapshot", "save", "(auth)"}, want, got, replaceAll(snap+"2", "FILE", snap, "FILE"))
	same(t, nil, e, "--user=e/u:pw", "snapshot", "save", snap+"3")

	// The password is read from stdin when --user has none (etcdctl
	// insists on a terminal there).
	if r := cairnctl.runEnv(t, "rootpw\n", nil, e, "--user=root", "get", "e/a", "--print-value-only"); r.code != 0 || r.stdout != "1\n" {
		t.Errorf("password from stdin: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	r := cairnctl.run(t, e, "get", "e/a")
	if !strings.Contains(r.stderr, "--user") {
		t.Errorf("no hint about --user after a refusal:\n%s", r.stderr)
	}
	if out := cairnctl.must(t, e, "--user=root:rootpw", "auth", "disable"); out != "Authentication Disabled\n" {
		t.Errorf("auth disable: %q", out)
	}
	same(t, nil, e, "--user=root:rootpw", "auth", "disable")
	same(t, nil, e, "auth", "disable")
}
