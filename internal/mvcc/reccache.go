package mvcc

import "sync/atomic"

// recordCache keeps copies of recently read small records, by revision,
// for reads of one or two keys. A point lookup in pebble costs far more
// than the record: it builds an iterator over the memtables and levels
// (15 % of the server's CPU under 1000 clients reading one key). A
// revision names one write forever, so a cached record never goes
// stale; a revision that compaction removed is no longer in the index
// and is never asked for again, and Reload clears the cache when a
// snapshot replaces the database.
//
// It is direct-mapped: slot = revision modulo the slot count, so it needs
// no lock and no bookkeeping, and a new record simply takes its slot.
// Only reads fill it (a write load leaves it empty), and only records up
// to recordCacheMax bytes, so it holds at most slots × recordCacheMax.
type recordCache struct {
	slots [recordCacheSlots]atomic.Pointer[cachedRecord]
}

const (
	recordCacheSlots = 1024 // a power of two
	recordCacheMax   = 2 << 10
)

type cachedRecord struct {
	rev  Revision
	data []byte
}

func (c *recordCache) slot(rv Revision) *atomic.Pointer[cachedRecord] {
	h := uint64(rv.Main)*0x9e3779b97f4a7c15 + uint64(rv.Sub)
	return &c.slots[h>>54&(recordCacheSlots-1)]
}

// get returns the cached record of rv, or nil. The bytes must not be
// changed.
func (c *recordCache) get(rv Revision) []byte {
	if e := c.slot(rv).Load(); e != nil && e.rev == rv {
		return e.data
	}
	return nil
}

// put caches a copy of the record data of rv, if it is small enough.
func (c *recordCache) put(rv Revision, data []byte) {
	if len(data) > recordCacheMax {
		return
	}
	c.slot(rv).Store(&cachedRecord{rev: rv, data: append([]byte(nil), data...)})
}

// clear empties the cache.
func (c *recordCache) clear() {
	for i := range c.slots {
		c.slots[i].Store(nil)
	}
}
