package apply_test

// Golden script tests for the applier, in the style of etcd-io/raft's
// testdata/*.txt: each file in testdata/ is a list of commands, each
// followed by "----" and the output it must produce. Every request command
// is marshaled into an InternalRaftRequest, put in one raft entry and
// applied through Applier.Apply, exactly as the Raft loop does; the output
// is the result handed to the Notifier for that request, then the watch
// events the batch produced.
//
// Regenerate the expected output after a deliberate change with
//
//	go test ./internal/apply -run TestScripts -rewrite
//
// and review the diff. Files listed in knownBugs hold etcd's behaviour
// where cairn differs: they are skipped when they fail and never
// rewritten. Add a new file of expected etcd behaviour to knownBugs
// before running -rewrite, or its expectations are overwritten.
//
// Commands (keys and values may be Go-quoted: "\x00"):
//
//	put KEY [VALUE] [lease=ID] [prev_kv] [ignore_value] [ignore_lease]
//	del KEY [END] [prev_kv]
//	range KEY [END] [rev=N] [limit=N] [sort=TARGET[/ORDER]] [keys_only]
//	      [count_only] [min_mod=N] [max_mod=N] [min_create=N] [max_create=N]
//	      [serializable]   (serializable: read the published store, no entry)
//	txn [brief]            (body below, one line each, nested txn indented;
//	                        brief: print only whether it succeeded)
//	  if TARGET KEY [END] OP VALUE    TARGET: value version create mod lease
//	                                  OP: = != > < (#N: raw enum value)
//	  then OP-COMMAND                 a put, del or range line, or "txn"
//	  else OP-COMMAND                 followed by its body indented by 2
//	compact REV [physical]
//	lease-grant ID TTL
//	lease-revoke ID
//	leases                 (the lessor's leases and their keys, no entry)
//	alarm get|activate|deactivate [member=N] [alarm=NOSPACE|CORRUPT|NONE]
//	batch                  (body: one single-line command per entry, all
//	                        entries applied in one Apply call)
//	empty                  (a new leader's empty entry)
//	reapply                (apply the last batch of entries again)
//	state                  (applied index, revision, compaction revision)

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/apply"
	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/membership"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/propose"
	"github.com/cairn-kv/cairn/internal/storage"
)

// The flag may be registered by another test file of the same binary.
func init() {
	if flag.Lookup("rewrite") == nil {
		flag.Bool("rewrite", false, "rewrite the expected output of golden script tests")
	}
}

func rewriteFlag() bool {
	f := flag.Lookup("rewrite")
	if f == nil {
		return false
	}
	v, _ := strconv.ParseBool(f.Value.String())
	return v
}

// knownBugs are script files whose expected output is etcd's behaviour
// that cairn does not have yet. They are skipped (with the reason) when
// they fail, and never rewritten. Remove an entry once its file passes.
var knownBugs = map[string]string{}

func TestScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no script files in testdata")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".txt")
		t.Run(name, func(t *testing.T) {
			bug, isBug := knownBugs[name]
			runScript(t, file, func(t *testing.T) *scriptEnv { return newScriptEnv(t) }, isBug, bug)
		})
	}
}

// ---- the script file format --------------------------------------------

// scriptCase is one command of a script file.
type scriptCase struct {
	line   int      // 1-based line of the command
	cmd    string   // the command line
	input  []string // lines between the command and "----"
	output string   // expected output (without the final newline)
}

// scriptFile is a parsed script file: comments and blank lines between
// cases are kept so that a rewrite leaves them in place.
type scriptFile struct {
	parts []any // string (verbatim line) or *scriptCase
}

