package lease

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/google/btree"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// ID identifies a lease. It is the etcd LeaseID.
type ID int64

const (
	// NoLease is the ID meaning "no lease"; no lease is ever granted with it.
	NoLease ID = 0

	// MaxTTL is the largest TTL, in seconds, that Grant accepts (etcd's limit).
	MaxTTL int64 = 9_000_000_000
)

// Sentinel errors. The API layer maps them to rpctypes (see the package doc).
var (
	// ErrLeaseNotFound: no lease with this ID (never granted, or revoked).
	ErrLeaseNotFound = errors.New("lease: not found")
	// ErrLeaseExists: Grant with an ID already in use.
	ErrLeaseExists = errors.New("lease: already exists")
	// ErrLeaseTTLTooLarge: Grant with a TTL above MaxTTL.
	ErrLeaseTTLTooLarge = errors.New("lease: TTL too large")
	// ErrNotPrimary: Renew on a member that is not the leader.
	ErrNotPrimary = errors.New("lease: not the primary lessor")
	// ErrLeaseExpired: Renew of a lease whose expiry has passed; the leader
	// revokes it (or has already proposed the revoke).
	ErrLeaseExpired = errors.New("lease: expired")
)

// Record is the durable part of a lease: what the apply loop persists after
// Grant and Checkpoint, and what Restore reads back. Its fields match etcd's
// leasepb.Lease.
type Record struct {
	ID  ID
	TTL int64 // granted TTL in seconds, after raising to MinTTL
	// RemainingTTL is the last checkpointed remaining TTL in seconds, in
	// [0, TTL); 0 means none: the full TTL counts.
	RemainingTTL int64
}

// Lease is a point-in-time view of a lease, returned by Lookup.
type Lease struct {
	ID              ID
	TTL             int64 // granted TTL in seconds
	CheckpointedTTL int64 // Record.RemainingTTL
	// RemainingTTL is what LeaseTimeToLive reports. On the primary: whole
	// seconds until expiry, truncated (the lease expires in under
	// RemainingTTL+1 seconds), or -1 once expired. On any other member, which
	// does not know the expiry: the TTL that Promote would start from
	// (CheckpointedTTL, or TTL when 0); the API layer should ask the leader.
	RemainingTTL int64
	Keys         []string // attached keys, sorted
}

// Config configures a Lessor.
type Config struct {
	// MinTTL is the smallest TTL, in seconds, that Grant and Restore give a
	// lease; smaller requests are raised to it. Use MinTTLFor. Every member
	// must use the same value for their records to agree. At least 1.
	MinTTL int64
	// CheckpointInterval is how often the primary checkpoints each lease
	// whose TTL exceeds it. 0 disables periodic checkpoints.
	CheckpointInterval time.Duration
	// Clock is the time source; nil means SystemClock.
	Clock Clock
}

// MinTTLFor is etcd's minimum lease TTL for a Raft configuration: one and a
// half election timeouts, (3*electionTicks)/2 heartbeats, in whole seconds
// rounded up. A lease shorter than that could expire during a normal election.
func MinTTLFor(electionTicks int, heartbeat time.Duration) int64 {
	d := time.Duration((3*electionTicks)/2) * heartbeat
	return int64((d + time.Second - 1) / time.Second)
}

// Lessor holds all leases of a member. Create it with New. All methods are
// safe for concurrent use.
type Lessor struct {
	minTTL   int64
	interval time.Duration
	clock    Clock
	epoch    time.Time // instants are nanoseconds since this reading

	mu      sync.Mutex
	leases  map[ID]*lease
	primary bool
	// Primary only, empty otherwise. expiries holds one slot per lease at
	// its expiry; checkpoints one slot per lease scheduled for a checkpoint.
	expiries    *btree.BTreeG[slot]
	checkpoints *btree.BTreeG[slot]
}

