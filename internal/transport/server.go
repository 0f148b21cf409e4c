package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Paths, headers and values of the peer protocol (see the package doc).
const (
	PathPrefix   = "/raft/"
	StreamPath   = "/raft/stream"
	SnapshotPath = "/raft/snapshot"

	HeaderProtocol  = "X-Cairn-Peer-Protocol"
	HeaderClusterID = "X-Cairn-Cluster-Id"
	HeaderFrom      = "X-Cairn-From"
	HeaderTo        = "X-Cairn-To"
	HeaderRefused   = "X-Cairn-Refused"

	ProtocolVersion = "1"

	streamContentType   = "application/x-cairn-raft-stream"
	snapshotContentType = "application/x-cairn-raft-snapshot"
)

// Refusal codes, the value of HeaderRefused.
const (
	refusedCluster     = "cluster-mismatch"
	refusedRemoved     = "member-removed"
	refusedWrongMember = "wrong-member"
	refusedBadRequest  = "bad-request"
	refusedStopped     = "stopped"
	refusedSnapshot    = "snapshot-failed"
)

var refusalErrors = map[string]error{
	refusedCluster:     ErrClusterMismatch,
	refusedRemoved:     ErrMemberRemoved,
	refusedWrongMember: ErrWrongMember,
	refusedBadRequest:  ErrBadRequest,
	refusedStopped:     ErrStopped,
	refusedSnapshot:    ErrSnapshotRefused,
}

// refusalError turns a non-2xx answer into an error that wraps the
// matching sentinel and carries the peer's explanation.
func refusalError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	text := strings.TrimSpace(string(body))
	if sentinel, ok := refusalErrors[resp.Header.Get(HeaderRefused)]; ok {
		return fmt.Errorf("%w (peer answered %d: %s)", sentinel, resp.StatusCode, text)
	}
	return fmt.Errorf("transport: peer answered %s: %s", resp.Status, text)
}

// Handler returns the receiving side of the transport, to mount on the
// peer listener under PathPrefix:
//
//	mux.Handle(transport.PathPrefix, t.Handler())
//
// The listener's http.Server must not set ReadTimeout or WriteTimeout for
// these paths' sake: streams are long-lived and the handler keeps its own
// per-frame deadlines (IdleTimeout, SnapshotStallTimeout). A peer that
// sends garbage has its connection aborted with http.ErrAbortHandler,
// which net/http handles quietly; middleware must let that panic through.
func (t *Transport) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(StreamPath, t.serveStream)
	mux.HandleFunc(SnapshotPath, t.serveSnapshot)
	return mux
}

// refuse answers a request that is not accepted, and logs why (at most
// once per sender and reason every 10s).
func (t *Transport) refuse(w http.ResponseWriter, r *http.Request, status int, code string, msg string) {
	if t.refusalLog.allow(r.Header.Get(HeaderFrom) + "/" + code) {
		t.lg.Warn("refused a peer request",
			zap.String("reason", code),
			zap.String("detail", msg),
			zap.String("path", r.URL.Path),
			zap.String("remote-addr", r.RemoteAddr),
			zap.String("remote-peer-id", r.Header.Get(HeaderFrom)),
			zap.String("remote-cluster-id", r.Header.Get(HeaderClusterID)),
			zap.String("local-cluster-id", t.cluster))
	}
	if from, err := strconv.ParseUint(r.Header.Get(HeaderFrom), 16, 64); err == nil {
		t.met.recvFailures.WithLabelValues(idString(from)).Inc()
	}
	w.Header().Set(HeaderRefused, code)
	w.Header().Set(HeaderClusterID, t.cluster)
	answerEarly(w, r)
	http.Error(w, msg, status)
}

// answerEarly prepares an answer sent before the request body was read.
// On HTTP/1.1 the connection is closed afterwards: otherwise net/http
// would first try to read the rest of a streamed body that never ends,
// and the answer would never leave. (HTTP/2 resets just the stream.)
func answerEarly(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
}

// admit checks a request's method and identity headers. It returns the
// sender's ID, or answers the request and returns false.
func (t *Transport) admit(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return 0, false
	}
	if v := r.Header.Get(HeaderProtocol); v != ProtocolVersion {
		t.refuse(w, r, http.StatusBadRequest, refusedBadRequest,
			fmt.Sprintf("peer protocol version %q is not supported; this member speaks %q", v, ProtocolVersion))
		return 0, false
	}
	cluster, err1 := strconv.ParseUint(r.Header.Get(HeaderClusterID), 16, 64)
	from, err2 := strconv.ParseUint(r.Header.Get(HeaderFrom), 16, 64)
	to, err3 := strconv.ParseUint(r.Header.Get(HeaderTo), 16, 64)
	if err := errors.Join(err1, err2, err3); err != nil || from == 0 {
		t.refuse(w, r, http.StatusBadRequest, refusedBadRequest,
			fmt.Sprintf("%s, %s and %s must be non-zero hex member and cluster IDs", HeaderClusterID, HeaderFrom, HeaderTo))
		return 0, false
	}
	if cluster != t.cfg.ClusterID {
		t.refuse(w, r, http.StatusPreconditionFailed, refusedCluster,
			fmt.Sprintf("member %s belongs to cluster %s, this member (%s) to cluster %s", idString(from), idString(cluster), t.local, t.cluster))
		return 0, false
	}
	if to != t.cfg.ID {
		t.refuse(w, r, http.StatusPreconditionFailed, refusedWrongMember,
			fmt.Sprintf("request for member %s reached member %s; the sender's peer URLs are stale", idString(to), t.local))
		return 0, false
	}
	t.mu.RLock()
	closed, removed := t.closed, t.removed[from]
	t.mu.RUnlock()
	if removed {
		t.refuse(w, r, http.StatusGone, refusedRemoved,
			fmt.Sprintf("member %s was removed from cluster %s", idString(from), t.cluster))
		return 0, false
	}
	if closed {
		t.refuse(w, r, http.StatusServiceUnavailable, refusedStopped, "member is stopping")
		return 0, false
	}
	return from, true
}

