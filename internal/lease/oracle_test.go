package lease

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// model is a naive lessor: a map scanned in full on every query, times as
// time.Time. It states the rules of the package doc directly; the Lessor
// must agree with it on every result after any sequence of operations.
type model struct {
	minTTL   int64
	interval time.Duration
	primary  bool
	leases   map[ID]*mLease
}

type mLease struct {
	ttl, rem     int64
	keys         map[string]bool
	expiry       time.Time
	cpAt         time.Time
	cpSched      bool
	renewed      bool
	resetPending bool
	proposed     int64
	hasProposed  bool
}

func secs(n int64) time.Duration { return time.Duration(n) * time.Second }

func (m *model) eligible(le *mLease) bool { return m.interval > 0 && secs(le.ttl) > m.interval }

func (m *model) start(le *mLease) int64 {
	if le.rem != 0 {
		return le.rem
	}
	return le.ttl
}

// want is ceil(expiry-now) in seconds, 0 for the full TTL; false once expired.
func (m *model) want(le *mLease, now time.Time) (int64, bool) {
	if !now.Before(le.expiry) {
		return 0, false
	}
	d := le.expiry.Sub(now)
	v := int64(d / time.Second)
	if d%time.Second != 0 {
		v++
	}
	if v >= le.ttl {
		v = 0
	}
	return v, true
}

func (m *model) grant(now time.Time, id ID, ttl int64) (Record, error) {
	switch {
	case id == NoLease:
		return Record{}, ErrLeaseNotFound
	case ttl > MaxTTL:
		return Record{}, ErrLeaseTTLTooLarge
	case m.leases[id] != nil:
		return Record{}, ErrLeaseExists
	}
	le := &mLease{ttl: max(ttl, m.minTTL), keys: map[string]bool{}}
	m.leases[id] = le
	if m.primary {
		le.expiry = now.Add(secs(le.ttl))
		if m.eligible(le) {
			le.cpAt, le.cpSched = now.Add(m.interval), true
		}
	}
	return Record{ID: id, TTL: le.ttl}, nil
}

func (m *model) revoke(id ID) ([]string, error) {
	le := m.leases[id]
	if le == nil {
		return nil, ErrLeaseNotFound
	}
	delete(m.leases, id)
	return m.keysOf(le), nil
}

