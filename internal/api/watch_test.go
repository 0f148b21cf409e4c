package api

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/watch"
	"github.com/cairn-kv/cairn/internal/watch/watchtest"
)

const watchTestWait = 20 * time.Second

// watchEnv is a Watch service on a real gRPC server on 127.0.0.1, over a
// hub fed by the in-memory store, with a real etcd client and a raw
// connection for protocol-level checks.
type watchEnv struct {
	t      *testing.T
	store  *watchtest.Store
	hub    *watch.Hub
	addr   string
	cli    *clientv3.Client
	conn   *grpc.ClientConn
	active atomic.Int64 // Watch handlers running

	mu    sync.Mutex
	ticks []chan time.Time // one per stream, in creation order
}

// trackedWatch counts running handlers, to check that streams end.
type trackedWatch struct {
	pb.WatchServer
	env *watchEnv
}

func (w trackedWatch) Watch(s pb.Watch_WatchServer) error {
	w.env.active.Add(1)
	defer w.env.active.Add(-1)
	return w.WatchServer.Watch(s)
}

func newWatchEnv(t *testing.T, opts WatchOptions) *watchEnv {
	t.Helper()
	e := &watchEnv{t: t, store: watchtest.NewStore()}
	e.hub = watch.NewHub(e.store, watch.Options{})
	opts.newTicker = func(time.Duration) (<-chan time.Time, func()) {
		c := make(chan time.Time)
		e.mu.Lock()
		e.ticks = append(e.ticks, c)
		e.mu.Unlock()
		return c, func() {}
	}
	header := func() *pb.ResponseHeader {
		return &pb.ResponseHeader{ClusterId: 11, MemberId: 22, RaftTerm: 33, Revision: 999}
	}
	srv := grpc.NewServer()
	pb.RegisterWatchServer(srv, trackedWatch{NewWatchServer(e.hub, header, opts), e})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
		e.hub.Close()
	})
	e.cli = e.newClient()
	e.conn, err = grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.conn.Close() })
	return e
}

func (e *watchEnv) newClient() *clientv3.Client {
	e.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.addr}, DialTimeout: watchTestWait, Logger: zap.NewNop()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cli.Close() })
	return cli
}

func (e *watchEnv) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), watchTestWait)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *watchEnv) put(key, value string) int64 {
	rev, evs := e.store.Put(key, value)
	e.hub.Notify(rev, evs)
	return rev
}

func (e *watchEnv) del(key string) int64 {
	rev, evs := e.store.Delete(key)
	e.hub.Notify(rev, evs)
	return rev
}

// tick delivers one progress tick to the stream-th stream opened.
func (e *watchEnv) tick(stream int) {
	e.t.Helper()
	e.waitFor("stream to open", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.ticks) > stream
	})
	e.mu.Lock()
	c := e.ticks[stream]
	e.mu.Unlock()
	select {
	case c <- time.Time{}:
	case <-time.After(watchTestWait):
		e.t.Fatal("progress tick not taken")
	}
}

// waitFor polls a condition that no channel announces, with a deadline.
func (e *watchEnv) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.NewTimer(watchTestWait)
	defer deadline.Stop()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-poll.C:
		case <-deadline.C:
			e.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// recv takes the next client watch response.
func recv(t *testing.T, wch clientv3.WatchChan) clientv3.WatchResponse {
	t.Helper()
	select {
	case r, ok := <-wch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return r
	case <-time.After(watchTestWait):
		t.Fatal("no watch response")
	}
	panic("unreachable")
}

// watchCreated opens a client watch and waits for its created response, so
// that writes made afterwards are seen.
func (e *watchEnv) watchCreated(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	e.t.Helper()
	wch := e.cli.Watch(ctx, key, append(opts, clientv3.WithCreatedNotify())...)
	if r := recv(e.t, wch); !r.Created {
		e.t.Fatalf("first response is not created: %+v", r)
	}
	return wch
}

