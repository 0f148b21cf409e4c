package watch

import (
	"bytes"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// WatchRequest creates a watcher. Key and RangeEnd follow etcd's wire
// conventions: an empty Key means "\x00"; an empty RangeEnd watches Key
// alone, RangeEnd "\x00" watches every key >= Key, otherwise [Key, RangeEnd).
type WatchRequest struct {
	// ID is the client-chosen watch id; 0 asks the stream to pick one.
	ID            int64
	Key, RangeEnd []byte
	// StartRevision is the first revision to deliver; 0 means after the
	// hub revision.
	StartRevision  int64
	NoPut          bool // filter out put events
	NoDelete       bool // filter out delete events
	PrevKV         bool
	ProgressNotify bool
	Fragment       bool
}

// Response is one message for the client, in stream order. Revision is the
// header revision to report.
type Response struct {
	WatchID         int64
	Revision        int64
	Events          []*mvccpb.Event
	CompactRevision int64
	Created         bool
	Canceled        bool
	CancelReason    string
	// Fragment: the watcher asked for large responses to be split.
	Fragment bool

	prevKV bool // fill PrevKv in Pop
	size   int  // key and value bytes held, for the queue bound
}

// IsProgress reports whether r is a progress notification.
func (r *Response) IsProgress() bool {
	return len(r.Events) == 0 && !r.Created && !r.Canceled && r.CompactRevision == 0
}

// Stream is one client watch stream: its watchers and their ordered
// response queue. Watch, Cancel, RequestProgress and ProgressTick may be
// called from one goroutine while another consumes with Ready and Pop.
type Stream struct {
	hub   *Hub
	ready chan struct{}

	// Guarded by hub.mu.
	watchers       map[int64]*watcher
	nextID         int64
	queue          []*Response
	queueBytes     int
	unsynced       int  // watchers of this stream in the unsynced set
	progressWanted bool // a RequestProgress is waiting
	closed         bool
	// since is the Notify revision of the oldest events queued and not
	// yet taken by Pop, 0 if none; sentSince the same for events taken
	// by Pop and not yet confirmed sent by a call to Ready (deliver.go).
	since, sentSince int64
	inFlight         atomic.Bool // sentSince != 0, read without the lock
}

// NewStream opens a stream on the hub.
func (h *Hub) NewStream() *Stream {
	return &Stream{hub: h, ready: make(chan struct{}, 1), watchers: map[int64]*watcher{}}
}

// Ready is signalled when responses may be waiting for Pop. The consumer
// calls it each time it goes back to waiting, after it sent what Pop
// returned: that tells the hub those responses are out (writers waiting
// in WaitDelivered for them go on).
func (s *Stream) Ready() <-chan struct{} {
	if s.inFlight.Load() {
		s.hub.mu.Lock()
		s.hub.clearSentLocked(s)
		s.hub.mu.Unlock()
	}
	return s.ready
}

// Pop takes every queued response, in order, with prev_kv filled for the
// watchers that asked for it (read from the Store on the caller's
// goroutine). It returns nil when nothing is queued.
func (s *Stream) Pop() []*Response {
	h := s.hub
	h.mu.Lock()
	q := s.queue
	s.queue, s.queueBytes = nil, 0
	h.popPendingLocked(s)
	if s.unsynced > 0 {
		h.wakeCatchup()
	}
	h.tryProgress(s)
	h.mu.Unlock()
	for _, r := range q {
		if r.prevKV {
			s.fillPrevKV(r)
		}
	}
	return q
}

// fillPrevKV replaces r.Events by copies carrying the previous value of
// their key (etcd skips creations, which have none). Events are shared
// between watchers, so they are never modified in place.
func (s *Stream) fillPrevKV(r *Response) {
	evs := make([]*mvccpb.Event, len(r.Events))
	for i, ev := range r.Events {
		evs[i] = ev
		if ev.Type == mvccpb.Event_PUT && ev.Kv.CreateRevision == ev.Kv.ModRevision {
			continue
		}
		prev, err := s.hub.store.Get(ev.Kv.Key, ev.Kv.ModRevision-1)
		if err != nil || prev == nil {
			continue // compacted meanwhile: etcd also sends no prev_kv
		}
		evs[i] = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv, PrevKv: prev}
	}
	r.Events = evs
}

