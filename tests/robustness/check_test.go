package robustness

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// These tests feed the checkers hand-made histories: a correct one must
// pass and each broken one must be caught by the checker meant for it.

// builder makes a consistent history: each write goes through the model,
// events for the reference watch come out of it.
type builder struct {
	s      State
	ops    []Op
	events []Event
	now    int64
}

func newBuilder() *builder { return &builder{s: State{Rev: 1}} }

// do runs req on the model as one client's operation taking one tick.
func (b *builder) do(client int, req Request) Response {
	before := b.s
	next, resp := b.s.Apply(req)
	b.s = next
	b.now += 10
	b.ops = append(b.ops, Op{Client: client, Req: req, Resp: resp, Call: b.now, Return: b.now + 5})
	if next.Rev != before.Rev {
		for i := 0; i < NumKeys; i++ {
			k, was := next.Keys[i], before.Keys[i]
			switch {
			case k.Mod == next.Rev:
				b.events = append(b.events, Event{KV: next.kv(i)})
			case was.exists() && !k.exists():
				b.events = append(b.events, Event{Delete: true, KV: KV{Key: i, Mod: next.Rev}})
			}
		}
	}
	return resp
}

// input is a CheckInput with two identical full watches delivering every
// event, one response per revision.
func (b *builder) input() CheckInput {
	var resps []WatchResp
	for _, e := range b.events {
		if n := len(resps); n > 0 && resps[n-1].Events[0].KV.Mod == e.KV.Mod {
			resps[n-1].Events = append(resps[n-1].Events, e)
			continue
		}
		resps = append(resps, WatchResp{Rev: e.KV.Mod, Events: []Event{e}})
	}
	full := func(name string) WatchRecord {
		return WatchRecord{Name: name, Spec: WatchSpec{Key: -1, StartRev: 1}, Resps: append([]WatchResp(nil), resps...), Complete: true}
	}
	return CheckInput{Ops: append([]Op(nil), b.ops...), Rev0: 1, Final: b.s.Rev,
		Full: []WatchRecord{full("full@m0"), full("full@m1")}, LinTimeout: 10 * time.Second}
}

func sampleHistory() *builder {
	b := newBuilder()
	b.do(0, Request{Kind: OpPut, Key: 1, Value: "a"})
	b.do(1, Request{Kind: OpGet, Key: 1})
	b.do(0, Request{Kind: OpPutLease, Key: 2, Value: "b", Lease: 7})
	b.do(1, Request{Kind: OpPutLease, Key: 3, Value: "c", Lease: 7})
	b.do(0, Request{Kind: OpTxn, Key: 1, Value: "d", Expect: 2})
	b.do(1, Request{Kind: OpTxn, Key: 1, Value: "e", Expect: 2}) // fails: mod is 5 now
	b.do(0, Request{Kind: OpRange})
	b.do(1, Request{Kind: OpLeaseRevoke, Lease: 7})
	b.do(0, Request{Kind: OpDelete, Key: 1})
	b.do(1, Request{Kind: OpDelete, Key: 1}) // nothing to delete
	b.do(0, Request{Kind: OpPut, Key: 4, Value: "f"})
	b.do(1, Request{Kind: OpRange})
	return b
}

func expectViolation(t *testing.T, r *Report, substr string) {
	t.Helper()
	for _, v := range r.Violations {
		if strings.Contains(v, substr) {
			return
		}
	}
	t.Errorf("no violation containing %q; got:\n%s", substr, r)
}

func TestCheckAcceptsCorrectHistory(t *testing.T) {
	in := sampleHistory().input()
	in.Offsets = []WatchRecord{{
		Name: "offset", Spec: WatchSpec{Key: -1, StartRev: 4, PrevKV: true}, Complete: true,
		Resps: offsetResps(t, in, WatchSpec{Key: -1, StartRev: 4, PrevKV: true}),
	}}
	r := Check(in)
	if !r.OK() || r.LinResult != porcupine.Ok {
		t.Fatalf("correct history rejected:\n%s", r)
	}
}

// offsetResps builds what a correct watch with spec delivers, one event
// per response except for shared revisions, plus a bookmark at the end.
func offsetResps(t *testing.T, in CheckInput, spec WatchSpec) []WatchResp {
	t.Helper()
	r := &Report{}
	h := checkFull(r, in)
	if h == nil || !r.OK() {
		t.Fatalf("reference history: %s", r)
	}
	var resps []WatchResp
	for _, e := range expectedEvents(spec, h, spec.StartRev, in.Final) {
		if n := len(resps); n > 0 && resps[n-1].Events[0].KV.Mod == e.KV.Mod {
			resps[n-1].Events = append(resps[n-1].Events, e)
			continue
		}
		resps = append(resps, WatchResp{Rev: e.KV.Mod, Events: []Event{e}})
	}
	return append(resps, WatchResp{Rev: in.Final, Progress: true})
}

