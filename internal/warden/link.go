package warden

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// Fence ties a write to an election term: the write happens only while the
// election key Key still has create revision Rev, i.e. while the writer is
// still the leader that won that term.
type Fence struct {
	Key string
	Rev int64
}

// link is the warden's connection to cairn: one session (one lease, kept
// alive) for every registration key and election key of the warden, and
// the registration keys as they should be.
//
// The supervisor never waits on cairn: Put and Delete record the wanted
// state of a key and return; link's loop writes it, retrying while cairn
// is unreachable. When the lease is lost (cairn was unreachable for longer
// than its TTL, or the lease was revoked), the loop grants a new one,
// revokes the old one if it still exists, and writes every wanted key
// again.
type link struct {
	cli   *clientv3.Client
	ttl   time.Duration
	lg    *zap.Logger
	retry time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	sess    *leaseSession
	ready   chan struct{} // closed while sess is live
	wanted  map[string]*wantedKey
	dirty   map[string]bool
	kick    chan struct{}
	flushed chan struct{} // closed and replaced after each flush with nothing left dirty
}

type wantedKey struct {
	value string // "" means deleted
	fence *Fence
}

// opTimeout bounds one request to cairn.
const opTimeout = 3 * time.Second

func newLink(cli *clientv3.Client, ttl time.Duration, lg *zap.Logger) *link {
	ctx, cancel := context.WithCancel(context.Background())
	l := &link{
		cli: cli, ttl: ttl, lg: lg, retry: 300 * time.Millisecond,
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		ready: make(chan struct{}), wanted: map[string]*wantedKey{}, dirty: map[string]bool{},
		kick: make(chan struct{}, 1), flushed: make(chan struct{}),
	}
	go l.run()
	return l
}

// Put makes key hold value under the warden's lease (fenced by f if not
// nil) as soon as cairn can be written.
func (l *link) Put(key, value string, f *Fence) {
	l.set(key, &wantedKey{value: value, fence: f})
}

// Delete removes key if it holds the warden's lease (a key written by
// another warden is left alone).
func (l *link) Delete(key string) { l.set(key, &wantedKey{}) }

func (l *link) set(key string, w *wantedKey) {
	l.mu.Lock()
	l.wanted[key] = w
	l.dirty[key] = true
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Session waits for a live session.
func (l *link) Session(ctx context.Context) (*leaseSession, error) {
	for {
		l.mu.Lock()
		s, ready := l.sess, l.ready
		l.mu.Unlock()
		if s != nil {
			select {
			case <-s.Lost():
			default:
				return s, nil
			}
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(l.retry):
		}
	}
}

// CheckFence reports whether f's election key still has f's revision.
func (l *link) CheckFence(ctx context.Context, f Fence) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := l.cli.Get(ctx, f.Key)
	if err != nil {
		return false, err
	}
	return len(resp.Kvs) == 1 && resp.Kvs[0].CreateRevision == f.Rev, nil
}

func (l *link) run() {
	defer close(l.done)
	unreachable := false
	for l.ctx.Err() == nil {
		l.mu.Lock()
		sess := l.sess
		l.mu.Unlock()
		if sess == nil {
			s, err := l.newSession()
			if err != nil {
				if !unreachable {
					l.lg.Warn("cannot get a lease from cairn; supervising locally and retrying", zap.Error(err))
					unreachable = true
				}
				l.sleep(l.retry)
				continue
			}
			l.lg.Info("lease granted", zap.String("lease", leaseHex(s.Lease())), zap.Duration("ttl", l.ttl))
			l.mu.Lock()
			l.sess = s
			for k := range l.wanted {
				l.dirty[k] = true
			}
			close(l.ready)
			l.mu.Unlock()
			sess = s
		}
		err := l.flush(sess)
		switch {
		case err != nil && !unreachable:
			l.lg.Warn("cannot write the registry in cairn; supervising locally and retrying", zap.Error(err))
			unreachable = true
		case err == nil && unreachable:
			l.lg.Info("registry written again")
			unreachable = false
		}
		var retry <-chan time.Time
		if err != nil {
			retry = time.After(l.retry)
		}
		select {
		case <-l.ctx.Done():
		case <-l.kick:
		case <-retry:
		case <-sess.Lost():
			if l.ctx.Err() != nil {
				continue
			}
			l.lg.Warn("lease lost; getting a new one and registering again", zap.String("lease", leaseHex(sess.Lease())))
			l.mu.Lock()
			l.sess = nil
			l.ready = make(chan struct{})
			l.mu.Unlock()
			sess.cancel()
			go l.revoke(sess.Lease())
		}
	}
}

func (l *link) sleep(d time.Duration) {
	select {
	case <-l.ctx.Done():
	case <-time.After(d):
	}
}

