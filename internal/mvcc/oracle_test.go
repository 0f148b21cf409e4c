package mvcc_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage"
)

// The oracle test drives the real Store and a naive model with the same
// random operations and checks, after every step, that every read the store
// serves (Range at every revision, Get, Events, the compaction errors)
// is what the model says. Two stores get the same operations: A is
// reopened (index rebuilt from the records) at random points and compacts
// physically right away or after a reopen; B is never reopened and runs
// the physical compaction late. Their HashKV must agree at every revision.

// change is one record of the model's change log.
type change struct {
	main, sub int64
	key       string
	value     []byte
	create    int64
	version   int64
	lease     int64
	deleted   bool
}

func (c change) kv() *mvccpb.KeyValue {
	return &mvccpb.KeyValue{
		Key: []byte(c.key), Value: c.value, CreateRevision: c.create,
		ModRevision: c.main, Version: c.version, Lease: c.lease,
	}
}

func (c change) event() *mvccpb.Event {
	if c.deleted {
		return &mvccpb.Event{Type: mvccpb.Event_DELETE, Kv: &mvccpb.KeyValue{Key: []byte(c.key), ModRevision: c.main}}
	}
	return &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: c.kv()}
}

// model is the naive store: the full change log, scanned on every read.
type model struct {
	rev     int64 // published
	pending int64 // last revision handed out
	compact int64 // last compaction revision, 0 if none
	log     []change
	// the write in progress
	inWrite bool
	sub     int64
}

func newModel() *model { return &model{rev: 1, pending: 1} }

// at is key's record as of rev, or nil.
func (m *model) at(key string, rev int64) *mvccpb.KeyValue {
	var last *change
	for i := range m.log {
		c := &m.log[i]
		if c.main > rev {
			break
		}
		if c.key == key {
			last = c
		}
	}
	if last == nil || last.deleted {
		return nil
	}
	return last.kv()
}

// keys lists every key ever written that falls in [key, end) with the
// store's conventions (nil end: key alone; empty end: no upper bound).
func (m *model) keys(key, end []byte) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range m.log {
		if seen[c.key] {
			continue
		}
		k := []byte(c.key)
		in := false
		switch {
		case end == nil:
			in = bytes.Equal(k, key)
		case len(end) == 0:
			in = bytes.Compare(k, key) >= 0
		default:
			in = bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
		}
		if in {
			seen[c.key] = true
			out = append(out, c.key)
		}
	}
	sort.Strings(out)
	return out
}

func (m *model) rangeAt(key, end []byte, rev int64) []*mvccpb.KeyValue {
	var out []*mvccpb.KeyValue
	for _, k := range m.keys(key, end) {
		if kv := m.at(k, rev); kv != nil {
			out = append(out, kv)
		}
	}
	return out
}

func (m *model) begin() {
	if m.inWrite {
		panic("model: nested write")
	}
	m.inWrite, m.sub = true, 0
}

func (m *model) put(key string, value []byte, lease int64) *mvccpb.KeyValue {
	main := m.pending + 1
	prev := m.at(key, main)
	c := change{main: main, sub: m.sub, key: key, value: value, lease: lease, create: main, version: 1}
	if prev != nil {
		c.create, c.version = prev.CreateRevision, prev.Version+1
	}
	m.log = append(m.log, c)
	m.sub++
	return prev
}

func (m *model) deleteRange(key, end []byte) []*mvccpb.KeyValue {
	main := m.pending + 1
	del := m.rangeAt(key, end, main)
	for _, kv := range del {
		m.log = append(m.log, change{main: main, sub: m.sub, key: string(kv.Key), deleted: true})
		m.sub++
	}
	return del
}

func (m *model) end() {
	if m.sub > 0 {
		m.pending++
	}
	m.inWrite = false
}

func (m *model) events(from, to int64) []*mvccpb.Event {
	var out []*mvccpb.Event
	for _, c := range m.log {
		if c.main >= from && c.main <= to {
			out = append(out, c.event())
		}
	}
	return out
}

