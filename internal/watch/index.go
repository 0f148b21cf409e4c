package watch

import (
	"bytes"
	"sort"
)

// keyIndex finds the watchers whose key or range holds a given key.
//
// Single-key watchers live in a map. Range watchers are grouped by their
// exact interval; the intervals are kept sorted by start with the running
// maximum end, so a lookup binary-searches the intervals starting at or
// before the key and walks back only while some interval to the left can
// still reach past the key. Every watcher is in exactly one set, so a lookup
// never yields a watcher twice.
type keyIndex struct {
	keys   map[string]watcherSet
	ranges map[rangeID]*rangeEntry

	// sorted and reach are rebuilt lazily after ranges changes.
	sorted []*rangeEntry
	reach  []bound // reach[i] is the largest end among sorted[:i+1]
	dirty  bool
}

type watcherSet map[*watcher]struct{}

type rangeID struct {
	start, end string
	open       bool
}

// bound is the exclusive end of an interval; open means no end.
type bound struct {
	end  []byte
	open bool
}

func (b bound) above(key []byte) bool { return b.open || bytes.Compare(key, b.end) < 0 }

func (b bound) less(o bound) bool {
	if b.open {
		return false
	}
	return o.open || bytes.Compare(b.end, o.end) < 0
}

type rangeEntry struct {
	start []byte
	end   bound
	ws    watcherSet
}

func newKeyIndex() keyIndex {
	return keyIndex{keys: map[string]watcherSet{}, ranges: map[rangeID]*rangeEntry{}}
}

func (w *watcher) rangeID() rangeID {
	return rangeID{start: string(w.key), end: string(w.end), open: w.end == nil}
}

func (x *keyIndex) add(w *watcher) {
	if w.single {
		set := x.keys[string(w.key)]
		if set == nil {
			set = watcherSet{}
			x.keys[string(w.key)] = set
		}
		set[w] = struct{}{}
		return
	}
	id := w.rangeID()
	e := x.ranges[id]
	if e == nil {
		e = &rangeEntry{start: w.key, end: bound{end: w.end, open: w.end == nil}, ws: watcherSet{}}
		x.ranges[id] = e
		x.dirty = true
	}
	e.ws[w] = struct{}{}
}

func (x *keyIndex) remove(w *watcher) {
	if w.single {
		set := x.keys[string(w.key)]
		delete(set, w)
		if len(set) == 0 {
			delete(x.keys, string(w.key))
		}
		return
	}
	id := w.rangeID()
	e := x.ranges[id]
	if e == nil {
		return
	}
	delete(e.ws, w)
	if len(e.ws) == 0 {
		delete(x.ranges, id)
		x.dirty = true
	}
}

func (x *keyIndex) rebuild() {
	x.sorted = x.sorted[:0]
	for _, e := range x.ranges {
		x.sorted = append(x.sorted, e)
	}
	sort.Slice(x.sorted, func(i, j int) bool {
		a, b := x.sorted[i], x.sorted[j]
		if c := bytes.Compare(a.start, b.start); c != 0 {
			return c < 0
		}
		return a.end.less(b.end)
	})
	x.reach = x.reach[:0]
	for i, e := range x.sorted {
		r := e.end
		if i > 0 && r.less(x.reach[i-1]) {
			r = x.reach[i-1]
		}
		x.reach = append(x.reach, r)
	}
	x.dirty = false
}

// each calls fn for every watcher whose key or range holds key.
func (x *keyIndex) each(key []byte, fn func(*watcher)) {
	for w := range x.keys[string(key)] {
		fn(w)
	}
	if len(x.ranges) == 0 {
		return
	}
	if x.dirty {
		x.rebuild()
	}
	n := sort.Search(len(x.sorted), func(i int) bool { return bytes.Compare(x.sorted[i].start, key) > 0 })
	for i := n - 1; i >= 0 && x.reach[i].above(key); i-- {
		if e := x.sorted[i]; e.end.above(key) {
			for w := range e.ws {
				fn(w)
			}
		}
	}
}