// Watch creates a watcher and queues its created response; a refused
// request queues etcd's refusal (WatchID -1, created and canceled, the
// error's text as cancel reason). It returns the watch id or the refusal.
func (s *Stream) Watch(req WatchRequest) (int64, error) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return InvalidWatchID, ErrStreamClosed
	}
	key := bytes.Clone(req.Key)
	if len(key) == 0 {
		key = []byte{0}
	}
	if req.StartRevision < 0 {
		return InvalidWatchID, s.refuse(ErrNegativeStart)
	}
	w := &watcher{
		stream:         s,
		key:            key,
		startRev:       req.StartRevision,
		noPut:          req.NoPut,
		noDelete:       req.NoDelete,
		prevKV:         req.PrevKV,
		progressNotify: req.ProgressNotify,
		fragment:       req.Fragment,
		quiet:          true,
	}
	switch {
	case len(req.RangeEnd) == 0:
		w.single = true
	case len(req.RangeEnd) == 1 && req.RangeEnd[0] == 0:
		// every key >= key: end stays nil
	default:
		w.end = bytes.Clone(req.RangeEnd)
		if bytes.Compare(key, w.end) >= 0 {
			return InvalidWatchID, s.refuse(ErrEmptyRange)
		}
	}
	id := req.ID
	if id == 0 {
		for s.watchers[s.nextID] != nil {
			s.nextID++
		}
		id = s.nextID
		s.nextID++
	} else if s.watchers[id] != nil {
		return InvalidWatchID, s.refuse(ErrDuplicateID)
	}
	w.id = id
	s.watchers[id] = w

	switch {
	case req.StartRevision == 0 || req.StartRevision > h.rev:
		w.next = max(req.StartRevision, h.rev+1)
		w.state = synced
		h.synced.add(w)
	default:
		w.next = req.StartRevision
		w.state = unsynced
		h.unsynced[w] = struct{}{}
		s.unsynced++
		h.wakeCatchup()
	}
	s.push(&Response{WatchID: id, Revision: h.rev, Created: true})
	return id, nil
}

// Reject queues a refusal of a create request for a reason found outside
// the hub (permissions), in order with the stream's other responses.
func (s *Stream) Reject(reason string) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if !s.closed {
		s.push(&Response{WatchID: InvalidWatchID, Revision: h.rev, Created: true, Canceled: true, CancelReason: reason})
	}
}

func (s *Stream) refuse(err error) error {
	s.push(&Response{WatchID: InvalidWatchID, Revision: s.hub.rev, Created: true, Canceled: true, CancelReason: err.Error()})
	return err
}

// Cancel removes a watcher and queues its canceled response. Responses
// queued for it before stay in the queue. An unknown id queues nothing and
// returns ErrWatcherNotExist, as etcd stays silent.
func (s *Stream) Cancel(id int64) error {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	w := s.watchers[id]
	if s.closed || w == nil {
		return ErrWatcherNotExist
	}
	h.detach(w)
	w.state = canceled
	delete(s.watchers, id)
	s.push(&Response{WatchID: id, Revision: h.rev, Canceled: true})
	h.tryProgress(s)
	return nil
}

// RequestProgress asks for a stream-wide progress notification: WatchID -1
// and the hub revision, queued once every live watcher of the stream is
// synced and past its start revision. A stream without watchers gets none.
func (s *Stream) RequestProgress() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed || len(s.watchers) == 0 {
		return
	}
	s.progressWanted = true
	h.tryProgress(s)
}

// ProgressTick is one period of progress notify: each watcher with
// progress_notify that got no events since the previous tick and is synced
// gets a progress response with its own id.
func (s *Stream) ProgressTick() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	for _, w := range s.watchers {
		if !w.progressNotify {
			continue
		}
		if w.quiet && w.state == synced && w.startRev <= h.rev && !s.full() {
			s.push(&Response{WatchID: w.id, Revision: h.rev})
		}
		w.quiet = true
	}
}

// Close removes every watcher and drops the queue. Later calls on the
// stream do nothing.
func (s *Stream) Close() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for id, w := range s.watchers {
		h.detach(w)
		w.state = canceled
		delete(s.watchers, id)
	}
	s.queue, s.queueBytes = nil, 0
	h.clearPendingLocked(s)
	h.clearSentLocked(s)
	s.progressWanted = false
	delete(h.progressWaiting, s)
}

// tryProgress answers a waiting RequestProgress if the stream allows it.
// Caller holds hub.mu.
func (h *Hub) tryProgress(s *Stream) {
	if !s.progressWanted {
		return
	}
	live := 0
	ready := !s.full()
	for _, w := range s.watchers {
		if w.state == done {
			continue
		}
		live++
		if w.state != synced || w.startRev > h.rev {
			ready = false
		}
	}
	switch {
	case live == 0:
		s.progressWanted = false
	case ready:
		s.progressWanted = false
		s.push(&Response{WatchID: InvalidWatchID, Revision: h.rev})
	default:
		h.progressWaiting[s] = struct{}{}
		return
	}
	delete(h.progressWaiting, s)
}

// full reports whether the queue reached its bound. Caller holds hub.mu.
func (s *Stream) full() bool {
	o := &s.hub.opts
	return len(s.queue) >= o.StreamBuffer || s.queueBytes >= o.StreamBufferBytes
}

// push queues r and signals the consumer. Caller holds hub.mu.
func (s *Stream) push(r *Response) {
	if s.closed {
		return
	}
	s.queue = append(s.queue, r)
	s.queueBytes += r.size
	select {
	case s.ready <- struct{}{}:
	default:
	}
}
