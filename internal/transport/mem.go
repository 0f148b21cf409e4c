package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// MemNetwork is an in-memory network for tests of packages above the
// transport (raftnode, testcluster): members join with a Handler and get
// a MemTransport whose Send has the real Transport's contract, without
// sockets, timers or delays.
//
// Delivery is deterministic in what arrives: a message crosses only if its
// link is up (no Cut, Partition, Isolate or DropIf rule against it) both
// when it is sent and when it is delivered, so once Partition returns
// nothing crosses the cut, and once Heal returns everything sent
// afterwards arrives. Each member processes what it receives in one
// goroutine, in the order it was sent (FIFO per receiver, so per sender
// too). Messages are copied, as if they went over the wire. A dropped
// message is reported unreachable to its sender, as a broken stream
// would be. A MsgSnap takes its own path, like the real transport: the
// sender's SnapshotSource is piped into the receiver's SnapshotSink, then
// the message is processed and the sender gets ReportSnapshot.
type MemNetwork struct {
	mu       sync.Mutex
	members  map[uint64]*MemTransport
	cut      map[[2]uint64]bool // from, to
	isolated map[uint64]bool
	dropIf   func(*raftpb.Message) bool
	stats    MemStats
	pending  int           // queued, being processed, or snapshots in flight
	idle     chan struct{} // closed when pending falls to zero
}

// MemStats counts messages on a MemNetwork.
type MemStats struct {
	Delivered uint64 // handed to a Handler's Process
	Dropped   uint64 // refused by a rule, or the receiver was gone
}

// MemMember is a member joining a MemNetwork. SnapshotSource and
// SnapshotSink are optional, as in Config.
type MemMember struct {
	ID             uint64
	Handler        Handler
	SnapshotSource SnapshotSource
	SnapshotSink   SnapshotSink
}

// NewMemNetwork returns an empty network with every link up.
func NewMemNetwork() *MemNetwork {
	idle := make(chan struct{})
	close(idle)
	return &MemNetwork{
		members:  map[uint64]*MemTransport{},
		cut:      map[[2]uint64]bool{},
		isolated: map[uint64]bool{},
		idle:     idle,
	}
}

// MemTransport is one member's endpoint on a MemNetwork.
type MemTransport struct {
	net    *MemNetwork
	m      MemMember
	rep    *reporter
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	done   chan struct{}
	inbox  []memDelivery // guarded by net.mu
	closed bool          // guarded by net.mu
}

type memDelivery struct {
	from uint64
	m    *raftpb.Message
}

