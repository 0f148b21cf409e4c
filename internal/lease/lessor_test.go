package lease

import (
	"errors"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newTest(t testing.TB, minTTL int64, interval time.Duration) (*Lessor, *FakeClock) {
	t.Helper()
	clk := NewFakeClock(t0)
	l, err := New(Config{MinTTL: minTTL, CheckpointInterval: interval, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return l, clk
}

func mustGrant(t testing.TB, l *Lessor, id ID, ttl int64) {
	t.Helper()
	if _, err := l.Grant(id, ttl); err != nil {
		t.Fatalf("Grant(%d, %d): %v", id, ttl, err)
	}
}

func remaining(t testing.TB, l *Lessor, id ID) int64 {
	t.Helper()
	v, err := l.Lookup(id)
	if err != nil {
		t.Fatalf("Lookup(%d): %v", id, err)
	}
	return v.RemainingTTL
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", Config{MinTTL: 1}, true},
		{"nil clock is the system clock", Config{MinTTL: 2, CheckpointInterval: time.Minute}, true},
		{"max MinTTL", Config{MinTTL: MaxTTL}, true},
		{"zero MinTTL", Config{MinTTL: 0}, false},
		{"MinTTL above max", Config{MinTTL: MaxTTL + 1}, false},
		{"negative interval", Config{MinTTL: 1, CheckpointInterval: -time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := New(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New(%+v) error = %v, want ok=%v", tc.cfg, err, tc.ok)
			}
			if tc.ok && (l.IsPrimary() || len(l.Leases()) != 0) {
				t.Fatalf("new lessor is primary or has leases")
			}
		})
	}
}

func TestMinTTLFor(t *testing.T) {
	for _, tc := range []struct {
		ticks     int
		heartbeat time.Duration
		want      int64
	}{
		{10, 100 * time.Millisecond, 2}, // etcd defaults: 1.5s -> 2
		{5, 100 * time.Millisecond, 1},  // (15/2)=7 heartbeats = 0.7s -> 1
		{10, time.Second, 15},
		{20, 100 * time.Millisecond, 3}, // exactly 3s
		{0, time.Second, 0},
	} {
		if got := MinTTLFor(tc.ticks, tc.heartbeat); got != tc.want {
			t.Errorf("MinTTLFor(%d, %v) = %d, want %d", tc.ticks, tc.heartbeat, got, tc.want)
		}
	}
}

func TestGrant(t *testing.T) {
	for _, tc := range []struct {
		name    string
		id      ID
		ttl     int64
		wantTTL int64
		wantErr error
	}{
		{"ok", 1, 60, 60, nil},
		{"raised to MinTTL", 1, 2, 5, nil},
		{"MinTTL exactly", 1, 5, 5, nil},
		{"zero TTL raised", 1, 0, 5, nil},
		{"negative TTL raised", 1, -10, 5, nil},
		{"negative ID", -3, 60, 60, nil},
		{"MaxTTL", 1, MaxTTL, MaxTTL, nil},
		{"above MaxTTL", 1, MaxTTL + 1, 0, ErrLeaseTTLTooLarge},
		{"NoLease", NoLease, 60, 0, ErrLeaseNotFound},
		{"exists", 7, 60, 0, ErrLeaseExists},
		{"exists and too large: TTL checked first", 7, MaxTTL + 1, 0, ErrLeaseTTLTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newTest(t, 5, 0)
			mustGrant(t, l, 7, 30)
			rec, err := l.Grant(tc.id, tc.ttl)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Grant error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if v, _ := l.Lookup(7); v.TTL != 30 {
					t.Fatalf("failed Grant changed lease 7: %+v", v)
				}
				return
			}
			if want := (Record{ID: tc.id, TTL: tc.wantTTL}); rec != want {
				t.Fatalf("Grant record = %+v, want %+v", rec, want)
			}
			v, err := l.Lookup(tc.id)
			if err != nil || v.TTL != tc.wantTTL || v.CheckpointedTTL != 0 || len(v.Keys) != 0 {
				t.Fatalf("Lookup = %+v, %v", v, err)
			}
		})
	}
}

