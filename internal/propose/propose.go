// Package propose turns client requests into Raft proposals and waits for
// their results, and batches linearizable reads onto one ReadIndex.
//
// A write:
//
//	api ──Propose(req)──> propose: id := next(); wait[id] = ch; raft.Propose(bytes)
//	                                         ...committed, applied...
//	apply ──Trigger(id, result)──> propose: ch <- result ──> api
//
// A linearizable read:
//
//	api ──ReadNotify()──> propose: joins the current batch
//	read loop: raft.ReadIndex(batch id) ─> ReadState{index} ─> wait applied >= index
//	           ─> close the batch's channel ──> every read in it proceeds
package propose

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Errors with etcd's meaning; the API maps them to rpctypes.
var (
	ErrStopped  = errors.New("etcdserver: server stopped")
	ErrTimeout  = errors.New("etcdserver: request timed out")
	ErrTooLarge = errors.New("etcdserver: request is too large")
)

// Raft is the part of the Raft node a proposer uses.
type Raft interface {
	Propose(ctx context.Context, data []byte) error
	ProposeConfChange(ctx context.Context, cc raftpb.ConfChangeI) error
	ReadIndex(ctx context.Context, rctx []byte) error
}

// Result is what applying a proposal produced.
type Result struct {
	Resp proto.Message
	Err  error
}

// IDGen makes request IDs unique across members and restarts, as etcd does:
// the top 2 bytes are the low bytes of the member ID, the next 5 bytes the
// start time in milliseconds, the low byte a counter (carrying upward).
type IDGen struct {
	prefix uint64
	suffix atomic.Uint64
}

// NewIDGen returns a generator for memberID started at now.
func NewIDGen(memberID uint64, now time.Time) *IDGen {
	g := &IDGen{prefix: memberID << 48}
	ms := uint64(now.UnixNano()/int64(time.Millisecond)) & (1<<40 - 1)
	g.suffix.Store(ms << 8)
	return g
}

// Next returns a new ID.
func (g *IDGen) Next() uint64 {
	s := g.suffix.Add(1) & (1<<48 - 1)
	return g.prefix | s
}

// Proposer proposes requests and waits for their results.
//
// Every proposal is bounded by the proposer's timeout (etcd's request
// timeout). The bound costs no timer per request: a waiter records its
// deadline, and one sweep, armed while anything waits, fails the waiters
// whose deadline passed, every tick (a twentieth of the timeout). Handing
// a proposal to Raft can block while there is no leader; that step waits
// on a context shared by the proposals of one tick, which the sweep
// cancels when their deadline passes.
type Proposer struct {
	raft    Raft
	ids     *IDGen
	maxSize int
	timeout time.Duration
	tick    time.Duration
	start   time.Time

	mu       sync.Mutex
	waits    map[uint64]waiter
	sweep    *time.Timer // armed while waits is not empty
	sweeping bool
	bounds   []bound // shared contexts for handing proposals to Raft, oldest first
}

// waiter is one proposal waiting for its result.
type waiter struct {
	ch       chan Result
	deadline time.Duration // since start
}

// bound is the context given to Raft by the proposals of one tick.
type bound struct {
	ctx      context.Context
	cancel   context.CancelFunc
	made     time.Duration // since start
	deadline time.Duration
}

// New returns a proposer; maxSize bounds a marshaled request
// (--max-request-bytes plus some room for the envelope) and timeout a
// proposal from submission to result (0: only the caller's context).
func New(r Raft, ids *IDGen, maxSize int, timeout time.Duration) *Proposer {
	p := &Proposer{raft: r, ids: ids, maxSize: maxSize, timeout: timeout, start: time.Now(), waits: make(map[uint64]waiter)}
	if timeout > 0 {
		p.tick = max(timeout/20, time.Millisecond)
		p.sweep = time.AfterFunc(time.Hour, p.expire)
		p.sweep.Stop()
	}
	return p
}

// now is the time since the proposer started, on the monotonic clock.
func (p *Proposer) now() time.Duration { return time.Since(p.start) }

// add registers a waiter. Called with p.mu held.
func (p *Proposer) add(id uint64, ch chan Result, now time.Duration) {
	p.waits[id] = waiter{ch: ch, deadline: now + p.timeout}
	if p.timeout > 0 && !p.sweeping {
		p.sweeping = true
		p.sweep.Reset(p.tick)
	}
}

