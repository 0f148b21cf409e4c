package lease

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func cpString(cps []*pb.LeaseCheckpoint) string {
	s := "["
	for i, cp := range cps {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%d:%d", cp.ID, cp.Remaining_TTL)
	}
	return s + "]"
}

func applyAll(t testing.TB, cps []*pb.LeaseCheckpoint, ls ...*Lessor) {
	t.Helper()
	for _, cp := range cps {
		for _, l := range ls {
			if _, err := l.Checkpoint(ID(cp.ID), cp.Remaining_TTL); err != nil && !errors.Is(err, ErrLeaseNotFound) {
				t.Fatal(err)
			}
		}
	}
}

func TestCheckpointsSchedule(t *testing.T) {
	l, clk := newTest(t, 1, time.Minute)
	if got := l.Checkpoints(10); got != nil {
		t.Fatalf("Checkpoints on non-primary = %s", cpString(got))
	}
	l.Promote(0)
	mustGrant(t, l, 1, 600)
	mustGrant(t, l, 2, 60) // TTL not above the interval: never checkpointed
	mustGrant(t, l, 3, 61)
	mustGrant(t, l, 4, 3000)
	mustGrant(t, l, 5, 3000)

	step := func(advance time.Duration, limit int, want string) {
		t.Helper()
		clk.Advance(advance)
		got := l.Checkpoints(limit)
		if cpString(got) != want {
			t.Fatalf("at %v: Checkpoints(%d) = %s, want %s", clk.Now().Sub(t0), limit, cpString(got), want)
		}
		applyAll(t, got, l)
	}
	step(time.Minute-time.Second, 10, "[]")
	// Lease 5 renewed just before it is due: its remaining TTL is still its
	// full TTL, which the record (0) already says.
	clk.Advance(time.Second / 2)
	if _, _, err := l.Renew(5); err != nil {
		t.Fatal(err)
	}
	step(time.Second/2, 2, "[1:540 3:1]")
	step(0, 0, "[]")
	step(0, -1, "[]")
	step(0, 10, "[4:2940]") // left over from the limit
	step(0, 10, "[]")       // each lease at most once per interval
	step(time.Minute-1, 10, "[]")
	// Lease 3 has expired: nothing to record.
	step(1, 10, "[1:480 4:2880 5:2940]")
	for _, id := range []ID{1, 3, 4, 5} {
		if _, err := l.Revoke(id); err != nil {
			t.Fatal(err)
		}
	}
	step(time.Hour, 10, "[]")

	l.Demote()
	mustGrant(t, l, 6, 600)
	step(time.Hour, 10, "[]")
	l.Promote(0)
	step(time.Minute-1, 10, "[]")
	step(1, 10, "[6:540]")
}

func TestCheckpointsDisabled(t *testing.T) {
	l, clk := newTest(t, 1, 0)
	l.Promote(0)
	mustGrant(t, l, 1, 600)
	for range 5 {
		clk.Advance(time.Minute)
		if got := l.Checkpoints(10); got != nil {
			t.Fatalf("Checkpoints with interval 0 = %s", cpString(got))
		}
	}
}

// The leader checkpoints, a follower applies the same entries, and after a
// restart or a leader change the lease keeps its remaining TTL, not its TTL.
func TestCheckpointRestorePromote(t *testing.T) {
	clk := NewFakeClock(t0)
	cfg := Config{MinTTL: 1, CheckpointInterval: time.Minute, Clock: clk}
	leader, _ := New(cfg)
	follower, _ := New(cfg)
	leader.Promote(0)
	var rec Record
	for _, l := range []*Lessor{leader, follower} {
		var err error
		if rec, err = l.Grant(1, 600); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Minute)
	cps := leader.Checkpoints(10)
	if got := cpString(cps); got != "[1:540]" {
		t.Fatalf("Checkpoints = %s", got)
	}
	for _, l := range []*Lessor{leader, follower} {
		var err error
		if rec, err = l.Checkpoint(1, cps[0].Remaining_TTL); err != nil {
			t.Fatal(err)
		}
	}
	if rec != (Record{ID: 1, TTL: 600, RemainingTTL: 540}) {
		t.Fatalf("record = %+v", rec)
	}
	clk.Advance(30 * time.Second) // true remaining: 510s

	// Leader change: the follower takes over.
	leader.Demote()
	follower.Promote(0)
	if got := remaining(t, follower, 1); got != 540 {
		t.Fatalf("new leader: remaining = %d, want 540", got)
	}

	// Restart of the whole cluster from the persisted record.
	restarted, _ := New(cfg)
	if err := restarted.Restore([]Record{rec}); err != nil {
		t.Fatal(err)
	}
	if got := remaining(t, restarted, 1); got != 540 {
		t.Fatalf("restarted follower: remaining = %d, want 540", got)
	}
	restarted.Promote(2 * time.Second)
	if got := remaining(t, restarted, 1); got != 542 {
		t.Fatalf("restarted leader: remaining = %d, want 542", got)
	}
	clk.Advance(542*time.Second - 1)
	if got := restarted.Expired(10); got != nil {
		t.Fatalf("Expired early: %v", got)
	}
	clk.Advance(1)
	if got := restarted.Expired(10); !slices.Equal(got, []ID{1}) {
		t.Fatalf("Expired = %v, want [1]", got)
	}
}