func parseScript(data string) (*scriptFile, error) {
	lines := strings.Split(strings.TrimSuffix(data, "\n"), "\n")
	f := &scriptFile{}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			f.parts = append(f.parts, l)
			continue
		}
		c := &scriptCase{line: i + 1, cmd: l}
		i++
		for ; i < len(lines) && lines[i] != "----"; i++ {
			c.input = append(c.input, lines[i])
		}
		if i == len(lines) {
			return nil, fmt.Errorf("line %d: %q has no ---- line", c.line, c.cmd)
		}
		i++
		var out []string
		for ; i < len(lines) && lines[i] != ""; i++ {
			out = append(out, lines[i])
		}
		c.output = strings.Join(out, "\n")
		f.parts = append(f.parts, c)
		if i < len(lines) {
			f.parts = append(f.parts, "") // the blank line ending the output
		}
	}
	return f, nil
}

func (f *scriptFile) String() string {
	var b strings.Builder
	for _, p := range f.parts {
		switch p := p.(type) {
		case string:
			b.WriteString(p)
			b.WriteByte('\n')
		case *scriptCase:
			b.WriteString(p.cmd)
			b.WriteByte('\n')
			for _, l := range p.input {
				b.WriteString(l)
				b.WriteByte('\n')
			}
			b.WriteString("----\n")
			if p.output != "" {
				b.WriteString(p.output)
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

// runScript runs every case of file in a fresh environment, compares the
// output and, with -rewrite, writes the actual output back.
func runScript(t *testing.T, file string, newEnv func(*testing.T) *scriptEnv, isBug bool, bug string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parseScript(string(data))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	e := newEnv(t)
	var failures []string
	for _, p := range f.parts {
		c, ok := p.(*scriptCase)
		if !ok {
			continue
		}
		got := strings.TrimRight(e.run(c), "\n")
		if strings.Contains(got, "\n\n") {
			t.Fatalf("%s:%d: output has a blank line:\n%s", file, c.line, got)
		}
		if got != c.output {
			failures = append(failures, fmt.Sprintf("%s:%d: %s\nwant:\n%s\ngot:\n%s", file, c.line, c.cmd, c.output, got))
			if rewriteFlag() && !isBug {
				c.output = got
			}
		}
	}
	if rewriteFlag() && !isBug && len(failures) > 0 {
		if err := os.WriteFile(file, []byte(f.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s (%d cases)", file, len(failures))
		return
	}
	switch {
	case len(failures) > 0 && isBug:
		t.Skipf("BUG: %s\n(%d cases differ from etcd; first:)\n%s", bug, len(failures), failures[0])
	case len(failures) > 0:
		t.Error(strings.Join(failures, "\n\n"))
	case isBug:
		t.Logf("known bug %q now passes: remove it from knownBugs", bug)
	}
}

// ---- the environment -----------------------------------------------------

// scriptEnv is one applier over a pebble engine in a temp dir.
type scriptEnv struct {
	t      *testing.T
	eng    *storage.Engine
	kv     *mvcc.Store
	lessor *lease.Lessor
	app    *apply.Applier
	notes  *recNotifier
	watch  *recWatchers

	index       uint64 // last entry index handed to Apply
	nextID      uint64 // next request ID
	lastBatch   []*raftpb.Entry
	compactions []int64 // OnCompaction calls
}

func newScriptEnv(t *testing.T) *scriptEnv {
	t.Helper()
	eng, err := storage.Open(t.TempDir(), storage.Options{CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	kv, err := mvcc.Open(eng.DB())
	if err != nil {
		t.Fatal(err)
	}
	clk := lease.NewFakeClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	lessor, err := lease.New(lease.Config{MinTTL: 5, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	members, err := membership.Load(eng.DB(), 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	e := &scriptEnv{
		t: t, eng: eng, kv: kv, lessor: lessor,
		notes:  &recNotifier{results: map[uint64]propose.Result{}},
		watch:  &recWatchers{},
		nextID: 100,
	}
	e.app, err = apply.New(apply.Deps{
		DB: eng.DB(), KV: kv, Lessor: lessor, Members: members,
		Conf: fakeConf{}, Waits: e.notes, Watch: e.watch, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.app.OnCompaction = func(rev int64) { e.compactions = append(e.compactions, rev) }
	return e
}

type fakeConf struct{}

func (fakeConf) ApplyConfChange(raftpb.ConfChangeI) *raftpb.ConfState { return &raftpb.ConfState{} }

// recNotifier records the result of every request by ID.
type recNotifier struct {
	mu      sync.Mutex
	results map[uint64]propose.Result
	order   []uint64
}

func (n *recNotifier) Trigger(id uint64, r propose.Result) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.results[id] = r
	n.order = append(n.order, id)
}

func (n *recNotifier) take(id uint64) (propose.Result, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.results[id]
	delete(n.results, id)
	return r, ok
}

func (n *recNotifier) pending() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.results)
}

// recWatchers records every Notify call.
type recWatchers struct {
	mu    sync.Mutex
	calls []watchCall
}

type watchCall struct {
	rev    int64
	events []*mvccpb.Event
}

func (w *recWatchers) Notify(rev int64, events []*mvccpb.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Copy: the applier may reuse nothing, but be safe.
	evs := make([]*mvccpb.Event, len(events))
	for i, ev := range events {
		evs[i] = proto.Clone(ev).(*mvccpb.Event)
	}
	w.calls = append(w.calls, watchCall{rev, evs})
}

func (w *recWatchers) drain() []watchCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.calls
	w.calls = nil
	return c
}

// ---- running commands ----------------------------------------------------

func (e *scriptEnv) run(c *scriptCase) (out string) {
	defer func() {
		if r := recover(); r != nil {
			out = fmt.Sprintf("panic: %v", r)
		}
	}()
	toks, err := tokenize(c.cmd)
	if err != nil {
		return "parse error: " + err.Error()
	}
	var b strings.Builder
	switch toks[0].s {
	case "batch":
		var reqs []*pb.InternalRaftRequest
		for _, l := range c.input {
			lt, err := tokenize(l)
			if err != nil {
				return "parse error: " + err.Error()
			}
			if lt[0].s == "empty" {
				reqs = append(reqs, nil)
				continue
			}
			r, err := e.request(lt, nil)
			if err != nil {
				return "parse error: " + err.Error()
			}
			reqs = append(reqs, r)
		}
		e.applyAndPrint(&b, reqs...)
	case "empty":
		e.applyAndPrint(&b, nil)
	case "reapply":
		if err := e.app.Apply(e.lastBatch); err != nil {
			fmt.Fprintf(&b, "apply error: %v\n", err)
		}
		fmt.Fprintf(&b, "applied=%d\n", e.app.Applied())
		if n := e.notes.pending(); n > 0 {
			fmt.Fprintf(&b, "%d results handed out again\n", n)
		}
		printWatch(&b, e.watch.drain())
	case "leases":
		ids := e.lessor.Leases()
		if len(ids) == 0 {
			b.WriteString("no leases\n")
		}
		for _, id := range ids {
			l, err := e.lessor.Lookup(id)
			if err != nil {
				fmt.Fprintf(&b, "lease %d: %v\n", id, err)
				continue
			}
			fmt.Fprintf(&b, "lease %d ttl=%d keys=[%s]\n", id, l.TTL, strings.Join(l.Keys, " "))
		}
	case "state":
		cur, compacted := e.kv.Revs()
		fmt.Fprintf(&b, "applied=%d term=%d rev=%d compacted=%d\n", e.app.Applied(), e.app.AppliedTerm(), cur, compacted)
		if len(e.compactions) > 0 {
			fmt.Fprintf(&b, "on-compaction calls: %v\n", e.compactions)
		}
	case "range":
		if hasFlag(toks, "serializable") {
			req, err := parseRange(toks[1:])
			if err != nil {
				return "parse error: " + err.Error()
			}
			resp, err := apply.Range(e.kv, req)
			if err != nil {
				fmt.Fprintf(&b, "error: %v\n", err)
			} else {
				printResp(&b, "", resp)
			}
			break
		}
		fallthrough
	default:
		r, err := e.request(toks, c.input)
		if err != nil {
			return "parse error: " + err.Error()
		}
		e.applyAndPrintBrief(&b, toks[0].s == "txn" && hasFlag(toks, "brief"), r)
	}
	if strings.HasPrefix(toks[0].s, "compact") && hasFlag(toks, "physical") {
		if _, err := e.kv.CompactPhysical(0); err != nil {
			fmt.Fprintf(&b, "physical compaction: %v\n", err)
		}
	}
	return b.String()
}

// applyAndPrint applies reqs as consecutive entries in one Apply call and
// prints each result, then the watch events. A nil request is an empty
// entry.
func (e *scriptEnv) applyAndPrint(b *strings.Builder, reqs ...*pb.InternalRaftRequest) {
	e.applyAndPrintBrief(b, false, reqs...)
}

// applyAndPrintBrief is applyAndPrint; with brief, a txn result is only
// its outcome (no revision, no responses).
func (e *scriptEnv) applyAndPrintBrief(b *strings.Builder, brief bool, reqs ...*pb.InternalRaftRequest) {
	var ents []*raftpb.Entry
	var ids []uint64
	for _, r := range reqs {
		e.index++
		ent := &raftpb.Entry{
			Term:  proto.Uint64(1),
			Index: proto.Uint64(e.index),
			Type:  raftpb.EntryNormal.Enum(),
		}
		if r != nil {
			e.nextID++
			r.Header = &pb.RequestHeader{ID: e.nextID}
			data, err := proto.Marshal(r)
			if err != nil {
				e.t.Fatal(err)
			}
			ent.Data = data
			ids = append(ids, e.nextID)
		}
		ents = append(ents, ent)
	}
	e.lastBatch = ents
	if err := e.app.Apply(ents); err != nil {
		fmt.Fprintf(b, "apply error: %v\n", err)
	}
	if got := e.app.Applied(); got != e.index {
		fmt.Fprintf(b, "applied index %d, want %d\n", got, e.index)
	}
	for _, id := range ids {
		res, ok := e.notes.take(id)
		switch {
		case !ok:
			b.WriteString("no result\n")
		case res.Err != nil:
			fmt.Fprintf(b, "error: %v\n", res.Err)
			if res.Resp != nil && !reflect.ValueOf(res.Resp).IsNil() {
				b.WriteString("  (and a response)\n")
			}
		case brief:
			if t, ok := res.Resp.(*pb.TxnResponse); ok {
				fmt.Fprintf(b, "txn succeeded=%v\n", t.Succeeded)
				break
			}
			printResp(b, "", res.Resp)
		default:
			printResp(b, "", res.Resp)
		}
	}
	if len(ids) == 0 {
		b.WriteString("ok\n")
	}
	printWatch(b, e.watch.drain())
}

// request builds the InternalRaftRequest of a command line.
func (e *scriptEnv) request(toks []token, input []string) (*pb.InternalRaftRequest, error) {
	args := toks[1:]
	switch toks[0].s {
	case "put", "del", "range":
		op, err := parseOp(toks, input)
		if err != nil {
			return nil, err
		}
		switch r := op.Request.(type) {
		case *pb.RequestOp_RequestPut:
			return &pb.InternalRaftRequest{Put: r.RequestPut}, nil
		case *pb.RequestOp_RequestDeleteRange:
			return &pb.InternalRaftRequest{DeleteRange: r.RequestDeleteRange}, nil
		case *pb.RequestOp_RequestRange:
			return &pb.InternalRaftRequest{Range: r.RequestRange}, nil
		}
	case "txn":
		t, err := parseTxnBody(input)
		if err != nil {
			return nil, err
		}
		return &pb.InternalRaftRequest{Txn: t}, nil
	case "compact":
		if len(args) < 1 {
			return nil, fmt.Errorf("compact REV")
		}
		rev, err := strconv.ParseInt(args[0].s, 10, 64)
		if err != nil {
			return nil, err
		}
		return &pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: rev, Physical: hasFlag(toks, "physical")}}, nil
	case "lease-grant":
		if len(args) != 2 {
			return nil, fmt.Errorf("lease-grant ID TTL")
		}
		id, err1 := strconv.ParseInt(args[0].s, 10, 64)
		ttl, err2 := strconv.ParseInt(args[1].s, 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("lease-grant ID TTL: bad number")
		}
		return &pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: id, TTL: ttl}}, nil
	case "lease-revoke":
		if len(args) != 1 {
			return nil, fmt.Errorf("lease-revoke ID")
		}
		id, err := strconv.ParseInt(args[0].s, 10, 64)
		if err != nil {
			return nil, err
		}
		return &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}}, nil
	case "alarm":
		if len(args) < 1 {
			return nil, fmt.Errorf("alarm get|activate|deactivate")
		}
		req := &pb.AlarmRequest{}
		switch args[0].s {
		case "get":
			req.Action = pb.AlarmRequest_GET
		case "activate":
			req.Action = pb.AlarmRequest_ACTIVATE
		case "deactivate":
			req.Action = pb.AlarmRequest_DEACTIVATE
		default:
			return nil, fmt.Errorf("unknown alarm action %q", args[0].s)
		}
		for _, a := range args[1:] {
			k, v, _ := strings.Cut(a.s, "=")
			switch k {
			case "member":
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return nil, err
				}
				req.MemberID = n
			case "alarm":
				n, ok := pb.AlarmType_value[v]
				if !ok {
					return nil, fmt.Errorf("unknown alarm %q", v)
				}
				req.Alarm = pb.AlarmType(n)
			default:
				return nil, fmt.Errorf("unknown alarm argument %q", a.s)
			}
		}
		return &pb.InternalRaftRequest{Alarm: req}, nil
	}
	return nil, fmt.Errorf("unknown command %q", toks[0].s)
}

// ---- parsing requests ------------------------------------------------------

type token struct {
	s      string
	quoted bool
}

// tokenize splits a line at spaces; a token starting with '"' is a Go
// string literal.
func tokenize(line string) ([]token, error) {
	var toks []token
	s := strings.TrimSpace(line)
	for s != "" {
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("bad quoted string in %q", line)
			}
			v, _ := strconv.Unquote(q)
			toks = append(toks, token{v, true})
			s = strings.TrimLeft(s[len(q):], " ")
			continue
		}
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			i = len(s)
		}
		toks = append(toks, token{s: s[:i]})
		s = strings.TrimLeft(s[i:], " ")
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	return toks, nil
}