// raftCtx is the context for handing a proposal made at now to Raft: ctx
// itself without a timeout, else this tick's shared bound. Called with
// p.mu held.
func (p *Proposer) raftCtx(ctx context.Context, now time.Duration) context.Context {
	if p.timeout == 0 {
		return ctx
	}
	if n := len(p.bounds); n > 0 && now-p.bounds[n-1].made < p.tick {
		return p.bounds[n-1].ctx
	}
	c, cancel := context.WithCancel(context.Background())
	p.bounds = append(p.bounds, bound{ctx: c, cancel: cancel, made: now, deadline: now + p.timeout + p.tick})
	return c
}

// expire fails the waiters whose deadline passed and cancels the bounds
// whose proposals have all expired; it runs on the sweep timer.
func (p *Proposer) expire() {
	now := p.now()
	var late []chan Result
	p.mu.Lock()
	for id, w := range p.waits {
		if w.deadline <= now {
			delete(p.waits, id)
			late = append(late, w.ch)
		}
	}
	gone := 0
	for _, b := range p.bounds {
		if b.deadline > now {
			break
		}
		b.cancel()
		gone++
	}
	p.bounds = append(p.bounds[:0], p.bounds[gone:]...)
	if len(p.waits) > 0 || len(p.bounds) > 0 {
		p.sweep.Reset(p.tick)
	} else {
		p.sweeping = false
	}
	p.mu.Unlock()
	for _, ch := range late {
		ch <- Result{Err: ErrTimeout}
	}
}

// Propose sends req through Raft and returns the applied result. req's
// header ID is set here.
func (p *Proposer) Propose(ctx context.Context, req *pb.InternalRaftRequest) (proto.Message, error) {
	id := p.ids.Next()
	if req.Header == nil {
		req.Header = &pb.RequestHeader{}
	}
	req.Header.ID = id
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	if p.maxSize > 0 && len(data) > p.maxSize {
		return nil, ErrTooLarge
	}
	ch := resultChans.Get().(chan Result)
	now := p.now()
	p.mu.Lock()
	p.add(id, ch, now)
	rctx := p.raftCtx(ctx, now)
	p.mu.Unlock()
	if err := p.raft.Propose(rctx, data); err != nil {
		p.forget(id)
		if rctx != ctx && rctx.Err() != nil {
			return nil, ErrTimeout
		}
		return nil, p.ctxErr(ctx, err)
	}
	select {
	case r := <-ch:
		// Trigger sent the one result this channel gets: it can serve
		// another proposal. (A channel given up below may still get a
		// result; it is left to the collector.)
		resultChans.Put(ch)
		return r.Resp, r.Err
	case <-ctx.Done():
		p.forget(id)
		return nil, p.ctxErr(ctx, ctx.Err())
	}
}

// resultChans recycles the channels proposals wait on.
var resultChans = sync.Pool{New: func() any { return make(chan Result, 1) }}

func (p *Proposer) ctxErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return ErrTimeout
	}
	return err
}

func (p *Proposer) forget(id uint64) {
	p.mu.Lock()
	delete(p.waits, id)
	p.mu.Unlock()
}

// ProposeConfChange proposes a membership change and waits until it is
// applied. cc's ID is set here.
func (p *Proposer) ProposeConfChange(ctx context.Context, cc *raftpb.ConfChange) error {
	id := p.ids.Next()
	cc.Id = &id
	ch := make(chan Result, 1)
	p.mu.Lock()
	p.add(id, ch, p.now())
	p.mu.Unlock()
	if err := p.raft.ProposeConfChange(ctx, cc); err != nil {
		p.forget(id)
		return p.ctxErr(ctx, err)
	}
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		p.forget(id)
		return p.ctxErr(ctx, ctx.Err())
	}
}

// Trigger delivers the result of the proposal with id, if this member is
// waiting for it. The apply loop calls it after the result is durable in
// the state machine and visible to reads.
func (p *Proposer) Trigger(id uint64, r Result) {
	p.mu.Lock()
	w, ok := p.waits[id]
	delete(p.waits, id)
	p.mu.Unlock()
	if ok {
		w.ch <- r
	}
}

// Pending is the number of proposals waiting for a result.
func (p *Proposer) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waits)
}

func uint64Bytes(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}