func evs(events []*clientv3.Event) string {
	var parts []string
	for _, ev := range events {
		s := fmt.Sprintf("%s %s@%d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision)
		if ev.Type == mvccpb.PUT {
			s += "=" + string(ev.Kv.Value)
		}
		if ev.PrevKv != nil {
			s += fmt.Sprintf(" (prev %s)", ev.PrevKv.Value)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func TestWatchServerEvents(t *testing.T) {
	e := newWatchEnv(t, WatchOptions{})
	ctx := e.ctx()
	single := e.watchCreated(ctx, "a")
	prefix := e.watchCreated(ctx, "b", clientv3.WithPrefix())
	e.put("a", "1")
	e.put("b1", "2")
	e.put("c", "3")
	e.del("a")
	r := recv(t, single)
	if evs(r.Events) != "PUT a@1=1" || r.Header.Revision != 1 || r.Header.ClusterId != 11 || r.Header.MemberId != 22 || r.Header.RaftTerm != 33 {
		t.Fatalf("single: %s header %+v", evs(r.Events), r.Header)
	}
	if r := recv(t, single); evs(r.Events) != "DELETE a@4" || r.Header.Revision != 4 {
		t.Fatalf("single: %s at %d", evs(r.Events), r.Header.Revision)
	}
	if r := recv(t, prefix); evs(r.Events) != "PUT b1@2=2" {
		t.Fatalf("prefix: %s", evs(r.Events))
	}
}

func TestWatchServerFromRevision(t *testing.T) {
	e := newWatchEnv(t, WatchOptions{})
	for i := range 5 {
		e.put("k", fmt.Sprint(i))
	}
	ctx := e.ctx()
	wch := e.cli.Watch(ctx, "k", clientv3.WithRev(3))
	var got []string
	for len(got) < 3 {
		r := recv(t, wch)
		for _, ev := range r.Events {
			got = append(got, evs([]*clientv3.Event{ev}))
		}
	}
	e.put("k", "live")
	r := recv(t, wch)
	got = append(got, evs(r.Events))
	if want := "[PUT k@3=2 PUT k@4=3 PUT k@5=4 PUT k@6=live]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

func TestWatchServerPrevKVAndFilters(t *testing.T) {
	e := newWatchEnv(t, WatchOptions{})
	ctx := e.ctx()
	prev := e.watchCreated(ctx, "k", clientv3.WithPrevKV())
	noPut := e.watchCreated(ctx, "k", clientv3.WithFilterPut())
	noDel := e.watchCreated(ctx, "k", clientv3.WithFilterDelete())
	e.put("k", "1")
	e.put("k", "2")
	e.del("k")
	var got []string
	for len(got) < 3 {
		got = append(got, evs(recv(t, prev).Events))
	}
	if want := "[PUT k@1=1 PUT k@2=2 (prev 1) DELETE k@3 (prev 2)]"; fmt.Sprint(got) != want {
		t.Fatalf("prev_kv: %v", got)
	}
	if r := recv(t, noPut); evs(r.Events) != "DELETE k@3" {
		t.Fatalf("NOPUT: %s", evs(r.Events))
	}
	if r := recv(t, noDel); evs(r.Events) != "PUT k@1=1" {
		t.Fatalf("NODELETE: %s", evs(r.Events))
	}
	if r := recv(t, noDel); evs(r.Events) != "PUT k@2=2" {
		t.Fatalf("NODELETE: %s", evs(r.Events))
	}
}

func TestWatchServerCompacted(t *testing.T) {
	e := newWatchEnv(t, WatchOptions{})
	for i := range 6 {
		e.put("k", fmt.Sprint(i))
	}
	e.store.Compact(5)
	ctx := e.ctx()
	wch := e.cli.Watch(ctx, "k", clientv3.WithRev(2))
	r := recv(t, wch)
	if r.CompactRevision != 5 || !r.Canceled || r.Err() != rpctypes.ErrCompacted {
		t.Fatalf("compacted watch: %+v err %v", r, r.Err())
	}
	select {
	case _, ok := <-wch:
		if ok {
			t.Fatal("watch channel still open after compaction")
		}
	case <-time.After(watchTestWait):
		t.Fatal("watch channel not closed after compaction")
	}
}

func TestWatchServerProgressNotify(t *testing.T) {
	e := newWatchEnv(t, WatchOptions{})
	e.put("other", "x")
	ctx := e.ctx()
	wch := e.watchCreated(ctx, "k", clientv3.WithProgressNotify())
	e.tick(0)
	if r := recv(t, wch); !r.IsProgressNotify() || r.Header.Revision != 1 {
		t.Fatalf("want progress at 1, got %+v", r)
	}
	e.put("k", "1")
	if r := recv(t, wch); evs(r.Events) != "PUT k@2=1" {
		t.Fatalf("event: %s", evs(r.Events))
	}
	e.tick(0) // an event went out since the last tick: no progress
	e.tick(0)
	if r := recv(t, wch); !r.IsProgressNotify() || r.Header.Revision != 2 {
		t.Fatalf("want progress at 2, got %+v", r)
	}
	e.put("k", "2")
	if r := recv(t, wch); evs(r.Events) != "PUT k@3=2" {
		t.Fatalf("want the event next (no second progress), got %+v", r)
	}
}

func TestWatchServerRequestProgress(t *testing.T) {
	e := newWatchEnv(t, WatchOptions{})
	e.put("x", "1")
	ctx := e.ctx()
	a := e.watchCreated(ctx, "a")
	b := e.watchCreated(ctx, "b")
	e.put("x", "2")
	if err := e.cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	for _, wch := range []clientv3.WatchChan{a, b} {
		if r := recv(t, wch); !r.IsProgressNotify() || r.Header.Revision != 2 {
			t.Fatalf("want progress at 2 on both watchers, got %+v", r)
		}
	}
}

func TestWatchServerFragment(t *testing.T) {
	// The limit is 1 byte + etcd's 512 KiB overhead; four 200 KiB values in
	// one revision make an 800 KiB response.
	e := newWatchEnv(t, WatchOptions{MaxRequestBytes: 1})
	big := strings.Repeat("v", 200*1024)
	ctx := e.ctx()
	frag := e.watchCreated(ctx, "f", clientv3.WithPrefix(), clientv3.WithFragment())

	raw := e.raw(ctx)
	raw.create(&pb.WatchCreateRequest{Key: []byte("f"), RangeEnd: []byte("g"), Fragment: true})
	raw.create(&pb.WatchCreateRequest{Key: []byte("f"), RangeEnd: []byte("g")})
	raw.next(2)

	var ops []watchtest.Op
	for i := range 4 {
		ops = append(ops, watchtest.Op{Key: fmt.Sprintf("f%d", i), Value: big})
	}
	rev, events := e.store.Txn(ops...)
	e.hub.Notify(rev, events)

	if r := recv(t, frag); len(r.Events) != 4 {
		t.Fatalf("client reassembled %d events, want 4", len(r.Events))
	}
	got := raw.next(3)
	byID := map[int64][]*pb.WatchResponse{}
	for _, r := range got {
		byID[r.WatchId] = append(byID[r.WatchId], r)
	}
	parts := byID[0]
	if len(parts) != 2 || !parts[0].Fragment || parts[1].Fragment || len(parts[0].Events) != 2 || len(parts[1].Events) != 2 {
		t.Fatalf("fragments: %s", rawDump(parts))
	}
	for _, p := range parts {
		if proto.Size(p) > 512*1024+1 || p.Header.Revision != rev || p.WatchId != 0 {
			t.Fatalf("fragment of %d bytes: %s", proto.Size(p), rawDump(parts))
		}
	}
	if whole := byID[1]; len(whole) != 1 || whole[0].Fragment || len(whole[0].Events) != 4 {
		t.Fatalf("unfragmented watcher: %s", rawDump(whole))
	}
}

func TestSendWatchFragmentsMatchesSizes(t *testing.T) {
	var events []*mvccpb.Event
	for i := range 50 {
		events = append(events, &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte(fmt.Sprint(i)), Value: []byte(strings.Repeat("x", i*7)), ModRevision: 9}})
	}
	wr := &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 9}, WatchId: 3, Events: events}
	for _, limit := range []int{1, 100, 500, 1000, 5000, 1 << 20} {
		var parts []*pb.WatchResponse
		if err := sendWatchFragments(wr, limit, func(p *pb.WatchResponse) error {
			parts = append(parts, p)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		n := 0
		for i, p := range parts {
			n += len(p.Events)
			last := i == len(parts)-1
			if p.Fragment == last && len(parts) > 1 {
				t.Fatalf("limit %d: fragment flag of part %d", limit, i)
			}
			// Each part is under the limit unless it holds one event;
			// adding the next event would have reached it.
			if len(p.Events) > 1 && proto.Size(withFragment(p)) >= limit {
				t.Fatalf("limit %d: part %d has %d bytes", limit, i, proto.Size(p))
			}
			if !last {
				grown := withFragment(p)
				grown.Events = append(append([]*mvccpb.Event(nil), p.Events...), parts[i+1].Events[0])
				if proto.Size(grown) < limit {
					t.Fatalf("limit %d: part %d could have taken one more event", limit, i)
				}
			}
		}
		if n != len(events) {
			t.Fatalf("limit %d: %d events sent", limit, n)
		}
	}
}

func withFragment(p *pb.WatchResponse) *pb.WatchResponse {
	c := proto.Clone(p).(*pb.WatchResponse)
	c.Fragment = true
	return c
}

// rawStream is a Watch stream spoken by hand.
type rawStream struct {
	t    *testing.T
	c    pb.Watch_WatchClient
	resp chan *pb.WatchResponse
	errc chan error
}

func (e *watchEnv) raw(ctx context.Context) *rawStream {
	e.t.Helper()
	c, err := pb.NewWatchClient(e.conn).Watch(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	s := &rawStream{t: e.t, c: c, resp: make(chan *pb.WatchResponse, 1000), errc: make(chan error, 1)}
	go func() {
		for {
			r, err := c.Recv()
			if err != nil {
				s.errc <- err
				return
			}
			s.resp <- r
		}
	}()
	return s
}

func (s *rawStream) send(r *pb.WatchRequest) {
	s.t.Helper()
	if err := s.c.Send(r); err != nil {
		s.t.Fatal(err)
	}
}

func (s *rawStream) create(c *pb.WatchCreateRequest) {
	s.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}})
}

func (s *rawStream) cancel(id int64) {
	s.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}})
}

