package robustness

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// WatchRecord is what one watcher delivered, as the checkers take it.
type WatchRecord struct {
	Name    string
	Spec    WatchSpec
	Started int64 // history clock when it was opened
	Resps   []WatchResp
	// Complete: the watch stayed open to the end, so it must have
	// delivered everything up to the final revision (unless the server
	// canceled it because of a compaction).
	Complete bool
}

// CheckInput is everything a run recorded.
type CheckInput struct {
	Ops   []Op
	Rev0  int64 // revision before the traffic (no traffic key exists)
	Final int64 // revision after the traffic, read linearizably
	// Full are the watches from revision 1 of every traffic key, one per
	// member; they must agree, and the first complete one is the
	// reference history of the run.
	Full    []WatchRecord
	Offsets []WatchRecord
	// MaxCompacted is the highest revision compacted during the run. A
	// watch event whose previous revision is below it may come without
	// prev_kv: the server could not read it any more (etcd omits it too).
	MaxCompacted int64
	// LinTimeout bounds the porcupine check; "unknown" is a violation.
	LinTimeout time.Duration
	// VisualizeDir, if set, receives porcupine's HTML view of a history
	// that is not linearizable.
	VisualizeDir string
}

// Report is the outcome of the checks.
type Report struct {
	Violations []string
	Notes      []string
	// Counts of what was checked, for the run summary.
	Ops, Unknown, Resolved, Dropped, Events, Watches int
	LinResult                                        porcupine.CheckResult
	LinTook                                          time.Duration
}

func (r *Report) violate(format string, args ...any) {
	const max = 200
	if len(r.Violations) == max {
		r.Violations = append(r.Violations, "... more violations left out")
	}
	if len(r.Violations) < max {
		r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
	}
}

func (r *Report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// OK reports whether no check failed.
func (r *Report) OK() bool { return len(r.Violations) == 0 }

func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d ops (%d unknown: %d resolved from the watch history, %d did not happen), %d events, %d watches, linearizability %s in %v",
		r.Ops, r.Unknown, r.Resolved, r.Dropped, r.Events, r.Watches, r.LinResult, r.LinTook.Round(time.Millisecond))
	for _, n := range r.Notes {
		b.WriteString("\n  note: " + n)
	}
	for _, v := range r.Violations {
		b.WriteString("\n  VIOLATION: " + v)
	}
	return b.String()
}

// refHistory is the run's history as the reference watch saw it: the
// events of every revision and the keyspace after each.
type refHistory struct {
	rev0, final int64
	events      map[int64][]Event
	states      []State // states[i] is the keyspace at revision rev0+i
	values      map[string]int64
}

func (h *refHistory) state(rev int64) (State, bool) {
	i := rev - h.rev0
	if i < 0 || i >= int64(len(h.states)) {
		return State{}, false
	}
	return h.states[i], true
}

// Check runs every checker on in.
func Check(in CheckInput) *Report {
	r := &Report{}
	for _, w := range append(append([]WatchRecord(nil), in.Full...), in.Offsets...) {
		checkWatchOrder(r, w)
	}
	r.Watches = len(in.Full) + len(in.Offsets)
	ref := checkFull(r, in)
	if ref == nil {
		return r
	}
	r.Events = 0
	for _, evs := range ref.events {
		r.Events += len(evs)
	}
	ops := checkOpsAgainstHistory(r, in.Ops, ref, in.MaxCompacted)
	checkLinearizable(r, in, ops)
	for _, w := range in.Offsets {
		checkWatchAgainstHistory(r, w, ref, in.MaxCompacted)
	}
	return r
}

