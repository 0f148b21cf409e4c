// Package storage is cairn's only store: one pebble database per member holds
// the Raft log, the Raft hard state and snapshot metadata, and the state
// machine (MVCC key revisions, leases, alarms, members, applied index).
//
// Key layout (the first byte is the namespace):
//
//	0x01 'h'                    raftpb.HardState
//	0x01 's'                    raftpb.SnapshotMetadata of the last Raft snapshot
//	0x01 'e' <index:8 BE>       raftpb.Entry (the Raft log)
//	0x02 <name>                 state-machine metadata (applied index, compaction
//	                            revisions, conf state, cluster identity)
//	0x03 <main:8 BE> '_' <sub:8 BE> [ 't' ]
//	                            mvccpb.KeyValue at that revision; the trailing 't'
//	                            marks a deletion (the same revision key etcd uses)
//	0x04 <id:8 BE>              lease record (etcd's leasepb.Lease encoding)
//	0x05 <member:8 BE><type:4>  raised alarm
//	0x06 <member id:8 BE>       member record (JSON)
//
// Durability contract:
//   - SaveRaft writes the hard state and new log entries in one batch with
//     Sync; nothing in a Ready is acknowledged before it returns.
//   - The apply loop writes the state produced by a run of entries together
//     with the applied index in one batch (NoSync). Every Raft batch after it
//     is synced through the same write-ahead log, so an applied index that
//     survives a crash always comes with the state it describes; entries after
//     it are replayed from the synced Raft log.
//   - The Raft log is truncated only below an index whose state was made
//     durable (TruncateLog syncs first).
package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Namespaces, the first byte of every key.
const (
	nsRaft   byte = 0x01
	nsMeta   byte = 0x02
	nsKV     byte = 0x03
	nsLease  byte = 0x04
	nsAlarm  byte = 0x05
	nsMember byte = 0x06
)

var (
	keyHardState = []byte{nsRaft, 'h'}
	keySnapMeta  = []byte{nsRaft, 's'}
	prefixEntry  = []byte{nsRaft, 'e'}
)

// ErrLocked is returned by Open when another process holds the data dir.
var ErrLocked = errors.New("data dir is in use by another process")

// ErrCorrupt wraps every error that means the files on disk cannot be trusted.
var ErrCorrupt = errors.New("data dir is corrupt")

// Engine is the member's pebble database.
type Engine struct {
	db  *pebble.DB
	dir string

	fatalMu  sync.Mutex
	fatalErr error
	onFatal  func(error)
	// OnSync, when set, observes the duration of each synced Raft batch.
	OnSync func(time.Duration)
}

// Options tune the engine. The zero value is the production setting.
type Options struct {
	// FS replaces the operating system's file system (crash tests).
	FS vfs.FS
	// CacheBytes is the block cache size; 0 means 32 MiB.
	CacheBytes int64
	// OnFatal is called once when pebble finds damaged files or fails in
	// the background (the error wraps ErrCorrupt). The member must stop:
	// its data cannot be trusted. nil only records the error (Fatal).
	OnFatal func(error)
	// WALDir puts the write-ahead log (where every Raft batch is
	// synced) in its own directory, e.g. on a dedicated disk; "" keeps
	// it in dir.
	WALDir string
}

// memTableBytes is the largest memtable size. Without cgo the memtables
// live in the Go heap, where the collector lets the heap grow to twice
// what is live: each memtable byte costs about two of RSS. 8 MiB memtables
// (pebble starts smaller and doubles up to this) keep a put load's peak
// RSS ~50 MiB lower than 32 MiB ones at the same throughput; 4 MiB ones
// flush so often that writes stall.
const memTableBytes = 8 << 20

