package storage_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/internal/storage"
)

// TestWALDir: with Options.WALDir the write-ahead log lives there, the
// Raft state survives a restart with the same WALDir, and a restart that
// forgets the WALDir fails naming it rather than silently losing the
// synced entries that are only in that WAL.
func TestWALDir(t *testing.T) {
	dir, wal := t.TempDir(), filepath.Join(t.TempDir(), "wal")
	o := storage.Options{WALDir: wal, CacheBytes: 1 << 20}
	e, err := storage.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SaveRaft(hardState(1, 1, 3), entries(1, 3, 1), 0, true); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if logs, _ := filepath.Glob(filepath.Join(wal, "*.log")); len(logs) == 0 {
		t.Fatalf("no WAL in %s", wal)
	}
	if logs, _ := filepath.Glob(filepath.Join(dir, "*.log")); len(logs) != 0 {
		t.Fatalf("WAL files %v in the data dir, want them in %s", logs, wal)
	}
	e = open2(t, dir, o)
	wantEntries(t, load(t, e).Entries, entries(1, 3, 1))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = openNoPanic(dir, storage.Options{CacheBytes: 1 << 20})
	if err == nil {
		t.Fatal("Open without the WALDir the data was written with succeeded")
	}
	if !strings.Contains(err.Error(), wal) {
		t.Fatalf("Open without the WALDir: err %q does not name %s", err, wal)
	}
	t.Logf("Open without the WALDir: %v", err)
}

func open2(t *testing.T, dir string, o storage.Options) *storage.Engine {
	t.Helper()
	e, err := storage.Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return e
}