// keySpace has keys that are prefixes of one another, a zero byte and
// 0xff, so ranges hit the byte-order edge cases.
var keySpace = []string{"a", "a/", "a/1", "a/2", "ab", "b", "b\x00", "c", "zz", "\xff"}

// rangeSpec is a [key, end) pair in the store's conventions.
type rangeSpec struct{ key, end []byte }

func (r rangeSpec) String() string {
	switch {
	case r.end == nil:
		return fmt.Sprintf("%q", r.key)
	case len(r.end) == 0:
		return fmt.Sprintf("[%q, +inf)", r.key)
	}
	return fmt.Sprintf("[%q, %q)", r.key, r.end)
}

func randKey(rng *rand.Rand) []byte {
	if rng.IntN(10) == 0 {
		return []byte(keySpace[rng.IntN(len(keySpace))] + "0") // between known keys
	}
	return []byte(keySpace[rng.IntN(len(keySpace))])
}

func randRange(rng *rand.Rand) rangeSpec {
	switch rng.IntN(4) {
	case 0:
		return rangeSpec{key: randKey(rng)}
	case 1:
		return rangeSpec{key: randKey(rng), end: []byte{}}
	default:
		return rangeSpec{key: randKey(rng), end: randKey(rng)}
	}
}

// member is one store under test with its engine.
type member struct {
	name string
	dir  string
	eng  *storage.Engine
	s    *mvcc.Store
	// physPending: a compaction was scheduled but not done physically.
	physPending bool
}

func openMember(t *testing.T, name, dir string) *member {
	t.Helper()
	eng, err := storage.Open(dir, storage.Options{CacheBytes: 1 << 20})
	if err != nil {
		t.Fatalf("%s: storage.Open: %v", name, err)
	}
	s, err := mvcc.Open(eng.DB())
	if err != nil {
		eng.Close()
		t.Fatalf("%s: mvcc.Open: %v", name, err)
	}
	return &member{name: name, dir: dir, eng: eng, s: s}
}

func (mb *member) close(t *testing.T) {
	t.Helper()
	if err := mb.eng.Close(); err != nil {
		t.Fatalf("%s: close: %v", mb.name, err)
	}
}

// reopenStore rebuilds the store from the records of the same database.
func (mb *member) reopenStore(t *testing.T) {
	t.Helper()
	s, err := mvcc.Open(mb.eng.DB())
	if err != nil {
		t.Fatalf("%s: mvcc.Open: %v", mb.name, err)
	}
	mb.s = s
}

// reopenEngine closes and reopens the engine, then the store.
func (mb *member) reopenEngine(t *testing.T) {
	t.Helper()
	mb.close(t)
	*mb = *openMember(t, mb.name, mb.dir)
	// A restarted server resumes an unfinished physical compaction.
	mb.physPending = true
}

func (mb *member) compactPhysical(t *testing.T, limit int) {
	t.Helper()
	if _, err := mb.s.CompactPhysical(limit); err != nil {
		t.Fatalf("%s: CompactPhysical: %v", mb.name, err)
	}
	mb.physPending = false
}

// oracleConfig selects which operations the run may do.
type oracleConfig struct {
	steps int
	// reopenAfterPhysical lets A reopen after a physical compaction
	// removed records (the index is then rebuilt from a partial history).
	reopenAfterPhysical bool
}

func oracleSeed(t *testing.T, def uint64) uint64 {
	if v := os.Getenv("CAIRN_ORACLE_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CAIRN_ORACLE_SEED: %v", err)
		}
		return s
	}
	return def
}

// oracleSteps is the number of steps per run; CAIRN_ORACLE_STEPS raises it
// for a longer search.
func oracleSteps(t *testing.T, def int) int {
	if v := os.Getenv("CAIRN_ORACLE_STEPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("CAIRN_ORACLE_STEPS: %v", err)
		}
		return n
	}
	return def
}

func TestOracle(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runOracle(t, oracleSeed(t, seed), oracleConfig{steps: oracleSteps(t, 150), reopenAfterPhysical: false})
		})
	}
}