// A checkpoint the primary proposed itself does not move the expiry when it
// applies, however late: otherwise each checkpoint would extend the lease.
func TestOwnCheckpointKeepsExpiry(t *testing.T) {
	l, clk := newTest(t, 1, time.Minute)
	l.Promote(0)
	mustGrant(t, l, 1, 600)
	clk.Advance(time.Minute + time.Second/2)
	cps := l.Checkpoints(10)
	if got := cpString(cps); got != "[1:540]" { // ceil(539.5)
		t.Fatalf("Checkpoints = %s", got)
	}
	clk.Advance(700 * time.Millisecond) // Raft latency
	applyAll(t, cps, l)
	clk.Advance(538*time.Second + 800*time.Millisecond - 1) // 1ns before the original expiry
	if got := l.Expired(10); got != nil {
		t.Fatalf("Expired = %v", got)
	}
	clk.Advance(1)
	if got := l.Expired(10); !slices.Equal(got, []ID{1}) {
		t.Fatalf("Expired at the original expiry = %v, want [1]", got)
	}
}

// Checkpoints committed in an earlier term and applied after Promote carry
// newer information than the record Promote used: they move the expiry.
func TestOldTermCheckpointAfterPromote(t *testing.T) {
	l, clk := newTest(t, 1, time.Minute)
	mustGrant(t, l, 1, 600)
	mustGrant(t, l, 2, 600)
	if _, err := l.Checkpoint(2, 300); err != nil {
		t.Fatal(err)
	}
	l.Promote(time.Second)
	if a, b := remaining(t, l, 1), remaining(t, l, 2); a != 601 || b != 301 {
		t.Fatalf("after Promote: %d, %d", a, b)
	}
	clk.Advance(time.Second)
	applyAll(t, []*pb.LeaseCheckpoint{{ID: 1, Remaining_TTL: 100}, {ID: 2, Remaining_TTL: 0}}, l)
	if a, b := remaining(t, l, 1), remaining(t, l, 2); a != 100 || b != 600 {
		t.Fatalf("after old-term checkpoints: %d, %d; want 100, 600", a, b)
	}
	// An expired lease comes back to life if a checkpoint says so.
	clk.Advance(100 * time.Second)
	if got := l.Expired(10); !slices.Equal(got, []ID{1}) {
		t.Fatalf("Expired = %v", got)
	}
	applyAll(t, []*pb.LeaseCheckpoint{{ID: 1, Remaining_TTL: 7}}, l)
	if got := l.Expired(10); got != nil {
		t.Fatalf("Expired after checkpoint = %v", got)
	}
}

// A keepalive lands between the primary's checkpoint proposal and its apply.
// The apply must neither cut the renewed lease short nor leave a record that
// understates it: the primary proposes a correction at once.
func TestRenewBetweenCheckpointProposalAndApply(t *testing.T) {
	l, clk := newTest(t, 1, time.Minute)
	l.Promote(0)
	mustGrant(t, l, 1, 600)
	clk.Advance(time.Minute)
	cps := l.Checkpoints(10)
	if got := cpString(cps); got != "[1:540]" {
		t.Fatalf("Checkpoints = %s", got)
	}
	clk.Advance(100 * time.Millisecond)
	// The record is still 0: no reset needed for this renewal.
	if _, reset, err := l.Renew(1); err != nil || reset {
		t.Fatalf("Renew = %v, %v", reset, err)
	}
	clk.Advance(100 * time.Millisecond)
	applyAll(t, cps, l) // records 540 (stale), expiry kept
	if got := remaining(t, l, 1); got != 599 {
		t.Fatalf("remaining = %d, want 599", got)
	}
	fix := l.Checkpoints(10)
	if got := cpString(fix); got != "[1:0]" {
		t.Fatalf("correction = %s, want [1:0]", got)
	}
	applyAll(t, fix, l)
	if v, _ := l.Lookup(1); v.CheckpointedTTL != 0 || v.RemainingTTL != 599 {
		t.Fatalf("after correction: %+v", v)
	}
	// The next periodic checkpoint comes one interval after the correction.
	clk.Advance(time.Minute - 1)
	if got := l.Checkpoints(10); got != nil {
		t.Fatalf("Checkpoints = %s", cpString(got))
	}
	clk.Advance(1)
	if got := cpString(l.Checkpoints(10)); got != "[1:540]" {
		t.Fatalf("Checkpoints = %s, want [1:540]", got)
	}
}