// lease is the lessor's state for one lease.
type lease struct {
	id        ID
	ttl       int64
	remaining int64 // checkpointed remaining TTL, 0 = none
	keys      map[string]struct{}

	// Meaningful only while the lessor is primary; reset by Promote/Demote.
	expiry       int64 // instant; a slot {expiry, id} is in expiries
	cpAt         int64 // instant; a slot {cpAt, id} is in checkpoints iff cpScheduled
	cpScheduled  bool
	renewed      bool  // renewed on this primary since Promote
	resetPending bool  // Renew asked for a reset; no checkpoint applied since
	proposed     int64 // last value Checkpoints reported, if hasProposed
	hasProposed  bool
}

// slot orders leases by an instant, then by ID.
type slot struct {
	at int64
	id ID
}

func slotLess(a, b slot) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return a.id < b.id
}

// New returns a Lessor with no leases, not primary.
func New(cfg Config) (*Lessor, error) {
	if cfg.MinTTL < 1 || cfg.MinTTL > MaxTTL {
		return nil, fmt.Errorf("lease: MinTTL %d out of range [1, %d]", cfg.MinTTL, MaxTTL)
	}
	if cfg.CheckpointInterval < 0 {
		return nil, fmt.Errorf("lease: negative CheckpointInterval %v", cfg.CheckpointInterval)
	}
	clock := cfg.Clock
	if clock == nil {
		clock = SystemClock{}
	}
	return &Lessor{
		minTTL:      cfg.MinTTL,
		interval:    cfg.CheckpointInterval,
		clock:       clock,
		epoch:       clock.Now(),
		leases:      make(map[ID]*lease),
		expiries:    btree.NewG(32, slotLess),
		checkpoints: btree.NewG(32, slotLess),
	}, nil
}

// Grant creates lease id with the given TTL in seconds, raised to MinTTL if
// smaller, and returns the record to persist. On the primary the lease
// expires TTL seconds from now. Deterministic.
//
// Errors: ErrLeaseNotFound if id is NoLease (as etcd), ErrLeaseTTLTooLarge if
// ttl > MaxTTL, ErrLeaseExists if id is in use.
func (l *Lessor) Grant(id ID, ttl int64) (Record, error) {
	if id == NoLease {
		return Record{}, ErrLeaseNotFound
	}
	if ttl > MaxTTL {
		return Record{}, ErrLeaseTTLTooLarge
	}
	ttl = max(ttl, l.minTTL)

	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.leases[id]; ok {
		return Record{}, ErrLeaseExists
	}
	le := &lease{id: id, ttl: ttl, keys: make(map[string]struct{})}
	l.leases[id] = le
	if l.primary {
		now := l.now()
		l.setExpiry(le, addSat(now, seconds(ttl)))
		if l.eligible(le) {
			l.schedule(le, addSat(now, int64(l.interval)))
		}
	}
	return le.record(), nil
}

// Revoke deletes lease id and returns its attached keys, sorted, for the
// caller to delete in the same revision (and the record to delete).
// Deterministic.
//
// Errors: ErrLeaseNotFound if there is no such lease (for instance a second
// revoke proposed for the same expired lease).
func (l *Lessor) Revoke(id ID) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.leases[id]
	if !ok {
		return nil, ErrLeaseNotFound
	}
	delete(l.leases, id)
	l.expiries.Delete(slot{le.expiry, id})
	l.unschedule(le)
	return sortedKeys(le.keys), nil
}

// Attach attaches key to lease id. Attaching a key twice is a no-op. The
// lessor does not detach the key from another lease: the caller, which knows
// the key's previous lease from mvcc, calls Detach. Deterministic.
//
// Errors: ErrLeaseNotFound.
func (l *Lessor) Attach(id ID, key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.leases[id]
	if !ok {
		return ErrLeaseNotFound
	}
	le.keys[key] = struct{}{}
	return nil
}