// checkWatchOrder checks what holds for any single watch, whatever the
// history: ordered (revisions never go back), unique (no key twice in a
// revision), atomic (a revision's events come in one response),
// bookmarkable (a progress notification is not behind an event already
// delivered, and no event at or below a bookmark comes after it), the
// watch's own key, filter and start revision, and nothing after a cancel.
func checkWatchOrder(r *Report, w WatchRecord) {
	var lastEv, bookmark int64
	lastEvResp := -1
	seen := map[[2]int64]bool{}
	canceled := false
	for i, resp := range w.Resps {
		if canceled {
			r.violate("%s: response %d after the watch was canceled", w.Name, i)
			return
		}
		if resp.Canceled {
			canceled = true
			if resp.CompactRev == 0 {
				r.note("%s: canceled without a compaction: %s", w.Name, resp.Err)
			} else if w.Spec.StartRev > resp.CompactRev && lastEv == 0 {
				r.violate("%s: canceled as compacted at %d, but it started at %d, after the compaction", w.Name, resp.CompactRev, w.Spec.StartRev)
			}
		}
		if resp.Progress {
			if resp.Rev < lastEv {
				r.violate("%s (bookmarkable): progress notification at %d after an event at %d was delivered", w.Name, resp.Rev, lastEv)
			}
			bookmark = max(bookmark, resp.Rev)
		}
		for _, e := range resp.Events {
			rev := e.KV.Mod
			switch {
			case rev < w.Spec.StartRev:
				r.violate("%s: event %s before the start revision %d", w.Name, e, w.Spec.StartRev)
			case rev < lastEv:
				r.violate("%s (ordered): event %s after an event at %d", w.Name, e, lastEv)
			case rev == lastEv && lastEvResp != i:
				r.violate("%s (atomic): the events of revision %d came in two responses", w.Name, rev)
			case rev <= bookmark:
				r.violate("%s (bookmarkable): event %s after a progress notification at %d", w.Name, e, bookmark)
			}
			k := [2]int64{rev, int64(e.KV.Key)}
			if seen[k] {
				r.violate("%s (unique): event %s delivered twice", w.Name, e)
			}
			seen[k] = true
			if !w.Spec.wants(e) {
				r.violate("%s (filter): event %s does not match %s", w.Name, e, w.Spec)
			}
			lastEv, lastEvResp = rev, i
		}
	}
}

// checkFull checks the full watches: each must have reached the final
// revision if complete, they must agree event for event, and the events
// must make a well-formed history (every revision from rev0+1 to final
// present, creates and versions consistent). It returns the reference
// history, or nil if there is none to check against.
func checkFull(r *Report, in CheckInput) *refHistory {
	var ref []Event
	refName := ""
	for _, w := range in.Full {
		var evs []Event
		for _, resp := range w.Resps {
			evs = append(evs, resp.Events...)
		}
		last := int64(0)
		if len(evs) > 0 {
			last = evs[len(evs)-1].KV.Mod
		}
		if w.Complete && last < in.Final {
			r.violate("%s (reliable): delivered events up to revision %d, the final revision is %d", w.Name, last, in.Final)
		}
		if ref == nil && w.Complete && last >= in.Final {
			ref, refName = evs, w.Name
		}
	}
	if ref == nil {
		r.violate("no complete full watch: nothing to check the history against")
		return nil
	}
	for _, w := range in.Full {
		if w.Name == refName {
			continue
		}
		var evs []Event
		for _, resp := range w.Resps {
			evs = append(evs, resp.Events...)
		}
		n := min(len(evs), len(ref))
		for i := 0; i < n; i++ {
			if !eventsEqual(evs[i], ref[i]) {
				r.violate("members disagree: event %d is %s on %s and %s on %s", i, evs[i], w.Name, ref[i], refName)
				break
			}
		}
	}
	h := &refHistory{rev0: in.Rev0, final: in.Final, events: map[int64][]Event{}, values: map[string]int64{}}
	for _, e := range ref {
		if e.KV.Mod > in.Final {
			break
		}
		h.events[e.KV.Mod] = append(h.events[e.KV.Mod], e)
	}
	s := State{Rev: in.Rev0}
	h.states = append(h.states, s)
	for rev := in.Rev0 + 1; rev <= in.Final; rev++ {
		evs := h.events[rev]
		if len(evs) == 0 {
			r.violate("history (reliable): no event at revision %d (every revision is a write)", rev)
		}
		s.Rev = rev
		for _, e := range evs {
			k := &s.Keys[e.KV.Key]
			if e.Delete {
				if !k.exists() {
					r.violate("history: %s deletes an absent key", e)
				}
				*k = keyState{}
				continue
			}
			wantCreate, wantVersion := rev, int64(1)
			if k.exists() {
				wantCreate, wantVersion = k.Create, k.Version+1
			}
			if e.KV.Create != wantCreate || e.KV.Version != wantVersion {
				r.violate("history (IsCreate/version): %s, want create revision %d version %d", e, wantCreate, wantVersion)
			}
			if prev, dup := h.values[e.KV.Value]; dup {
				r.violate("history: value %s written twice (revisions %d and %d); every put value is unique", e.KV.Value, prev, rev)
			}
			h.values[e.KV.Value] = rev
			*k = keyState{Value: e.KV.Value, Mod: rev, Create: e.KV.Create, Version: e.KV.Version, Lease: e.KV.Lease}
		}
		h.states = append(h.states, s)
	}
	return h
}

