package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/failpoint"
)

const raftpbMsgSnap = raftpb.MsgSnap

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errSnapshotStalled ends a transfer that made no progress.
var errSnapshotStalled = errors.New("transport: snapshot transfer made no progress")

// sendSnapshot hands m to the peer's snapshot goroutine without blocking.
// One transfer runs at a time per peer and one more may wait; Raft sends
// a new MsgSnap only after the report of the previous one, so a third is
// refused at once.
func (p *peer) sendSnapshot(m *raftpb.Message) {
	select {
	case p.snapc <- m:
	default:
		p.lg.Warn("dropping a snapshot: another one is being sent", zap.Uint64("index", m.GetSnapshot().GetMetadata().GetIndex()))
		p.t.met.snapSendFailures.WithLabelValues(p.label).Inc()
		p.t.rep.snapshot(p.id, true)
	}
}

func (p *peer) runSnapshots() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			// Queued snapshots still get their report.
			select {
			case <-p.snapc:
				p.t.rep.snapshot(p.id, true)
			default:
			}
			return
		case m := <-p.snapc:
			start := time.Now()
			inflight := p.t.met.snapSendInflights.WithLabelValues(p.label)
			inflight.Inc()
			size, err := p.transferSnapshot(m)
			inflight.Dec()
			lg := p.lg.With(zap.Uint64("snapshot-index", m.GetSnapshot().GetMetadata().GetIndex()), zap.Int64("bytes", size), zap.Duration("took", time.Since(start)))
			if err != nil {
				p.t.met.snapSendFailures.WithLabelValues(p.label).Inc()
				lg.Warn("sending snapshot failed", zap.Error(err))
				p.t.cfg.Handler.ReportSnapshot(p.id, true)
				continue
			}
			p.t.met.snapSend.WithLabelValues(p.label).Inc()
			p.t.met.snapSendSeconds.WithLabelValues(p.label).Observe(time.Since(start).Seconds())
			lg.Info("sent snapshot")
			p.t.cfg.Handler.ReportSnapshot(p.id, false)
		}
	}
}

// transferSnapshot POSTs m and its data to the peer and waits for the
// peer to store it and hand m to its Raft node.
func (p *peer) transferSnapshot(m *raftpb.Message) (int64, error) {
	failpoint.Hit("snapshot-before-send")
	var (
		data io.ReadCloser = io.NopCloser(bytes.NewReader(nil))
		size int64
	)
	if src := p.t.cfg.SnapshotSource; src != nil {
		var err error
		if data, size, err = src(m); err != nil {
			return 0, fmt.Errorf("opening snapshot data: %w", err)
		}
		if size < 0 {
			data.Close()
			return 0, fmt.Errorf("snapshot source gave a negative size %d", size)
		}
	}
	defer data.Close()

	head, err := appendMsgFrame(nil, m)
	if err != nil {
		return size, err
	}
	head = binary.BigEndian.AppendUint64(head, uint64(size))
	body := &snapBody{head: head, src: data, left: size, crc: crc32.New(castagnoli)}
	body.progress.Store(time.Now().UnixNano())

	ctx, cancel := context.WithCancelCause(p.ctx)
	defer cancel(nil)
	u := p.pickURL()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.JoinPath(SnapshotPath).String(), body)
	if err != nil {
		return size, err
	}
	req.ContentLength = int64(len(head)) + size + crc32.Size
	p.setHeaders(req.Header, snapshotContentType)

	// Watchdog: no byte taken by the connection and no answer for
	// SnapshotStallTimeout ends the transfer.
	done := make(chan struct{})
	defer close(done)
	go func() {
		stall := p.t.cfg.SnapshotStallTimeout
		tick := time.NewTicker(max(stall/8, time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				if now.Sub(time.Unix(0, body.progress.Load())) > stall {
					cancel(fmt.Errorf("%w for %v", errSnapshotStalled, stall))
					return
				}
			}
		}
	}()

	resp, err := p.t.snapClient.Do(req)
	sent := body.sent.Load()
	p.t.met.sentBytes.WithLabelValues(p.label).Add(float64(sent))
	if err != nil {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			err = c
		}
		return size, fmt.Errorf("sending snapshot to %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return size, refusalError(resp)
	}
	return size, nil
}

// snapBody is the request body of a snapshot: head (message frame and
// size), then size bytes of data, then their CRC-32C.
type snapBody struct {
	head     []byte
	src      io.Reader
	left     int64
	crc      hash.Hash32
	trailer  []byte
	progress atomic.Int64 // UnixNano of the last read
	sent     atomic.Int64
}

func (b *snapBody) Read(p []byte) (int, error) {
	n, err := b.read(p)
	if n > 0 {
		b.progress.Store(time.Now().UnixNano())
		b.sent.Add(int64(n))
	}
	return n, err
}

func (b *snapBody) read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		return n, nil
	}
	if b.left > 0 {
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err := b.src.Read(p)
		b.left -= int64(n)
		b.crc.Write(p[:n])
		if err == io.EOF && b.left > 0 {
			err = fmt.Errorf("snapshot source ended %d bytes short", b.left)
		} else if err == io.EOF {
			err = nil
		}
		return n, err
	}
	if b.trailer == nil {
		b.trailer = b.crc.Sum(nil)
	}
	if len(b.trailer) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.trailer)
	b.trailer = b.trailer[n:]
	return n, nil
}

// inSnapshot is an incoming transfer, cancelled by RemovePeer and Close.
type inSnapshot struct {
	from   uint64
	cancel context.CancelFunc
}