func (m *model) keysOf(le *mLease) []string {
	keys := []string{}
	for k := range le.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (m *model) checkpoint(now time.Time, id ID, v int64) (Record, error) {
	le := m.leases[id]
	if le == nil {
		return Record{}, ErrLeaseNotFound
	}
	if v <= 0 || v >= le.ttl {
		v = 0
	}
	le.rem, le.resetPending = v, false
	if m.primary {
		switch {
		case le.renewed:
			if w, ok := m.want(le, now); ok && v != 0 && (w == 0 || w > v) {
				le.cpAt, le.cpSched = now, true
			}
		case le.hasProposed && le.proposed == v:
		default:
			le.expiry = now.Add(secs(m.start(le)))
		}
	}
	return Record{ID: id, TTL: le.ttl, RemainingTTL: v}, nil
}

func (m *model) resetPrimary(le *mLease) {
	*le = mLease{ttl: le.ttl, rem: le.rem, keys: le.keys}
}

func (m *model) promote(now time.Time, extend time.Duration) {
	m.primary = true
	for _, le := range m.leases {
		m.resetPrimary(le)
		le.expiry = now.Add(secs(m.start(le))).Add(extend)
		if m.eligible(le) {
			le.cpAt, le.cpSched = now.Add(m.interval), true
		}
	}
}

func (m *model) demote() {
	m.primary = false
	for _, le := range m.leases {
		m.resetPrimary(le)
	}
}

func (m *model) restore(now time.Time, recs []Record) {
	m.leases = map[ID]*mLease{}
	for _, r := range recs {
		le := &mLease{ttl: max(r.TTL, m.minTTL), rem: r.RemainingTTL, keys: map[string]bool{}}
		if le.rem < 0 || le.rem >= le.ttl {
			le.rem = 0
		}
		m.leases[r.ID] = le
	}
	if m.primary {
		m.promote(now, 0)
	}
}

func (m *model) renew(now time.Time, id ID) (int64, bool, error) {
	if !m.primary {
		return 0, false, ErrNotPrimary
	}
	le := m.leases[id]
	switch {
	case le == nil:
		return 0, false, ErrLeaseNotFound
	case !now.Before(le.expiry):
		return 0, false, ErrLeaseExpired
	}
	le.expiry = now.Add(secs(le.ttl))
	le.renewed = true
	reset := le.rem != 0 && !le.resetPending
	if reset {
		le.resetPending = true
	}
	return le.ttl, reset, nil
}

// sorted returns the IDs of leases matching keep, ordered by at then ID.
func (m *model) sorted(keep func(*mLease) bool, at func(*mLease) time.Time) []ID {
	var ids []ID
	for id, le := range m.leases {
		if keep(le) {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b ID) int {
		return cmp.Or(at(m.leases[a]).Compare(at(m.leases[b])), cmp.Compare(a, b))
	})
	return ids
}

func (m *model) expired(now time.Time, limit int) []ID {
	if !m.primary || limit <= 0 {
		return nil
	}
	ids := m.sorted(func(le *mLease) bool { return !now.Before(le.expiry) },
		func(le *mLease) time.Time { return le.expiry })
	if len(ids) > limit {
		ids = ids[:limit]
	}
	return ids
}

func (m *model) checkpoints(now time.Time, limit int) []*pb.LeaseCheckpoint {
	if !m.primary || limit <= 0 {
		return nil
	}
	var cps []*pb.LeaseCheckpoint
	for len(cps) < limit {
		due := m.sorted(func(le *mLease) bool { return le.cpSched && !le.cpAt.After(now) },
			func(le *mLease) time.Time { return le.cpAt })
		if len(due) == 0 {
			break
		}
		id := due[0]
		le := m.leases[id]
		le.cpSched = false
		if m.eligible(le) {
			le.cpAt, le.cpSched = now.Add(m.interval), true
		}
		v, ok := m.want(le, now)
		if !ok || v == le.rem {
			continue
		}
		le.proposed, le.hasProposed = v, true
		cps = append(cps, &pb.LeaseCheckpoint{ID: int64(id), Remaining_TTL: v})
	}
	return cps
}

func (m *model) lookup(now time.Time, id ID) (Lease, error) {
	le := m.leases[id]
	if le == nil {
		return Lease{}, ErrLeaseNotFound
	}
	v := Lease{ID: id, TTL: le.ttl, CheckpointedTTL: le.rem, Keys: m.keysOf(le), RemainingTTL: m.start(le)}
	if m.primary {
		if d := le.expiry.Sub(now); d > 0 {
			v.RemainingTTL = int64(d / time.Second)
		} else {
			v.RemainingTTL = -1
		}
	}
	return v, nil
}

func (m *model) records() []Record {
	var recs []Record
	for id, le := range m.leases {
		recs = append(recs, Record{ID: id, TTL: le.ttl, RemainingTTL: le.rem})
	}
	slices.SortFunc(recs, func(a, b Record) int { return cmp.Compare(a.ID, b.ID) })
	return recs
}

func TestOracle(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runOracle(t, seed, 2000) })
	}
}