func (l *link) newSession() (*leaseSession, error) {
	ctx, cancel := context.WithTimeout(l.ctx, opTimeout)
	defer cancel()
	ttl := int64((l.ttl + time.Second - 1) / time.Second)
	sent := time.Now()
	g, err := l.cli.Grant(ctx, ttl)
	if err != nil {
		return nil, err
	}
	sctx, scancel := context.WithCancel(l.ctx)
	s, err := concurrency.NewSession(l.cli, concurrency.WithLease(g.ID), concurrency.WithContext(sctx))
	if err != nil {
		scancel()
		go l.revoke(g.ID)
		return nil, err
	}
	ls := &leaseSession{Session: s, lost: make(chan struct{}), cancel: scancel}
	go l.keepAlive(sctx, ls, time.Duration(ttl)*time.Second, sent)
	return ls, nil
}

// leaseSession is the warden's lease and the etcd session on it (for
// elections). Lost, not the session's Done, says when the lease is gone.
type leaseSession struct {
	*concurrency.Session
	lost   chan struct{}
	cancel context.CancelFunc
}

// Lost is closed when the lease is gone, or may be: cairn said it does not
// exist, or no renewal succeeded for a whole TTL.
func (s *leaseSession) Lost() <-chan struct{} { return s.lost }

// keepAlive renews the lease every TTL/3 with a request of its own each
// time, bounded by the same TTL/3: a stuck stream or a member that does not
// answer costs one attempt, and the next goes to another endpoint (the
// session's own keep-alive stream stays on one). The lease counts as lost
// once no renewal sent less than a TTL ago succeeded, which is never later
// than cairn expiring it.
func (l *link) keepAlive(ctx context.Context, s *leaseSession, ttl time.Duration, lastOK time.Time) {
	defer s.cancel()
	defer close(s.lost)
	interval := ttl / 3
	retry := interval / 4
	wait := interval
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		sent := time.Now()
		kctx, cancel := context.WithTimeout(ctx, interval)
		resp, err := l.cli.KeepAliveOnce(kctx, s.Lease())
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
			return
		case err == nil:
			lastOK, wait = sent, interval
		default:
			wait = retry
		}
		if time.Since(lastOK) >= ttl {
			return
		}
	}
}

// revoke drops a lease the warden no longer uses, if it still exists, so
// that keys written under it go at once.
func (l *link) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, _ = l.cli.Revoke(ctx, id)
}

// flush writes every dirty key; it stops at the first error.
func (l *link) flush(sess *leaseSession) error {
	l.mu.Lock()
	keys := make([]string, 0, len(l.dirty))
	for k := range l.dirty {
		keys = append(keys, k)
	}
	l.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		l.mu.Lock()
		w, ok := l.wanted[k]
		l.mu.Unlock()
		if !ok {
			continue
		}
		if err := l.write(sess, k, w); err != nil {
			return err
		}
		l.mu.Lock()
		if l.wanted[k] == w {
			delete(l.dirty, k)
			if w.value == "" {
				delete(l.wanted, k)
			}
		}
		if len(l.dirty) == 0 {
			close(l.flushed)
			l.flushed = make(chan struct{})
		}
		l.mu.Unlock()
	}
	return nil
}

func (l *link) write(sess *leaseSession, key string, w *wantedKey) error {
	ctx, cancel := context.WithTimeout(l.ctx, opTimeout)
	defer cancel()
	lease := sess.Lease()
	if w.value == "" {
		_, err := l.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).
			Then(clientv3.OpDelete(key)).Commit()
		return err
	}
	put := clientv3.OpPut(key, w.value, clientv3.WithLease(lease))
	if w.fence == nil {
		_, err := l.cli.Do(ctx, put)
		return err
	}
	resp, err := l.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(w.fence.Key), "=", w.fence.Rev)).
		Then(put).Commit()
	if err == nil && !resp.Succeeded {
		l.lg.Warn("not registering: this warden is no longer the elected one", zap.String("key", key), zap.String("election-key", w.fence.Key))
	}
	return err
}

// shutdown writes what is pending (the deletes of stopped services) for at
// most timeout, then revokes the lease, which removes every key and
// election entry of the warden.
func (l *link) shutdown(timeout time.Duration) {
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		n, flushed := len(l.dirty), l.flushed
		l.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-flushed:
			continue
		case <-deadline:
		}
		break
	}
	l.cancel()
	<-l.done
	l.mu.Lock()
	s := l.sess
	l.mu.Unlock()
	if s != nil {
		s.cancel()
		l.revoke(s.Lease())
	}
}

func leaseHex(id clientv3.LeaseID) string { return strconvHex(int64(id)) }