// Join adds a member, replacing (and closing) a member with the same ID:
// that is how a test restarts one.
func (n *MemNetwork) Join(m MemMember) *MemTransport {
	if m.ID == 0 || m.Handler == nil {
		panic("transport: a MemMember needs an ID and a Handler")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &MemTransport{
		net:    n,
		m:      m,
		rep:    newReporter(m.Handler),
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	n.mu.Lock()
	old := n.members[m.ID]
	n.members[m.ID] = t
	n.mu.Unlock()
	if old != nil {
		old.Close()
	}
	go t.run()
	return t
}

// ID is the member's ID.
func (t *MemTransport) ID() uint64 { return t.m.ID }

// Send has the contract of Transport.Send: it never blocks on the
// receiver, and drops are reported through ReportUnreachable (and
// ReportSnapshot for a MsgSnap) from another goroutine.
func (t *MemTransport) Send(msgs []*raftpb.Message) {
	n := t.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if t.closed {
		return
	}
	for _, m := range msgs {
		to := m.GetTo()
		if to == 0 || to == t.m.ID {
			continue
		}
		dst := n.members[to]
		if dst == nil || !n.upLocked(t.m.ID, to, m) {
			n.stats.Dropped++
			t.rep.unreachable(to)
			if m.GetType() == raftpb.MsgSnap {
				t.rep.snapshot(to, true)
			}
			continue
		}
		c := proto.Clone(m).(*raftpb.Message)
		n.addPendingLocked()
		if m.GetType() == raftpb.MsgSnap {
			go n.transferSnapshot(t, dst, c)
			continue
		}
		dst.inbox = append(dst.inbox, memDelivery{from: t.m.ID, m: c})
		select {
		case dst.wake <- struct{}{}:
		default:
		}
	}
}

// Close takes the member off the network: what is queued for it is
// dropped, messages to it are dropped and reported unreachable, and its
// Handler is not called after Close returns.
func (t *MemTransport) Close() {
	n := t.net
	n.mu.Lock()
	if t.closed {
		n.mu.Unlock()
		<-t.done
		return
	}
	t.closed = true
	if n.members[t.m.ID] == t {
		delete(n.members, t.m.ID)
	}
	t.cancel()
	n.mu.Unlock()
	<-t.done
	t.rep.close()
}

func (t *MemTransport) run() {
	defer close(t.done)
	n := t.net
	for {
		select {
		case <-t.wake:
		case <-t.ctx.Done():
			n.mu.Lock()
			for range t.inbox {
				n.stats.Dropped++
				n.donePendingLocked()
			}
			t.inbox = nil
			n.mu.Unlock()
			return
		}
		for {
			n.mu.Lock()
			if len(t.inbox) == 0 || t.closed {
				n.mu.Unlock()
				break
			}
			d := t.inbox[0]
			t.inbox[0] = memDelivery{}
			t.inbox = t.inbox[1:]
			up := n.upLocked(d.from, t.m.ID, d.m)
			if !up {
				n.stats.Dropped++
				if src := n.members[d.from]; src != nil {
					src.rep.unreachable(t.m.ID)
				}
			}
			n.mu.Unlock()
			if up {
				_ = t.m.Handler.Process(t.ctx, d.m)
			}
			n.mu.Lock()
			if up {
				n.stats.Delivered++
			}
			n.donePendingLocked()
			n.mu.Unlock()
		}
	}
}

// transferSnapshot runs one MsgSnap from src to dst.
func (n *MemNetwork) transferSnapshot(src, dst *MemTransport, m *raftpb.Message) {
	err := func() error {
		var (
			data io.ReadCloser = io.NopCloser(bytes.NewReader(nil))
			size int64
		)
		if open := src.m.SnapshotSource; open != nil {
			var err error
			if data, size, err = open(m); err != nil {
				return err
			}
		}
		defer data.Close()
		r := &exactReader{r: data, left: size}
		if sink := dst.m.SnapshotSink; sink != nil {
			if err := sink(dst.ctx, m, r, size); err != nil {
				return err
			}
		} else if size > 0 {
			return errors.New("the receiver has no snapshot sink")
		}
		if r.left > 0 {
			return errors.New("the snapshot sink returned before reading all the data")
		}
		n.mu.Lock()
		up := !dst.closed && n.upLocked(src.m.ID, dst.m.ID, m)
		n.mu.Unlock()
		if !up {
			return errors.New("link down")
		}
		return dst.m.Handler.Process(dst.ctx, m)
	}()
	n.mu.Lock()
	if err == nil {
		n.stats.Delivered++
	} else {
		n.stats.Dropped++
	}
	n.donePendingLocked()
	n.mu.Unlock()
	src.rep.snapshot(dst.m.ID, err != nil)
}

// exactReader yields exactly left bytes of r.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	k, err := e.r.Read(p)
	e.left -= int64(k)
	if err == io.EOF && e.left > 0 {
		err = fmt.Errorf("snapshot source ended %d bytes short: %w", e.left, io.ErrUnexpectedEOF)
	} else if err == io.EOF {
		err = nil
	}
	return k, err
}

func (n *MemNetwork) upLocked(from, to uint64, m *raftpb.Message) bool {
	if n.cut[[2]uint64{from, to}] || n.isolated[from] || n.isolated[to] {
		return false
	}
	return n.dropIf == nil || !n.dropIf(m)
}

func (n *MemNetwork) addPendingLocked() {
	if n.pending == 0 {
		n.idle = make(chan struct{})
	}
	n.pending++
}

func (n *MemNetwork) donePendingLocked() {
	n.pending--
	if n.pending == 0 {
		close(n.idle)
	}
}

// Cut drops every message from member from to member to (one way).
func (n *MemNetwork) Cut(from, to uint64) {
	n.mu.Lock()
	n.cut[[2]uint64{from, to}] = true
	n.mu.Unlock()
}

// Partition cuts every link, both ways, between members of different
// groups. Members not listed keep their links.
func (n *MemNetwork) Partition(groups ...[]uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					n.cut[[2]uint64{a, b}] = true
				}
			}
		}
	}
}

// Isolate cuts member id off from every other, present or future.
func (n *MemNetwork) Isolate(id uint64) {
	n.mu.Lock()
	n.isolated[id] = true
	n.mu.Unlock()
}

// DropIf drops every message for which drop returns true (nil: none).
// drop is called with the network locked: it must not call the network.
func (n *MemNetwork) DropIf(drop func(m *raftpb.Message) bool) {
	n.mu.Lock()
	n.dropIf = drop
	n.mu.Unlock()
}

// Heal removes every Cut, Partition, Isolate and DropIf rule.
func (n *MemNetwork) Heal() {
	n.mu.Lock()
	n.cut = map[[2]uint64]bool{}
	n.isolated = map[uint64]bool{}
	n.dropIf = nil
	n.mu.Unlock()
}

// Stats returns the message counts so far.
func (n *MemNetwork) Stats() MemStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Settle waits until no message is queued or being processed and no
// snapshot is in flight, or ctx ends. A message a Handler sends from
// inside Process is waited for too; a reply that a Raft node sends later
// from its own loop is not, as it does not exist yet.
func (n *MemNetwork) Settle(ctx context.Context) error {
	for {
		n.mu.Lock()
		if n.pending == 0 {
			n.mu.Unlock()
			return nil
		}
		idle := n.idle
		n.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