func runOracle(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 11))
	interval := []time.Duration{0, 3 * time.Second, 10 * time.Second}[seed%3]
	minTTL := int64(1 + seed%3)
	clk := NewFakeClock(t0)
	l, err := New(Config{MinTTL: minTTL, CheckpointInterval: interval, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	m := &model{minTTL: minTTL, interval: interval, leases: map[ID]*mLease{}}
	var inflight []*pb.LeaseCheckpoint              // proposed, not yet applied
	randID := func() ID { return ID(rng.IntN(25)) } // includes NoLease
	keys := []string{"a", "b", "c", "d"}
	check := func(op string, got, want any) {
		t.Helper()
		if g, w := fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", want); g != w {
			t.Fatalf("seed %d, %s at %v:\n got %s\nwant %s", seed, op, clk.Now().Sub(t0), g, w)
		}
	}

	for range steps {
		now := clk.Now()
		switch r := rng.IntN(100); {
		case r < 20:
			clk.Advance(time.Duration(rng.IntN(3000)) * time.Millisecond)
		case r < 30:
			id, ttl := randID(), int64(rng.IntN(40))-2
			if rng.IntN(50) == 0 {
				ttl = MaxTTL + 1
			}
			r1, e1 := l.Grant(id, ttl)
			r2, e2 := m.grant(now, id, ttl)
			check(fmt.Sprintf("Grant(%d, %d)", id, ttl), []any{r1, e1}, []any{r2, e2})
		case r < 34:
			id := randID()
			k1, e1 := l.Revoke(id)
			k2, e2 := m.revoke(id)
			check(fmt.Sprintf("Revoke(%d)", id), []any{k1, e1}, []any{k2, e2})
		case r < 40:
			id, k := randID(), keys[rng.IntN(len(keys))]
			attach := rng.IntN(3) > 0
			var e1 error
			if attach {
				e1 = l.Attach(id, k)
			} else {
				e1 = l.Detach(id, k)
			}
			var e2 error = ErrLeaseNotFound
			if le := m.leases[id]; le != nil {
				e2 = nil
				if attach {
					le.keys[k] = true
				} else {
					delete(le.keys, k)
				}
			}
			check(fmt.Sprintf("Attach/Detach(%d, %q, %v)", id, k, attach), e1, e2)
		case r < 58:
			id := randID()
			t1, r1, e1 := l.Renew(id)
			t2, r2, e2 := m.renew(now, id)
			check(fmt.Sprintf("Renew(%d)", id), []any{t1, r1, e1}, []any{t2, r2, e2})
			if r1 {
				inflight = append(inflight, &pb.LeaseCheckpoint{ID: int64(id)})
			}
		case r < 64:
			// Apply the oldest in-flight checkpoint, or an arbitrary one (an
			// earlier term's).
			cp := &pb.LeaseCheckpoint{ID: int64(randID()), Remaining_TTL: int64(rng.IntN(45)) - 2}
			if len(inflight) > 0 && rng.IntN(4) > 0 {
				cp, inflight = inflight[0], inflight[1:]
			}
			r1, e1 := l.Checkpoint(ID(cp.ID), cp.Remaining_TTL)
			r2, e2 := m.checkpoint(now, ID(cp.ID), cp.Remaining_TTL)
			check(fmt.Sprintf("Checkpoint(%d, %d)", cp.ID, cp.Remaining_TTL), []any{r1, e1}, []any{r2, e2})
		case r < 72:
			limit := rng.IntN(6) - 1
			got, want := l.Checkpoints(limit), m.checkpoints(now, limit)
			check(fmt.Sprintf("Checkpoints(%d)", limit), cpString(got), cpString(want))
			inflight = append(inflight, got...)
		case r < 84:
			limit := rng.IntN(8) - 1
			if rng.IntN(4) == 0 {
				limit = 1000
			}
			check(fmt.Sprintf("Expired(%d)", limit), l.Expired(limit), m.expired(now, limit))
		case r < 90:
			id := randID()
			v1, e1 := l.Lookup(id)
			v2, e2 := m.lookup(now, id)
			check(fmt.Sprintf("Lookup(%d)", id), []any{v1, e1}, []any{v2, e2})
		case r < 94:
			extend := time.Duration(rng.IntN(4000)) * time.Millisecond
			l.Promote(extend)
			m.promote(now, extend)
			inflight = nil // a new term: proposals of the old one are lost or applied as "arbitrary"
		case r < 97:
			l.Demote()
			m.demote()
			inflight = nil
		case r < 98:
			// Restart (or snapshot install) from the persisted records.
			recs := m.records()
			if err := l.Restore(recs); err != nil {
				t.Fatal(err)
			}
			m.restore(now, recs)
		default:
			check("Leases", l.Leases(), slices.Sorted(func(yield func(ID) bool) {
				for id := range m.leases {
					if !yield(id) {
						return
					}
				}
			}))
			check("IsPrimary", l.IsPrimary(), m.primary)
		}
	}
	// Final full comparison.
	now := clk.Now()
	for id := range ID(25) {
		v1, e1 := l.Lookup(id)
		v2, e2 := m.lookup(now, id)
		check(fmt.Sprintf("final Lookup(%d)", id), []any{v1, e1}, []any{v2, e2})
	}
	check("final Expired", l.Expired(1000), m.expired(now, 1000))
}