func hasFlag(toks []token, name string) bool {
	for _, t := range toks[1:] {
		if !t.quoted && t.s == name {
			return true
		}
	}
	return false
}

// splitArgs separates positional arguments from options (name or
// name=value, unquoted, in known).
func splitArgs(toks []token, known ...string) (pos []string, opts map[string]string, err error) {
	opts = map[string]string{}
	for _, t := range toks {
		if !t.quoted {
			name, val, _ := strings.Cut(t.s, "=")
			isOpt := false
			for _, k := range known {
				if k == name {
					isOpt = true
				}
			}
			if isOpt {
				opts[name] = val
				continue
			}
			if strings.Contains(t.s, "=") {
				return nil, nil, fmt.Errorf("unknown option %q", t.s)
			}
		}
		pos = append(pos, t.s)
	}
	return pos, opts, nil
}

func optInt(opts map[string]string, name string) (int64, error) {
	v, ok := opts[name]
	if !ok {
		return 0, nil
	}
	return strconv.ParseInt(v, 10, 64)
}

func parseOp(toks []token, input []string) (*pb.RequestOp, error) {
	switch toks[0].s {
	case "put":
		pos, opts, err := splitArgs(toks[1:], "lease", "prev_kv", "ignore_value", "ignore_lease")
		if err != nil {
			return nil, err
		}
		if len(pos) < 1 || len(pos) > 2 {
			return nil, fmt.Errorf("put KEY [VALUE] [options]")
		}
		p := &pb.PutRequest{Key: []byte(pos[0])}
		if len(pos) == 2 {
			p.Value = []byte(pos[1])
		}
		if p.Lease, err = optInt(opts, "lease"); err != nil {
			return nil, err
		}
		_, p.PrevKv = opts["prev_kv"]
		_, p.IgnoreValue = opts["ignore_value"]
		_, p.IgnoreLease = opts["ignore_lease"]
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: p}}, nil
	case "del":
		pos, opts, err := splitArgs(toks[1:], "prev_kv")
		if err != nil {
			return nil, err
		}
		if len(pos) < 1 || len(pos) > 2 {
			return nil, fmt.Errorf("del KEY [END] [prev_kv]")
		}
		d := &pb.DeleteRangeRequest{Key: []byte(pos[0])}
		if len(pos) == 2 {
			d.RangeEnd = []byte(pos[1])
		}
		_, d.PrevKv = opts["prev_kv"]
		return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: d}}, nil
	case "range":
		r, err := parseRange(toks[1:])
		if err != nil {
			return nil, err
		}
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}, nil
	case "txn":
		t, err := parseTxnBody(input)
		if err != nil {
			return nil, err
		}
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}, nil
	}
	return nil, fmt.Errorf("unknown op %q", toks[0].s)
}

