package lease

import (
	"testing"
	"time"
)

// 100k leases with spread expiries; the leader loop polls Expired and
// Checkpoints while keepalives renew.
func BenchmarkPoll100k(b *testing.B) {
	l, clk := newTest(b, 1, 5*time.Minute)
	l.Promote(0)
	const n = 100_000
	for i := range ID(n) {
		mustGrant(b, l, i+1, 10+int64(i%3600))
	}
	b.ResetTimer()
	for i := range b.N {
		clk.Advance(time.Millisecond)
		_, _, _ = l.Renew(ID(i%n + 1))
		_ = l.Expired(500)
		_ = l.Checkpoints(1000)
	}
}

func BenchmarkPromote100k(b *testing.B) {
	l, _ := newTest(b, 1, 5*time.Minute)
	for i := range ID(100_000) {
		mustGrant(b, l, i+1, 10+int64(i%3600))
	}
	b.ResetTimer()
	for range b.N {
		l.Promote(time.Second)
	}
}
