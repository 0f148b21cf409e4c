package robustness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TrafficConfig shapes the load of one run.
type TrafficConfig struct {
	Clients    int           // concurrent clients, each strictly sequential
	Tick       time.Duration // each client sends at most one request per tick
	MaxOps     int           // per client
	ReqTimeout time.Duration // deadline of one request
	LeaseTTL   int64         // seconds; long, so that no lease expires during a run
	LeaseHeavy bool          // many more leased puts and revokes
	// ExpiringLeases: LeaseTTL is short and leases expire during the
	// run; each grant is recorded (History.Grants) so the checkers can
	// let every lease expire at any time after its grant.
	ExpiringLeases bool
}

// DefaultTraffic is the load of every scenario.
var DefaultTraffic = TrafficConfig{Clients: 4, Tick: 8 * time.Millisecond, MaxOps: 3000, ReqTimeout: 2 * time.Second, LeaseTTL: 600}

// newClient connects to endpoints (client URLs) with no logging.
func newClient(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		// Keep-alive lets a client notice a member frozen by SIGSTOP.
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
	})
}

// Traffic runs the clients that fill a History.
type Traffic struct {
	cfg  TrafficConfig
	h    *History
	seed uint64

	stop chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	acked int // successful operations, all clients
	errs  []error
}

// StartTraffic starts cfg.Clients clients, each with its own connection
// to every endpoint and its own random stream drawn from seed.
func StartTraffic(cfg TrafficConfig, endpoints []string, h *History, seed uint64) (*Traffic, error) {
	tr := &Traffic{cfg: cfg, h: h, seed: seed, stop: make(chan struct{})}
	for i := 0; i < cfg.Clients; i++ {
		// Rotate the endpoint list so that the clients start on
		// different members.
		eps := append(append([]string(nil), endpoints[i%len(endpoints):]...), endpoints[:i%len(endpoints)]...)
		cli, err := newClient(eps)
		if err != nil {
			tr.Stop()
			return nil, err
		}
		c := &trafficClient{id: i, cli: cli, tr: tr, rnd: rand.New(rand.NewPCG(seed, uint64(i))), mods: map[int]int64{}}
		tr.wg.Add(1)
		go c.run()
	}
	return tr, nil
}

// Acked is the number of successful operations so far.
func (tr *Traffic) Acked() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.acked
}

// Stop stops every client and waits for them.
func (tr *Traffic) Stop() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	tr.wg.Wait()
}

type trafficClient struct {
	id      int
	cli     *clientv3.Client
	tr      *Traffic
	rnd     *rand.Rand
	seq     int
	lease   int64         // current lease, 0 for none
	mods    map[int]int64 // last mod revision this client saw per key
	lastRev int64         // highest header revision this client saw
}

func (c *trafficClient) run() {
	defer c.tr.wg.Done()
	defer c.cli.Close()
	tick := time.NewTicker(c.tr.cfg.Tick)
	defer tick.Stop()
	for n := 0; n < c.tr.cfg.MaxOps; n++ {
		select {
		case <-c.tr.stop:
			return
		case <-tick.C:
		}
		req, ok := c.next()
		if !ok {
			continue
		}
		call := c.tr.h.Now()
		resp := c.do(req)
		ret := c.tr.h.Now()
		if resp.Unknown {
			ret = never
		} else {
			c.tr.mu.Lock()
			c.tr.acked++
			c.tr.mu.Unlock()
			c.learn(req, resp)
		}
		c.tr.h.Add(Op{Client: c.id, Req: req, Resp: resp, Call: call, Return: ret})
		if req.Kind == OpLeaseRevoke || (req.Kind == OpPutLease && strings.Contains(resp.Err, "lease not found")) {
			c.lease = 0
		}
	}
}

// next picks the next request. ok is false when the client could not
// prepare it (no lease could be granted).
func (c *trafficClient) next() (Request, bool) {
	key := c.rnd.IntN(NumKeys)
	c.seq++
	value := fmt.Sprintf("c%d-%d", c.id, c.seq)
	p := c.rnd.IntN(100)
	if c.tr.cfg.LeaseHeavy && c.rnd.IntN(5) < 2 {
		p = 82 + c.rnd.IntN(18) // put-lease or revoke
	}
	switch {
	case p < 15:
		return Request{Kind: OpGet, Key: key}, true
	case p < 20:
		if c.lastRev < 2 {
			return Request{Kind: OpGet, Key: key}, true
		}
		return Request{Kind: OpGetAtRev, Key: key, AtRev: max(1, c.lastRev-int64(c.rnd.IntN(30)))}, true
	case p < 28:
		return Request{Kind: OpRange}, true
	case p < 33:
		return Request{Kind: OpStaleGet, Key: key}, true
	case p < 58:
		return Request{Kind: OpPut, Key: key, Value: value}, true
	case p < 66:
		return Request{Kind: OpDelete, Key: key}, true
	case p < 82:
		return Request{Kind: OpTxn, Key: key, Value: value, Expect: c.mods[key]}, true
	case p < 94:
		if c.lease == 0 && !c.grant() {
			return Request{}, false
		}
		return Request{Kind: OpPutLease, Key: key, Value: value, Lease: c.lease}, true
	default:
		if c.lease == 0 || c.tr.cfg.ExpiringLeases {
			// Expiring leases are left to expire.
			return Request{Kind: OpGet, Key: key}, true
		}
		return Request{Kind: OpLeaseRevoke, Lease: c.lease}, true
	}
}

