package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// Handler is what the local Raft node does with what the transport
// receives and with what it failed to deliver. The server implements it
// over raftnode; tests implement it with counters.
type Handler interface {
	// Process hands a message received from a peer to the local Raft node
	// (raft.Node.Step). Messages from one peer arrive in the order that
	// peer sent them, one at a time; messages from different peers arrive
	// concurrently. ctx ends when the stream it came on ends. An error is
	// counted and logged, and the stream goes on.
	Process(ctx context.Context, m *raftpb.Message) error
	// ReportUnreachable says that messages to member id were dropped: its
	// queue was full, its stream was down, or it is not a known peer.
	// Reports are coalesced and delivered from a transport goroutine,
	// never from inside Send.
	ReportUnreachable(id uint64)
	// ReportSnapshot gives the outcome of a MsgSnap sent to member id:
	// failed is false only after the peer stored the data and its Raft
	// node accepted the message. Until Close, exactly one report follows
	// every MsgSnap passed to Send.
	ReportSnapshot(id uint64, failed bool)
}

// SnapshotSource opens the state-machine data that the MsgSnap m stands
// for (m.Snapshot carries only Raft's metadata). It returns a reader of
// exactly size bytes; the transport closes it when the transfer ends,
// successfully or not. It is called from the peer's snapshot goroutine,
// never from Send, so it may open files or take a checkpoint. An error
// fails the transfer (ReportSnapshot(id, true)).
type SnapshotSource func(m *raftpb.Message) (data io.ReadCloser, size int64, err error)

// SnapshotSink stores the data of an incoming snapshot before Raft sees
// it: it must read data until io.EOF and make what it read durable before
// returning nil. data yields exactly size bytes and returns io.EOF only if
// they all arrived and match the sender's checksum; any other error means
// the transfer is broken and the sink must discard what it wrote. When the
// sink returns nil the transport passes m to Handler.Process, so by the
// time the Raft node applies the snapshot its data is on disk. ctx ends if
// the transfer is abandoned (peer gone, transport closed).
type SnapshotSink func(ctx context.Context, m *raftpb.Message, data io.Reader, size int64) error

// Sentinel errors. Refusals travel in the X-Cairn-Refused header and are
// mapped back to these on the sending side, so errors.Is works on both
// ends.
var (
	// ErrClusterMismatch: the request came from a member of another cluster.
	ErrClusterMismatch = errors.New("transport: request from a member of another cluster")
	// ErrMemberRemoved: the sender was removed from the cluster.
	ErrMemberRemoved = errors.New("transport: the sending member was removed from the cluster")
	// ErrWrongMember: the request was meant for another member ID than the
	// one listening at that URL (a stale peer URL, a replaced member).
	ErrWrongMember = errors.New("transport: request meant for another member")
	// ErrBadRequest: missing or malformed identity headers, or another
	// peer protocol version.
	ErrBadRequest = errors.New("transport: malformed peer request")
	// ErrBadFrame: a frame the receiver cannot use (unknown kind, empty or
	// undecodable message, a message not from the sender or not for us).
	ErrBadFrame = errors.New("transport: malformed frame")
	// ErrFrameTooLarge: a frame longer than MaxFrameBytes.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrSnapshotChecksum: snapshot data does not match its checksum.
	ErrSnapshotChecksum = errors.New("transport: snapshot data checksum mismatch")
	// ErrSnapshotRefused: the receiver could not store or accept a snapshot.
	ErrSnapshotRefused = errors.New("transport: snapshot refused by the receiver")
	// ErrStopped: the transport is closed.
	ErrStopped = errors.New("transport: stopped")
	// ErrPeerExists and ErrUnknownPeer are returned by AddPeer/UpdatePeer.
	ErrPeerExists  = errors.New("transport: peer already added")
	ErrUnknownPeer = errors.New("transport: unknown peer")
)