// Detach detaches key from lease id; a key that is not attached is ignored.
// Deterministic.
//
// Errors: ErrLeaseNotFound.
func (l *Lessor) Detach(id ID, key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.leases[id]
	if !ok {
		return ErrLeaseNotFound
	}
	delete(le.keys, key)
	return nil
}

// Checkpoint records remainingTTL (seconds) as lease id's checkpointed
// remaining TTL and returns the record to persist. Values <= 0 or >= TTL are
// recorded as 0 (none: the full TTL counts). Deterministic.
//
// On the primary it also sets the expiry to now+remainingTTL (now+TTL for 0),
// except when the lease was renewed on this primary since Promote or the
// value is the one this primary proposed last; see the package doc.
//
// Errors: ErrLeaseNotFound (the lease was revoked after the checkpoint was
// proposed; the caller ignores it).
func (l *Lessor) Checkpoint(id ID, remainingTTL int64) (Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.leases[id]
	if !ok {
		return Record{}, ErrLeaseNotFound
	}
	v := remainingTTL
	if v <= 0 || v >= le.ttl {
		v = 0
	}
	le.remaining = v
	le.resetPending = false
	if !l.primary {
		return le.record(), nil
	}
	now := l.now()
	switch {
	case le.renewed:
		// The primary's own expiry is newer. If the record now understates
		// it, correct the record at the next Checkpoints poll.
		if want, ok := le.wantCheckpoint(now); ok && v != 0 && (want == 0 || want > v) {
			l.schedule(le, now)
		}
	case le.hasProposed && le.proposed == v:
		// Our own checkpoint coming back: nothing new.
	default:
		l.setExpiry(le, addSat(now, seconds(le.startTTL())))
	}
	return le.record(), nil
}

// Restore replaces all leases with records, for startup or after installing
// a snapshot. TTLs below MinTTL are raised to it (as etcd does) and
// RemainingTTL values outside [0, TTL) are read as 0. No keys are attached:
// the caller attaches the keys it finds in mvcc. On the primary every lease
// then gets an expiry as by Promote(0). Deterministic.
//
// Errors: an error naming the record if an ID is NoLease or repeated or a TTL
// exceeds MaxTTL; the lessor is then unchanged.
func (l *Lessor) Restore(records []Record) error {
	leases := make(map[ID]*lease, len(records))
	for _, r := range records {
		switch {
		case r.ID == NoLease:
			return fmt.Errorf("lease: restore: record with ID %d (NoLease)", r.ID)
		case r.TTL > MaxTTL:
			return fmt.Errorf("lease: restore: lease %d: TTL %d above %d", r.ID, r.TTL, MaxTTL)
		}
		if _, dup := leases[r.ID]; dup {
			return fmt.Errorf("lease: restore: lease %d appears twice", r.ID)
		}
		le := &lease{id: r.ID, ttl: max(r.TTL, l.minTTL), remaining: r.RemainingTTL, keys: make(map[string]struct{})}
		if le.remaining < 0 || le.remaining >= le.ttl {
			le.remaining = 0
		}
		leases[r.ID] = le
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.leases = leases
	l.expiries.Clear(false)
	l.checkpoints.Clear(false)
	if l.primary {
		l.promote(0)
	}
	return nil
}

// Promote makes this lessor the primary, when its member becomes leader. Every
// lease expires at now + (checkpointed remaining TTL, or TTL) + extend, and
// leases whose TTL exceeds CheckpointInterval are scheduled for a checkpoint
// one interval from now. Promoting a primary again recomputes all of this.
func (l *Lessor) Promote(extend time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.primary = true
	l.promote(extend)
}

func (l *Lessor) promote(extend time.Duration) {
	l.expiries.Clear(false)
	l.checkpoints.Clear(false)
	now := l.now()
	for _, le := range l.leases {
		le.resetPrimary()
		l.setExpiry(le, addSat(addSat(now, seconds(le.startTTL())), int64(extend)))
		if l.eligible(le) {
			l.schedule(le, addSat(now, int64(l.interval)))
		}
	}
}

// Demote makes this lessor a non-primary, when its member stops being leader.
// All expiries and checkpoint schedules are forgotten; no lease expires until
// the next Promote.
func (l *Lessor) Demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.primary = false
	l.expiries.Clear(false)
	l.checkpoints.Clear(false)
	for _, le := range l.leases {
		le.resetPrimary()
	}
}

