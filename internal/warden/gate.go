package warden

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// term is the right to run a service: forever for a host service, while
// the warden leads the service's election for a group service.
type term struct {
	fence    *Fence          // nil: not fenced (host service)
	lost     <-chan struct{} // closed when the right is gone; nil: never
	failover bool            // another warden led the election before
	release  func()          // give the right up (resign)
}

// gate hands out terms.
type gate interface {
	// acquire blocks until the warden may run the service, or ctx is done.
	acquire(ctx context.Context) (*term, error)
}

type hostGate struct{}

func (hostGate) acquire(ctx context.Context) (*term, error) {
	return &term{release: func() {}}, ctx.Err()
}

// groupGate campaigns in the service's election on the warden's session.
// The term is lost when the session ends (lease gone), when the leader key
// is deleted, or on release.
type groupGate struct {
	link   *link
	prefix string // election prefix, ending in /
	warden string // campaign value
	lg     *zap.Logger
}

func (g *groupGate) acquire(ctx context.Context) (*term, error) {
	for {
		sess, err := g.link.Session(ctx)
		if err != nil {
			return nil, err
		}
		e := concurrency.NewElection(sess.Session, g.prefix)
		prev := ""
		lctx, lcancel := context.WithTimeout(ctx, opTimeout)
		if r, err := e.Leader(lctx); err == nil && len(r.Kvs) > 0 {
			prev = string(r.Kvs[0].Value)
		}
		lcancel()
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-sess.Lost():
				cancel()
			case <-cctx.Done():
			}
		}()
		// Another warden leading at any time while this one waits makes
		// winning a takeover.
		var sawOther atomic.Bool
		sawOther.Store(prev != "" && prev != g.warden)
		octx, ocancel := context.WithCancel(cctx)
		go func() {
			for r := range e.Observe(octx) {
				if len(r.Kvs) > 0 && string(r.Kvs[0].Value) != g.warden {
					sawOther.Store(true)
				}
			}
		}()
		err = e.Campaign(cctx, g.warden)
		ocancel()
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			g.lg.Warn("election campaign failed; retrying", zap.String("election", g.prefix), zap.Error(err))
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(g.link.retry):
			}
			continue
		}
		lost := make(chan struct{})
		key, rev := e.Key(), e.Rev()
		go func() {
			defer close(lost)
			defer cancel()
			g.watchLeadership(cctx, sess, Fence{Key: key, Rev: rev})
		}()
		return &term{
			fence:    &Fence{Key: key, Rev: rev},
			lost:     lost,
			failover: sawOther.Load(),
			release: func() {
				cancel()
				rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
				defer rcancel()
				_, _ = g.link.cli.Txn(rctx).
					If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
					Then(clientv3.OpDelete(key)).Commit()
			},
		}, nil
	}
}

// watchLeadership returns when the term of f ends: the session ends, ctx
// is done, or the leader key is deleted (or replaced). A watch that fails
// (compacted revision, canceled stream) is resumed after checking the key.
func (g *groupGate) watchLeadership(ctx context.Context, sess *leaseSession, f Fence) {
	from := f.Rev + 1
	for {
		wctx, wcancel := context.WithCancel(ctx)
		wch := g.link.cli.Watch(wctx, f.Key, clientv3.WithRev(from))
		ended := func() bool {
			defer wcancel()
			for {
				select {
				case <-sess.Lost():
					return true
				case <-ctx.Done():
					return true
				case wr, ok := <-wch:
					if !ok || wr.Err() != nil {
						return false
					}
					for _, ev := range wr.Events {
						if ev.Type == clientv3.EventTypeDelete || ev.Kv.CreateRevision != f.Rev {
							return true
						}
					}
				}
			}
		}()
		if ended {
			return
		}
		// Resume from now if the key is still ours.
		gctx, gcancel := context.WithTimeout(ctx, opTimeout)
		resp, err := g.link.cli.Get(gctx, f.Key)
		gcancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// Not known either way; the session's keep-alive decides.
			select {
			case <-sess.Lost():
				return
			case <-ctx.Done():
				return
			case <-time.After(g.link.retry):
			}
		case len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != f.Rev:
			return
		default:
			from = resp.Header.Revision + 1
		}
	}
}

func strconvHex(v int64) string { return strconv.FormatUint(uint64(v), 16) }