func parseRange(toks []token) (*pb.RangeRequest, error) {
	pos, opts, err := splitArgs(toks, "rev", "limit", "sort", "keys_only", "count_only",
		"min_mod", "max_mod", "min_create", "max_create", "serializable")
	if err != nil {
		return nil, err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return nil, fmt.Errorf("range KEY [END] [options]")
	}
	r := &pb.RangeRequest{Key: []byte(pos[0])}
	if len(pos) == 2 {
		r.RangeEnd = []byte(pos[1])
	}
	for name, dst := range map[string]*int64{
		"rev": &r.Revision, "limit": &r.Limit,
		"min_mod": &r.MinModRevision, "max_mod": &r.MaxModRevision,
		"min_create": &r.MinCreateRevision, "max_create": &r.MaxCreateRevision,
	} {
		if *dst, err = optInt(opts, name); err != nil {
			return nil, err
		}
	}
	_, r.KeysOnly = opts["keys_only"]
	_, r.CountOnly = opts["count_only"]
	_, r.Serializable = opts["serializable"]
	if s, ok := opts["sort"]; ok {
		target, order, hasOrder := strings.Cut(s, "/")
		tv, ok := pb.RangeRequest_SortTarget_value[target]
		if !ok {
			return nil, fmt.Errorf("unknown sort target %q", target)
		}
		r.SortTarget = pb.RangeRequest_SortTarget(tv)
		if hasOrder {
			ov, ok := pb.RangeRequest_SortOrder_value[order]
			if !ok {
				return nil, fmt.Errorf("unknown sort order %q", order)
			}
			r.SortOrder = pb.RangeRequest_SortOrder(ov)
		}
	}
	return r, nil
}