// IsPrimary reports whether the lessor is the primary.
func (l *Lessor) IsPrimary() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.primary
}

// Renew (LeaseKeepAlive) sets lease id to expire TTL seconds from now and
// returns the TTL. When resetCheckpoint is true the lease's record holds a
// checkpointed remaining TTL that is now stale: before answering the client
// the caller must propose LeaseCheckpoint{ID: id, Remaining_TTL: 0} and wait
// for it to apply. It is reported once until a checkpoint for id applies.
//
// Errors: ErrNotPrimary on a non-primary (forward to the leader),
// ErrLeaseNotFound, ErrLeaseExpired if the expiry has passed (the lease is
// being revoked; answer as for ErrLeaseNotFound).
func (l *Lessor) Renew(id ID) (ttl int64, resetCheckpoint bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return 0, false, ErrNotPrimary
	}
	le, ok := l.leases[id]
	if !ok {
		return 0, false, ErrLeaseNotFound
	}
	now := l.now()
	if le.expiry <= now {
		return 0, false, ErrLeaseExpired
	}
	l.setExpiry(le, addSat(now, seconds(le.ttl)))
	le.renewed = true
	if le.remaining != 0 && !le.resetPending {
		le.resetPending = true
		resetCheckpoint = true
	}
	return le.ttl, resetCheckpoint, nil
}

// Expired returns, on the primary, up to limit leases whose expiry has
// passed, earliest expiry first (ties by ID). A lease keeps being returned
// until it is revoked or its expiry moves (Checkpoint, Restore, Promote; Renew
// refuses it); the caller proposes a revoke for each and may propose one
// twice. Returns nil on a non-primary or when limit <= 0.
func (l *Lessor) Expired(limit int) []ID {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary || limit <= 0 {
		return nil
	}
	now := l.now()
	var ids []ID
	l.expiries.Ascend(func(s slot) bool {
		if s.at > now {
			return false
		}
		ids = append(ids, s.id)
		return len(ids) < limit
	})
	return ids
}

// Checkpoints returns, on the primary, up to limit checkpoints that are due,
// for the leader loop to propose as one LeaseCheckpointRequest. Each lease
// whose TTL exceeds CheckpointInterval is due once per interval; a lease is
// also due at once when an applied checkpoint understated it (see
// Checkpoint). A due lease is reported with Remaining_TTL =
// ceil(expiry-now) seconds, or 0 when that is at least its TTL, unless the
// record already holds that value or the lease has expired; either way it is
// rescheduled one interval later. Returns nil on a non-primary or when
// limit <= 0.
func (l *Lessor) Checkpoints(limit int) []*pb.LeaseCheckpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary || limit <= 0 {
		return nil
	}
	now := l.now()
	var cps []*pb.LeaseCheckpoint
	for len(cps) < limit {
		s, ok := l.checkpoints.Min()
		if !ok || s.at > now {
			break
		}
		le := l.leases[s.id]
		l.unschedule(le)
		if l.eligible(le) {
			l.schedule(le, addSat(now, int64(l.interval)))
		}
		v, ok := le.wantCheckpoint(now)
		if !ok || v == le.remaining {
			continue
		}
		le.proposed, le.hasProposed = v, true
		cps = append(cps, &pb.LeaseCheckpoint{ID: int64(le.id), Remaining_TTL: v})
	}
	return cps
}