func (s *rawStream) progress() {
	s.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
}

func (s *rawStream) next(n int) []*pb.WatchResponse {
	s.t.Helper()
	var out []*pb.WatchResponse
	for len(out) < n {
		select {
		case r := <-s.resp:
			out = append(out, r)
		case err := <-s.errc:
			s.t.Fatalf("stream failed after %s: %v", rawDump(out), err)
		case <-time.After(watchTestWait):
			s.t.Fatalf("timed out after %s", rawDump(out))
		}
	}
	return out
}

func rawDump(rs []*pb.WatchResponse) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "\n  id=%d rev=%d created=%v canceled=%v compact=%d reason=%q fragment=%v events=%d",
			r.WatchId, r.Header.GetRevision(), r.Created, r.Canceled, r.CompactRevision, r.CancelReason, r.Fragment, len(r.Events))
	}
	return b.String()
}

type wantResp struct {
	id, rev, compact  int64
	created, canceled bool
	reason            string
	events            int
}

func checkResp(t *testing.T, r *pb.WatchResponse, w wantResp) {
	t.Helper()
	if r.WatchId != w.id || r.Header.GetRevision() != w.rev || r.CompactRevision != w.compact ||
		r.Created != w.created || r.Canceled != w.canceled || r.CancelReason != w.reason || len(r.Events) != w.events {
		t.Fatalf("got %s\nwant %+v", rawDump([]*pb.WatchResponse{r}), w)
	}
}