func TestCheckStaleRead(t *testing.T) {
	b := sampleHistory()
	// A read after the put of key4 that does not see it, at the older
	// revision: consistent with the watch history at that revision, but
	// not linearizable.
	b.now += 10
	b.ops = append(b.ops, Op{Client: 2, Req: Request{Kind: OpGet, Key: 4},
		Resp: Response{Rev: b.s.Rev - 1}, Call: b.now, Return: b.now + 5})
	r := Check(b.input())
	if r.LinResult != porcupine.Illegal {
		t.Fatalf("stale read: linearizability %s, want Illegal\n%s", r.LinResult, r)
	}
	expectViolation(t, r, "not linearizable")
}

func TestCheckLostWrite(t *testing.T) {
	b := sampleHistory()
	in := b.input()
	// An acknowledged put whose value no member's history has.
	in.Ops = append(in.Ops, Op{Client: 3, Req: Request{Kind: OpPut, Key: 5, Value: "lost"},
		Resp: Response{Rev: in.Final}, Call: b.now + 10, Return: b.now + 20})
	expectViolation(t, Check(in), "(durable)")
}

func TestCheckUnknownWrites(t *testing.T) {
	b := sampleHistory()
	// A put that timed out but happened, and one that never happened.
	b.do(2, Request{Kind: OpPut, Key: 6, Value: "maybe"})
	b.ops[len(b.ops)-1].Resp = Response{Unknown: true, Err: "context deadline exceeded"}
	b.ops[len(b.ops)-1].Return = never
	b.now += 10
	b.ops = append(b.ops, Op{Client: 3, Req: Request{Kind: OpPut, Key: 7, Value: "never"},
		Resp: Response{Unknown: true, Err: "unavailable"}, Call: b.now, Return: never})
	b.do(0, Request{Kind: OpGet, Key: 6})
	r := Check(b.input())
	if !r.OK() || r.Resolved != 1 || r.Dropped != 1 {
		t.Fatalf("unknown writes: want OK with 1 resolved and 1 dropped:\n%s", r)
	}
}

func TestCheckWatchGuarantees(t *testing.T) {
	base := sampleHistory().input()
	good := offsetResps(t, base, WatchSpec{Key: -1, StartRev: 2})
	for _, c := range []struct {
		name  string
		spec  WatchSpec
		mod   func([]WatchResp) []WatchResp
		wants string
	}{
		{"ordered", WatchSpec{Key: -1, StartRev: 2}, func(rs []WatchResp) []WatchResp {
			rs[1], rs[2] = rs[2], rs[1]
			return rs
		}, "(ordered)"},
		{"unique", WatchSpec{Key: -1, StartRev: 2}, func(rs []WatchResp) []WatchResp {
			return append(rs[:2], rs[1:]...)
		}, "(unique)"},
		{"atomic", WatchSpec{Key: -1, StartRev: 2}, func(rs []WatchResp) []WatchResp {
			// The revoke deleted two keys in one revision: split it.
			var out []WatchResp
			for _, r := range rs {
				if len(r.Events) == 2 {
					out = append(out, WatchResp{Rev: r.Rev, Events: r.Events[:1]}, WatchResp{Rev: r.Rev, Events: r.Events[1:]})
					continue
				}
				out = append(out, r)
			}
			return out
		}, "(atomic)"},
		{"bookmarkable", WatchSpec{Key: -1, StartRev: 2}, func(rs []WatchResp) []WatchResp {
			return append([]WatchResp{rs[0], {Rev: rs[0].Rev - 1, Progress: true}}, rs[1:]...)
		}, "(bookmarkable)"},
		{"reliable gap", WatchSpec{Key: -1, StartRev: 2}, func(rs []WatchResp) []WatchResp {
			return append(rs[:2], rs[3:]...)
		}, "reliable"},
		{"filter", WatchSpec{Key: -1, StartRev: 2, NoDelete: true}, nil, "(filter)"},
		{"prev_kv", WatchSpec{Key: -1, StartRev: 2, PrevKV: true}, nil, "(prev_kv)"},
		{"wrong prev_kv", WatchSpec{Key: -1, StartRev: 2, PrevKV: true}, func(rs []WatchResp) []WatchResp {
			for i := range rs {
				for j := range rs[i].Events {
					rs[i].Events[j].Prev = &KV{Key: rs[i].Events[j].KV.Key, Value: "bogus", Mod: 1}
				}
			}
			return rs
		}, "(prev_kv)"},
		{"not caught up", WatchSpec{Key: -1, StartRev: 2}, func(rs []WatchResp) []WatchResp {
			return rs[:len(rs)-3]
		}, "(reliable)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := base
			rs := append([]WatchResp(nil), good...)
			for i := range rs {
				rs[i].Events = append([]Event(nil), rs[i].Events...)
			}
			if c.mod != nil {
				rs = c.mod(rs)
			}
			in.Offsets = []WatchRecord{{Name: "w", Spec: c.spec, Resps: rs, Complete: true}}
			if c.name == "wrong prev_kv" {
				// A compaction excuses a missing prev_kv, never a wrong one.
				in.MaxCompacted = in.Final
			}
			expectViolation(t, Check(in), c.wants)
		})
	}
}