// Config is what a Transport needs. ClusterID, ID and Handler are
// required; zero durations and sizes take the defaults listed.
type Config struct {
	ClusterID uint64
	ID        uint64 // this member
	Handler   Handler

	// SnapshotSource provides the data of outgoing MsgSnap messages; nil
	// sends none (the receiver's sink then sees size 0). SnapshotSink
	// stores incoming snapshot data; nil refuses snapshots that carry any.
	SnapshotSource SnapshotSource
	SnapshotSink   SnapshotSink

	// OnRefused, if set, is called when a peer refuses this member's
	// requests (errors.Is err ErrClusterMismatch, ErrMemberRemoved,
	// ErrWrongMember, ErrBadRequest). A member told ErrMemberRemoved
	// should stop. Called from the peer's goroutine, which Close and
	// RemovePeer wait for: it must not block, nor call either of them
	// (signal another goroutine instead).
	OnRefused func(peer uint64, err error)

	Logger     *zap.Logger           // nil: no logs
	Registerer prometheus.Registerer // nil: metrics kept but not registered

	// TLS is the client configuration for https peer URLs.
	TLS *tls.Config
	// UnencryptedHTTP2 makes http:// requests use HTTP/2 with prior
	// knowledge (h2c); the peers' listeners must serve it. Default
	// HTTP/1.1. With TLS, HTTP/2 is negotiated by ALPN.
	UnencryptedHTTP2 bool

	QueueSize     int // messages queued per peer; default 4096
	MaxFrameBytes int // largest message frame sent or accepted; default 64 MiB

	DialTimeout  time.Duration // connect and get the stream's response; default 5s
	PingInterval time.Duration // ping on an idle or busy stream; default 1s
	// IdleTimeout closes a stream when no pong (sender side) or no frame
	// (receiver side) arrived for this long; default 5s. Must exceed
	// PingInterval.
	IdleTimeout time.Duration
	// SnapshotStallTimeout abandons a snapshot transfer that made no
	// progress for this long; default 30s.
	SnapshotStallTimeout time.Duration
	BackoffMin           time.Duration // first reconnect delay; default 50ms
	BackoffMax           time.Duration // largest reconnect delay; default 2s
}