// grant gets the client a new lease. Grants are not part of the model:
// they change no key and no revision.
func (c *trafficClient) grant() bool {
	call := c.tr.h.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.tr.cfg.ReqTimeout)
	defer cancel()
	r, err := c.cli.Grant(ctx, c.tr.cfg.LeaseTTL)
	if err != nil {
		return false
	}
	c.lease = int64(r.ID)
	if c.tr.cfg.ExpiringLeases {
		c.tr.h.AddGrant(c.id, c.lease, call)
	}
	return true
}

// learn remembers mod revisions for later compare-and-set requests.
func (c *trafficClient) learn(req Request, resp Response) {
	c.lastRev = max(c.lastRev, resp.Rev)
	switch req.Kind {
	case OpPut, OpPutLease:
		c.mods[req.Key] = resp.Rev
	case OpTxn:
		if resp.Succeeded {
			c.mods[req.Key] = resp.Rev
		}
	case OpDelete:
		c.mods[req.Key] = 0
	}
	for _, kv := range resp.KVs {
		c.mods[kv.Key] = kv.Mod
	}
	if req.Kind == OpGet && len(resp.KVs) == 0 {
		c.mods[req.Key] = 0
	}
}

func (c *trafficClient) do(req Request) Response {
	ctx, cancel := context.WithTimeout(context.Background(), c.tr.cfg.ReqTimeout)
	defer cancel()
	kv := c.cli.KV
	var (
		resp Response
		err  error
	)
	key := KeyName(req.Key)
	switch req.Kind {
	case OpGet, OpStaleGet, OpGetAtRev:
		var opts []clientv3.OpOption
		if req.Kind == OpStaleGet {
			opts = append(opts, clientv3.WithSerializable())
		}
		if req.Kind == OpGetAtRev {
			opts = append(opts, clientv3.WithRev(req.AtRev))
		}
		var r *clientv3.GetResponse
		if r, err = kv.Get(ctx, key, opts...); err == nil {
			resp = Response{Rev: r.Header.Revision, KVs: toKVs(r.Kvs)}
		}
	case OpRange:
		var r *clientv3.GetResponse
		if r, err = kv.Get(ctx, KeyPrefix, clientv3.WithPrefix()); err == nil {
			resp = Response{Rev: r.Header.Revision, KVs: toKVs(r.Kvs)}
		}
	case OpPut, OpPutLease:
		var opts []clientv3.OpOption
		if req.Lease != 0 {
			opts = append(opts, clientv3.WithLease(clientv3.LeaseID(req.Lease)))
		}
		var r *clientv3.PutResponse
		if r, err = kv.Put(ctx, key, req.Value, opts...); err == nil {
			resp = Response{Rev: r.Header.Revision}
		}
	case OpDelete:
		var r *clientv3.DeleteResponse
		if r, err = kv.Delete(ctx, key); err == nil {
			resp = Response{Rev: r.Header.Revision, Deleted: r.Deleted}
		}
	case OpTxn:
		var r *clientv3.TxnResponse
		r, err = kv.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", req.Expect)).
			Then(clientv3.OpPut(key, req.Value)).
			Else(clientv3.OpGet(key)).
			Commit()
		if err == nil {
			resp = Response{Rev: r.Header.Revision, Succeeded: r.Succeeded}
			if !r.Succeeded && len(r.Responses) == 1 {
				if g := r.Responses[0].GetResponseRange(); g != nil {
					resp.KVs = toKVs(g.Kvs)
				}
			}
		}
	case OpLeaseRevoke:
		var r *clientv3.LeaseRevokeResponse
		if r, err = c.cli.Revoke(ctx, clientv3.LeaseID(req.Lease)); err == nil {
			resp = Response{Rev: r.Header.Revision}
		}
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = fmt.Errorf("canceled: %w", err)
		}
		return Response{Unknown: true, Err: err.Error(), Compacted: errors.Is(err, rpctypes.ErrCompacted)}
	}
	return resp
}
