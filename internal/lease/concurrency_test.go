package lease

import (
	"sync"
	"testing"
	"time"
)

// The apply goroutine, the leader loop and gRPC handlers share one Lessor.
// Run with -race; the test only checks that nothing is lost.
func TestConcurrentUse(t *testing.T) {
	l, clk := newTest(t, 1, time.Second)
	l.Promote(0)
	const n = 200
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { // apply loop
		defer wg.Done()
		for i := range ID(n) {
			if _, err := l.Grant(i+1, 5); err != nil {
				t.Error(err)
			}
			_ = l.Attach(i+1, "k")
			_, _ = l.Checkpoint(i/2+1, 3)
		}
	}()
	go func() { // leader loop
		defer wg.Done()
		for range n {
			clk.Advance(100 * time.Millisecond)
			for _, id := range l.Expired(10) {
				_, _ = l.Revoke(id)
			}
			_ = l.Checkpoints(10)
		}
	}()
	go func() { // keepalives
		defer wg.Done()
		for i := range ID(n) {
			_, _, _ = l.Renew(i + 1)
		}
	}()
	go func() { // queries, leadership flaps
		defer wg.Done()
		for i := range ID(n) {
			_, _ = l.Lookup(i)
			_ = l.Leases()
			if i%50 == 49 {
				l.Demote()
				l.Promote(0)
			}
		}
	}()
	wg.Wait()
	clk.Advance(time.Hour)
	for _, id := range l.Expired(2 * n) {
		if _, err := l.Revoke(id); err != nil {
			t.Fatal(err)
		}
	}
	if ids := l.Leases(); len(ids) != 0 {
		t.Fatalf("leases left after all expired: %v", ids)
	}
}
