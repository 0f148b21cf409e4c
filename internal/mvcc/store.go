// Package mvcc is cairn's multi-version key-value store, with etcd's
// semantics: every write request makes one new store revision; each key has
// a create revision, a mod revision and a version that counts changes since
// its creation (a deletion resets it); reads can be served at any revision
// since the last compaction.
//
// Each change is one pebble record keyed by its revision (storage.KVKey),
// holding the mvccpb.KeyValue, so events are a scan in revision order
// (watch catch-up) and the layout matches etcd's "key" bucket (snapshots).
// An in-memory index maps each key to its revisions; it is rebuilt from the
// records at start.
//
// Order of operations (one writer, many readers):
//
//	apply goroutine: w := s.Write(batch) ... w.Put/DeleteRange ... w.End()
//	                 (more writes in the same batch) ... batch.Commit
//	                 s.Publish(rev)   // readers and watchers now see rev
//	readers:         s.Range(...) at any revision <= the published one
//
// Changes made by a write are in the index before the batch commits, but no
// reader looks past the published revision, so none sees them early.
package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/internal/storage"
)

// Errors returned to the API layer, which maps them to etcd's rpctypes.
var (
	ErrCompacted   = errors.New("mvcc: required revision has been compacted")
	ErrFutureRev   = errors.New("mvcc: required revision is a future revision")
	ErrKeyNotFound = errors.New("mvcc: key not found")
)

// Store is the MVCC store of one member.
type Store struct {
	db *pebble.DB

	mu         sync.RWMutex // guards everything below
	ix         *index
	rev        int64 // published (committed, visible) revision
	pendingRev int64 // last revision handed out to a write, >= rev
	compactRev int64 // last compaction revision applied to the index (-1 if none)
	// keep lists the revisions that the last compaction must leave in
	// the store; nil once the physical compaction is done.
	keep map[Revision]struct{}
	// leased maps each live key whose latest value has a lease to that
	// lease, as of the last write applied (published or not): a put
	// learns the lease it replaces without reading the old record.
	leased map[string]int64

	// Used only by the one goroutine that writes (see Write): a lookup
	// key for the index and the buffer records are encoded in before
	// the batch copies them.
	wpivot  keyHistory
	scratch []byte

	// records caches small records for point reads (Range).
	records recordCache

	// bytes is the size of the records the store holds (keys and values
	// of every revision not yet removed by compaction): the space the
	// quota counts.
	bytes atomic.Int64
}

// Bytes is the size of the records the store holds: what
// --quota-backend-bytes limits and what compaction reduces.
func (s *Store) Bytes() int64 { return s.bytes.Load() }