// TestOracleReopenAfterPhysicalCompaction is the oracle with reopens at any
// point, including after records below the compaction were removed.
func TestOracleReopenAfterPhysicalCompaction(t *testing.T) {
	for _, seed := range []uint64{11, 12, 13} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runOracle(t, oracleSeed(t, seed), oracleConfig{steps: oracleSteps(t, 150), reopenAfterPhysical: true})
		})
	}
}

func runOracle(t *testing.T, seed uint64, cfg oracleConfig) {
	t.Logf("seed %d (set CAIRN_ORACLE_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	m := newModel()
	a := openMember(t, "A", t.TempDir())
	b := openMember(t, "B", t.TempDir())
	defer func() { a.close(t); b.close(t) }()

	check(t, "start", m, a, b, rng)
	for step := 0; step < cfg.steps; step++ {
		var what string
		switch p := rng.IntN(100); {
		case p < 70:
			what = writeBatch(t, rng, m, a, b)
		case p < 80:
			what = "compact " + compact(t, rng, m, a, b)
		case p < 88:
			if rng.IntN(3) == 0 {
				what = "reopen engine A"
				a.reopenEngine(t)
			} else {
				what = "reopen store A"
				a.reopenStore(t)
				a.physPending = a.s.CompactRev() > 0
			}
		case p < 94:
			what = "physical compaction"
			// Without reopenAfterPhysical, A keeps every record until
			// the end, so its index is always rebuilt from a full history.
			if a.physPending && cfg.reopenAfterPhysical {
				a.compactPhysical(t, 1+rng.IntN(4))
				what += " A"
			}
			if b.physPending {
				b.compactPhysical(t, 1+rng.IntN(4))
				what += " B"
			}
		default:
			what = "flush"
			for _, mb := range []*member{a, b} {
				if err := mb.eng.DB().Flush(); err != nil {
					t.Fatalf("%s: flush: %v", mb.name, err)
				}
			}
		}
		check(t, fmt.Sprintf("step %d (%s)", step, what), m, a, b, rng)
		if t.Failed() {
			return
		}
	}
	// Finish every physical compaction: the hash must not change.
	for _, mb := range []*member{a, b} {
		if mb.physPending {
			mb.compactPhysical(t, 1000)
		}
	}
	check(t, "end", m, a, b, rng)
}

// writeBatch applies 1-4 write requests in one indexed batch to both
// stores and the model, commits and publishes. A compaction may be
// scheduled in the same batch, as the apply loop does.
func writeBatch(t *testing.T, rng *rand.Rand, m *model, mbs ...*member) string {
	t.Helper()
	batches := make([]*pebble.Batch, len(mbs))
	for i, mb := range mbs {
		batches[i] = mb.eng.DB().NewIndexedBatch()
	}
	defer func() {
		for _, bt := range batches {
			bt.Close()
		}
	}()
	publishedBefore := m.rev
	nWrites := 1 + rng.IntN(4)
	desc := fmt.Sprintf("batch of %d writes:", nWrites)
	for i := 0; i < nWrites; i++ {
		if rng.IntN(10) == 0 {
			desc += " compact " + scheduleCompaction(t, rng, m, batches, mbs)
			continue
		}
		ws := make([]*mvcc.Write, len(mbs))
		for j, mb := range mbs {
			ws[j] = mb.s.Write(batches[j])
		}
		m.begin()
		nChanges := 1 + rng.IntN(3)
		for c := 0; c < nChanges; c++ {
			if rng.IntN(3) > 0 {
				key := randKey(rng)
				val := []byte(fmt.Sprintf("v%d", rng.IntN(1000)))
				if rng.IntN(8) == 0 {
					val = nil // an empty value is a value
				}
				lease := int64(rng.IntN(3))
				desc += fmt.Sprintf(" put %q", key)
				wantPrev := m.put(string(key), val, lease)
				for j, w := range ws {
					prevLease, err := w.Put(key, val, lease)
					if err != nil {
						t.Fatalf("%s: Put(%q): %v", mbs[j].name, key, err)
					}
					if want := wantPrev.GetLease(); prevLease != want {
						t.Fatalf("%s: Put(%q) previous lease = %d, want %d (previous %v)", mbs[j].name, key, prevLease, want, wantPrev)
					}
				}
			} else {
				r := randRange(rng)
				desc += " delete " + r.String()
				want := m.deleteRange(r.key, r.end)
				for j, w := range ws {
					got, err := w.DeleteRange(r.key, r.end)
					if err != nil {
						t.Fatalf("%s: DeleteRange(%v): %v", mbs[j].name, r, err)
					}
					if d := diffKVs(got, want); d != "" {
						t.Fatalf("%s: DeleteRange(%v) returned %s", mbs[j].name, r, d)
					}
				}
			}
			// Read your writes inside the write.
			r := randRange(rng)
			want := m.rangeAt(r.key, r.end, m.pending+boolInt(m.sub > 0))
			for j, w := range ws {
				res, err := w.Range(r.key, r.end, mvcc.RangeOptions{})
				if err != nil {
					t.Fatalf("%s: Write.Range(%v): %v", mbs[j].name, r, err)
				}
				if d := diffKVs(res.KVs, want); d != "" {
					t.Fatalf("%s: Write.Range(%v) inside a write: %s", mbs[j].name, r, d)
				}
			}
		}
		wantEvents := m.events(m.pending+1, m.pending+1)
		m.end()
		for j, w := range ws {
			evs := w.End()
			if d := diffEvents(evs, wantEvents); d != "" {
				t.Fatalf("%s: End events: %s", mbs[j].name, d)
			}
			if got := mbs[j].s.PendingRev(); got != m.pending {
				t.Fatalf("%s: PendingRev = %d, want %d", mbs[j].name, got, m.pending)
			}
		}
	}
	// Nothing is visible before the batch commits and is published.
	for _, mb := range mbs {
		if got := mb.s.Rev(); got != publishedBefore {
			t.Fatalf("%s: Rev = %d before publish, want %d", mb.name, got, publishedBefore)
		}
		if m.pending > publishedBefore {
			if _, err := mb.s.Range([]byte("a"), []byte{}, mvcc.RangeOptions{Rev: m.pending}); !errors.Is(err, mvcc.ErrFutureRev) {
				t.Fatalf("%s: Range at unpublished revision %d: err = %v, want ErrFutureRev", mb.name, m.pending, err)
			}
		}
	}
	for j, mb := range mbs {
		if err := batches[j].Commit(pebble.NoSync); err != nil {
			t.Fatalf("%s: commit: %v", mb.name, err)
		}
		mb.s.Publish(mb.s.PendingRev())
	}
	m.rev = m.pending
	return desc
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// scheduleCompaction schedules a compaction in the given (uncommitted)
// batches; sometimes at a revision that must be refused.
func scheduleCompaction(t *testing.T, rng *rand.Rand, m *model, batches []*pebble.Batch, mbs []*member) string {
	t.Helper()
	var rev int64
	var wantErr error
	switch p := rng.IntN(10); {
	case p == 0 && m.compact > 0:
		rev, wantErr = m.compact-int64(rng.IntN(2)), mvcc.ErrCompacted
	case p == 1:
		rev, wantErr = m.pending+1+int64(rng.IntN(2)), mvcc.ErrFutureRev
	default:
		lo := m.compact + 1
		if lo > m.pending {
			rev, wantErr = m.pending, mvcc.ErrCompacted // nothing new to compact
			if m.compact == 0 {
				rev, wantErr = m.pending, nil
			}
		} else {
			rev = lo + rng.Int64N(m.pending-lo+1)
		}
	}
	for j, mb := range mbs {
		err := mb.s.ScheduleCompaction(batches[j], rev)
		if !errors.Is(err, wantErr) {
			t.Fatalf("%s: ScheduleCompaction(%d) with compact=%d pending=%d: err = %v, want %v",
				mb.name, rev, m.compact, m.pending, err, wantErr)
		}
		if err == nil {
			mb.physPending = true
		}
	}
	if wantErr == nil {
		m.compact = rev
	}
	return fmt.Sprintf("%d (err %v)", rev, wantErr)
}

// compact schedules a compaction in a batch of its own and commits it; A
// sometimes removes the records at once.
func compact(t *testing.T, rng *rand.Rand, m *model, a, b *member) string {
	t.Helper()
	mbs := []*member{a, b}
	batches := []*pebble.Batch{a.eng.DB().NewBatch(), b.eng.DB().NewBatch()}
	defer batches[0].Close()
	defer batches[1].Close()
	desc := scheduleCompaction(t, rng, m, batches, mbs)
	for j, mb := range mbs {
		if err := batches[j].Commit(pebble.NoSync); err != nil {
			t.Fatalf("%s: commit: %v", mb.name, err)
		}
	}
	return desc
}

// check compares both stores with the model and with each other.
func check(t *testing.T, when string, m *model, a, b *member, rng *rand.Rand) {
	t.Helper()
	for _, mb := range []*member{a, b} {
		checkStore(t, when, m, mb, rng)
		if t.Failed() {
			return
		}
	}
	// HashKV agrees at every revision a read can be served at.
	lo := max(m.compact, 1)
	for rev := lo; rev <= m.rev; rev++ {
		ha, hra, cra, err := a.s.HashKV(rev)
		if err != nil {
			t.Fatalf("%s: A: HashKV(%d): %v", when, rev, err)
		}
		hb, hrb, crb, err := b.s.HashKV(rev)
		if err != nil {
			t.Fatalf("%s: B: HashKV(%d): %v", when, rev, err)
		}
		if ha != hb || hra != hrb || cra != crb {
			t.Fatalf("%s: HashKV(%d): A = (%x, %d, %d), B = (%x, %d, %d)", when, rev, ha, hra, cra, hb, hrb, crb)
		}
	}
	if m.compact > 1 {
		for _, mb := range []*member{a, b} {
			if _, _, _, err := mb.s.HashKV(m.compact - 1); !errors.Is(err, mvcc.ErrCompacted) {
				t.Fatalf("%s: %s: HashKV below compaction: err = %v, want ErrCompacted", when, mb.name, err)
			}
		}
	}
	for _, mb := range []*member{a, b} {
		if _, _, _, err := mb.s.HashKV(m.rev + 1); !errors.Is(err, mvcc.ErrFutureRev) {
			t.Fatalf("%s: %s: HashKV(future): err = %v, want ErrFutureRev", when, mb.name, err)
		}
	}
}

func checkStore(t *testing.T, when string, m *model, mb *member, rng *rand.Rand) {
	t.Helper()
	s := mb.s
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: %s: %s", when, mb.name, fmt.Sprintf(format, args...))
	}
	if got := s.Rev(); got != m.rev {
		fail("Rev = %d, want %d", got, m.rev)
	}
	if got := s.PendingRev(); got != m.rev {
		fail("PendingRev = %d, want %d", got, m.rev)
	}
	if got := s.CompactRev(); got != m.compact {
		fail("CompactRev = %d, want %d", got, m.compact)
	}
	// Every revision a read can be served at.
	lo := max(m.compact, 1)
	for rev := lo; rev <= m.rev; rev++ {
		all := rangeSpec{key: []byte{0}, end: []byte{}}
		specs := []rangeSpec{all, randRange(rng), randRange(rng)}
		for _, r := range specs {
			want := m.rangeAt(r.key, r.end, rev)
			limit := int64(rng.IntN(4))
			res, err := s.Range(r.key, r.end, mvcc.RangeOptions{Rev: rev, Limit: limit})
			if err != nil {
				fail("Range(%v, rev %d): %v", r, rev, err)
			}
			if res.Rev != m.rev || res.Count != len(want) {
				fail("Range(%v, rev %d): Rev %d Count %d, want %d %d", r, rev, res.Rev, res.Count, m.rev, len(want))
			}
			wantKVs := want
			if limit > 0 && int64(len(want)) > limit {
				wantKVs = want[:limit]
			}
			if d := diffKVs(res.KVs, wantKVs); d != "" {
				fail("Range(%v, rev %d, limit %d): %s", r, rev, limit, d)
			}
			kres, err := s.Range(r.key, r.end, mvcc.RangeOptions{Rev: rev, Limit: limit, KeysOnly: true})
			if err != nil {
				fail("Range(%v, rev %d, keys only): %v", r, rev, err)
			}
			wantKeys := make([]*mvccpb.KeyValue, len(wantKVs))
			for i, kv := range wantKVs {
				wantKeys[i] = &mvccpb.KeyValue{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version}
			}
			if kres.Rev != m.rev || kres.Count != len(want) {
				fail("Range(%v, rev %d, keys only): Rev %d Count %d, want %d %d", r, rev, kres.Rev, kres.Count, m.rev, len(want))
			}
			if d := diffKVs(kres.KVs, wantKeys); d != "" {
				fail("Range(%v, rev %d, limit %d, keys only): %s", r, rev, limit, d)
			}
			cres, err := s.Range(r.key, r.end, mvcc.RangeOptions{Rev: rev, Count: true})
			if err != nil {
				fail("Range(%v, rev %d, count): %v", r, rev, err)
			}
			if cres.Count != len(want) || len(cres.KVs) != 0 {
				fail("Range(%v, rev %d, count): Count %d with %d KVs, want %d and none", r, rev, cres.Count, len(cres.KVs), len(want))
			}
		}
		key := randKey(rng)
		got, err := s.Get(key, rev)
		if err != nil {
			fail("Get(%q, %d): %v", key, rev, err)
		}
		if want := m.at(string(key), rev); !proto.Equal(got, want) {
			fail("Get(%q, %d) = %v, want %v", key, rev, got, want)
		}
	}
	// Latest (revision 0).
	res, err := s.Range([]byte{0}, []byte{}, mvcc.RangeOptions{})
	if err != nil {
		fail("Range(latest): %v", err)
	}
	if d := diffKVs(res.KVs, m.rangeAt([]byte{0}, []byte{}, m.rev)); d != "" {
		fail("Range(latest): %s", d)
	}
	if m.compact > 1 {
		if _, err := s.Range([]byte("a"), []byte{}, mvcc.RangeOptions{Rev: m.compact - 1}); !errors.Is(err, mvcc.ErrCompacted) {
			fail("Range below compaction (%d): err = %v, want ErrCompacted", m.compact-1, err)
		}
		if _, err := s.Get([]byte("a"), 1+rng.Int64N(m.compact-1)); !errors.Is(err, mvcc.ErrCompacted) {
			fail("Get below compaction: err = %v, want ErrCompacted", err)
		}
	}
	if _, err := s.Range([]byte("a"), []byte{}, mvcc.RangeOptions{Rev: m.rev + 1}); !errors.Is(err, mvcc.ErrFutureRev) {
		fail("Range at %d: err = %v, want ErrFutureRev", m.rev+1, err)
	}
	// Events: the whole readable history, then a random window.
	checkEvents := func(from, to int64) {
		t.Helper()
		var got []*mvccpb.Event
		err := s.Events(from, to, func(ev *mvccpb.Event) bool { got = append(got, ev); return true })
		if err != nil {
			fail("Events(%d, %d): %v", from, to, err)
		}
		if d := diffEvents(got, m.events(from, min(to, m.rev))); d != "" {
			fail("Events(%d, %d): %s", from, to, d)
		}
	}
	checkEvents(m.compact+1, m.rev)
	from := m.compact + 1 + rng.Int64N(m.rev-m.compact+1)
	checkEvents(from, from+rng.Int64N(5))
	checkEvents(m.compact+1, m.rev+10) // capped at the published revision
	if m.compact > 0 {
		err := s.Events(m.compact-1, m.rev, func(*mvccpb.Event) bool { return true })
		if !errors.Is(err, mvcc.ErrCompacted) {
			fail("Events from below the compaction revision: err = %v, want ErrCompacted", err)
		}
		// From the compaction revision itself (etcd lets a watch start
		// there): the changes at it that a compaction removes (a
		// deletion, a put overwritten in the same revision) may or may
		// not be reported, depending on whether the records are gone yet;
		// the ones it keeps must be.
		var got []*mvccpb.Event
		if err := s.Events(m.compact, m.rev, func(ev *mvccpb.Event) bool { got = append(got, ev); return true }); err != nil {
			fail("Events from the compaction revision: %v", err)
		}
		var gotAt []*mvccpb.Event
		for len(got) > 0 && got[0].Kv.ModRevision == m.compact {
			gotAt, got = append(gotAt, got[0]), got[1:]
		}
		if d := diffEvents(got, m.events(m.compact+1, m.rev)); d != "" {
			fail("Events(%d, %d) after the compaction revision: %s", m.compact, m.rev, d)
		}
		kept := map[string]bool{}
		for _, kv := range m.rangeAt([]byte{0}, []byte{}, m.compact) {
			if kv.ModRevision == m.compact {
				kept[string(kv.Key)] = true
			}
		}
		wantAt := m.events(m.compact, m.compact)
		for _, ev := range gotAt {
			for len(wantAt) > 0 && !proto.Equal(wantAt[0], ev) {
				if wantAt[0].Type == mvccpb.Event_PUT && kept[string(wantAt[0].Kv.Key)] &&
					m.at(string(wantAt[0].Kv.Key), m.compact).Version == wantAt[0].Kv.Version {
					fail("Events(%d, ...) at the compaction revision lacks the kept %v", m.compact, wantAt[0])
				}
				wantAt = wantAt[1:]
			}
			if len(wantAt) == 0 {
				fail("Events(%d, ...) at the compaction revision: unexpected %v (want a subsequence of %v)",
					m.compact, ev, m.events(m.compact, m.compact))
			}
			wantAt = wantAt[1:]
		}
		for _, ev := range wantAt {
			if ev.Type == mvccpb.Event_PUT && kept[string(ev.Kv.Key)] &&
				m.at(string(ev.Kv.Key), m.compact).Version == ev.Kv.Version {
				fail("Events(%d, ...) at the compaction revision lacks the kept %v", m.compact, ev)
			}
		}
	}
	// Stopping early.
	n := 0
	if err := s.Events(m.compact+1, m.rev, func(*mvccpb.Event) bool { n++; return n < 2 }); err != nil {
		fail("Events with early stop: %v", err)
	}
	if want := min(2, len(m.events(m.compact+1, m.rev))); n != want {
		fail("Events with early stop called fn %d times, want %d", n, want)
	}
	// Bytes: the size of the records on disk, keys and values.
	kvLo, kvHi := storage.KVSpan()
	it, err := mb.eng.DB().NewIter(&pebble.IterOptions{LowerBound: kvLo, UpperBound: kvHi})
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for it.First(); it.Valid(); it.Next() {
		size += int64(len(it.Key()) + len(it.Value()))
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if got := s.Bytes(); got != size {
		fail("Bytes = %d, want %d (the records on disk)", got, size)
	}
	// LeasedKeys: the live keys with a lease.
	got := map[string]int64{}
	if err := s.LeasedKeys(func(k []byte, l int64) { got[string(k)] = l }); err != nil {
		fail("LeasedKeys: %v", err)
	}
	want := map[string]int64{}
	for _, kv := range m.rangeAt([]byte{0}, []byte{}, m.rev) {
		if kv.Lease != 0 {
			want[string(kv.Key)] = kv.Lease
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		fail("LeasedKeys = %v, want %v", got, want)
	}
}

func diffKVs(got, want []*mvccpb.KeyValue) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d key-values %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			return fmt.Sprintf("[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	return ""
}

func diffEvents(got, want []*mvccpb.Event) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d events %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			return fmt.Sprintf("event [%d] = %v, want %v", i, got[i], want[i])
		}
	}
	return ""
}
