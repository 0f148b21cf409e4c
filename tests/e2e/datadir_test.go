package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// A data dir held by a running member, or with corrupt files, is a clear
// error at start: the server exits non-zero, says what is wrong, and
// leaves the files as they were.

func TestDataDirLocked(t *testing.T) {
	if Kind() != KindCairn {
		t.Skip("cairn's own start-up checks")
	}
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	m.Ctl(t, "put", "k", "v")
	ExpectStartFailure(t, MemberConfig{DataDir: m.DataDir()}, "data dir is in use by another process")
	// The running member is unharmed.
	m.ExpectCtl(t, "k\nv\n", "get", "k")
}

func TestDataDirCorrupt(t *testing.T) {
	if Kind() != KindCairn {
		t.Skip("cairn's own start-up checks")
	}
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	m.Ctl(t, "put", "k", "v")
	dir := m.DataDir()
	m.Stop()
	manifests, err := filepath.Glob(filepath.Join(dir, "member", "MANIFEST-*"))
	if err != nil || len(manifests) == 0 {
		t.Fatalf("no manifest in %s: %v", dir, err)
	}
	for _, f := range manifests {
		if err := os.WriteFile(f, []byte("not a manifest"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ExpectStartFailure(t, MemberConfig{DataDir: dir}, "data dir is corrupt")
}