// Open opens (creating if needed) the engine in dir.
func Open(dir string, o Options) (*Engine, error) {
	fs := o.FS
	if fs == nil {
		fs = vfs.Default
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create data dir %q: %w", dir, err)
		}
		if err := checkWritable(dir); err != nil {
			return nil, err
		}
	} else if err := fs.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create data dir %q: %w", dir, err)
	}
	cacheBytes := o.CacheBytes
	if cacheBytes == 0 {
		cacheBytes = 32 << 20
	}
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	e := &Engine{dir: dir, onFatal: o.OnFatal}
	opts := &pebble.Options{
		FS:                          fs,
		Cache:                       cache,
		MemTableSize:                memTableBytes,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       1000,
		LBaseMaxBytes:               64 << 20,
		MaxOpenFiles:                1000,
		Logger:                      quietLogger{e},
		FormatMajorVersion:          pebble.FormatNewest,
		WALDir:                      o.WALDir,
	}
	if o.WALDir != "" && o.FS == nil {
		if err := os.MkdirAll(o.WALDir, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create wal dir %q: %w", o.WALDir, err)
		}
		if err := checkWritable(o.WALDir); err != nil {
			return nil, err
		}
	}
	opts.EventListener = &pebble.EventListener{
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			e.fail(fmt.Errorf("%w: %s: %v", ErrCorrupt, info.Path, info.Details))
		},
		BackgroundError: func(err error) {
			if pebble.IsCorruptionError(err) {
				e.fail(fmt.Errorf("%w: %v", ErrCorrupt, err))
			}
		},
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, classifyOpenError(dir, err)
	}
	e.db = db
	if err := e.Fatal(); err != nil {
		db.Close()
		return nil, err
	}
	return e, nil
}

func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("data dir %q is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func classifyOpenError(dir string, err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) ||
		strings.Contains(msg, "lock held") || strings.Contains(msg, "resource temporarily unavailable"):
		return fmt.Errorf("%w: %s (%v)", ErrLocked, dir, err)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("data dir %q is not writable: %w", dir, err)
	default:
		return fmt.Errorf("%w: cannot open %s: %v", ErrCorrupt, filepath.Clean(dir), err)
	}
}

// DB exposes the pebble database to the packages that own a namespace
// (mvcc, apply). They must only touch their own namespace.
func (e *Engine) DB() *pebble.DB { return e.db }

// Dir is the engine's directory.
func (e *Engine) Dir() string { return e.dir }

// Close closes the database.
func (e *Engine) Close() error { return e.db.Close() }

// Sync makes every batch committed so far durable.
func (e *Engine) Sync() error {
	b := e.db.NewBatch()
	defer b.Close()
	if err := b.LogData([]byte("sync"), nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// Size is the database's total size on disk, in bytes.
func (e *Engine) Size() int64 { return int64(e.db.Metrics().DiskSpaceUsage()) }

// SizeInUse estimates the bytes holding live data (without obsolete
// versions still awaiting background compaction).
func (e *Engine) SizeInUse() int64 {
	n, err := e.db.EstimateDiskUsage([]byte{0x00}, []byte{0xff})
	if err != nil {
		return e.Size()
	}
	return int64(n) + int64(e.db.Metrics().MemTable.Size)
}

// u64 encodes v big-endian.
func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func withPrefix(p []byte, rest ...[]byte) []byte {
	n := len(p)
	for _, r := range rest {
		n += len(r)
	}
	k := make([]byte, 0, n)
	k = append(k, p...)
	for _, r := range rest {
		k = append(k, r...)
	}
	return k
}

// get returns a copy of the value of key, or nil, false.
func get(r pebble.Reader, key []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, true, nil
}

// fail records the first fatal storage error and tells the owner.
func (e *Engine) fail(err error) {
	e.fatalMu.Lock()
	first := e.fatalErr == nil
	if first {
		e.fatalErr = err
	}
	e.fatalMu.Unlock()
	if first && e.onFatal != nil {
		e.onFatal(err)
	}
}

// Fatal is the fatal storage error seen so far, if any.
func (e *Engine) Fatal() error {
	e.fatalMu.Lock()
	defer e.fatalMu.Unlock()
	return e.fatalErr
}

// Classify wraps pebble's corruption errors in ErrCorrupt.
func Classify(err error) error {
	if err != nil && pebble.IsCorruptionError(err) && !errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return err
}

// quietLogger keeps pebble's chatter out of the member's log and turns
// its fatal reports into an error for the member instead of a crash.
type quietLogger struct{ e *Engine }

func (quietLogger) Infof(string, ...interface{})  {}
func (quietLogger) Errorf(string, ...interface{}) {}

// Pebble assumes Fatalf does not return. With an owner (OnFatal), the error
// is reported and the calling goroutine parks while the member exits with
// it; without one, it panics.
func (l quietLogger) Fatalf(format string, args ...interface{}) {
	err := fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	l.e.fail(err)
	if l.e.onFatal == nil {
		panic(err)
	}
	select {}
}

// CompactAll runs a manual compaction over the whole key space, so space
// held by deleted and overwritten records is returned to the file system.
// Pebble compacts in the background; reads and writes continue.
func (e *Engine) CompactAll(ctx context.Context) error {
	if err := e.db.Flush(); err != nil {
		return err
	}
	return e.db.Compact(ctx, []byte{0x00}, []byte{0xff}, true)
}