func TestGrantOnPrimaryExpires(t *testing.T) {
	l, clk := newTest(t, 1, 0)
	l.Promote(0)
	mustGrant(t, l, 1, 10)
	clk.Advance(10*time.Second - 1)
	if got := l.Expired(10); len(got) != 0 {
		t.Fatalf("Expired before TTL = %v", got)
	}
	clk.Advance(1)
	if got := l.Expired(10); !slices.Equal(got, []ID{1}) {
		t.Fatalf("Expired at TTL = %v, want [1]", got)
	}
}

func TestRevoke(t *testing.T) {
	for _, tc := range []struct {
		name     string
		id       ID
		wantKeys []string
		wantErr  error
	}{
		{"keys sorted", 1, []string{"a", "b", "c"}, nil},
		{"no keys", 2, []string{}, nil},
		{"unknown", 3, nil, ErrLeaseNotFound},
		{"NoLease", NoLease, nil, ErrLeaseNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, clk := newTest(t, 1, time.Second)
			l.Promote(0)
			mustGrant(t, l, 1, 10)
			mustGrant(t, l, 2, 10)
			for _, k := range []string{"c", "a", "b"} {
				if err := l.Attach(1, k); err != nil {
					t.Fatal(err)
				}
			}
			keys, err := l.Revoke(tc.id)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Revoke error = %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(keys, tc.wantKeys) {
				t.Fatalf("Revoke keys = %q, want %q", keys, tc.wantKeys)
			}
			if err != nil {
				return
			}
			if _, err := l.Revoke(tc.id); !errors.Is(err, ErrLeaseNotFound) {
				t.Fatalf("second Revoke error = %v, want ErrLeaseNotFound", err)
			}
			if _, err := l.Lookup(tc.id); !errors.Is(err, ErrLeaseNotFound) {
				t.Fatalf("Lookup after Revoke error = %v", err)
			}
			// A revoked lease leaves no trace in the expiry or checkpoint order.
			clk.Advance(time.Minute)
			if got := l.Expired(10); slices.Contains(got, tc.id) || len(got) != 1 {
				t.Fatalf("Expired after Revoke(%d) = %v", tc.id, got)
			}
			for _, cp := range l.Checkpoints(10) {
				if ID(cp.ID) == tc.id {
					t.Fatalf("checkpoint for revoked lease %d", tc.id)
				}
			}
		})
	}
}

func TestAttachDetach(t *testing.T) {
	type op struct {
		attach bool
		id     ID
		key    string
		err    error
	}
	for _, tc := range []struct {
		name string
		ops  []op
		want []string // keys of lease 1
	}{
		{"attach", []op{{true, 1, "b", nil}, {true, 1, "a", nil}}, []string{"a", "b"}},
		{"attach twice", []op{{true, 1, "a", nil}, {true, 1, "a", nil}}, []string{"a"}},
		{"detach", []op{{true, 1, "a", nil}, {true, 1, "b", nil}, {false, 1, "a", nil}}, []string{"b"}},
		{"detach unattached key", []op{{false, 1, "zz", nil}}, []string{}},
		{"attach unknown lease", []op{{true, 9, "a", ErrLeaseNotFound}}, []string{}},
		{"detach unknown lease", []op{{false, 9, "a", ErrLeaseNotFound}}, []string{}},
		{"leases are independent", []op{{true, 1, "a", nil}, {true, 2, "a", nil}, {false, 2, "a", nil}}, []string{"a"}},
		{"empty key", []op{{true, 1, "", nil}}, []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newTest(t, 1, 0)
			mustGrant(t, l, 1, 10)
			mustGrant(t, l, 2, 10)
			for _, o := range tc.ops {
				var err error
				if o.attach {
					err = l.Attach(o.id, o.key)
				} else {
					err = l.Detach(o.id, o.key)
				}
				if !errors.Is(err, o.err) {
					t.Fatalf("%+v: error = %v", o, err)
				}
			}
			keys, err := l.Keys(1)
			if err != nil || !slices.Equal(keys, tc.want) {
				t.Fatalf("Keys(1) = %q, %v; want %q", keys, err, tc.want)
			}
			if v, _ := l.Lookup(1); !slices.Equal(v.Keys, tc.want) {
				t.Fatalf("Lookup(1).Keys = %q, want %q", v.Keys, tc.want)
			}
		})
	}
	l, _ := newTest(t, 1, 0)
	if _, err := l.Keys(1); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("Keys(unknown) error = %v", err)
	}
}

func TestCheckpointRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   ID
		v    int64
		want int64
		err  error
	}{
		{"value", 1, 40, 40, nil},
		{"one", 1, 1, 1, nil},
		{"TTL-1", 1, 99, 99, nil},
		{"TTL is none", 1, 100, 0, nil},
		{"above TTL is none", 1, 500, 0, nil},
		{"zero", 1, 0, 0, nil},
		{"negative", 1, -4, 0, nil},
		{"unknown", 2, 40, 0, ErrLeaseNotFound},
	} {
		for _, primary := range []bool{false, true} {
			name := tc.name
			if primary {
				name += "/primary"
			}
			t.Run(name, func(t *testing.T) {
				l, _ := newTest(t, 1, time.Minute)
				if primary {
					l.Promote(0)
				}
				mustGrant(t, l, 1, 100)
				if _, err := l.Checkpoint(1, 17); err != nil {
					t.Fatal(err)
				}
				rec, err := l.Checkpoint(tc.id, tc.v)
				if !errors.Is(err, tc.err) {
					t.Fatalf("Checkpoint error = %v, want %v", err, tc.err)
				}
				if err != nil {
					return
				}
				if want := (Record{ID: 1, TTL: 100, RemainingTTL: tc.want}); rec != want {
					t.Fatalf("Checkpoint record = %+v, want %+v", rec, want)
				}
				if v, _ := l.Lookup(1); v.CheckpointedTTL != tc.want {
					t.Fatalf("CheckpointedTTL = %d, want %d", v.CheckpointedTTL, tc.want)
				}
			})
		}
	}
}