func TestCheckMembersDisagree(t *testing.T) {
	in := sampleHistory().input()
	rs := append([]WatchResp(nil), in.Full[1].Resps...)
	rs[0] = WatchResp{Rev: rs[0].Rev, Events: []Event{{KV: KV{Key: 1, Value: "other", Mod: 2, Create: 2, Version: 1}}}}
	in.Full[1].Resps = rs
	expectViolation(t, Check(in), "members disagree")
}

func TestCheckBadCreateRevision(t *testing.T) {
	in := sampleHistory().input()
	for _, full := range in.Full {
		full.Resps[0].Events[0].KV.Version = 2 // first put must be version 1
	}
	expectViolation(t, Check(in), "(IsCreate/version)")
}

func TestModelTxnAndRevoke(t *testing.T) {
	s := State{Rev: 1}
	s, _ = s.Apply(Request{Kind: OpPutLease, Key: 0, Value: "x", Lease: 9})
	s, _ = s.Apply(Request{Kind: OpPutLease, Key: 1, Value: "y", Lease: 9})
	s, r := s.Apply(Request{Kind: OpTxn, Key: 0, Value: "z", Expect: 1})
	if r.Succeeded || len(r.KVs) != 1 || r.KVs[0].Value != "x" {
		t.Fatalf("txn with a wrong mod revision: %s", r)
	}
	s, r = s.Apply(Request{Kind: OpTxn, Key: 0, Value: "z", Expect: 2})
	if !r.Succeeded || r.Rev != 4 || s.Keys[0].Lease != 0 || s.Keys[0].Version != 2 {
		t.Fatalf("txn with the right mod revision: %s, state %s", r, s)
	}
	s, r = s.Apply(Request{Kind: OpLeaseRevoke, Lease: 9})
	if r.Rev != 5 || s.Keys[1].exists() || !s.Keys[0].exists() {
		t.Fatalf("revoke: %s, state %s (key0 was detached from the lease by the txn put)", r, s)
	}
	if _, r = s.Apply(Request{Kind: OpLeaseRevoke, Lease: 9}); r.Rev != 5 {
		t.Fatalf("revoke of a lease with no keys changed the revision: %s", r)
	}
}

func TestCheckReadAtRevision(t *testing.T) {
	b := sampleHistory()
	// key1 at revision 2 was "a"; a read at 2 that answers with the value
	// of a later revision is caught, as is a compacted error for a
	// revision no compaction reached.
	b.now += 10
	b.ops = append(b.ops,
		Op{Client: 2, Req: Request{Kind: OpGetAtRev, Key: 1, AtRev: 2},
			Resp: Response{Rev: b.s.Rev, KVs: []KV{{Key: 1, Value: "d", Mod: 6, Create: 2, Version: 2}}}, Call: b.now, Return: b.now + 5},
		Op{Client: 3, Req: Request{Kind: OpGetAtRev, Key: 1, AtRev: 3},
			Resp: Response{Unknown: true, Compacted: true, Err: "compacted"}, Call: b.now, Return: never})
	r := Check(b.input())
	expectViolation(t, r, "get(key1 at 2)")
	expectViolation(t, r, "compacted, but no compaction reached revision 3")

	ok := sampleHistory()
	ok.now += 10
	ok.ops = append(ok.ops, Op{Client: 2, Req: Request{Kind: OpGetAtRev, Key: 1, AtRev: 2},
		Resp: Response{Rev: ok.s.Rev, KVs: []KV{{Key: 1, Value: "a", Mod: 2, Create: 2, Version: 1}}}, Call: ok.now, Return: ok.now + 5})
	if r := Check(ok.input()); !r.OK() {
		t.Fatalf("correct read at revision 2 rejected:\n%s", r)
	}
}
