package mvcc

import (
	"bytes"

	"github.com/google/btree"
)

// Revision names one change: Main is the store revision (one per write
// request), Sub orders the changes inside it.
type Revision struct {
	Main, Sub int64
}

// Less orders revisions.
func (a Revision) Less(b Revision) bool {
	return a.Main < b.Main || (a.Main == b.Main && a.Sub < b.Sub)
}

// generation is one life of a key: from its creation to its deletion.
// revs holds every change in the life, in order. A closed generation's last
// revision is the deletion (tombstone).
type generation struct {
	created Revision
	ver     int64 // changes in this life so far, including compacted ones
	revs    []Revision
}

// version is the key's version at revs[j].
func (g *generation) version(j int) int64 { return g.ver - int64(len(g.revs)-1-j) }

// keyHistory is the revision history of one key. The last generation is the
// current one; it is empty when the key is deleted (or was compacted away).
//
// Invariants: generations is never empty; every generation but the last is
// non-empty and closed; revisions increase across the whole history.
type keyHistory struct {
	key         []byte
	generations []generation
}

func newKeyHistory(key []byte) *keyHistory {
	return &keyHistory{key: key, generations: []generation{{}}}
}

func (h *keyHistory) put(rev Revision) {
	g := &h.generations[len(h.generations)-1]
	if len(g.revs) == 0 {
		g.created = rev
		g.ver = 0
	}
	g.revs = append(g.revs, rev)
	g.ver++
}

// restore adds a record read back from the store at start. The first
// record of a generation may not be its creation (compaction removed the
// ones before it), so the creation revision and the version come from
// the record itself.
func (h *keyHistory) restore(rev Revision, created, version int64) {
	g := &h.generations[len(h.generations)-1]
	if len(g.revs) == 0 {
		g.created = Revision{Main: created}
		g.ver = version - 1
	}
	g.revs = append(g.revs, rev)
	g.ver++
}

// tombstone closes the current generation with rev. The key must be live.
func (h *keyHistory) tombstone(rev Revision) {
	h.put(rev)
	h.generations = append(h.generations, generation{})
}

func (h *keyHistory) live() bool { return len(h.generations[len(h.generations)-1].revs) > 0 }

// at finds the key's state as of main revision atRev: the revision of the
// last change, the creation revision and the version. ok is false if the key
// did not exist (never created, deleted, or not yet created) at atRev.
func (h *keyHistory) at(atRev int64) (mod, created Revision, ver int64, ok bool) {
	for i := len(h.generations) - 1; i >= 0; i-- {
		g := &h.generations[i]
		if len(g.revs) == 0 {
			continue
		}
		if g.revs[0].Main > atRev {
			continue // generation started later
		}
		closed := i < len(h.generations)-1
		// Last change at or before atRev.
		n := len(g.revs)
		j := n - 1
		for j >= 0 && g.revs[j].Main > atRev {
			j--
		}
		if closed && j == n-1 {
			return Revision{}, Revision{}, 0, false // deleted at or before atRev
		}
		return g.revs[j], g.created, g.version(j), true
	}
	return Revision{}, Revision{}, 0, false
}

// compact drops history that no read at or after atRev can need, and
// records in keep the revision that must stay in the store. It reports
// whether the key has no history left.
func (h *keyHistory) compact(atRev int64, keep map[Revision]struct{}) (empty bool) {
	// Find the first generation that still matters: the one holding the
	// last change at or before atRev, unless that change is a tombstone
	// below atRev. A tombstone at atRev itself stays (as etcd keeps it
	// since 3.5.15): a watch from the compaction revision must still get
	// that delete.
	gi := 0
	for gi < len(h.generations)-1 {
		g := &h.generations[gi]
		if g.revs[len(g.revs)-1].Main >= atRev {
			break
		}
		gi++ // the whole generation ended before atRev
	}
	h.generations = h.generations[gi:]
	// In each generation that has changes at or before atRev, drop those
	// before the last of them and keep that one. Only the first can, and
	// the ones after a tombstone at atRev itself (a delete and a put of
	// the key in the revision atRev).
	for i := range h.generations {
		g := &h.generations[i]
		j := -1
		for k, r := range g.revs {
			if r.Main <= atRev {
				j = k
			} else {
				break
			}
		}
		if j < 0 {
			break
		}
		keep[g.revs[j]] = struct{}{}
		if j > 0 {
			g.revs = append(g.revs[:0:0], g.revs[j:]...)
		}
	}
	return len(h.generations) == 1 && len(h.generations[0].revs) == 0
}

type indexItem = *keyHistory

func itemLess(a, b indexItem) bool { return bytes.Compare(a.key, b.key) < 0 }

// index maps keys to their histories. It is not safe for concurrent use;
// Store guards it.
type index struct {
	tree *btree.BTreeG[indexItem]
}

func newIndex() *index { return &index{tree: btree.NewG[indexItem](32, itemLess)} }

func (ix *index) get(key []byte) *keyHistory {
	h, ok := ix.tree.Get(&keyHistory{key: key})
	if !ok {
		return nil
	}
	return h
}

// getWith is get with a caller-owned lookup item, so the lookup does not
// allocate one.
func (ix *index) getWith(pivot *keyHistory, key []byte) *keyHistory {
	pivot.key = key
	h, _ := ix.tree.Get(pivot)
	pivot.key = nil
	return h
}

// insert adds a history for key, which must not be in the index.
func (ix *index) insert(key []byte) *keyHistory {
	h := newKeyHistory(append([]byte(nil), key...))
	ix.tree.ReplaceOrInsert(h)
	return h
}

func (ix *index) getOrCreate(key []byte) *keyHistory {
	if h := ix.get(key); h != nil {
		return h
	}
	h := newKeyHistory(append([]byte(nil), key...))
	ix.tree.ReplaceOrInsert(h)
	return h
}

// ascend calls fn for every key history in [key, end) in key order. An
// empty non-nil end means no upper bound; a nil end means just key.
func (ix *index) ascend(key, end []byte, fn func(h *keyHistory) bool) {
	if end == nil {
		if h := ix.get(key); h != nil {
			fn(h)
		}
		return
	}
	pivot := &keyHistory{key: key}
	if len(end) == 0 {
		ix.tree.AscendGreaterOrEqual(pivot, fn)
		return
	}
	if bytes.Compare(key, end) >= 0 {
		return
	}
	ix.tree.AscendRange(pivot, &keyHistory{key: end}, fn)
}