func (c *Config) setDefaults() error {
	if c.ClusterID == 0 || c.ID == 0 {
		return errors.New("transport: ClusterID and ID must be set")
	}
	if c.Handler == nil {
		return errors.New("transport: Handler must be set")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 4096
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = 64 << 20
	}
	def(&c.DialTimeout, 5*time.Second)
	def(&c.PingInterval, time.Second)
	def(&c.IdleTimeout, 5*time.Second)
	def(&c.SnapshotStallTimeout, 30*time.Second)
	def(&c.BackoffMin, 50*time.Millisecond)
	def(&c.BackoffMax, 2*time.Second)
	if c.IdleTimeout <= c.PingInterval {
		return fmt.Errorf("transport: IdleTimeout %v must exceed PingInterval %v", c.IdleTimeout, c.PingInterval)
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return nil
}

// Transport carries Raft messages between the members of one cluster
// over HTTP. Its Send implements raftnode.Transport; its Handler serves
// the receiving side. Safe for concurrent use.
type Transport struct {
	cfg     Config
	lg      *zap.Logger
	met     *metrics
	rep     *reporter
	local   string // ID in hex, for logs and metric labels
	cluster string

	streamClient *http.Client // long-lived message streams
	snapClient   *http.Client // snapshot transfers, on their own connections

	refusalLog logLimiter

	mu       sync.RWMutex
	closed   bool
	peers    map[uint64]*peer
	removed  map[uint64]bool
	incoming map[uint64]*inStream // the live message stream from each peer
	inSnaps  map[*inSnapshot]struct{}
}

// New returns a Transport with no peers.
func New(cfg Config) (*Transport, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	t := &Transport{
		cfg:      cfg,
		lg:       cfg.Logger.With(zap.String("local-member-id", idString(cfg.ID))),
		met:      met,
		rep:      newReporter(cfg.Handler),
		local:    idString(cfg.ID),
		cluster:  idString(cfg.ClusterID),
		peers:    map[uint64]*peer{},
		removed:  map[uint64]bool{},
		incoming: map[uint64]*inStream{},
		inSnaps:  map[*inSnapshot]struct{}{},
	}
	t.refusalLog.every = 10 * time.Second
	t.streamClient = &http.Client{Transport: t.newRoundTripper()}
	t.snapClient = &http.Client{Transport: t.newRoundTripper()}
	return t, nil
}

func (t *Transport) newRoundTripper() *http.Transport {
	d := &net.Dialer{Timeout: t.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	rt := &http.Transport{
		Proxy:               nil, // peers are dialed directly, whatever HTTP_PROXY says
		DialContext:         d.DialContext,
		TLSClientConfig:     t.cfg.TLS,
		TLSHandshakeTimeout: t.cfg.DialTimeout,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   t.cfg.TLS != nil,
	}
	if t.cfg.UnencryptedHTTP2 {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		if t.cfg.TLS != nil {
			p.SetHTTP2(true)
			p.SetHTTP1(true)
		}
		rt.Protocols = &p
	}
	return rt
}

// Send queues msgs for their peers and returns at once: it never blocks
// the Raft loop. Per peer, messages are written in the order given. A
// message is dropped, and ReportUnreachable(to) follows, when the peer is
// unknown, its stream is down, or its queue is full. A MsgSnap goes to the
// peer's snapshot path instead (see SnapshotSource); its outcome arrives
// through ReportSnapshot. Send keeps the messages until written: the
// caller must not modify them afterwards (raft does not).
func (t *Transport) Send(msgs []*raftpb.Message) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return
	}
	for _, m := range msgs {
		to := m.GetTo()
		if to == 0 || to == t.cfg.ID {
			continue
		}
		p := t.peers[to]
		if p == nil {
			t.met.sentFailures.WithLabelValues(idString(to)).Inc()
			if m.GetType() == raftpb.MsgSnap {
				t.rep.snapshot(to, true)
			}
			t.rep.unreachable(to)
			continue
		}
		if m.GetType() == raftpb.MsgSnap {
			p.sendSnapshot(m)
			continue
		}
		p.send(m)
	}
}

// AddPeer starts a stream to member id at urls (tried in order, rotating
// on failure). Requests from id are accepted from now on.
func (t *Transport) AddPeer(id uint64, urls []string) error {
	us, err := parseURLs(urls)
	if err != nil {
		return err
	}
	if id == 0 || id == t.cfg.ID {
		return fmt.Errorf("transport: cannot add member %s as a peer of itself or as 0", idString(id))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return ErrStopped
	case t.peers[id] != nil:
		return fmt.Errorf("%w: %s", ErrPeerExists, idString(id))
	case t.removed[id]:
		return fmt.Errorf("%w: %s", ErrMemberRemoved, idString(id))
	}
	p := newPeer(t, id, us)
	t.peers[id] = p
	p.start()
	return nil
}

// UpdatePeer replaces the URLs of member id. A stream connected to a URL
// no longer listed is closed and reopened on the new ones.
func (t *Transport) UpdatePeer(id uint64, urls []string) error {
	us, err := parseURLs(urls)
	if err != nil {
		return err
	}
	t.mu.RLock()
	p := t.peers[id]
	t.mu.RUnlock()
	if p == nil {
		return fmt.Errorf("%w: %s", ErrUnknownPeer, idString(id))
	}
	p.setURLs(us)
	return nil
}

// RemovePeer stops sending to member id, drops what is queued for it and
// closes its incoming streams. From now on its requests are refused with
// ErrMemberRemoved (member IDs are never reused). Removing an unknown
// member only records it as removed.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	t.removed[id] = true
	in := t.incoming[id]
	delete(t.incoming, id)
	for s := range t.inSnaps {
		if s.from == id {
			s.cancel()
		}
	}
	t.mu.Unlock()
	if in != nil {
		in.cancel()
	}
	if p != nil {
		p.stop()
	}
}

