package watch

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Store is what the hub needs from the multi-version store. Its methods are
// called from the catch-up goroutine and from stream consumers, never from
// Notify, and never with the hub lock held.
type Store interface {
	// Revs returns the latest committed revision and the compacted revision.
	Revs() (current, compacted int64)
	// Events calls fn for every event with from <= revision <= to, in
	// revision order (events of one revision in the order they were
	// applied); fn returns false to stop. It returns ErrCompacted if
	// from < compacted (revision compacted itself is still served).
	Events(from, to int64, fn func(ev *mvccpb.Event) bool) error
	// Get returns the key's value as of revision rev (nil if absent or
	// deleted at rev), for prev_kv.
	Get(key []byte, rev int64) (*mvccpb.KeyValue, error)
}

// ErrCompacted is returned by Store.Events when the requested revisions
// have been compacted away. The hub does not rely on the value: after any
// Events error it asks Revs whether compaction passed the start.
var ErrCompacted = errors.New("watch: required revision has been compacted")

// Errors of Stream.Watch and Stream.Cancel. The texts of the Watch errors are
// the cancel reasons etcd puts on the wire for the same refusals.
var (
	// ErrEmptyRange: range_end is set and not above key.
	ErrEmptyRange = errors.New("mvcc: watcher range is empty")
	// ErrDuplicateID: the client chose a watch id that is in use on the stream.
	ErrDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	// ErrNegativeStart: start_revision below zero; etcd answers it as a
	// compacted revision (rpctypes.ErrCompacted's text).
	ErrNegativeStart = errors.New("etcdserver: mvcc: required revision has been compacted")
	// ErrWatcherNotExist: Cancel of an id that is not on the stream.
	ErrWatcherNotExist = errors.New("mvcc: watcher does not exist")
	// ErrStreamClosed: the stream was closed.
	ErrStreamClosed = errors.New("watch: stream closed")
)

// InvalidWatchID is the watch id of refusals and of stream-wide progress
// notifications, as in etcd.
const InvalidWatchID int64 = -1

// Options bound the hub's memory and work. Zero values take the defaults.
type Options struct {
	// StreamBuffer is how many responses a stream queues before its
	// watchers are demoted to catch-up. Default 128 (etcd's channel size).
	StreamBuffer int
	// StreamBufferBytes bounds the key and value bytes a stream queues.
	// Default 32 MiB.
	StreamBufferBytes int
	// CatchupEvents and CatchupBytes bound one catch-up read; a read stops
	// at the first revision boundary past either bound. Defaults 1000
	// events and 8 MiB.
	CatchupEvents int
	CatchupBytes  int
	// CatchupWatchers bounds the watchers served by one catch-up read.
	// Default 512 (etcd's maxWatchersPerSync).
	CatchupWatchers int
	// Logger receives store errors met during catch-up. Default: discard.
	Logger *slog.Logger
	// RetryDelay is how long catch-up waits after a store error before
	// trying again (sooner if a write or a drained stream wakes it).
	// Default 100ms.
	RetryDelay time.Duration
	// After is the clock for RetryDelay. Default time.After.
	After func(time.Duration) <-chan time.Time

	// manual leaves catch-up to the test, which calls catchupOnce or its
	// phases.
	manual bool
}

