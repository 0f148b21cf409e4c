package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func snapMsg(from, to, index uint64) *raftpb.Message {
	m := msg(raftpb.MsgSnap, from, to, 0)
	m.Snapshot = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		Index: proto.Uint64(index), Term: proto.Uint64(1),
		ConfState: &raftpb.ConfState{Voters: []uint64{from, to}},
	}}
	return m
}

// testData is size deterministic pseudo-random bytes.
func testData(seed byte, size int64) io.ReadCloser {
	return io.NopCloser(io.LimitReader(rand.NewChaCha8([32]byte{seed}), size))
}

func withSource(src SnapshotSource) memberOpt {
	return withConfig(func(c *Config) { c.SnapshotSource = src })
}

func withSink(sink SnapshotSink) memberOpt {
	return withConfig(func(c *Config) { c.SnapshotSink = sink })
}

func waitSnapshotReport(t *testing.T, m *member, want snapReport) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("snapshot report %+v", want), func() bool {
		return len(m.rec.snapshotReports()) > 0
	})
	if got := m.rec.snapshotReports(); len(got) != 1 || got[0] != want {
		t.Fatalf("snapshot reports %+v, want [%+v]", got, want)
	}
}

// TestSnapshotDoesNotDelayHeartbeats streams a 50 MB snapshot that the
// receiver holds still at four points. At each point the sender sends 50
// heartbeats, and they must all be processed before the receiver lets the
// transfer go on: a transport that queued heartbeats behind the snapshot
// would never deliver them and the test would time out. No timing is
// measured.
func TestSnapshotDoesNotDelayHeartbeats(t *testing.T) {
	for _, p := range []string{"http1", "h2c"} {
		t.Run(p, func(t *testing.T) { testSnapshotWithHeartbeats(t, p == "h2c") })
	}
}

func testSnapshotWithHeartbeats(t *testing.T, h2c bool) {
	const size = 50 << 20
	checkpoints := []int64{1 << 20, 10 << 20, 25 << 20, 40 << 20}
	const beats = 50
	at := make(chan int)
	release := make(chan struct{})
	var sum []byte
	var sinkSize int64

	src := func(m *raftpb.Message) (io.ReadCloser, int64, error) {
		if m.GetSnapshot().GetMetadata().GetIndex() != 100 {
			return nil, 0, fmt.Errorf("source asked for snapshot %d", m.GetSnapshot().GetMetadata().GetIndex())
		}
		return testData(7, size), size, nil
	}
	sink := func(ctx context.Context, m *raftpb.Message, data io.Reader, n int64) error {
		sinkSize = n
		h := sha256.New()
		buf := make([]byte, 256<<10)
		var got int64
		next := 0
		for {
			k, err := data.Read(buf)
			h.Write(buf[:k])
			got += int64(k)
			for next < len(checkpoints) && got >= checkpoints[next] {
				select {
				case at <- next:
				case <-ctx.Done():
					return ctx.Err()
				}
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				next++
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		sum = h.Sum(nil)
		return nil
	}
	aOpts := []memberOpt{withSource(src)}
	bOpts := []memberOpt{withSink(sink)}
	if h2c {
		aOpts = append(aOpts, withH2C())
		bOpts = append(bOpts, withH2C())
	}
	a := startMember(t, 1, "127.0.0.1:0", aOpts...)
	b := startMember(t, 2, "127.0.0.1:0", bOpts...)
	connect(t, a, b)

	a.tr.Send([]*raftpb.Message{snapMsg(1, 2, 100)})
	seq := uint64(0)
	for i := range checkpoints {
		select {
		case got := <-at:
			if got != i {
				t.Fatalf("checkpoint %d, want %d", got, i)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("the transfer did not reach %d bytes", checkpoints[i])
		}
		// The transfer is held mid-way by the receiver.
		if r := a.rec.snapshotReports(); len(r) != 0 {
			t.Fatalf("snapshot reported done while the receiver holds it: %+v", r)
		}
		before := b.rec.typeCount(raftpb.MsgHeartbeat)
		for k := 0; k < beats; k++ {
			seq++
			a.tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, seq)})
		}
		waitFor(t, 30*time.Second, fmt.Sprintf("%d heartbeats at checkpoint %d", beats, i), func() bool {
			return b.rec.typeCount(raftpb.MsgHeartbeat) == before+beats
		})
		release <- struct{}{}
	}
	waitSnapshotReport(t, a, snapReport{2, false})
	wantProto := "HTTP/1.1"
	if h2c {
		wantProto = "HTTP/2.0"
	}
	if !b.served(SnapshotPath, wantProto) || !b.served(StreamPath, wantProto) {
		t.Fatalf("requests did not use %s", wantProto)
	}

	// The receiver stored exactly the data, and Raft saw the MsgSnap only
	// after it was stored: after every heartbeat sent during the transfer.
	want := sha256.New()
	io.Copy(want, testData(7, size))
	if sinkSize != size || !bytes.Equal(sum, want.Sum(nil)) {
		t.Fatalf("sink got %d bytes with sha256 %x, want %d bytes %x", sinkSize, sum, size, want.Sum(nil))
	}
	got := b.rec.messages(1)
	if len(got) != int(seq)+1 {
		t.Fatalf("b processed %d messages, want %d heartbeats and a MsgSnap", len(got), seq)
	}
	last := got[len(got)-1]
	if last.GetType() != raftpb.MsgSnap || last.GetSnapshot().GetMetadata().GetIndex() != 100 {
		t.Fatalf("last message processed: %v", last)
	}
	checkInOrder(t, got[:seq], false)

	// Metrics, under etcd's names.
	for _, c := range []struct {
		m    *member
		name string
		min  float64
	}{
		{a, "etcd_network_peer_sent_bytes_total", size},
		{a, "etcd_network_peer_round_trip_time_seconds", 1},
		{a, "etcd_network_snapshot_send_success", 1},
		{a, "etcd_network_snapshot_send_total_duration_seconds", 1},
		{a, "etcd_network_active_peers", 1},
		{b, "etcd_network_peer_received_bytes_total", size},
		{b, "etcd_network_snapshot_receive_success", 1},
		{b, "etcd_network_snapshot_receive_total_duration_seconds", 1},
	} {
		if v := gathered(t, c.m, c.name); v < c.min {
			t.Errorf("member %x: %s = %v, want >= %v", c.m.id, c.name, v, c.min)
		}
	}
}