func eventsEqual(a, b Event) bool {
	return a.Delete == b.Delete && a.KV == b.KV
}

// checkOpsAgainstHistory checks every operation against the reference
// history: an acknowledged write is there at its revision (durable), a
// successful read returns the keyspace of its revision, every value in
// the history was written by a client. It returns the operations for the
// linearizability check: failed reads left out, failed writes whose value
// the history shows resolved to that revision, failed puts whose value it
// never shows left out (they did not happen).
func checkOpsAgainstHistory(r *Report, ops []Op, h *refHistory, maxCompacted int64) []Op {
	r.Ops = len(ops)
	issued := map[string]bool{}
	var out []Op
	for _, op := range ops {
		req, resp := op.Req, op.Resp
		if req.Value != "" {
			issued[req.Value] = true
		}
		if resp.Unknown {
			r.Unknown++
			if resp.Compacted && req.Kind == OpGetAtRev && req.AtRev > maxCompacted {
				r.violate("%s: compacted, but no compaction reached revision %d (highest %d)", op, req.AtRev, maxCompacted)
			}
			if !req.Kind.IsWrite() {
				continue
			}
			if req.Value != "" {
				rev, ok := h.values[req.Value]
				if !ok {
					r.Dropped++
					continue
				}
				r.Resolved++
				op.Resp = Response{Rev: rev, Succeeded: true}
			}
			out = append(out, op)
			continue
		}
		if resp.Rev > h.final {
			r.violate("%s: header revision beyond the final revision %d", op, h.final)
			continue
		}
		switch req.Kind {
		case OpPut, OpPutLease:
			if rev, ok := h.values[req.Value]; !ok || rev != resp.Rev {
				r.violate("%s (durable): acknowledged put is at revision %d in the history (0: missing)", op, rev)
			}
		case OpTxn:
			rev, ok := h.values[req.Value]
			if resp.Succeeded && (!ok || rev != resp.Rev) {
				r.violate("%s (durable): acknowledged txn put is at revision %d in the history (0: missing)", op, rev)
			}
			if !resp.Succeeded && ok {
				r.violate("%s: txn answered as not succeeded, but its put is in the history at %d", op, rev)
			}
		case OpDelete:
			if resp.Deleted > 0 && !hasEvent(h.events[resp.Rev], req.Key, true) {
				r.violate("%s (durable): acknowledged delete has no delete event at revision %d", op, resp.Rev)
			}
		}
		if req.Kind == OpGetAtRev {
			if resp.Rev < req.AtRev {
				r.violate("%s: header revision below the revision asked for", op)
			}
			if s, ok := h.state(req.AtRev); ok {
				if _, want := s.Apply(req); !kvsEqual(resp.KVs, want.KVs) {
					r.violate("%s: the history at revision %d has %v", op, req.AtRev, want.KVs)
				}
			}
			continue
		}
		if !req.Kind.IsWrite() || (req.Kind == OpTxn && !resp.Succeeded) {
			s, ok := h.state(resp.Rev)
			if !ok {
				r.violate("%s: read at revision %d, outside the history [%d, %d]", op, resp.Rev, h.rev0, h.final)
			} else if _, want := s.Apply(readPart(req)); !kvsEqual(resp.KVs, want.KVs) {
				r.violate("%s: the history at revision %d has %v", op, resp.Rev, want.KVs)
			}
		}
		out = append(out, op)
	}
	for v, rev := range h.values {
		if !issued[v] {
			r.violate("history: value %s at revision %d was never written by a client", v, rev)
		}
	}
	return out
}