// Open builds the store from the records in db: it rebuilds the key index
// and reads the compaction state. The returned list of leased keys lets the
// caller re-attach keys to leases.
func Open(db *pebble.DB) (*Store, error) {
	s := &Store{db: db, ix: newIndex(), compactRev: -1, leased: make(map[string]int64)}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload rebuilds the store from the records in its database, after they
// were replaced wholesale (a snapshot from the leader was installed).
// Readers see the old state until it returns, then the new one.
func (s *Store) Reload() error {
	n := &Store{db: s.db, ix: newIndex(), compactRev: -1, leased: make(map[string]int64)}
	if err := n.load(); err != nil {
		return err
	}
	s.mu.Lock()
	s.ix, s.rev, s.pendingRev, s.compactRev, s.keep, s.leased = n.ix, n.rev, n.pendingRev, n.compactRev, n.keep, n.leased
	s.bytes.Store(n.bytes.Load())
	s.records.clear()
	s.mu.Unlock()
	return nil
}

// load reads the compaction state and rebuilds the index into s.
func (s *Store) load() error {
	db := s.db
	if v, ok, err := storage.GetMeta(db, storage.MetaScheduledCompact); err != nil {
		return err
	} else if ok {
		s.compactRev = int64(storage.U64(v))
	}
	lo, hi := storage.KVSpan()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	var kv mvccpb.KeyValue
	for it.First(); it.Valid(); it.Next() {
		main, sub, tomb, ok := storage.ParseKVKey(it.Key())
		if !ok {
			return fmt.Errorf("%w: bad revision key %x", storage.ErrCorrupt, it.Key())
		}
		kv.Reset()
		if err := decodeKV(it.Value(), &kv); err != nil {
			return fmt.Errorf("%w: revision %d_%d: %v", storage.ErrCorrupt, main, sub, err)
		}
		s.bytes.Add(int64(len(it.Key()) + len(it.Value())))
		h := s.ix.getOrCreate(kv.Key)
		r := Revision{main, sub}
		if tomb {
			// A key that is not live here had its earlier records
			// compacted away: the tombstone kept at the compaction
			// revision is then a generation of its own.
			h.tombstone(r)
		} else {
			h.restore(r, kv.CreateRevision, kv.Version)
		}
		s.setLeaseLocked(kv.Key, kv.Lease, tomb)
		if main > s.rev {
			s.rev = main
		}
	}
	if err := it.Error(); err != nil {
		return storage.Classify(err)
	}
	// Records at or below the compaction revision may still be present if
	// the physical compaction did not finish before a stop: compact the
	// index again; the caller resumes the physical part.
	if s.compactRev > 0 {
		s.keep = make(map[Revision]struct{})
		s.compactIndexLocked(s.compactRev)
		if s.rev < s.compactRev {
			s.rev = s.compactRev
		}
	}
	if s.rev == 0 {
		s.rev = 1 // an empty store is at revision 1, as in etcd
	}
	s.pendingRev = s.rev
	return nil
}

// Rev is the published revision.
func (s *Store) Rev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// CompactRev is the last compaction revision, 0 if none.
func (s *Store) CompactRev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.compactRev < 0 {
		return 0
	}
	return s.compactRev
}

// Revs returns the published and the compacted revision.
func (s *Store) Revs() (current, compacted int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.compactRev
	if c < 0 {
		c = 0
	}
	return s.rev, c
}

// PendingRev is the revision of the last write applied, published or not.
func (s *Store) PendingRev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pendingRev
}

// Publish makes revisions up to rev visible to readers. The apply loop calls
// it after the batch holding them commits.
func (s *Store) Publish(rev int64) {
	s.mu.Lock()
	if rev > s.rev {
		s.rev = rev
	}
	s.mu.Unlock()
}

// RangeOptions select what Range returns.
type RangeOptions struct {
	Rev   int64 // 0 means the latest
	Limit int64 // 0 means no limit
	Count bool  // count only, no key-values
	// KeysOnly returns key-values without value and lease, made from
	// the index alone: no record is read.
	KeysOnly bool
}

// RangeResult is what a range finds.
type RangeResult struct {
	KVs   []*mvccpb.KeyValue
	Rev   int64 // the revision the range was served at (the store's latest)
	Count int   // keys in the range, ignoring Limit
}

// Range reads keys in [key, end) at a revision. end == nil means key alone;
// an empty end means every key >= key.
func (s *Store) Range(key, end []byte, o RangeOptions) (*RangeResult, error) {
	s.mu.RLock()
	cur := s.rev
	if o.KeysOnly && !o.Count {
		kvs, count, err := s.keysLocked(key, end, o, cur)
		s.mu.RUnlock()
		if err != nil {
			return nil, err
		}
		return &RangeResult{Rev: cur, Count: count, KVs: kvs}, nil
	}
	revs, count, err := s.lookupLocked(key, end, o, cur)
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	res := &RangeResult{Rev: cur, Count: count}
	if o.Count {
		return res, nil
	}
	res.KVs, err = fetch(s.db, revs, &s.records)
	if errors.Is(err, ErrKeyNotFound) {
		// A compaction removed a record this read needed: the revision
		// was compacted while the read was in flight.
		return nil, ErrCompacted
	}
	return res, err
}