// gathered sums a metric family's values (histograms: sample counts) as
// registered on the member's registry.
func gathered(t *testing.T, m *member, name string) float64 {
	t.Helper()
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, mm := range f.GetMetric() {
			switch {
			case mm.Counter != nil:
				v += mm.GetCounter().GetValue()
			case mm.Gauge != nil:
				v += mm.GetGauge().GetValue()
			case mm.Histogram != nil:
				v += float64(mm.GetHistogram().GetSampleCount())
			}
		}
		return v
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestSnapshotFailuresAreReported(t *testing.T) {
	okSource := func(*raftpb.Message) (io.ReadCloser, int64, error) { return testData(1, 1<<20), 1 << 20, nil }
	store := func(_ context.Context, _ *raftpb.Message, data io.Reader, _ int64) error {
		_, err := io.Copy(io.Discard, data)
		return err
	}
	for _, tc := range []struct {
		name   string
		src    SnapshotSource
		sink   SnapshotSink
		failed bool
	}{
		{"stored", okSource, store, false},
		{"no data on either side", nil, nil, false},
		{"sink fails", okSource, func(context.Context, *raftpb.Message, io.Reader, int64) error {
			return errors.New("disk full")
		}, true},
		{"sink stops reading early", okSource, func(_ context.Context, _ *raftpb.Message, data io.Reader, _ int64) error {
			_, err := io.ReadFull(data, make([]byte, 10))
			return err
		}, true},
		{"source fails", func(*raftpb.Message) (io.ReadCloser, int64, error) {
			return nil, 0, errors.New("no checkpoint")
		}, store, true},
		{"source is short", func(*raftpb.Message) (io.ReadCloser, int64, error) {
			return testData(1, 1000), 5000, nil
		}, store, true},
		{"receiver has no sink", okSource, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startMember(t, 1, "127.0.0.1:0", withSource(tc.src))
			b := startMember(t, 2, "127.0.0.1:0", withSink(tc.sink))
			connect(t, a, b)
			a.tr.Send([]*raftpb.Message{snapMsg(1, 2, 5)})
			waitSnapshotReport(t, a, snapReport{2, tc.failed})
			processed := b.rec.typeCount(raftpb.MsgSnap)
			if tc.failed {
				if processed != 0 {
					t.Fatal("a failed snapshot reached raft")
				}
				if v := metricValue(a.tr.met.snapSendFailures.WithLabelValues("2")); v != 1 {
					t.Fatalf("etcd_network_snapshot_send_failures = %v", v)
				}
			} else if processed != 1 {
				t.Fatalf("MsgSnap processed %d times", processed)
			}
			// The message stream is unaffected.
			sendSeq(a, 2, 1, 5)
			waitFor(t, 10*time.Second, "messages after the snapshot", func() bool { return b.rec.typeCount(raftpb.MsgHeartbeat) == 5 })
		})
	}
}