// parseTxnBody parses the lines of a txn: "if", "then" and "else" lines at
// the smallest indentation; a "then txn" or "else txn" line takes the more
// indented lines after it as its body.
func parseTxnBody(lines []string) (*pb.TxnRequest, error) {
	t := &pb.TxnRequest{}
	base := -1
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" {
			continue
		}
		ind := indentOf(l)
		if base < 0 {
			base = ind
		}
		if ind != base {
			return nil, fmt.Errorf("unexpected indentation: %q", l)
		}
		toks, err := tokenize(l)
		if err != nil {
			return nil, err
		}
		switch toks[0].s {
		case "if":
			c, err := parseCompare(toks[1:])
			if err != nil {
				return nil, err
			}
			t.Compare = append(t.Compare, c)
		case "then", "else":
			if len(toks) < 2 {
				return nil, fmt.Errorf("%s: missing operation", toks[0].s)
			}
			var body []string
			if toks[1].s == "txn" {
				for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || indentOf(lines[i+1]) > base) {
					i++
					body = append(body, lines[i])
				}
			}
			op, err := parseOp(toks[1:], body)
			if err != nil {
				return nil, err
			}
			if toks[0].s == "then" {
				t.Success = append(t.Success, op)
			} else {
				t.Failure = append(t.Failure, op)
			}
		default:
			return nil, fmt.Errorf("txn line must start with if, then or else: %q", l)
		}
	}
	return t, nil
}

