package mvcc

import (
	"errors"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/internal/storage"
)

// Write is one write request's view of the store: every change it makes
// shares one main revision. Reads through it see its own changes. Only the
// apply goroutine writes; one Write at a time.
type Write struct {
	s      *Store
	b      *pebble.Batch // an indexed batch: reads see earlier writes in it
	begin  int64         // the store's pending revision before this write
	sub    int64         // next sub revision
	events []*mvccpb.Event
}

// Write starts a write request whose changes go into b (an indexed batch).
func (s *Store) Write(b *pebble.Batch) *Write {
	s.mu.RLock()
	begin := s.pendingRev
	s.mu.RUnlock()
	return &Write{s: s, b: b, begin: begin}
}

// rev is the main revision of this write's changes.
func (w *Write) rev() int64 { return w.begin + 1 }

// Rev is the revision a read inside this write sees: the write's own
// revision once it changed something.
func (w *Write) Rev() int64 {
	if w.sub > 0 {
		return w.rev()
	}
	return w.begin
}

// Range reads as the write sees the store: at the latest revision
// including this write's own changes, or at an older revision.
func (w *Write) Range(key, end []byte, o RangeOptions) (*RangeResult, error) {
	cur := w.Rev()
	w.s.mu.RLock()
	if o.KeysOnly && !o.Count {
		kvs, count, err := w.s.keysLocked(key, end, o, cur)
		w.s.mu.RUnlock()
		if err != nil {
			return nil, err
		}
		return &RangeResult{Rev: cur, Count: count, KVs: kvs}, nil
	}
	revs, count, err := w.s.lookupLocked(key, end, o, cur)
	w.s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	res := &RangeResult{Rev: cur, Count: count}
	if o.Count {
		return res, nil
	}
	res.KVs, err = fetch(w.b, revs, nil)
	if errors.Is(err, ErrKeyNotFound) {
		return nil, ErrCompacted
	}
	return res, err
}

// Put sets key to value with lease. It returns the lease of the value it
// replaced (0 if none, or if the key did not exist); the value itself is
// not read (a caller that needs it reads it first with Range).
func (w *Write) Put(key, value []byte, lease int64) (prevLease int64, err error) {
	rev := Revision{w.rev(), w.sub}
	w.s.mu.RLock()
	h := w.s.ix.getWith(&w.s.wpivot, key)
	var created Revision
	var ver int64
	ok := false
	if h != nil {
		_, created, ver, ok = h.at(w.Rev())
	}
	if ok {
		prevLease = w.s.leased[string(key)]
	}
	w.s.mu.RUnlock()
	if !ok {
		created = rev
		ver = 0
	}
	kv := &mvccpb.KeyValue{
		Key:            key,
		Value:          value,
		CreateRevision: created.Main,
		ModRevision:    rev.Main,
		Version:        ver + 1,
		Lease:          lease,
	}
	if err := w.writeRecord(rev, false, kv); err != nil {
		return 0, err
	}
	w.s.mu.Lock()
	// Only this goroutine changes the index: h is still the key's
	// history, and a key without one still has none.
	if h == nil {
		h = w.s.ix.insert(key)
	}
	h.put(rev)
	w.s.setLeaseLocked(key, lease, false)
	w.s.mu.Unlock()
	w.sub++
	w.events = append(w.events, &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv})
	return prevLease, nil
}

// DeleteRange deletes the keys in [key, end) (same conventions as Range)
// and returns the deleted key-values.
func (w *Write) DeleteRange(key, end []byte) ([]*mvccpb.KeyValue, error) {
	res, err := w.Range(key, end, RangeOptions{})
	if err != nil {
		return nil, err
	}
	for _, kv := range res.KVs {
		rev := Revision{w.rev(), w.sub}
		tomb := &mvccpb.KeyValue{Key: kv.Key}
		if err := w.writeRecord(rev, true, tomb); err != nil {
			return nil, err
		}
		w.s.mu.Lock()
		w.s.ix.getOrCreate(kv.Key).tombstone(rev)
		w.s.setLeaseLocked(kv.Key, 0, true)
		w.s.mu.Unlock()
		w.sub++
		w.events = append(w.events, &mvccpb.Event{
			Type: mvccpb.Event_DELETE,
			Kv:   &mvccpb.KeyValue{Key: kv.Key, ModRevision: rev.Main},
		})
	}
	return res.KVs, nil
}