func (o Options) withDefaults() Options {
	if o.StreamBuffer <= 0 {
		o.StreamBuffer = 128
	}
	if o.StreamBufferBytes <= 0 {
		o.StreamBufferBytes = 32 << 20
	}
	if o.CatchupEvents <= 0 {
		o.CatchupEvents = 1000
	}
	if o.CatchupBytes <= 0 {
		o.CatchupBytes = 8 << 20
	}
	if o.CatchupWatchers <= 0 {
		o.CatchupWatchers = 512
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 100 * time.Millisecond
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Hub fans committed events out to watchers. Create it with NewHub once the
// Store holds the state the apply loop will continue from, and Close it after
// the apply loop stopped calling Notify.
type Hub struct {
	store Store
	opts  Options

	mu sync.Mutex
	// rev is the highest revision notified (or the store's revision at
	// NewHub/Restore). Every synced watcher has seen every event up to rev.
	rev      int64
	synced   keyIndex
	unsynced map[*watcher]struct{}
	// progressWaiting holds streams with a RequestProgress not yet answered.
	progressWaiting map[*Stream]struct{}
	// failed: the last catch-up read failed; retry after RetryDelay.
	failed bool
	// pending counts, per Notify revision, the streams handed events then
	// that have not taken them yet; delivered is closed when a count
	// drops to zero (see deliver.go).
	pending    map[int64]int
	pendingMax atomic.Int64
	delivered  chan struct{}

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

type watcherState int

const (
	synced watcherState = iota
	unsynced
	done     // compaction notice queued; id stays on the stream until Cancel
	canceled // removed from the stream
)

type watcher struct {
	id     int64
	stream *Stream

	key []byte
	// single: the watcher is on key alone. Otherwise [key, end), and a nil
	// end means no upper bound.
	end    []byte
	single bool

	startRev int64
	// next is the lowest revision not yet given to the watcher.
	next int64

	noPut, noDelete bool
	prevKV          bool
	progressNotify  bool
	fragment        bool

	state watcherState
	// quiet: no events queued since the last progress tick.
	quiet bool
}

func (w *watcher) holds(key []byte) bool {
	if w.single {
		return string(key) == string(w.key)
	}
	return string(key) >= string(w.key) && (w.end == nil || string(key) < string(w.end))
}

func (w *watcher) wants(ev *mvccpb.Event) bool {
	if ev.Type == mvccpb.Event_PUT {
		return !w.noPut
	}
	return !w.noDelete
}

// NewHub returns a hub whose revision is the store's current revision and
// starts its catch-up goroutine. Notify drops what the store already held
// then, so the hub may be created while the apply loop runs.
func NewHub(store Store, opts Options) *Hub {
	cur, _ := store.Revs()
	h := &Hub{
		store:           store,
		opts:            opts.withDefaults(),
		rev:             cur,
		synced:          newKeyIndex(),
		unsynced:        map[*watcher]struct{}{},
		progressWaiting: map[*Stream]struct{}{},
		wake:            make(chan struct{}, 1),
		stop:            make(chan struct{}),
		done:            make(chan struct{}),
	}
	if h.opts.manual {
		close(h.done)
	} else {
		go h.run()
	}
	return h
}

// Close stops the catch-up goroutine and waits for it. Streams stay usable
// for synced delivery, but nothing catches up any more.
func (h *Hub) Close() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

// Rev returns the hub revision: the last revision notified.
func (h *Hub) Rev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// Notify hands the hub the events of revisions up to rev, committed and
// visible in the Store (see the package doc for the batch rules). It queues
// a response for every synced watcher the events match and returns; a
// watcher whose stream queue is full is demoted to catch-up instead.
func (h *Hub) Notify(rev int64, events []*mvccpb.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev <= h.rev {
		// Already in the store when the hub read its revision: every
		// watcher that wants these reads them from there.
		return
	}
	prev := h.rev
	last := int64(0)
	var order []*watcher
	batches := map[*watcher][]*mvccpb.Event{}
	for _, ev := range events {
		r := ev.Kv.ModRevision
		if r > rev || r < last {
			panic(fmt.Sprintf("watch: Notify(%d) event revision %d out of order", rev, r))
		}
		last = r
		if r <= prev {
			continue
		}
		h.synced.each(ev.Kv.Key, func(w *watcher) {
			if r < w.next || !w.wants(ev) {
				return
			}
			b, ok := batches[w]
			if !ok {
				order = append(order, w)
			}
			batches[w] = append(b, ev)
		})
	}
	h.rev = rev
	for _, w := range order {
		s := w.stream
		if s.full() {
			// Everything below prev+1 reached the queue already; the
			// store has the rest.
			w.next = max(w.next, prev+1)
			h.demote(w)
			continue
		}
		evs := batches[w]
		w.next = max(w.next, rev+1)
		w.quiet = false
		s.push(&Response{WatchID: w.id, Revision: rev, Events: evs, Fragment: w.fragment, prevKV: w.prevKV, size: eventsSize(evs)})
		h.markPendingLocked(s, rev)
	}
	for s := range h.progressWaiting {
		h.tryProgress(s)
	}
	if len(h.unsynced) > 0 {
		h.wakeCatchup()
	}
}

// Restore tells the hub that the Store jumped to a new state (a snapshot was
// installed) without Notify calls for the revisions in between: every synced
// watcher catches up from the Store again.
func (h *Hub) Restore() {
	cur, _ := h.store.Revs()
	h.mu.Lock()
	defer h.mu.Unlock()
	if cur <= h.rev {
		return
	}
	prev := h.rev
	h.rev = cur
	var moved []*watcher
	for _, set := range h.synced.keys {
		for w := range set {
			moved = append(moved, w)
		}
	}
	for _, e := range h.synced.ranges {
		for w := range e.ws {
			moved = append(moved, w)
		}
	}
	for _, w := range moved {
		w.next = max(w.next, prev+1)
		if w.next <= cur {
			h.demote(w)
		}
	}
	if len(h.unsynced) > 0 {
		h.wakeCatchup()
	}
}

// demote moves a synced watcher to the unsynced set. Caller holds mu.
func (h *Hub) demote(w *watcher) {
	h.synced.remove(w)
	h.unsynced[w] = struct{}{}
	w.state = unsynced
	w.stream.unsynced++
}

// promote moves an unsynced watcher to the synced set. Caller holds mu.
func (h *Hub) promote(w *watcher) {
	delete(h.unsynced, w)
	h.synced.add(w)
	w.state = synced
	w.stream.unsynced--
}

// detach removes a watcher from whichever group holds it. Caller holds mu.
func (h *Hub) detach(w *watcher) {
	switch w.state {
	case synced:
		h.synced.remove(w)
	case unsynced:
		delete(h.unsynced, w)
		w.stream.unsynced--
	}
}

func (h *Hub) wakeCatchup() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *Hub) run() {
	defer close(h.done)
	for {
		var retry <-chan time.Time
		h.mu.Lock()
		if h.failed {
			h.failed = false
			retry = h.opts.After(h.opts.RetryDelay)
		}
		h.mu.Unlock()
		select {
		case <-h.stop:
			return
		case <-h.wake:
		case <-retry:
		}
		for h.catchupOnce() {
			select {
			case <-h.stop:
				return
			default:
			}
		}
	}
}

// catchup is one round of catch-up: planned under the lock, read from the
// store without it, delivered under the lock.
type catchup struct {
	to       int64 // hub revision when planned: read no further
	watchers []*watcher
	from     int64 // lowest next among the watchers not compacted

	compacted int64 // store's compacted revision at read time
	events    []*mvccpb.Event
	last      int64 // every event up to last has been read
	err       error
	retry     bool // compaction overtook the read; plan again
}

// catchupOnce runs one round and reports whether another round has work.
func (h *Hub) catchupOnce() bool {
	c := h.planCatchup()
	if c == nil {
		return false
	}
	h.readCatchup(c)
	return h.finishCatchup(c)
}

// planCatchup picks unsynced watchers, no more per stream than the stream
// has room for responses, so that a round reads nothing it cannot deliver.
func (h *Hub) planCatchup() *catchup {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := &catchup{to: h.rev}
	room := map[*Stream]int{}
	for w := range h.unsynced {
		if len(c.watchers) == h.opts.CatchupWatchers {
			break
		}
		s := w.stream
		n, ok := room[s]
		if !ok {
			n = h.opts.StreamBuffer - len(s.queue)
			if s.queueBytes >= h.opts.StreamBufferBytes {
				n = 0
			}
		}
		if n <= 0 {
			room[s] = 0
			continue
		}
		room[s] = n - 1
		c.watchers = append(c.watchers, w)
	}
	if len(c.watchers) == 0 {
		return nil
	}
	return c
}

// readCatchup reads the events the planned watchers need. No lock held: the
// next of an unsynced watcher changes only in finishCatchup, on this
// goroutine.
func (h *Hub) readCatchup(c *catchup) {
	_, c.compacted = h.store.Revs()
	c.from = c.to + 1
	for _, w := range c.watchers {
		if w.next >= c.compacted {
			c.from = min(c.from, w.next)
		}
	}
	c.last = c.to
	if c.from > c.to {
		return
	}
	n, size, cur := 0, 0, int64(0)
	stopped := false
	c.err = h.store.Events(c.from, c.to, func(ev *mvccpb.Event) bool {
		r := ev.Kv.ModRevision
		if r != cur {
			if n >= h.opts.CatchupEvents || size >= h.opts.CatchupBytes {
				stopped = true
				return false
			}
			cur = r
		}
		c.events = append(c.events, ev)
		n++
		size += eventSize(ev)
		return true
	})
	if stopped {
		c.last = cur
	}
	if c.err != nil {
		// Whatever the error says, if compaction has moved past the
		// planned start, plan again: the watchers below it get their
		// notice. A store that reports compaction without advancing its
		// compacted revision is treated like any other failure.
		if _, compacted := h.store.Revs(); compacted > c.from {
			c.retry = true
		}
	}
}

// finishCatchup queues what was read and promotes the watchers that reached
// the hub revision. It reports whether another round has work.
func (h *Hub) finishCatchup(c *catchup) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.retry {
		return true
	}
	if c.err != nil {
		h.opts.Logger.Error("watch catch-up read failed", "from", c.from, "to", c.to, "error", c.err)
		h.failed = true
		return false
	}
	touched := map[*Stream]struct{}{}
	for _, w := range c.watchers {
		if w.state != unsynced {
			continue // canceled while reading
		}
		s := w.stream
		if w.next < c.compacted {
			// Revisions below the compaction revision are gone; revision
			// C itself is served, as etcd does.
			h.detach(w)
			w.state = done
			s.push(&Response{WatchID: w.id, CompactRevision: c.compacted, Canceled: true})
			touched[s] = struct{}{}
			continue
		}
		if w.next > c.last {
			continue // the read stopped before this watcher's revisions
		}
		var evs []*mvccpb.Event
		for _, ev := range c.events {
			if ev.Kv.ModRevision >= w.next && w.holds(ev.Kv.Key) && w.wants(ev) {
				evs = append(evs, ev)
			}
		}
		if len(evs) > 0 {
			if s.full() {
				continue // stays unsynced at the same next
			}
			w.quiet = false
			// Like etcd, the header carries the revision the store had
			// reached, not the end of this batch.
			s.push(&Response{WatchID: w.id, Revision: c.to, Events: evs, Fragment: w.fragment, prevKV: w.prevKV, size: eventsSize(evs)})
		}
		w.next = c.last + 1
		if w.next > h.rev {
			h.promote(w)
			touched[s] = struct{}{}
		}
	}
	for s := range touched {
		h.tryProgress(s)
	}
	for w := range h.unsynced {
		if !w.stream.full() {
			return true
		}
	}
	return false
}

// eventSize estimates the bytes an event holds on to.
func eventSize(ev *mvccpb.Event) int {
	return len(ev.Kv.Key) + len(ev.Kv.Value) + 64
}

func eventsSize(evs []*mvccpb.Event) int {
	n := 0
	for _, ev := range evs {
		n += eventSize(ev)
	}
	return n
}