// readPart is the read a request does (the else branch of a txn).
func readPart(req Request) Request {
	if req.Kind == OpTxn {
		return Request{Kind: OpGet, Key: req.Key}
	}
	return req
}

func hasEvent(evs []Event, key int, del bool) bool {
	for _, e := range evs {
		if e.KV.Key == key && e.Delete == del {
			return true
		}
	}
	return false
}

// checkLinearizable runs porcupine over the operations (serializable
// reads left out: they promise no recency).
func checkLinearizable(r *Report, in CheckInput, ops []Op) {
	var hist []porcupine.Operation
	for _, op := range ops {
		if op.Req.Kind == OpStaleGet || op.Req.Kind == OpGetAtRev {
			continue
		}
		hist = append(hist, porcupine.Operation{ClientId: op.Client, Input: op.Req, Output: op.Resp, Call: op.Call, Return: op.Return})
	}
	timeout := in.LinTimeout
	if timeout == 0 {
		timeout = time.Minute
	}
	model := Model(State{Rev: in.Rev0})
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, hist, timeout)
	r.LinResult, r.LinTook = res, time.Since(start)
	switch res {
	case porcupine.Ok:
	case porcupine.Unknown:
		r.violate("linearizability: porcupine gave no answer within %v over %d operations (investigate: a history this size should check in seconds)", timeout, len(hist))
	default:
		msg := fmt.Sprintf("linearizability: the history of %d operations is not linearizable", len(hist))
		if in.VisualizeDir != "" {
			path := in.VisualizeDir + "/linearizability.html"
			if err := os.MkdirAll(in.VisualizeDir, 0o755); err == nil {
				if err := porcupine.VisualizePath(model, info, path); err == nil {
					msg += "; see " + path
				}
			}
		}
		r.violate("%s%s", msg, explainIllegal(model, info, hist))
	}
}

// explainIllegal describes where the longest partial linearization got
// stuck: the state it reached and what the next operations answered
// against what the model would answer.
func explainIllegal(model porcupine.Model, info porcupine.LinearizationInfo, hist []porcupine.Operation) string {
	var best []porcupine.Operation
	for _, part := range info.PartialLinearizationsOperations() {
		for _, lin := range part {
			if len(lin) > len(best) {
				best = lin
			}
		}
	}
	s := model.Init().(State)
	done := map[[2]int64]bool{} // by client and call time
	for _, op := range best {
		_, s2 := model.Step(s, op.Input, op.Output)
		s = s2.(State)
		done[[2]int64{int64(op.ClientId), op.Call}] = true
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n    longest partial linearization: %d of %d operations, ending in state %s", len(best), len(hist), s)
	if n := len(best); n > 0 {
		for _, op := range best[max(0, n-3):] {
			fmt.Fprintf(&b, "\n      linearized: client %d [%d, %d] %s -> %s", op.ClientId, op.Call, op.Return, op.Input, op.Output)
		}
	}
	// The earliest-returning operations not linearized are the suspects.
	var rest []porcupine.Operation
	for _, op := range hist {
		if !done[[2]int64{int64(op.ClientId), op.Call}] {
			rest = append(rest, op)
		}
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i].Return < rest[j].Return })
	for _, op := range rest[:min(4, len(rest))] {
		_, want := s.Apply(op.Input.(Request))
		fmt.Fprintf(&b, "\n      next: client %d [%d, %d] %s -> %s (from that state the model answers %s)", op.ClientId, op.Call, op.Return, op.Input, op.Output, want)
	}
	return b.String()
}