// maxScratch is the largest encoding buffer kept between records.
const maxScratch = 64 << 10

func (w *Write) writeRecord(rev Revision, tomb bool, kv *mvccpb.KeyValue) error {
	// The batch copies the record: encode it in the writer's buffer.
	v := encodeKV(w.s.scratch[:0], kv)
	if cap(v) <= maxScratch {
		w.s.scratch = v[:0]
	}
	k := storage.KVKey(rev.Main, rev.Sub, tomb)
	w.s.bytes.Add(int64(len(k) + len(v)))
	return w.b.Set(k, v, nil)
}

// End finishes the write. If it changed anything, the store's pending
// revision advances and the write's events are returned (their revision is
// published later, with Publish).
func (w *Write) End() []*mvccpb.Event {
	if w.sub == 0 {
		return nil
	}
	w.s.mu.Lock()
	w.s.pendingRev = w.rev()
	w.s.mu.Unlock()
	return w.events
}

// ScheduleCompaction compacts the index at rev and records the compaction
// in b. It returns ErrCompacted if rev is not newer than the last
// compaction, ErrFutureRev if rev is past the latest revision. The records
// made unreachable are removed later by CompactPhysical.
func (s *Store) ScheduleCompaction(b *pebble.Batch, rev int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev <= s.compactRev {
		return ErrCompacted
	}
	if rev > s.pendingRev {
		return ErrFutureRev
	}
	if err := b.Set(storage.MetaKey(storage.MetaScheduledCompact), storage.PutU64(uint64(rev)), nil); err != nil {
		return err
	}
	// A fresh set: after compacting the index, its revisions at or below
	// rev are exactly the records to keep.
	s.keep = make(map[Revision]struct{})
	s.compactIndexLocked(rev)
	s.compactRev = rev
	return nil
}

// CompactPhysical removes the records at or below the compaction revision
// that no read can reach, batchLimit records per batch, then records the
// compaction as finished. It runs beside the apply loop; readers at older
// revisions get ErrCompacted. It returns the compaction revision done.
func (s *Store) CompactPhysical(batchLimit int) (int64, error) {
	s.mu.RLock()
	rev := s.compactRev
	keep := s.keep
	s.mu.RUnlock()
	if rev <= 0 || keep == nil {
		return rev, nil
	}
	if batchLimit <= 0 {
		batchLimit = 1000
	}
	lo, _ := storage.KVSpan()
	hi := storage.KVKeyLowerBound(rev + 1)
	for {
		b := s.db.NewBatch()
		n := 0
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			b.Close()
			return 0, err
		}
		var last []byte
		var freed int64
		for it.First(); it.Valid() && n < batchLimit; it.Next() {
			main, sub, _, _ := storage.ParseKVKey(it.Key())
			last = append(last[:0], it.Key()...)
			s.mu.RLock()
			_, kept := keep[Revision{main, sub}]
			s.mu.RUnlock()
			if kept {
				continue
			}
			if err := b.Delete(it.Key(), nil); err != nil {
				it.Close()
				b.Close()
				return 0, err
			}
			freed += int64(len(it.Key()) + len(it.Value()))
			n++
		}
		more := it.Valid()
		if err := it.Close(); err != nil {
			b.Close()
			return 0, err
		}
		if !more {
			if err := b.Set(storage.MetaKey(storage.MetaFinishedCompact), storage.PutU64(uint64(rev)), nil); err != nil {
				b.Close()
				return 0, err
			}
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			b.Close()
			return 0, err
		}
		b.Close()
		s.bytes.Add(-freed)
		if !more {
			break
		}
		lo = append(append([]byte(nil), last...), 0)
	}
	s.mu.Lock()
	if s.compactRev == rev {
		s.keep = nil
	}
	s.mu.Unlock()
	return rev, nil
}