// inStream is an accepted message stream.
type inStream struct {
	from   uint64
	cancel context.CancelFunc
}

// serveStream receives one peer's message stream. A newer stream from the
// same peer replaces it.
func (t *Transport) serveStream(w http.ResponseWriter, r *http.Request) {
	from, ok := t.admit(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	s := &inStream{from: from, cancel: cancel}
	t.mu.Lock()
	if t.closed || t.removed[from] {
		t.mu.Unlock()
		t.refuse(w, r, http.StatusServiceUnavailable, refusedStopped, "member is stopping")
		return
	}
	old := t.incoming[from]
	t.incoming[from] = s
	t.mu.Unlock()
	if old != nil {
		old.cancel()
	}
	defer func() {
		t.mu.Lock()
		if t.incoming[from] == s {
			delete(t.incoming, from)
		}
		t.mu.Unlock()
	}()

	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex() // HTTP/2 is full duplex anyway
	w.Header().Set("Content-Type", streamContentType)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	// A read blocked on the body ends when the stream is replaced or the
	// transport closes.
	defer unblockReads(ctx, rc)()

	label := idString(from)
	lg := t.lg.With(zap.String("remote-peer-id", label))
	recvBytes := t.met.receivedBytes.WithLabelValues(label)
	fr := newFrameReader(&deadlineReader{ctx: ctx, r: r.Body, rc: rc, idle: t.cfg.IdleTimeout}, t.cfg.MaxFrameBytes)
	processErrs := 0
	for ctx.Err() == nil {
		kind, payload, err := fr.next()
		if err != nil {
			switch {
			case ctx.Err() != nil, errors.Is(err, io.EOF):
				return
			case errors.Is(err, ErrBadFrame), errors.Is(err, ErrFrameTooLarge):
				t.abort(rc, lg, label, "closing a stream that sent a malformed frame", err)
			case isTimeout(err):
				t.abort(rc, lg, label, "closing a silent stream", fmt.Errorf("no frame for %v", t.cfg.IdleTimeout))
			default:
				lg.Debug("stream ended", zap.Error(err))
				return
			}
		}
		recvBytes.Add(float64(frameHeaderLen + len(payload)))
		switch kind {
		case framePing:
			_ = rc.SetWriteDeadline(time.Now().Add(t.cfg.IdleTimeout))
			if _, err := w.Write(pongFrame); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		case frameMsg:
			m, err := decodeMsg(payload)
			if err == nil {
				err = t.checkMsg(m.GetFrom(), m.GetTo(), from)
			}
			if err == nil && m.GetType() == raftpbMsgSnap {
				err = fmt.Errorf("%w: MsgSnap on the message stream", ErrBadFrame)
			}
			if err != nil {
				t.abort(rc, lg, label, "closing a stream that sent a malformed frame", err)
			}
			if err := t.cfg.Handler.Process(ctx, m); err != nil {
				t.met.recvFailures.WithLabelValues(label).Inc()
				if processErrs == 0 {
					lg.Warn("raft did not accept a message from the peer", zap.Stringer("type", m.GetType()), zap.Error(err))
				}
				processErrs++
			}
		default:
			t.abort(rc, lg, label, "closing a stream that sent a malformed frame",
				fmt.Errorf("%w: %s frame from the sender", ErrBadFrame, kindName(kind)))
		}
	}
}

// checkMsg checks that a message is from the member that opened the
// request and for this member.
func (t *Transport) checkMsg(mFrom, mTo, from uint64) error {
	if mFrom != from || mTo != t.cfg.ID {
		return fmt.Errorf("%w: message from %s to %s on a request from %s to %s",
			ErrBadFrame, idString(mFrom), idString(mTo), idString(from), t.local)
	}
	return nil
}

// abort logs why, counts a receive failure, and drops the connection (HTTP/1)
// or resets the stream (HTTP/2) without reading what the peer claims
// comes next. It does not return.
func (t *Transport) abort(rc *http.ResponseController, lg *zap.Logger, label, msg string, err error) {
	t.met.recvFailures.WithLabelValues(label).Inc()
	lg.Warn(msg, zap.Error(err))
	// net/http drains up to 256 KiB of the body before closing an
	// aborted HTTP/1 connection; an expired deadline makes that drain
	// fail at once instead of waiting on the peer.
	_ = rc.SetReadDeadline(time.Now())
	panic(http.ErrAbortHandler)
}

// unblockReads makes a read blocked on the request body fail once ctx
// ends. The returned func must run before the handler returns: it waits
// for a deadline change in flight, which must not touch a finished
// response.
func unblockReads(ctx context.Context, rc *http.ResponseController) (stop func()) {
	fired := make(chan struct{})
	cancel := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = rc.SetReadDeadline(time.Now())
	})
	return func() {
		if !cancel() {
			<-fired
		}
	}
}

// deadlineReader reads a request body with a deadline that slides: each
// read may wait idle for data, however long the whole body takes. It
// returns ctx's error once ctx ends (see unblockReads).
type deadlineReader struct {
	ctx  context.Context
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	_ = d.rc.SetReadDeadline(time.Now().Add(d.idle))
	// After the deadline is set: unblockReads may have just expired it.
	if err := d.ctx.Err(); err != nil {
		return 0, err
	}
	return d.r.Read(p)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