func indentOf(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }

// parseCompare parses TARGET KEY [END] OP VALUE.
func parseCompare(toks []token) (*pb.Compare, error) {
	if len(toks) < 4 {
		return nil, fmt.Errorf("compare: TARGET KEY [END] OP VALUE")
	}
	c := &pb.Compare{Key: []byte(toks[1].s)}
	opAt := 2
	if len(toks) == 5 {
		c.RangeEnd = []byte(toks[2].s)
		opAt = 3
	}
	switch op := toks[opAt].s; {
	case op == "=":
		c.Result = pb.Compare_EQUAL
	case op == "!=":
		c.Result = pb.Compare_NOT_EQUAL
	case op == ">":
		c.Result = pb.Compare_GREATER
	case op == "<":
		c.Result = pb.Compare_LESS
	case strings.HasPrefix(op, "#"):
		n, err := strconv.Atoi(op[1:])
		if err != nil {
			return nil, err
		}
		c.Result = pb.Compare_CompareResult(n)
	default:
		return nil, fmt.Errorf("unknown compare operator %q", op)
	}
	val := toks[opAt+1].s
	num := func() (int64, error) { return strconv.ParseInt(val, 10, 64) }
	var err error
	switch toks[0].s {
	case "value":
		c.Target = pb.Compare_VALUE
		c.TargetUnion = &pb.Compare_Value{Value: []byte(val)}
	case "version":
		c.Target = pb.Compare_VERSION
		var n int64
		n, err = num()
		c.TargetUnion = &pb.Compare_Version{Version: n}
	case "create":
		c.Target = pb.Compare_CREATE
		var n int64
		n, err = num()
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: n}
	case "mod":
		c.Target = pb.Compare_MOD
		var n int64
		n, err = num()
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: n}
	case "lease":
		c.Target = pb.Compare_LEASE
		var n int64
		n, err = num()
		c.TargetUnion = &pb.Compare_Lease{Lease: n}
	default:
		return nil, fmt.Errorf("unknown compare target %q", toks[0].s)
	}
	return c, err
}