func TestOneSnapshotAtATimePerPeer(t *testing.T) {
	hold := make(chan struct{})
	started := make(chan struct{}, 4)
	sink := func(ctx context.Context, _ *raftpb.Message, data io.Reader, _ int64) error {
		started <- struct{}{}
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
		_, err := io.Copy(io.Discard, data)
		return err
	}
	src := func(*raftpb.Message) (io.ReadCloser, int64, error) { return testData(1, 1000), 1000, nil }
	a := startMember(t, 1, "127.0.0.1:0", withSource(src))
	b := startMember(t, 2, "127.0.0.1:0", withSink(sink))
	connect(t, a, b)
	a.tr.Send([]*raftpb.Message{snapMsg(1, 2, 5)})
	<-started
	// One is in flight; one more may wait; a third is refused at once.
	a.tr.Send([]*raftpb.Message{snapMsg(1, 2, 6), snapMsg(1, 2, 7)})
	waitFor(t, 10*time.Second, "the refusal of the third snapshot", func() bool {
		r := a.rec.snapshotReports()
		return len(r) == 1 && r[0] == snapReport{2, true}
	})
	close(hold)
	waitFor(t, 30*time.Second, "both transfers", func() bool { return len(a.rec.snapshotReports()) == 3 })
	for _, r := range a.rec.snapshotReports()[1:] {
		if r.failed {
			t.Fatalf("reports %+v", a.rec.snapshotReports())
		}
	}
}

// TestSnapshotChecksumMismatch sends a snapshot by hand with a wrong
// CRC: the sink's reader fails instead of returning io.EOF, and Raft
// never sees the message.
func TestSnapshotChecksumMismatch(t *testing.T) {
	var mu sync.Mutex
	var sinkErr error
	sink := func(_ context.Context, _ *raftpb.Message, data io.Reader, _ int64) error {
		_, err := io.Copy(io.Discard, data)
		mu.Lock()
		sinkErr = err
		mu.Unlock()
		return err
	}
	b := startMember(t, 2, "127.0.0.1:0", withSink(sink))
	payload := []byte("state machine bytes")
	for _, tc := range []struct {
		name   string
		crc    uint32
		status int
		errIs  error
	}{
		{"bad checksum", crc32.Checksum(payload, castagnoli) + 1, http.StatusBadRequest, ErrSnapshotChecksum},
		{"good checksum", crc32.Checksum(payload, castagnoli), http.StatusNoContent, nil},
	} {
		body, _ := appendMsgFrame(nil, snapMsg(1, 2, 9))
		body = binary.BigEndian.AppendUint64(body, uint64(len(payload)))
		body = append(body, payload...)
		body = binary.BigEndian.AppendUint32(body, tc.crc)
		req, _ := http.NewRequest(http.MethodPost, b.url+SnapshotPath, bytes.NewReader(body))
		req.Header.Set(HeaderProtocol, ProtocolVersion)
		req.Header.Set(HeaderClusterID, idString(testCluster))
		req.Header.Set(HeaderFrom, "1")
		req.Header.Set(HeaderTo, "2")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		mu.Lock()
		gotErr := sinkErr
		mu.Unlock()
		if resp.StatusCode != tc.status || !errors.Is(gotErr, tc.errIs) || (tc.errIs == nil && gotErr != nil) {
			t.Fatalf("%s: %s %q, sink error %v", tc.name, resp.Status, text, gotErr)
		}
		if tc.errIs != nil && !strings.Contains(string(text), "checksum") {
			t.Fatalf("%s: answer %q does not say why", tc.name, text)
		}
	}
	if n := b.rec.typeCount(raftpb.MsgSnap); n != 1 {
		t.Fatalf("MsgSnap processed %d times, want once (the good one)", n)
	}
}
