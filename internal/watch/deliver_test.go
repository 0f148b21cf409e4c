package watch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/internal/watch"
)

// TestWaitDelivered: a writer waiting for the delivery of its revision is
// held until the stream handed its events has taken them (Pop) and come
// back to Ready (sent them), returns at
// once when no stream has undelivered events, and does not wait for a
// stream that was already behind before its write.
func TestWaitDelivered(t *testing.T) {
	f := newFixture(t, watch.Options{})
	ctx := context.Background()
	// No watcher: nothing to wait for, even with a long limit.
	rev := f.put("a", "0")
	waitReturns(t, "no watcher", func() { f.hub.WaitDelivered(ctx, rev, time.Hour) })

	r := f.stream()
	mustWatch(t, r, watch.WatchRequest{Key: []byte("a")})
	r.next(1) // created

	rev = f.put("a", "1")
	done := make(chan struct{})
	go func() {
		f.hub.WaitDelivered(ctx, rev, time.Hour)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("WaitDelivered returned before the stream took the event")
	default:
	}
	wantEvents(t, r.next(1)[0], 0, fmt.Sprintf("[PUT a@%d=1]", rev))
	// Taken, but the consumer has not come back to Ready: still in flight.
	select {
	case <-done:
		t.Fatal("WaitDelivered returned before the consumer came back to Ready")
	default:
	}
	r.s.Ready() // what the send loop does once it sent what it took
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("WaitDelivered still waiting after the stream sent the event")
	}

	// The stream falls behind (nobody pops) with revision 4; a later
	// write, whose events the stuck stream gets too, does not wait for it.
	f.put("a", "2")
	rev = f.put("a", "3")
	waitReturns(t, "stream behind since an earlier write", func() { f.hub.WaitDelivered(ctx, rev, time.Hour) })
	// But a write at the stuck revision waits, up to its limit.
	waitReturns(t, "limit", func() { f.hub.WaitDelivered(ctx, rev-1, time.Millisecond) })
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	waitReturns(t, "canceled", func() { f.hub.WaitDelivered(cctx, rev-1, time.Hour) })
	r.next(2)
	r.s.Ready()
	waitReturns(t, "after sending", func() { f.hub.WaitDelivered(ctx, rev-1, time.Hour) })

	// A stream that closes with events queued or in flight holds nobody.
	rev = f.put("a", "4")
	r.s.Close()
	waitReturns(t, "closed", func() { f.hub.WaitDelivered(ctx, rev, time.Hour) })
}

func waitReturns(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: WaitDelivered did not return", what)
	}
}