// ---- printing ----------------------------------------------------------------

// quoteIfNeeded prints s raw when it is plain text, Go-quoted otherwise.
func quoteIfNeeded(s []byte) string {
	if len(s) == 0 {
		return `""`
	}
	for _, c := range s {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '=' {
			return strconv.Quote(string(s))
		}
	}
	return string(s)
}

func fmtKV(kv *mvccpb.KeyValue) string {
	s := fmt.Sprintf("%s=%s create=%d mod=%d ver=%d", quoteIfNeeded(kv.Key), quoteIfNeeded(kv.Value),
		kv.CreateRevision, kv.ModRevision, kv.Version)
	if kv.Lease != 0 {
		s += fmt.Sprintf(" lease=%d", kv.Lease)
	}
	return s
}

func hdrRev(h *pb.ResponseHeader) string {
	if h == nil {
		return "nil"
	}
	return strconv.FormatInt(h.Revision, 10)
}

func printResp(b *strings.Builder, ind string, m proto.Message) {
	switch r := m.(type) {
	case *pb.PutResponse:
		fmt.Fprintf(b, "%sput rev=%s\n", ind, hdrRev(r.Header))
		if r.PrevKv != nil {
			fmt.Fprintf(b, "%s  prev %s\n", ind, fmtKV(r.PrevKv))
		}
	case *pb.DeleteRangeResponse:
		fmt.Fprintf(b, "%sdel rev=%s deleted=%d\n", ind, hdrRev(r.Header), r.Deleted)
		for _, kv := range r.PrevKvs {
			fmt.Fprintf(b, "%s  prev %s\n", ind, fmtKV(kv))
		}
	case *pb.RangeResponse:
		fmt.Fprintf(b, "%srange rev=%s count=%d", ind, hdrRev(r.Header), r.Count)
		if r.More {
			b.WriteString(" more")
		}
		b.WriteByte('\n')
		for _, kv := range r.Kvs {
			fmt.Fprintf(b, "%s  %s\n", ind, fmtKV(kv))
		}
	case *pb.TxnResponse:
		fmt.Fprintf(b, "%stxn rev=%s succeeded=%v\n", ind, hdrRev(r.Header), r.Succeeded)
		for _, op := range r.Responses {
			switch x := op.Response.(type) {
			case *pb.ResponseOp_ResponseRange:
				printResp(b, ind+"  ", x.ResponseRange)
			case *pb.ResponseOp_ResponsePut:
				printResp(b, ind+"  ", x.ResponsePut)
			case *pb.ResponseOp_ResponseDeleteRange:
				printResp(b, ind+"  ", x.ResponseDeleteRange)
			case *pb.ResponseOp_ResponseTxn:
				printResp(b, ind+"  ", x.ResponseTxn)
			default:
				fmt.Fprintf(b, "%s  empty response op\n", ind)
			}
		}
	case *pb.CompactionResponse:
		fmt.Fprintf(b, "%scompact rev=%s\n", ind, hdrRev(r.Header))
	case *pb.LeaseGrantResponse:
		fmt.Fprintf(b, "%slease-grant rev=%s id=%d ttl=%d", ind, hdrRev(r.Header), r.ID, r.TTL)
		if r.Error != "" {
			fmt.Fprintf(b, " error=%q", r.Error)
		}
		b.WriteByte('\n')
	case *pb.LeaseRevokeResponse:
		fmt.Fprintf(b, "%slease-revoke rev=%s\n", ind, hdrRev(r.Header))
	case *pb.AlarmResponse:
		fmt.Fprintf(b, "%salarm rev=%s\n", ind, hdrRev(r.Header))
		for _, a := range r.Alarms {
			fmt.Fprintf(b, "%s  member=%d %s\n", ind, a.MemberID, a.Alarm)
		}
	case nil:
		fmt.Fprintf(b, "%snil response\n", ind)
	default:
		fmt.Fprintf(b, "%s%T\n", ind, m)
	}
}

