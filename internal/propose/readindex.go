package propose

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/raftnode"
)

// AppliedWaiter reports when the state machine has applied an index.
type AppliedWaiter interface {
	WaitApplied(ctx context.Context, index uint64) error
}

// readBatch is the set of linearizable reads waiting on one ReadIndex.
type readBatch struct {
	done chan struct{}
	err  error
}

// Reads batches linearizable reads: all reads that arrive while one
// ReadIndex is in flight share the next one.
type Reads struct {
	raft    Raft
	ids     *IDGen
	states  <-chan raftnode.ReadState
	applied AppliedWaiter
	timeout time.Duration // how long one read may wait in all
	retry   time.Duration // ReadIndex is re-sent after this long without an answer
	lg      *zap.Logger

	mu      sync.Mutex
	current *readBatch
	kick    chan struct{}
	waiting atomic.Int64 // reads in Wait now
}

// Waiting is the number of reads waiting for a ReadIndex now.
func (r *Reads) Waiting() int { return int(r.waiting.Load()) }

// NewReads returns a read batcher; call Run in its own goroutine.
func NewReads(r Raft, ids *IDGen, states <-chan raftnode.ReadState, applied AppliedWaiter, timeout time.Duration, lg *zap.Logger) *Reads {
	return &Reads{
		raft: r, ids: ids, states: states, applied: applied,
		timeout: timeout, retry: 500 * time.Millisecond, lg: lg,
		current: &readBatch{done: make(chan struct{})},
		kick:    make(chan struct{}, 1),
	}
}

// Wait returns once a read started now is linearizable: the state machine
// has applied everything committed before the call.
func (r *Reads) Wait(ctx context.Context) error {
	r.mu.Lock()
	b := r.current
	r.mu.Unlock()
	r.waiting.Add(1)
	defer r.waiting.Add(-1)
	select {
	case r.kick <- struct{}{}:
	default:
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run serves batches until stop is closed.
func (r *Reads) Run(stop <-chan struct{}) {
	for {
		select {
		case <-r.kick:
		case <-stop:
			r.mu.Lock()
			b := r.current
			r.mu.Unlock()
			b.err = ErrStopped
			close(b.done)
			return
		}
		r.mu.Lock()
		b := r.current
		r.current = &readBatch{done: make(chan struct{})}
		r.mu.Unlock()
		b.err = r.once(stop)
		close(b.done)
	}
}

func (r *Reads) once(stop <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	id := uint64Bytes(r.ids.Next())
	if err := r.raft.ReadIndex(ctx, id); err != nil {
		return r.translate(ctx, err)
	}
	retry := time.NewTimer(r.retry)
	defer retry.Stop()
	for {
		select {
		case rs := <-r.states:
			if !bytes.Equal(rs.Ctx, id) {
				continue // an answer to an older, abandoned request
			}
			if err := r.applied.WaitApplied(ctx, rs.Index); err != nil {
				return r.translate(ctx, err)
			}
			return nil
		case <-retry.C:
			if err := r.raft.ReadIndex(ctx, id); err != nil {
				return r.translate(ctx, err)
			}
			retry.Reset(r.retry)
		case <-ctx.Done():
			return r.translate(ctx, ctx.Err())
		}
	}
}

func (r *Reads) translate(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return ErrTimeout
			}
			return ErrStopped
		default:
		}
	}
	return err
}