// PeerStatus is the sending side's view of one peer.
type PeerStatus struct {
	Active bool      // a stream is connected
	Since  time.Time // when Active last changed (zero: never connected)
	URL    string    // the URL in use or to be tried next
	Err    error     // why the last stream or connection attempt ended
}

// Status reports on peer id; false if it is not a peer.
func (t *Transport) Status(id uint64) (PeerStatus, bool) {
	t.mu.RLock()
	p := t.peers[id]
	t.mu.RUnlock()
	if p == nil {
		return PeerStatus{}, false
	}
	return p.status(), true
}

// Peers lists the peers' IDs in increasing order.
func (t *Transport) Peers() []uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	ids := make([]uint64, 0, len(t.peers))
	for id := range t.peers {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Close stops every peer, closes incoming streams and snapshot transfers,
// and waits for the transport's goroutines. Send does nothing afterwards
// and the Handler refuses requests with 503.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	peers := t.peers
	t.peers = map[uint64]*peer{}
	for id, s := range t.incoming {
		s.cancel()
		delete(t.incoming, id)
	}
	for s := range t.inSnaps {
		s.cancel()
	}
	t.mu.Unlock()
	for _, p := range peers {
		p.stop()
	}
	t.rep.close()
	t.streamClient.CloseIdleConnections()
	t.snapClient.CloseIdleConnections()
	return nil
}

func parseURLs(raw []string) ([]*url.URL, error) {
	if len(raw) == 0 {
		return nil, errors.New("transport: a peer needs at least one URL")
	}
	out := make([]*url.URL, 0, len(raw))
	for _, s := range raw {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("transport: peer URL %q: %w", s, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("transport: peer URL %q: want http(s)://host:port", s)
		}
		u.Path, u.RawQuery, u.Fragment = "", "", ""
		out = append(out, u)
	}
	return out, nil
}

// idString is a member or cluster ID as etcd prints it: lower-case hex.
func idString(id uint64) string { return strconv.FormatUint(id, 16) }

// logLimiter lets one log line per key through every interval, so a
// misconfigured peer that retries forever does not flood the log.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
}

func (l *logLimiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	now := time.Now()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.every {
		return false
	}
	l.last[key] = now
	return true
}

// reporter delivers ReportUnreachable and ReportSnapshot from its own
// goroutine, so that Send, which runs on the Raft loop, never calls back
// into the Raft node. Unreachable reports for the same member coalesce.
type reporter struct {
	h    Handler
	mu   sync.Mutex
	down map[uint64]bool
	snap []snapReport
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

type snapReport struct {
	id     uint64
	failed bool
}

func newReporter(h Handler) *reporter {
	r := &reporter{
		h:    h,
		down: map[uint64]bool{},
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go r.run()
	return r
}

func (r *reporter) unreachable(id uint64) {
	r.mu.Lock()
	r.down[id] = true
	r.mu.Unlock()
	r.kick()
}

func (r *reporter) snapshot(id uint64, failed bool) {
	r.mu.Lock()
	r.snap = append(r.snap, snapReport{id, failed})
	r.mu.Unlock()
	r.kick()
}

func (r *reporter) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reporter) run() {
	defer close(r.done)
	for {
		select {
		case <-r.wake:
		case <-r.quit:
			return
		}
		r.mu.Lock()
		down, snaps := r.down, r.snap
		r.down, r.snap = map[uint64]bool{}, nil
		r.mu.Unlock()
		ids := make([]uint64, 0, len(down))
		for id := range down {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		for _, id := range ids {
			r.h.ReportUnreachable(id)
		}
		for _, s := range snaps {
			r.h.ReportSnapshot(s.id, s.failed)
		}
	}
}

// close stops the goroutine; reports still pending are dropped.
func (r *reporter) close() {
	close(r.quit)
	<-r.done
}