// TestWatchServerProtocol checks the responses etcd 3.7 gives on the wire
// for client-chosen ids, refusals, cancels, compacted and future start
// revisions, and progress requests.
func TestWatchServerProtocol(t *testing.T) {
	e := newWatchEnv(t, WatchOptions{})
	for i := range 6 {
		e.put("a", fmt.Sprint(i))
	}
	e.store.Compact(5)
	s := e.raw(e.ctx())

	s.progress() // no watchers yet: no answer
	s.create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: -1})
	s.create(&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")})
	s.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 7})
	s.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 7})
	s.create(&pb.WatchCreateRequest{Key: []byte("a")}) // auto id 0
	s.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 1})
	s.create(&pb.WatchCreateRequest{Key: []byte("a")}) // auto id skips 1
	got := s.next(7)
	checkResp(t, got[0], wantResp{id: -1, rev: 6, created: true, canceled: true, reason: rpctypes.ErrCompacted.Error()})
	checkResp(t, got[1], wantResp{id: -1, rev: 6, created: true, canceled: true, reason: "mvcc: watcher range is empty"})
	checkResp(t, got[2], wantResp{id: 7, rev: 6, created: true})
	checkResp(t, got[3], wantResp{id: -1, rev: 6, created: true, canceled: true, reason: "mvcc: duplicate watch ID provided on the WatchStream"})
	checkResp(t, got[4], wantResp{id: 0, rev: 6, created: true})
	checkResp(t, got[5], wantResp{id: 1, rev: 6, created: true})
	checkResp(t, got[6], wantResp{id: 2, rev: 6, created: true})

	// Compacted starts: below the compaction revision etcd names it; at
	// it, the events from the compaction revision on are served.
	s.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 20, StartRevision: 3})
	got = s.next(2)
	checkResp(t, got[0], wantResp{id: 20, rev: 6, created: true})
	checkResp(t, got[1], wantResp{id: 20, rev: 0, compact: 5, canceled: true})
	s.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 21, StartRevision: 5})
	got = s.next(2)
	checkResp(t, got[0], wantResp{id: 21, rev: 6, created: true})
	checkResp(t, got[1], wantResp{id: 21, rev: 6, events: 2}) // revisions 5 and 6
	// The client's cancel of a compacted watcher is answered.
	s.cancel(20)
	checkResp(t, s.next(1)[0], wantResp{id: 20, rev: 6, canceled: true})
	// Unknown ids get silence; the next answer is the following request's.
	s.cancel(55)
	s.cancel(21) // a live watcher: its cancel is answered too
	checkResp(t, s.next(1)[0], wantResp{id: 21, rev: 6, canceled: true})

	// A future start revision: created now, events from that revision on.
	s.create(&pb.WatchCreateRequest{Key: []byte("f"), WatchId: 30, StartRevision: 9})
	checkResp(t, s.next(1)[0], wantResp{id: 30, rev: 6, created: true})
	for _, v := range []string{"7", "8", "9"} {
		e.put("f", v)
	}
	// Events of 7..9 for the watchers on "a" do not exist; on "f" only 9.
	r := s.next(1)[0]
	checkResp(t, r, wantResp{id: 30, rev: 9, events: 1})
	if r.Events[0].Kv.ModRevision != 9 {
		t.Fatalf("future watcher got revision %d", r.Events[0].Kv.ModRevision)
	}

	// Progress: all synced, so answered at once with id -1.
	s.progress()
	checkResp(t, s.next(1)[0], wantResp{id: -1, rev: 9})

	// Cancel, then no more events for it.
	s.cancel(30)
	checkResp(t, s.next(1)[0], wantResp{id: 30, rev: 9, canceled: true})
	e.put("f", "10")
	e.put("a", "11")
	got = s.next(4) // the four watchers on "a": 7, 0, 1, 2
	for _, r := range got {
		if len(r.Events) != 1 || string(r.Events[0].Kv.Key) != "a" {
			t.Fatalf("after cancel: %s", rawDump(got))
		}
	}
}