// readRevLocked is the revision a range asking for rev reads at, with the
// store at cur: cur for 0 or less; an error for one past cur or below the
// compaction.
func (s *Store) readRevLocked(rev, cur int64) (int64, error) {
	if rev > cur {
		return 0, ErrFutureRev
	}
	if rev <= 0 {
		rev = cur
	}
	if rev < s.compactRev {
		return 0, ErrCompacted
	}
	return rev, nil
}

func (s *Store) lookupLocked(key, end []byte, o RangeOptions, cur int64) ([]Revision, int, error) {
	rev, err := s.readRevLocked(o.Rev, cur)
	if err != nil {
		return nil, 0, err
	}
	var revs []Revision
	count := 0
	s.ix.ascend(key, end, func(h *keyHistory) bool {
		mod, _, _, ok := h.at(rev)
		if !ok {
			return true
		}
		count++
		if !o.Count && (o.Limit <= 0 || int64(len(revs)) < o.Limit) {
			revs = append(revs, mod)
		}
		return true
	})
	return revs, count, nil
}

// keysLocked is lookupLocked for a keys-only range: the key-values come
// from the index (key, create and mod revisions, version).
func (s *Store) keysLocked(key, end []byte, o RangeOptions, cur int64) ([]*mvccpb.KeyValue, int, error) {
	rev, err := s.readRevLocked(o.Rev, cur)
	if err != nil {
		return nil, 0, err
	}
	kvs := []*mvccpb.KeyValue{}
	var slab []mvccpb.KeyValue
	var a arena
	count := 0
	s.ix.ascend(key, end, func(h *keyHistory) bool {
		mod, created, ver, ok := h.at(rev)
		if !ok {
			return true
		}
		count++
		if o.Limit > 0 && int64(len(kvs)) >= o.Limit {
			return true
		}
		if len(slab) == 0 {
			slab = make([]mvccpb.KeyValue, 64)
		}
		kv := &slab[0]
		slab = slab[1:]
		// A copy: the index's key must not be reachable by callers.
		kv.Key = a.copy(h.key, 64)
		kv.CreateRevision, kv.ModRevision, kv.Version = created.Main, mod.Main, ver
		kvs = append(kvs, kv)
		return true
	})
	return kvs, count, nil
}

// Get returns key's value as of rev, or nil if it did not exist then.
func (s *Store) Get(key []byte, rev int64) (*mvccpb.KeyValue, error) {
	r, err := s.Range(key, nil, RangeOptions{Rev: rev})
	if err != nil {
		return nil, err
	}
	if len(r.KVs) == 0 {
		return nil, nil
	}
	return r.KVs[0], nil
}

// Events calls fn for every change with from <= revision <= to, in revision
// order, stopping early when fn returns false. to is capped at the
// published revision.
func (s *Store) Events(from, to int64, fn func(ev *mvccpb.Event) bool) error {
	cur, compacted := s.Revs()
	if from < compacted {
		return ErrCompacted
	}
	if to > cur {
		to = cur
	}
	if from > to {
		return nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: storage.KVKeyLowerBound(from),
		UpperBound: storage.KVKeyLowerBound(to + 1),
	})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		main, _, tomb, _ := storage.ParseKVKey(it.Key())
		kv := &mvccpb.KeyValue{}
		if err := decodeKV(append([]byte(nil), it.Value()...), kv); err != nil {
			return fmt.Errorf("%w: revision %d: %v", storage.ErrCorrupt, main, err)
		}
		ev := &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv}
		if tomb {
			ev.Type = mvccpb.Event_DELETE
			kv.ModRevision = main
		}
		if !fn(ev) {
			return nil
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	// A compaction may have raced the scan; report it rather than a gap.
	if _, c := s.Revs(); from < c {
		return ErrCompacted
	}
	return nil
}

// LeasedKeys calls fn for every live key attached to a lease, in key
// order, as of the last write applied. The server calls it when no write
// is in flight (at start, after installing a snapshot).
func (s *Store) LeasedKeys(fn func(key []byte, lease int64)) error {
	s.mu.RLock()
	keys := make([]string, 0, len(s.leased))
	for k := range s.leased {
		keys = append(keys, k)
	}
	leases := make([]int64, len(keys))
	sort.Strings(keys)
	for i, k := range keys {
		leases[i] = s.leased[k]
	}
	s.mu.RUnlock()
	for i, k := range keys {
		fn([]byte(k), leases[i])
	}
	return nil
}