func TestRestore(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records []Record
		want    []Record // in ID order; nil when Restore fails
	}{
		{"empty", nil, []Record{}},
		{"records", []Record{{ID: 3, TTL: 60, RemainingTTL: 20}, {ID: 1, TTL: 10}},
			[]Record{{ID: 1, TTL: 10}, {ID: 3, TTL: 60, RemainingTTL: 20}}},
		{"TTL raised to MinTTL", []Record{{ID: 1, TTL: 2}}, []Record{{ID: 1, TTL: 5}}},
		{"remaining >= TTL read as none", []Record{{ID: 1, TTL: 10, RemainingTTL: 10}, {ID: 2, TTL: 10, RemainingTTL: 99}},
			[]Record{{ID: 1, TTL: 10}, {ID: 2, TTL: 10}}},
		{"negative remaining read as none", []Record{{ID: 1, TTL: 10, RemainingTTL: -1}}, []Record{{ID: 1, TTL: 10}}},
		{"NoLease", []Record{{ID: 1, TTL: 10}, {ID: NoLease, TTL: 10}}, nil},
		{"duplicate", []Record{{ID: 1, TTL: 10}, {ID: 1, TTL: 20}}, nil},
		{"TTL too large", []Record{{ID: 1, TTL: MaxTTL + 1}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newTest(t, 5, 0)
			mustGrant(t, l, 9, 30)
			if err := l.Attach(9, "k"); err != nil {
				t.Fatal(err)
			}
			err := l.Restore(tc.records)
			if (err != nil) != (tc.want == nil) {
				t.Fatalf("Restore error = %v", err)
			}
			if err != nil {
				if ids := l.Leases(); !slices.Equal(ids, []ID{9}) {
					t.Fatalf("failed Restore changed leases: %v", ids)
				}
				return
			}
			var got []Record
			for _, id := range l.Leases() {
				v, _ := l.Lookup(id)
				if len(v.Keys) != 0 {
					t.Fatalf("lease %d has keys after Restore: %q", id, v.Keys)
				}
				got = append(got, Record{ID: v.ID, TTL: v.TTL, RemainingTTL: v.CheckpointedTTL})
			}
			if len(got) != len(tc.want) || (len(got) > 0 && !slices.Equal(got, tc.want)) {
				t.Fatalf("after Restore: %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRestoreOnPrimary(t *testing.T) {
	l, clk := newTest(t, 1, 0)
	l.Promote(time.Hour)
	mustGrant(t, l, 9, 30)
	if err := l.Restore([]Record{{ID: 1, TTL: 60, RemainingTTL: 20}, {ID: 2, TTL: 10}}); err != nil {
		t.Fatal(err)
	}
	// Restore on a primary starts expiries as Promote(0): no extend.
	if got := remaining(t, l, 1); got != 20 {
		t.Fatalf("remaining(1) = %d, want 20", got)
	}
	clk.Advance(10 * time.Second)
	if got := l.Expired(10); !slices.Equal(got, []ID{2}) {
		t.Fatalf("Expired = %v, want [2]", got)
	}
}

func TestRenew(t *testing.T) {
	for _, tc := range []struct {
		name      string
		primary   bool
		id        ID
		advance   time.Duration
		wantTTL   int64
		wantReset bool
		wantErr   error
	}{
		{"ok", true, 1, 5 * time.Second, 10, false, nil},
		{"just before expiry", true, 1, 10*time.Second - 1, 10, false, nil},
		{"at expiry", true, 1, 10 * time.Second, 0, false, ErrLeaseExpired},
		{"checkpointed asks for a reset", true, 2, time.Second, 100, true, nil},
		{"unknown", true, 3, 0, 0, false, ErrLeaseNotFound},
		{"not primary", false, 1, 0, 0, false, ErrNotPrimary},
		{"not primary, unknown", false, 3, 0, 0, false, ErrNotPrimary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, clk := newTest(t, 1, 0)
			mustGrant(t, l, 1, 10)
			mustGrant(t, l, 2, 100)
			if _, err := l.Checkpoint(2, 50); err != nil {
				t.Fatal(err)
			}
			if tc.primary {
				l.Promote(0)
			}
			clk.Advance(tc.advance)
			ttl, reset, err := l.Renew(tc.id)
			if !errors.Is(err, tc.wantErr) || ttl != tc.wantTTL || reset != tc.wantReset {
				t.Fatalf("Renew(%d) = %d, %v, %v; want %d, %v, %v", tc.id, ttl, reset, err, tc.wantTTL, tc.wantReset, tc.wantErr)
			}
			if err == nil {
				if got := remaining(t, l, tc.id); got != tc.wantTTL {
					t.Fatalf("remaining after Renew = %d, want %d", got, tc.wantTTL)
				}
			}
		})
	}
}

func TestRenewResetOnce(t *testing.T) {
	l, clk := newTest(t, 1, 0)
	l.Promote(0)
	mustGrant(t, l, 1, 100)
	if _, _, err := l.Renew(1); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Checkpoint(1, 40); err != nil { // e.g. from an earlier term
		t.Fatal(err)
	}
	renew := func() bool {
		t.Helper()
		clk.Advance(time.Second)
		_, reset, err := l.Renew(1)
		if err != nil {
			t.Fatal(err)
		}
		return reset
	}
	if !renew() {
		t.Fatal("first Renew after a checkpoint: no reset")
	}
	if renew() {
		t.Fatal("second Renew before the reset applied: reset again")
	}
	// The reset applies: nothing left to reset.
	if rec, err := l.Checkpoint(1, 0); err != nil || rec.RemainingTTL != 0 {
		t.Fatalf("Checkpoint(1, 0) = %+v, %v", rec, err)
	}
	if renew() {
		t.Fatal("Renew after the reset applied: reset again")
	}
	// A lost reset: Promote forgets the pending reset, and Renew asks again.
	if _, err := l.Checkpoint(1, 40); err != nil {
		t.Fatal(err)
	}
	if !renew() {
		t.Fatal("no reset")
	}
	l.Promote(0)
	if !renew() {
		t.Fatal("Renew after Promote: no reset for a stale record")
	}
}

func TestLookupRemainingTTL(t *testing.T) {
	l, clk := newTest(t, 1, 0)
	mustGrant(t, l, 1, 10)
	mustGrant(t, l, 2, 100)
	if _, err := l.Checkpoint(2, 30); err != nil {
		t.Fatal(err)
	}
	// Not primary: the TTL a new primary would start from.
	if a, b := remaining(t, l, 1), remaining(t, l, 2); a != 10 || b != 30 {
		t.Fatalf("non-primary remaining = %d, %d; want 10, 30", a, b)
	}
	l.Promote(0)
	for _, tc := range []struct {
		advance time.Duration
		want    int64
	}{
		{0, 10},
		{1, 9}, // 9.999999999s truncates to 9, as etcd's TimeToLive
		{time.Second - 1, 9},
		{4 * time.Second, 5},
		{5*time.Second - 1, 0}, // 1ns left
		{1, -1},                // expired
		{time.Hour, -1},
	} {
		clk.Advance(tc.advance)
		if got := remaining(t, l, 1); got != tc.want {
			t.Fatalf("after +%v: remaining = %d, want %d", tc.advance, got, tc.want)
		}
	}
	if _, err := l.Lookup(3); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("Lookup(unknown) error = %v", err)
	}
}

func TestLeasesSorted(t *testing.T) {
	l, _ := newTest(t, 1, 0)
	for _, id := range []ID{5, -2, 9, 1, 3} {
		mustGrant(t, l, id, 10)
	}
	if got, want := l.Leases(), []ID{-2, 1, 3, 5, 9}; !slices.Equal(got, want) {
		t.Fatalf("Leases = %v, want %v", got, want)
	}
}

func TestExpiredOrder(t *testing.T) {
	l, clk := newTest(t, 1, 0)
	if got := l.Expired(10); got != nil {
		t.Fatalf("Expired on non-primary = %v", got)
	}
	l.Promote(0)
	// Expiries: 4 and 2 at +3s (tie: by ID), 1 at +5s, 3 at +8s, 5 at +20s.
	for _, g := range []struct {
		id  ID
		ttl int64
	}{{1, 5}, {4, 3}, {3, 8}, {2, 3}, {5, 20}} {
		mustGrant(t, l, g.id, g.ttl)
	}
	for _, tc := range []struct {
		advance time.Duration
		limit   int
		want    []ID
	}{
		{2 * time.Second, 10, nil},
		{time.Second, 10, []ID{2, 4}},
		{0, 10, []ID{2, 4}}, // still returned: not revoked yet
		{0, 1, []ID{2}},
		{0, 0, nil},
		{0, -1, nil},
		{5 * time.Second, 10, []ID{2, 4, 1, 3}},
		{0, 3, []ID{2, 4, 1}},
	} {
		clk.Advance(tc.advance)
		if got := l.Expired(tc.limit); !slices.Equal(got, tc.want) {
			t.Fatalf("at %v, Expired(%d) = %v, want %v", clk.Now().Sub(t0), tc.limit, got, tc.want)
		}
	}
	if _, err := l.Revoke(2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Renew(4); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("Renew(expired) = %v", err)
	}
	if got, want := l.Expired(10), []ID{4, 1, 3}; !slices.Equal(got, want) {
		t.Fatalf("after revoke: Expired = %v, want %v", got, want)
	}
	// Renewed before expiry: moves behind.
	if _, _, err := l.Renew(5); err != nil {
		t.Fatal(err)
	}
	clk.Advance(20*time.Second - 1)
	if got, want := l.Expired(10), []ID{4, 1, 3}; !slices.Equal(got, want) {
		t.Fatalf("Expired = %v, want %v", got, want)
	}
	clk.Advance(1)
	if got, want := l.Expired(10), []ID{4, 1, 3, 5}; !slices.Equal(got, want) {
		t.Fatalf("Expired = %v, want %v", got, want)
	}
	l.Demote()
	if got := l.Expired(10); got != nil {
		t.Fatalf("Expired after Demote = %v", got)
	}
}

func TestPromoteDemoteExtend(t *testing.T) {
	l, clk := newTest(t, 1, 0)
	mustGrant(t, l, 1, 10)
	mustGrant(t, l, 2, 30)
	// A follower never expires leases.
	clk.Advance(time.Hour)
	if l.IsPrimary() || l.Expired(10) != nil {
		t.Fatal("follower expires leases")
	}
	if _, _, err := l.Renew(1); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("Renew on follower = %v", err)
	}

	l.Promote(5 * time.Second)
	if !l.IsPrimary() {
		t.Fatal("not primary after Promote")
	}
	if a, b := remaining(t, l, 1), remaining(t, l, 2); a != 15 || b != 35 {
		t.Fatalf("after Promote(5s): remaining = %d, %d; want 15, 35", a, b)
	}
	clk.Advance(15*time.Second - 1)
	if got := l.Expired(10); got != nil {
		t.Fatalf("Expired before TTL+extend = %v", got)
	}
	clk.Advance(1)
	if got := l.Expired(10); !slices.Equal(got, []ID{1}) {
		t.Fatalf("Expired at TTL+extend = %v", got)
	}

	l.Demote()
	if l.IsPrimary() {
		t.Fatal("primary after Demote")
	}
	clk.Advance(time.Hour)
	if got := l.Expired(10); got != nil {
		t.Fatalf("Expired after Demote = %v", got)
	}
	// Granted while a follower: no expiry until the next Promote.
	mustGrant(t, l, 3, 10)

	l.Promote(0)
	if a, b, c := remaining(t, l, 1), remaining(t, l, 2), remaining(t, l, 3); a != 10 || b != 30 || c != 10 {
		t.Fatalf("after Promote(0): remaining = %d, %d, %d; want 10, 30, 10", a, b, c)
	}
	// Promote on a primary starts over.
	clk.Advance(8 * time.Second)
	l.Promote(time.Second)
	if got := remaining(t, l, 1); got != 11 {
		t.Fatalf("after second Promote: remaining = %d, want 11", got)
	}
}

func TestLargeTTLNoOverflow(t *testing.T) {
	l, clk := newTest(t, 1, time.Minute)
	mustGrant(t, l, 1, MaxTTL)
	mustGrant(t, l, 2, MaxTTL)
	l.Promote(time.Duration(1<<63 - 1)) // saturates, never wraps into the past
	if _, _, err := l.Renew(2); err != nil {
		t.Fatal(err)
	}
	if got := remaining(t, l, 2); got != MaxTTL {
		t.Fatalf("remaining after Renew = %d, want %d", got, MaxTTL)
	}
	clk.Advance(200 * 365 * 24 * time.Hour)
	if got := l.Expired(10); got != nil {
		t.Fatalf("Expired = %v", got)
	}
	// now + MaxTTL overflows the instant range: saturates.
	if _, _, err := l.Renew(2); err != nil {
		t.Fatal(err)
	}
	if a, b := remaining(t, l, 1), remaining(t, l, 2); a <= 0 || b <= 0 {
		t.Fatalf("remaining = %d, %d", a, b)
	}
	if got := l.Expired(10); got != nil {
		t.Fatalf("Expired = %v", got)
	}
}