// serveSnapshot receives a snapshot: the MsgSnap, then the data, which
// goes to the SnapshotSink; once stored, the message goes to Process.
func (t *Transport) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	from, ok := t.admit(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	s := &inSnapshot{from: from, cancel: cancel}
	t.mu.Lock()
	if t.closed || t.removed[from] {
		t.mu.Unlock()
		t.refuse(w, r, http.StatusServiceUnavailable, refusedStopped, "member is stopping")
		return
	}
	t.inSnaps[s] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.inSnaps, s)
		t.mu.Unlock()
	}()

	label := idString(from)
	lg := t.lg.With(zap.String("remote-peer-id", label))
	start := time.Now()
	inflight := t.met.snapRecvInflights.WithLabelValues(label)
	inflight.Inc()
	defer inflight.Dec()

	rc := http.NewResponseController(w)
	defer unblockReads(ctx, rc)()

	fail := func(status int, err error) {
		t.met.snapRecvFailures.WithLabelValues(label).Inc()
		t.met.recvFailures.WithLabelValues(label).Inc()
		lg.Warn("receiving snapshot failed", zap.Error(err))
		w.Header().Set(HeaderRefused, refusedSnapshot)
		answerEarly(w, r)
		http.Error(w, err.Error(), status)
	}

	fr := newFrameReader(&deadlineReader{ctx: ctx, r: r.Body, rc: rc, idle: t.cfg.SnapshotStallTimeout}, t.cfg.MaxFrameBytes)
	kind, payload, err := fr.next()
	if err == nil && kind != frameMsg {
		err = fmt.Errorf("%w: snapshot request starts with a %s frame", ErrBadFrame, kindName(kind))
	}
	var m *raftpb.Message
	if err == nil {
		m, err = decodeMsg(payload)
	}
	if err == nil {
		err = t.checkMsg(m.GetFrom(), m.GetTo(), from)
	}
	if err == nil && m.GetType() != raftpb.MsgSnap {
		err = fmt.Errorf("%w: %s on the snapshot path", ErrBadFrame, m.GetType())
	}
	var sizeBuf [8]byte
	if err == nil {
		_, err = io.ReadFull(fr.r, sizeBuf[:])
	}
	if err != nil {
		t.abort(rc, lg, label, "closing a snapshot request with a malformed head", err)
	}
	size := int64(binary.BigEndian.Uint64(sizeBuf[:]))
	if size < 0 {
		t.abort(rc, lg, label, "closing a snapshot request with a malformed head", fmt.Errorf("%w: snapshot size %d", ErrBadFrame, uint64(size)))
	}
	t.met.receivedBytes.WithLabelValues(label).Add(float64(frameHeaderLen + len(payload) + 8))
	data := &snapData{r: fr.r, left: size, crc: crc32.New(castagnoli), n: t.met.receivedBytes.WithLabelValues(label)}

	lg = lg.With(zap.Uint64("snapshot-index", m.GetSnapshot().GetMetadata().GetIndex()), zap.Int64("bytes", size))
	lg.Info("receiving snapshot")
	switch sink := t.cfg.SnapshotSink; {
	case sink != nil:
		err = sink(ctx, m, data, size)
	case size > 0:
		err = errors.New("this member has no snapshot sink and cannot take snapshot data")
	default:
		_, err = io.Copy(io.Discard, data)
	}
	if err == nil && !data.verified {
		err = errors.New("the snapshot sink returned before reading all the data")
	}
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, ErrSnapshotChecksum) || errors.Is(err, io.ErrUnexpectedEOF) {
			status = http.StatusBadRequest
		}
		fail(status, fmt.Errorf("storing snapshot: %w", err))
		return
	}
	failpoint.Hit("snapshot-after-receive")
	if err := t.cfg.Handler.Process(ctx, m); err != nil {
		fail(http.StatusInternalServerError, fmt.Errorf("raft did not accept the snapshot message: %w", err))
		return
	}
	t.met.snapRecv.WithLabelValues(label).Inc()
	t.met.snapRecvSeconds.WithLabelValues(label).Observe(time.Since(start).Seconds())
	lg.Info("received snapshot", zap.Duration("took", time.Since(start)))
	w.WriteHeader(http.StatusNoContent)
}

// snapData is the reader a SnapshotSink gets: exactly left bytes, then
// io.EOF only if the CRC-32C trailer matches.
type snapData struct {
	r        io.Reader
	left     int64
	crc      hash.Hash32
	verified bool
	err      error
	n        interface{ Add(float64) }
}

func (d *snapData) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.left == 0 {
		if !d.verified {
			d.err = d.verify()
			if d.err != nil {
				return 0, d.err
			}
		}
		return 0, io.EOF
	}
	if int64(len(p)) > d.left {
		p = p[:d.left]
	}
	n, err := d.r.Read(p)
	d.left -= int64(n)
	d.crc.Write(p[:n])
	d.n.Add(float64(n))
	if err == io.EOF {
		err = nil
		if d.left > 0 {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil {
		d.err = fmt.Errorf("reading snapshot data (%d bytes missing): %w", d.left, err)
		return n, d.err
	}
	return n, nil
}

func (d *snapData) verify() error {
	var sum [crc32.Size]byte
	if _, err := io.ReadFull(d.r, sum[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("reading snapshot checksum: %w", err)
	}
	d.n.Add(crc32.Size)
	if got, want := d.crc.Sum32(), binary.BigEndian.Uint32(sum[:]); got != want {
		return fmt.Errorf("%w: computed %08x, sender sent %08x", ErrSnapshotChecksum, got, want)
	}
	d.verified = true
	return nil
}