// setLeaseLocked records the lease of key's latest change.
func (s *Store) setLeaseLocked(key []byte, lease int64, tomb bool) {
	if tomb || lease == 0 {
		if len(s.leased) > 0 {
			delete(s.leased, string(key))
		}
		return
	}
	s.leased[string(key)] = lease
}

// HashKV hashes the store's records up to rev (0 = latest) that a read at
// or after the compaction revision can see. Members that applied the same
// entries have the same hash.
func (s *Store) HashKV(rev int64) (hash uint32, hashRev, compactRev int64, err error) {
	s.mu.RLock()
	cur := s.rev
	compactRev = s.compactRev
	if compactRev < 0 {
		compactRev = 0
	}
	keep := s.keepForHashLocked()
	snap := s.db.NewSnapshot()
	s.mu.RUnlock()
	defer snap.Close()
	if rev == 0 {
		rev = cur
	}
	if rev > cur {
		return 0, 0, 0, ErrFutureRev
	}
	if rev < compactRev {
		return 0, 0, 0, ErrCompacted
	}
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	h.Write([]byte("key"))
	lo, _ := storage.KVSpan()
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: storage.KVKeyLowerBound(rev + 1)})
	if err != nil {
		return 0, 0, 0, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		main, sub, _, _ := storage.ParseKVKey(it.Key())
		if main <= compactRev {
			if _, ok := keep[Revision{main, sub}]; !ok {
				continue
			}
		}
		h.Write(it.Key()[1:])
		h.Write(it.Value())
	}
	return h.Sum32(), cur, compactRev, it.Error()
}

// keepForHashLocked is the set of records at or below the compaction
// revision that stay visible.
func (s *Store) keepForHashLocked() map[Revision]struct{} {
	if s.compactRev <= 0 {
		return nil
	}
	keep := make(map[Revision]struct{})
	s.ix.tree.Ascend(func(h *keyHistory) bool {
		for _, g := range h.generations {
			for _, r := range g.revs {
				if r.Main <= s.compactRev {
					keep[r] = struct{}{}
				}
			}
		}
		return true
	})
	return keep
}

// compactIndexLocked drops index history below atRev and records what
// the physical compaction must keep.
func (s *Store) compactIndexLocked(atRev int64) {
	var empty [][]byte
	s.ix.tree.Ascend(func(h *keyHistory) bool {
		if h.compact(atRev, s.keep) {
			empty = append(empty, h.key)
		}
		return true
	})
	for _, k := range empty {
		s.ix.tree.Delete(&keyHistory{key: k})
	}
}

// sortKVs orders kvs by key (used by tests and callers that merge).
func sortKVs(kvs []*mvccpb.KeyValue) {
	sort.Slice(kvs, func(i, j int) bool { return bytes.Compare(kvs[i].Key, kvs[j].Key) < 0 })
}

// View is a read-only view of the store at one revision: every Range
// without an explicit revision reads at it, so several reads (a read-only
// txn's compares and ranges) see one consistent state.
type View struct {
	s   *Store
	rev int64
}

// View returns a view at the published revision.
func (s *Store) View() *View { return &View{s: s, rev: s.Rev()} }

// Rev is the view's revision.
func (v *View) Rev() int64 { return v.rev }

// Range reads as Store.Range does, at the view's revision unless o.Rev
// names one (which must not be past the view's). The result's Rev is the
// view's revision.
func (v *View) Range(key, end []byte, o RangeOptions) (*RangeResult, error) {
	if o.Rev > v.rev {
		return nil, ErrFutureRev
	}
	if o.Rev <= 0 {
		o.Rev = v.rev
	}
	res, err := v.s.Range(key, end, o)
	if err != nil {
		return nil, err
	}
	res.Rev = v.rev
	return res, nil
}
