package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// sendSeq sends messages from..to with sequence numbers [first, first+n).
func sendSeq(a *member, to uint64, first, n int) {
	for i := first; i < first+n; i++ {
		a.tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, a.id, to, uint64(i))})
	}
}

func TestPeerRestartReconnects(t *testing.T) {
	a := startMember(t, 1, "127.0.0.1:0")
	b := startMember(t, 2, "127.0.0.1:0")
	connect(t, a, b)
	sendSeq(a, 2, 1, 100)
	waitFor(t, 10*time.Second, "first 100 messages", func() bool { return b.rec.received(1) == 100 })

	addr := b.ln.Addr().String()
	b.stop()
	st := waitInactive(t, a, 2)
	t.Logf("stream to the stopped peer ended: %v", st.Err)
	before := a.rec.unreachableCount(2)
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1000)})
	waitFor(t, 10*time.Second, "unreachable report for a message to a stopped peer", func() bool {
		return a.rec.unreachableCount(2) > before
	})

	// The same member comes back on the same address, with a new
	// transport and no memory of the old stream.
	b2 := startMember(t, 2, addr)
	if err := b2.tr.AddPeer(1, []string{a.url}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, a, 2)
	waitActive(t, b2, 1)
	exchange(t, 1000, a, b2)
	if n := metricValue(a.tr.met.disconnectedPeers.WithLabelValues("1", "2")); n < 1 {
		t.Fatalf("etcd_network_disconnected_peers_total = %v, want >= 1", n)
	}
}

func TestUpdatePeerMovesTheStream(t *testing.T) {
	a := startMember(t, 1, "127.0.0.1:0")
	b := startMember(t, 2, "127.0.0.1:0")
	connect(t, a, b)
	b.stop()
	waitInactive(t, a, 2)

	b2 := startMember(t, 2, "127.0.0.1:0")
	if err := a.tr.UpdatePeer(2, []string{b2.url}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, a, 2)
	if st, _ := a.tr.Status(2); st.URL != b2.url {
		t.Fatalf("stream to %s, want %s", st.URL, b2.url)
	}
	sendSeq(a, 2, 1, 500)
	waitFor(t, 10*time.Second, "500 messages at the new URL", func() bool { return b2.rec.received(1) == 500 })
	checkInOrder(t, b2.rec.messages(1), false)

	if err := a.tr.UpdatePeer(9, []string{b2.url}); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("UpdatePeer of an unknown member: %v", err)
	}
	if err := a.tr.AddPeer(2, []string{b2.url}); !errors.Is(err, ErrPeerExists) {
		t.Fatalf("AddPeer twice: %v", err)
	}
	if err := a.tr.AddPeer(3, []string{"unix:///x"}); err == nil {
		t.Fatal("AddPeer accepted a non-http URL")
	}
}

// refusals records what OnRefused was told.
type refusals struct {
	mu   sync.Mutex
	errs []error
}