func TestWatchServerHalfClose(t *testing.T) {
	e := newWatchEnv(t, WatchOptions{})
	s := e.raw(e.ctx())
	s.create(&pb.WatchCreateRequest{Key: []byte("k")})
	s.next(1)
	if err := s.c.CloseSend(); err != nil {
		t.Fatal(err)
	}
	e.put("k", "v")
	checkResp(t, s.next(1)[0], wantResp{id: 0, rev: 1, events: 1})
}

// TestWatchServerSlowClient: a client that stops reading does not hold up
// Notify or another client, and gets every event in order once it reads.
func TestWatchServerSlowClient(t *testing.T) {
	e := newWatchEnv(t, WatchOptions{})
	ctx := e.ctx()
	// Fixed small windows (no BDP growth): gRPC itself buffers little for
	// the client that does not read.
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	slow, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l")}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := slow.Recv(); err != nil || !r.Created {
		t.Fatalf("created: %v %v", r, err)
	}
	fast := e.watchCreated(ctx, "k", clientv3.WithPrefix())

	// About 8 MB of events: far more than gRPC's windows and the hub's
	// stream queue hold for a client that reads nothing.
	const n = 2000
	value := strings.Repeat("v", 4096)
	fastDone := make(chan error, 1)
	go func() {
		next := int64(1)
		for next <= n {
			r, ok := <-fast
			if !ok {
				fastDone <- fmt.Errorf("fast watch closed at %d", next)
				return
			}
			for _, ev := range r.Events {
				if ev.Kv.ModRevision != next {
					fastDone <- fmt.Errorf("fast watch: revision %d, want %d", ev.Kv.ModRevision, next)
					return
				}
				next++
			}
		}
		fastDone <- nil
	}()
	for i := range n {
		e.put(fmt.Sprintf("k%05d", i), value)
	}
	select {
	case err := <-fastDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(watchTestWait):
		t.Fatal("fast watcher held up by the slow one")
	}
	next := int64(1)
	for next <= n {
		r, err := slow.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range r.Events {
			if ev.Kv.ModRevision != next {
				t.Fatalf("slow watch: revision %d, want %d", ev.Kv.ModRevision, next)
			}
			next++
		}
	}
}

// TestWatchServerStreamEnds: when clients go away, every handler returns and
// no goroutine of the service is left.
func TestWatchServerStreamEnds(t *testing.T) {
	e := newWatchEnv(t, WatchOptions{})
	e.put("k", "1")
	for range 3 {
		cli := e.newClient()
		ctx, cancel := context.WithCancel(context.Background())
		wch := cli.Watch(ctx, "k", clientv3.WithCreatedNotify(), clientv3.WithRev(1))
		recv(t, wch)
		cli.Watch(ctx, "j", clientv3.WithCreatedNotify())
		cancel()
		cli.Close()
	}
	s := e.raw(e.ctx())
	s.create(&pb.WatchCreateRequest{Key: []byte("k")})
	s.next(1)
	e.conn.Close()
	e.waitFor("handlers to return", func() bool { return e.active.Load() == 0 })
	e.waitFor("service goroutines to end", func() bool {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(stacks, "receiveWatchRequests") && !strings.Contains(stacks, "(*watchServer).Watch")
	})
}
