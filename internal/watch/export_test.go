package watch

// Hooks for the external tests (package watch_test, which can import
// watchtest without an import cycle).

// WithManualCatchup returns o with the catch-up goroutine disabled: the test
// runs catch-up rounds itself.
func WithManualCatchup(o Options) Options {
	o.manual = true
	return o
}

// Round is one catch-up round, for tests that interleave its phases.
type Round = catchup

func (h *Hub) CatchupOnce() bool           { return h.catchupOnce() }
func (h *Hub) CatchupPlan() *Round         { return h.planCatchup() }
func (h *Hub) CatchupRead(c *Round)        { h.readCatchup(c) }
func (h *Hub) CatchupFinish(c *Round) bool { return h.finishCatchup(c) }

// QueueLen returns how many responses the stream holds.
func (s *Stream) QueueLen() int {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return len(s.queue)
}

// ProgressPending reports whether a RequestProgress is still unanswered.
func (s *Stream) ProgressPending() bool {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.progressWanted
}

// WatcherCounts returns the number of synced and unsynced watchers.
func (h *Hub) WatcherCounts() (synced, unsynced int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.synced.keys {
		synced += len(set)
	}
	for _, e := range h.synced.ranges {
		synced += len(e.ws)
	}
	return synced, len(h.unsynced)
}