func (r *refusals) add(_ uint64, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *refusals) has(target error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, err := range r.errs {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func withOnRefused(r *refusals) memberOpt {
	return withConfig(func(c *Config) { c.OnRefused = r.add })
}

func TestOtherClusterIsRefused(t *testing.T) {
	var ref refusals
	a := startMember(t, 1, "127.0.0.1:0", withOnRefused(&ref))
	b := startMember(t, 2, "127.0.0.1:0", withCluster(0xbad))
	if err := a.tr.AddPeer(2, []string{b.url}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a refusal", func() bool { return ref.has(ErrClusterMismatch) })
	st, _ := a.tr.Status(2)
	if st.Active || !errors.Is(st.Err, ErrClusterMismatch) {
		t.Fatalf("status after refusal: %+v", st)
	}
	if !strings.Contains(st.Err.Error(), "cluster bad") {
		t.Fatalf("the error does not say which cluster: %v", st.Err)
	}
	if n := len(b.logs.FilterMessage("refused a peer request").FilterField(zap.String("reason", refusedCluster)).All()); n == 0 {
		t.Fatal("the refusing member logged nothing")
	}
	if n := len(a.logs.FilterMessage("peer refused this member").All()); n == 0 {
		t.Fatal("the refused member logged nothing")
	}
	sendSeq(a, 2, 1, 10)
	if b.rec.received(1) != 0 {
		t.Fatal("messages from another cluster were processed")
	}
}

func TestRemovedMemberIsRefused(t *testing.T) {
	var ref refusals
	a := startMember(t, 1, "127.0.0.1:0", withOnRefused(&ref))
	b := startMember(t, 2, "127.0.0.1:0")
	connect(t, a, b)
	b.tr.RemovePeer(1)
	waitFor(t, 10*time.Second, "a removed-member refusal", func() bool { return ref.has(ErrMemberRemoved) })
	if _, ok := b.tr.Status(1); ok {
		t.Fatal("removed member is still a peer")
	}
	if err := b.tr.AddPeer(1, []string{a.url}); !errors.Is(err, ErrMemberRemoved) {
		t.Fatalf("AddPeer of a removed member: %v", err)
	}
	n := b.rec.received(1)
	sendSeq(a, 2, 1, 10)
	if b.rec.received(1) != n {
		t.Fatal("messages from a removed member were processed")
	}
}

func TestWrongMemberIsRefused(t *testing.T) {
	var ref refusals
	a := startMember(t, 1, "127.0.0.1:0", withOnRefused(&ref))
	b := startMember(t, 2, "127.0.0.1:0")
	// a believes member 3 listens where member 2 does.
	if err := a.tr.AddPeer(3, []string{b.url}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a wrong-member refusal", func() bool { return ref.has(ErrWrongMember) })
}

func TestMalformedRequestsAreRefused(t *testing.T) {
	b := startMember(t, 2, "127.0.0.1:0")
	for _, tc := range []struct {
		name    string
		method  string
		headers map[string]string
		status  int
		code    string
	}{
		{"get", http.MethodGet, nil, http.StatusMethodNotAllowed, ""},
		{"no headers", http.MethodPost, nil, http.StatusBadRequest, refusedBadRequest},
		{"other protocol", http.MethodPost, map[string]string{HeaderProtocol: "9", HeaderClusterID: "c1", HeaderFrom: "1", HeaderTo: "2"}, http.StatusBadRequest, refusedBadRequest},
		{"bad id", http.MethodPost, map[string]string{HeaderProtocol: "1", HeaderClusterID: "c1", HeaderFrom: "zz", HeaderTo: "2"}, http.StatusBadRequest, refusedBadRequest},
		{"other cluster", http.MethodPost, map[string]string{HeaderProtocol: "1", HeaderClusterID: "c2", HeaderFrom: "1", HeaderTo: "2"}, http.StatusPreconditionFailed, refusedCluster},
		{"other member", http.MethodPost, map[string]string{HeaderProtocol: "1", HeaderClusterID: "c1", HeaderFrom: "1", HeaderTo: "7"}, http.StatusPreconditionFailed, refusedWrongMember},
	} {
		for _, path := range []string{StreamPath, SnapshotPath} {
			req, _ := http.NewRequest(tc.method, b.url+path, strings.NewReader("x"))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get(HeaderRefused) != tc.code {
				t.Errorf("%s %s: %d %q %q, want %d %q", tc.name, path, resp.StatusCode, resp.Header.Get(HeaderRefused), body, tc.status, tc.code)
			}
		}
	}
}

// rawStream opens a message stream to m by hand over HTTP/1.1 as member
// from, and returns the connection once m accepted it.
func rawStream(t *testing.T, m *member, from uint64) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", m.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n%s: 1\r\n%s: %x\r\n%s: %x\r\n%s: %x\r\n\r\n",
		StreamPath, HeaderProtocol, HeaderClusterID, uint64(testCluster), HeaderFrom, from, HeaderTo, m.id)
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream refused: %s", resp.Status)
	}
	return c, br
}

func writeChunk(c net.Conn, b []byte) error {
	_, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(b), b)
	return err
}

// waitClosed reads until the server closes the connection; a timeout is
// a failure.
func waitClosed(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, br)
	if isTimeout(err) {
		t.Fatal("the server kept the connection open")
	}
}