// The same for a stale checkpoint from an earlier term that applies after
// the new primary has renewed the lease.
func TestStaleOldTermCheckpointAfterRenew(t *testing.T) {
	l, clk := newTest(t, 1, time.Minute)
	mustGrant(t, l, 1, 600)
	l.Promote(0)
	clk.Advance(time.Second)
	if _, reset, err := l.Renew(1); err != nil || reset {
		t.Fatalf("Renew = %v, %v", reset, err)
	}
	clk.Advance(time.Second)
	applyAll(t, []*pb.LeaseCheckpoint{{ID: 1, Remaining_TTL: 100}}, l)
	if got := remaining(t, l, 1); got != 599 {
		t.Fatalf("remaining = %d, want 599 (renewal kept)", got)
	}
	if got := cpString(l.Checkpoints(10)); got != "[1:599]" {
		t.Fatalf("correction = %s, want [1:599]", got)
	}
	// A value above the primary's view (its own, applied late) is left
	// alone: it overstates the lease by the Raft latency.
	clk.Advance(time.Second)
	applyAll(t, []*pb.LeaseCheckpoint{{ID: 1, Remaining_TTL: 599}}, l)
	if got := l.Checkpoints(10); got != nil {
		t.Fatalf("Checkpoints = %s", cpString(got))
	}
}

// Leader changes at random moments never give a lease less time than it has
// left, and never more than about one checkpoint interval extra. Entries are
// applied on both members as soon as they are proposed.
func TestCheckpointBoundAcrossLeaderChange(t *testing.T) {
	const (
		interval = 10 * time.Second
		poll     = time.Second
		slack    = interval + 3*time.Second + time.Second // + poll gap + ceil
	)
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		clk := NewFakeClock(t0)
		cfg := Config{MinTTL: 1, CheckpointInterval: interval, Clock: clk}
		a, _ := New(cfg)
		b, _ := New(cfg)
		leader, follower := a, b
		leader.Promote(0)
		both := []*Lessor{a, b}
		expiry := map[ID]time.Time{} // the true expiry, as the client sees it
		ttls := []int64{5, 20, 60, 300}
		nextID, lastPoll := ID(1), clk.Now()

		for step := range 3000 {
			clk.Advance(time.Duration(rng.IntN(1500)) * time.Millisecond)
			now := clk.Now()
			switch r := rng.IntN(100); {
			case r < 10:
				ttl := ttls[rng.IntN(len(ttls))]
				for _, l := range both {
					mustGrant(t, l, nextID, ttl)
				}
				expiry[nextID] = now.Add(time.Duration(ttl) * time.Second)
				nextID++
			case r < 60:
				id := ID(1 + rng.IntN(int(nextID)))
				e, live := expiry[id]
				ttl, reset, err := leader.Renew(id)
				switch {
				case !live:
					if !errors.Is(err, ErrLeaseNotFound) {
						t.Fatalf("seed %d step %d: Renew(%d) gone = %v", seed, step, id, err)
					}
				case !now.Before(e):
					if !errors.Is(err, ErrLeaseExpired) {
						t.Fatalf("seed %d step %d: Renew(%d) expired = %v", seed, step, id, err)
					}
				case err != nil:
					t.Fatalf("seed %d step %d: Renew(%d) = %v", seed, step, id, err)
				default:
					expiry[id] = now.Add(time.Duration(ttl) * time.Second)
					if reset {
						applyAll(t, []*pb.LeaseCheckpoint{{ID: int64(id)}}, both...)
					}
				}
			case r < 63:
				// Leader change: check every lease's new expiry, then swap.
				leader.Demote()
				follower.Promote(0)
				leader, follower = follower, leader
				for id, e := range expiry {
					got := remaining(t, leader, id)
					left := e.Sub(now)
					if left <= 0 {
						expiry[id] = now.Add(time.Duration(got) * time.Second) // revived; rare
						continue
					}
					if lo, hi := int64(left/time.Second), int64((left+slack)/time.Second); got < lo || got > hi {
						t.Fatalf("seed %d step %d: lease %d after leader change: %ds, true %v (allowed %d..%d)",
							seed, step, id, got, left, lo, hi)
					}
					// From now on the new leader's expiry is the truth.
					v, _ := leader.Lookup(id)
					start := v.CheckpointedTTL
					if start == 0 {
						start = v.TTL
					}
					expiry[id] = now.Add(time.Duration(start) * time.Second)
				}
			}
			if now.Sub(lastPoll) < poll {
				continue
			}
			lastPoll = now
			var want []ID
			for id, e := range expiry {
				if !now.Before(e) {
					want = append(want, id)
				}
			}
			slices.SortFunc(want, func(x, y ID) int {
				if c := expiry[x].Compare(expiry[y]); c != 0 {
					return c
				}
				return int(x - y)
			})
			got := leader.Expired(1000)
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d step %d: Expired = %v, want %v", seed, step, got, want)
			}
			for _, id := range got {
				for _, l := range both {
					if _, err := l.Revoke(id); err != nil {
						t.Fatal(err)
					}
				}
				delete(expiry, id)
			}
			applyAll(t, leader.Checkpoints(1000), both...)
		}
	}
}