// expectedEvents is what a watch with spec must deliver from the history,
// revisions from..to.
func expectedEvents(spec WatchSpec, h *refHistory, from, to int64) []Event {
	var out []Event
	for rev := max(from, h.rev0+1); rev <= to; rev++ {
		evs := append([]Event(nil), h.events[rev]...)
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].KV.Key < evs[j].KV.Key })
		for _, e := range evs {
			if !spec.wants(e) {
				continue
			}
			if spec.PrevKV {
				if s, ok := h.state(rev - 1); ok && s.Keys[e.KV.Key].exists() {
					p := s.kv(e.KV.Key)
					e.Prev = &p
				}
			}
			out = append(out, e)
		}
	}
	return out
}

func prevEqual(a, b *KV) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// checkWatchAgainstHistory checks that a watch delivered exactly the
// history from its start revision (resumable, reliable), with the right
// prev_kv and filters.
func checkWatchAgainstHistory(r *Report, w WatchRecord, h *refHistory, maxCompacted int64) {
	var got []Event
	canceled, compacted := false, int64(0)
	var lastMark int64
	for _, resp := range w.Resps {
		got = append(got, resp.Events...)
		if len(resp.Events) > 0 {
			lastMark = max(lastMark, resp.Events[len(resp.Events)-1].KV.Mod)
		}
		if resp.Progress {
			lastMark = max(lastMark, resp.Rev)
		}
		if resp.Canceled {
			canceled, compacted = true, resp.CompactRev
		}
	}
	to := min(lastMark, h.final)
	if w.Complete && !canceled && lastMark < h.final {
		r.violate("%s %s (reliable): delivered up to revision %d, the final revision is %d", w.Name, w.Spec, lastMark, h.final)
	}
	if canceled && compacted == 0 && w.Complete {
		r.violate("%s %s: canceled by the server without a compaction", w.Name, w.Spec)
	}
	want := expectedEvents(w.Spec, h, w.Spec.StartRev, to)
	// Events beyond the final revision cannot be checked; drop them.
	for len(got) > 0 && got[len(got)-1].KV.Mod > to {
		got = got[:len(got)-1]
	}
	n := min(len(got), len(want))
	for i := 0; i < n; i++ {
		if !eventsEqual(got[i], want[i]) {
			r.violate("%s %s (resumable/reliable): event %d is %s, the history has %s; opened at t=%v, its responses: %s", w.Name, w.Spec, i, got[i], want[i], time.Duration(w.Started).Round(time.Millisecond), describeResps(w.Resps, 6))
			return
		}
		compacted := got[i].Prev == nil && got[i].KV.Mod-1 < maxCompacted
		if w.Spec.PrevKV && !compacted && !prevEqual(got[i].Prev, want[i].Prev) {
			r.violate("%s %s (prev_kv): event %s, the history's previous value is %v", w.Name, w.Spec, got[i], want[i].Prev)
			return
		}
	}
	if len(got) != len(want) {
		r.violate("%s %s (reliable): %d events up to revision %d, the history has %d; opened at t=%v, its responses: %s", w.Name, w.Spec, len(got), to, len(want), time.Duration(w.Started).Round(time.Millisecond), describeResps(w.Resps, 6))
	}
}

// describeResps summarizes the first n responses of a watch for a report.
func describeResps(rs []WatchResp, n int) string {
	var parts []string
	for i, r := range rs {
		if i == n {
			parts = append(parts, fmt.Sprintf("... %d more", len(rs)-n))
			break
		}
		d := fmt.Sprintf("[t=%v header %d", time.Duration(r.Time).Round(time.Millisecond), r.Rev)
		switch {
		case r.Progress:
			d += " progress"
		case r.Canceled:
			d += fmt.Sprintf(" canceled compact %d %s", r.CompactRev, r.Err)
		}
		if k := len(r.Events); k > 0 {
			d += fmt.Sprintf(" %d events %d..%d", k, r.Events[0].KV.Mod, r.Events[k-1].KV.Mod)
		}
		parts = append(parts, d+"]")
	}
	return strings.Join(parts, " ")
}