func TestGarbageClosesTheStream(t *testing.T) {
	b := startMember(t, 2, "127.0.0.1:0", withConfig(func(c *Config) { c.MaxFrameBytes = 1 << 20 }))
	good, _ := appendMsgFrame(nil, msg(raftpb.MsgHeartbeat, 1, 2, 1))
	forged, _ := appendMsgFrame(nil, msg(raftpb.MsgHeartbeat, 9, 2, 1))
	misrouted, _ := appendMsgFrame(nil, msg(raftpb.MsgHeartbeat, 1, 5, 1))
	snap, _ := appendMsgFrame(nil, msg(raftpb.MsgSnap, 1, 2, 1))
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"unknown kind", []byte{9, 0, 0, 0, 0}},
		{"length above the limit", []byte{frameMsg, 0xff, 0xff, 0xff, 0xff}},
		{"empty message", []byte{frameMsg, 0, 0, 0, 0}},
		{"ping with a payload", []byte{framePing, 0, 0, 0, 1, 0}},
		{"pong from the sender", []byte{framePong, 0, 0, 0, 0}},
		{"undecodable protobuf", []byte{frameMsg, 0, 0, 0, 3, 0x0f, 0x01, 0x02}},
		{"message from another member", forged},
		{"message for another member", misrouted},
		{"MsgSnap on the stream", snap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := rawStream(t, b, 1)
			// One good message first: the stream works until the garbage.
			if err := writeChunk(c, good); err != nil {
				t.Fatal(err)
			}
			if err := writeChunk(c, tc.frame); err != nil {
				t.Fatal(err)
			}
			waitClosed(t, c, br)
		})
	}
	if got := b.rec.received(1); got != 9 {
		t.Fatalf("processed %d messages, want the 9 good ones", got)
	}
	if got := b.rec.received(9); got != 0 {
		t.Fatalf("processed %d forged messages", got)
	}
	if n := metricValue(b.tr.met.recvFailures.WithLabelValues("1")); n != 9 {
		t.Fatalf("etcd_network_peer_received_failures_total = %v, want 9", n)
	}

	// The member still talks to well-behaved peers.
	a := startMember(t, 1, "127.0.0.1:0")
	connect(t, a, b)
	sendSeq(a, 2, 100, 10)
	waitFor(t, 10*time.Second, "messages after the garbage", func() bool { return b.rec.received(1) == 19 })
}

func TestClaimedLengthIsNotAllocated(t *testing.T) {
	const limit = 256 << 20
	b := startMember(t, 2, "127.0.0.1:0", withConfig(func(c *Config) { c.MaxFrameBytes = limit }))
	c, br := rawStream(t, b, 1)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// Claim a 250 MB message, send 100 KB of it, and hang up.
	if err := writeChunk(c, []byte{frameMsg, 0x0f, 0xa0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := writeChunk(c, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	waitClosed(t, c, br)
	waitFor(t, 10*time.Second, "the stream handler to end", func() bool {
		b.tr.mu.RLock()
		defer b.tr.mu.RUnlock()
		return len(b.tr.incoming) == 0
	})
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Fatalf("allocated %d MB for a frame that brought 100 KB", grew>>20)
	}
	if b.rec.received(1) != 0 {
		t.Fatal("a truncated message was processed")
	}
}

func TestQueueFullDropsAndReportsUnreachable(t *testing.T) {
	a := startMember(t, 1, "127.0.0.1:0", withConfig(func(c *Config) { c.QueueSize = 8 }))
	b := startMember(t, 2, "127.0.0.1:0")
	connect(t, a, b)
	// b's Raft node stops taking messages: b stops reading the stream,
	// the connection fills, a's writer blocks, and a's queue fills.
	gate := make(chan struct{})
	b.rec.mu.Lock()
	b.rec.gate = gate
	b.rec.mu.Unlock()

	big := make([]byte, 256<<10)
	seq := 0
	deadline := time.Now().Add(20 * time.Second)
	for a.rec.unreachableCount(2) == 0 {
		if seq > 20000 || time.Now().After(deadline) {
			t.Fatalf("no unreachable report after %d messages", seq)
		}
		batch := make([]*raftpb.Message, 8)
		for i := range batch {
			seq++
			m := msg(raftpb.MsgApp, 1, 2, uint64(seq))
			m.Entries = []*raftpb.Entry{{Index: proto.Uint64(uint64(seq)), Data: big}}
			batch[i] = m
		}
		a.tr.Send(batch) // must return although nothing moves
		if seq%64 == 0 {
			runtime.Gosched()
		}
	}
	if n := metricValue(a.tr.met.sentFailures.WithLabelValues("2")); n == 0 {
		t.Fatal("etcd_network_peer_sent_failures_total not counted")
	}
	if st, _ := a.tr.Status(2); !st.Active {
		t.Fatalf("a full queue must not end the stream: %+v", st)
	}
	close(gate)
	// What was queued still arrives, in order; the rest was dropped.
	waitFor(t, 20*time.Second, "the queue to drain", func() bool {
		a.tr.mu.RLock()
		defer a.tr.mu.RUnlock()
		return len(a.tr.peers[2].queue) == 0
	})
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, uint64(seq+1))})
	waitFor(t, 20*time.Second, "the last message", func() bool {
		ms := b.rec.messages(1)
		return len(ms) > 0 && ms[len(ms)-1].GetIndex() == uint64(seq+1)
	})
	got := b.rec.messages(1)
	checkInOrder(t, got, true)
	if len(got) > seq {
		t.Fatalf("received %d of %d", len(got), seq+1)
	}
	t.Logf("sent %d messages, %d arrived", seq+1, len(got))
}