// Lookup returns a view of lease id (see Lease for RemainingTTL).
//
// Errors: ErrLeaseNotFound.
func (l *Lessor) Lookup(id ID) (Lease, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.leases[id]
	if !ok {
		return Lease{}, ErrLeaseNotFound
	}
	v := Lease{ID: id, TTL: le.ttl, CheckpointedTTL: le.remaining, Keys: sortedKeys(le.keys)}
	if l.primary {
		if d := le.expiry - l.now(); d > 0 {
			v.RemainingTTL = d / int64(time.Second)
		} else {
			v.RemainingTTL = -1
		}
	} else {
		v.RemainingTTL = le.startTTL()
	}
	return v, nil
}

// Leases returns the IDs of all leases, sorted.
func (l *Lessor) Leases() []ID {
	l.mu.Lock()
	ids := make([]ID, 0, len(l.leases))
	for id := range l.leases {
		ids = append(ids, id)
	}
	l.mu.Unlock()
	slices.Sort(ids)
	return ids
}

// Keys returns the keys attached to lease id, sorted.
//
// Errors: ErrLeaseNotFound.
func (l *Lessor) Keys(id ID) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.leases[id]
	if !ok {
		return nil, ErrLeaseNotFound
	}
	return sortedKeys(le.keys), nil
}

// now is the clock reading as an instant: nanoseconds since l.epoch,
// saturating (time.Time.Sub saturates).
func (l *Lessor) now() int64 { return int64(l.clock.Now().Sub(l.epoch)) }

// eligible reports whether le is checkpointed periodically.
func (l *Lessor) eligible(le *lease) bool {
	// ttl <= MaxTTL, so ttl*time.Second does not overflow.
	return l.interval > 0 && time.Duration(le.ttl)*time.Second > l.interval
}

func (l *Lessor) setExpiry(le *lease, at int64) {
	l.expiries.Delete(slot{le.expiry, le.id})
	le.expiry = at
	l.expiries.ReplaceOrInsert(slot{at, le.id})
}

func (l *Lessor) schedule(le *lease, at int64) {
	l.unschedule(le)
	le.cpAt, le.cpScheduled = at, true
	l.checkpoints.ReplaceOrInsert(slot{at, le.id})
}

func (l *Lessor) unschedule(le *lease) {
	if le.cpScheduled {
		l.checkpoints.Delete(slot{le.cpAt, le.id})
		le.cpScheduled = false
	}
}

func (le *lease) record() Record {
	return Record{ID: le.id, TTL: le.ttl, RemainingTTL: le.remaining}
}

// startTTL is the TTL a new primary starts the lease from.
func (le *lease) startTTL() int64 {
	if le.remaining != 0 {
		return le.remaining
	}
	return le.ttl
}

// wantCheckpoint is the value that would record le's remaining TTL at now:
// ceil(expiry-now) in seconds, 0 if that is at least the TTL. ok is false
// once the lease has expired.
func (le *lease) wantCheckpoint(now int64) (v int64, ok bool) {
	d := le.expiry - now
	if d <= 0 {
		return 0, false
	}
	v = d / int64(time.Second)
	if d%int64(time.Second) != 0 {
		v++
	}
	if v >= le.ttl {
		v = 0
	}
	return v, true
}

func (le *lease) resetPrimary() {
	le.expiry, le.cpAt, le.cpScheduled = 0, 0, false
	le.renewed, le.resetPending = false, false
	le.proposed, le.hasProposed = 0, false
}

func sortedKeys(m map[string]struct{}) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// seconds converts whole seconds to nanoseconds, saturating.
func seconds(s int64) int64 {
	if s > math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return s * int64(time.Second)
}

// addSat adds two instants or durations, saturating at the int64 limits.
func addSat(a, b int64) int64 {
	s := a + b
	switch {
	case a > 0 && b > 0 && s < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && s >= 0:
		return math.MinInt64
	}
	return s
}