func printWatch(b *strings.Builder, calls []watchCall) {
	for _, c := range calls {
		fmt.Fprintf(b, "watch rev=%d\n", c.rev)
		for _, ev := range c.events {
			switch ev.Type {
			case mvccpb.Event_PUT:
				fmt.Fprintf(b, "  PUT %s\n", fmtKV(ev.Kv))
			case mvccpb.Event_DELETE:
				fmt.Fprintf(b, "  DELETE %s mod=%d\n", quoteIfNeeded(ev.Kv.Key), ev.Kv.ModRevision)
			}
			if ev.PrevKv != nil {
				fmt.Fprintf(b, "    prev %s\n", fmtKV(ev.PrevKv))
			}
		}
	}
}

// ---- a self-test of the script format ---------------------------------------

func TestScriptFormatRoundTrip(t *testing.T) {
	in := "# comment\n\nput a 1\n----\nput rev=2\n\ntxn\nif value a = 1\nthen txn\n  then put b 2\n----\ntxn rev=3 succeeded=true\n"
	f, err := parseScript(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.String(); got != in {
		t.Fatalf("round trip:\n%q\nwant\n%q", got, in)
	}
	tr, err := parseTxnBody([]string{"if value a = 1", "then txn", "  if version b > 0", "  then put b 2", "  else del b", "else range a"})
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.TxnRequest{
		Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("1")}}},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("b"), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 0}}},
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("b"), Value: []byte("2")}}}},
			Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("b")}}}},
		}}}},
		Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a")}}}},
	}
	if !proto.Equal(tr, want) {
		t.Fatalf("parsed txn:\n%v\nwant\n%v", tr, want)
	}
}