func TestUnreachablePeerDropsAndReports(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	a := startMember(t, 1, "127.0.0.1:0")
	if err := a.tr.AddPeer(2, []string{dead}); err != nil {
		t.Fatal(err)
	}
	waitInactive(t, a, 2)
	before := a.rec.unreachableCount(2)
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1)})
	waitFor(t, 10*time.Second, "unreachable report", func() bool { return a.rec.unreachableCount(2) > before })

	// A member that is not a peer at all.
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 7, 1), msg(raftpb.MsgSnap, 1, 7, 1)})
	waitFor(t, 10*time.Second, "unreachable and snapshot reports for an unknown member", func() bool {
		rs := a.rec.snapshotReports()
		return a.rec.unreachableCount(7) >= 1 && len(rs) == 1 && rs[0] == snapReport{7, true}
	})
}

func TestRemovePeerAndCloseEndStreams(t *testing.T) {
	a := startMember(t, 1, "127.0.0.1:0")
	b := startMember(t, 2, "127.0.0.1:0")
	c := startMember(t, 3, "127.0.0.1:0")
	connect(t, a, b, c)
	a.tr.RemovePeer(2)
	if got := a.tr.Peers(); len(got) != 1 || got[0] != 3 {
		t.Fatalf("peers after removal: %v", got)
	}
	waitInactive(t, b, 1)
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)}) // to a removed member: dropped
	sendSeq(a, 3, 1, 10)
	waitFor(t, 10*time.Second, "messages to the remaining peer", func() bool { return c.rec.received(1) == 10 })
	a.tr.Close()
	waitInactive(t, c, 1)
	a.tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 3, 11)}) // after Close: nothing
	if err := a.tr.AddPeer(4, []string{c.url}); !errors.Is(err, ErrStopped) {
		t.Fatalf("AddPeer after Close: %v", err)
	}
}

// TestCloseLeavesNoGoroutines runs streams, a snapshot and a refused
// peer, closes everything, and waits for the goroutine count to fall back.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		src := func(*raftpb.Message) (io.ReadCloser, int64, error) { return testData(1, 1<<20), 1 << 20, nil }
		sink := func(_ context.Context, _ *raftpb.Message, d io.Reader, _ int64) error {
			_, err := io.Copy(io.Discard, d)
			return err
		}
		a := startMember(t, 1, "127.0.0.1:0", withSource(src))
		b := startMember(t, 2, "127.0.0.1:0", withSink(sink))
		c := startMember(t, 3, "127.0.0.1:0", withCluster(0xbad))
		connect(t, a, b)
		if err := a.tr.AddPeer(3, []string{c.url}); err != nil {
			t.Fatal(err)
		}
		sendSeq(a, 2, 1, 100)
		a.tr.Send([]*raftpb.Message{snapMsg(1, 2, 3)})
		waitSnapshotReport(t, a, snapReport{2, false})
		waitInactive(t, a, 3)
		for _, m := range []*member{a, b, c} {
			m.stop()
		}
	}()
	waitFor(t, 10*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}
