package watch

import (
	"context"
	"time"
)

// Delivery barrier: a write's acknowledgement may wait, briefly, until the
// streams that were handed its events have sent them (taken them with Pop,
// then come back to Ready), so a watcher gets an event no later than the
// writer gets its answer. The wait is on
// the writer's goroutine, never on the apply path, and bounded: a stream
// whose consumer is stuck (a slow client) delays nobody for long, and one
// that was already behind before the write's batch is not waited for.
//
// Bookkeeping (under hub.mu): a stream handed events by a Notify while it
// had none waiting records that Notify's revision in s.since; pending
// counts such streams per revision. Pop moves the stream's entry to
// s.sentSince; the consumer's next Ready (or Pop) or Close clears it. pendingMax is the highest revision with a count, read without the
// lock by writers.

// markPendingLocked records that s was handed events of the batch at rev.
func (h *Hub) markPendingLocked(s *Stream, rev int64) {
	if s.since != 0 || s.closed {
		return // already behind with an earlier batch, or gone
	}
	s.since = rev
	if h.pending == nil {
		h.pending = map[int64]int{}
	}
	h.pending[rev]++
	if rev > h.pendingMax.Load() {
		h.pendingMax.Store(rev)
	}
}

// popPendingLocked records that s's consumer took its queue: the events
// are in flight until the consumer calls Ready again (clearSentLocked).
func (h *Hub) popPendingLocked(s *Stream) {
	h.clearSentLocked(s)
	if s.since == 0 {
		return
	}
	s.sentSince, s.since = s.since, 0
	s.inFlight.Store(true)
}

// clearSentLocked records that s's consumer sent what it took.
func (h *Hub) clearSentLocked(s *Stream) {
	if s.sentSince == 0 {
		return
	}
	rev := s.sentSince
	s.sentSince = 0
	s.inFlight.Store(false)
	h.donePendingLocked(rev)
}

// clearPendingLocked drops s's queued events from the count (the stream
// closed).
func (h *Hub) clearPendingLocked(s *Stream) {
	if s.since == 0 {
		return
	}
	rev := s.since
	s.since = 0
	h.donePendingLocked(rev)
}

// donePendingLocked counts one stream less for the Notify revision rev.
func (h *Hub) donePendingLocked(rev int64) {
	if h.pending[rev]--; h.pending[rev] > 0 {
		return
	}
	delete(h.pending, rev)
	top := int64(0)
	for r := range h.pending {
		top = max(top, r)
	}
	h.pendingMax.Store(top)
	if h.delivered != nil {
		close(h.delivered)
		h.delivered = nil
	}
}

// WaitDelivered returns once every stream handed events at revisions up to
// rev by the latest Notify calls has sent them, after limit at most, or
// when ctx ends. Streams that were already behind before then are not
// waited for. With no watcher waiting it returns at once (one atomic load).
func (h *Hub) WaitDelivered(ctx context.Context, rev int64, limit time.Duration) {
	if h.pendingMax.Load() < rev {
		return
	}
	var timeout <-chan time.Time
	for {
		h.mu.Lock()
		if h.pendingMax.Load() < rev {
			h.mu.Unlock()
			return
		}
		if h.delivered == nil {
			h.delivered = make(chan struct{})
		}
		c := h.delivered
		h.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(limit)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-c:
		case <-timeout:
			return
		case <-ctx.Done():
			return
		}
	}
}
