package bench

import (
	"context"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Common holds what every closed-loop workload is given.
type Common struct {
	Config
	Total int // requests
	Rate  int // requests per second over the whole run, 0 = no limit
	Flags map[string]string
}

func (c *Common) validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	if c.Total < 1 {
		return fmt.Errorf("--total=%d: must be at least 1", c.Total)
	}
	if c.Rate < 0 {
		return fmt.Errorf("--rate=%d: must not be negative", c.Rate)
	}
	return nil
}

func (c *Common) runCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.RunTimeout > 0 {
		return context.WithTimeout(ctx, c.RunTimeout)
	}
	return context.WithCancel(ctx)
}

// closedLoop dials, runs do on Clients workers Total times and reports.
func (c *Common) closedLoop(ctx context.Context, name string, cs *Clients, do op) *Report {
	res := runLoop(ctx, runSpec{
		total:      int64(c.Total),
		workers:    c.Clients,
		rate:       c.Rate,
		maxSamples: c.MaxSamples,
		do:         do,
	})
	return NewReport(name, c.Flags, res.stats, res.errs, res.elapsed)
}

// PutOptions configure the put workload.
type PutOptions struct {
	Common
	KeySpec
}

// Put writes Total keys of ValSize bytes. Keys and the value are generated
// before the clock starts; each request is one clientv3 Put.
func Put(ctx context.Context, o PutOptions) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := o.KeySpec.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := o.runCtx(ctx)
	defer cancel()
	keys := NewKeys(o.KeySpec)
	val := RandomValue(o.ValSize)
	pick := newPicker(o.KeySpec, o.Clients)
	cs, err := o.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cs.Close()
	kvs := make([]clientv3.KV, o.Clients)
	for i := range kvs {
		kvs[i] = cs.For(i)
	}
	return o.closedLoop(ctx, "put", cs, func(ctx context.Context, w int, n int64) error {
		_, err := kvs[w].Put(ctx, keys.Key(pick.pick(w, n)), val)
		return err
	}), nil
}

// RangeOptions configure the range workload.
type RangeOptions struct {
	Common
	Key         string
	End         string // empty: the single key
	Consistency string // "l" (linearizable) or "s" (serializable)
	Limit       int64
	CountOnly   bool
	// Prefill, when >= 0, puts a value of that many bytes at Key before
	// the clock starts, so the reads return data.
	Prefill int
}

func consistencyOpts(c string) ([]clientv3.OpOption, error) {
	switch c {
	case "l", "":
		return nil, nil
	case "s":
		return []clientv3.OpOption{clientv3.WithSerializable()}, nil
	}
	return nil, fmt.Errorf("--consistency=%q: want l (linearizable) or s (serializable)", c)
}

// Range reads Key (or [Key, End)) Total times.
func Range(ctx context.Context, o RangeOptions) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Key == "" {
		return nil, errors.New("range: a key is needed")
	}
	opts, err := consistencyOpts(o.Consistency)
	if err != nil {
		return nil, err
	}
	if o.End != "" {
		opts = append(opts, clientv3.WithRange(o.End))
	}
	if o.Limit > 0 {
		opts = append(opts, clientv3.WithLimit(o.Limit))
	}
	if o.CountOnly {
		opts = append(opts, clientv3.WithCountOnly())
	}
	ctx, cancel := o.runCtx(ctx)
	defer cancel()
	cs, err := o.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cs.Close()
	if o.Prefill >= 0 {
		if _, err := cs.For(0).Put(ctx, o.Key, RandomValue(o.Prefill)); err != nil {
			return nil, fmt.Errorf("range: writing the key to read: %w", err)
		}
	}
	return o.closedLoop(ctx, "range", cs, func(ctx context.Context, w int, n int64) error {
		_, err := cs.For(w).Get(ctx, o.Key, opts...)
		return err
	}), nil
}

// TxnPutOptions configure the txn-put workload.
type TxnPutOptions struct {
	Common
	KeySpec
	TxnOps int // puts per transaction
}

// TxnPut commits Total transactions of TxnOps puts each.
func TxnPut(ctx context.Context, o TxnPutOptions) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := o.KeySpec.Validate(); err != nil {
		return nil, err
	}
	if o.TxnOps < 1 || o.TxnOps > o.KeySpace {
		return nil, fmt.Errorf("--txn-ops=%d: must be at least 1 and at most --key-space-size (%d): a txn puts distinct keys", o.TxnOps, o.KeySpace)
	}
	ctx, cancel := o.runCtx(ctx)
	defer cancel()
	keys := NewKeys(o.KeySpec)
	val := RandomValue(o.ValSize)
	ops := make([]clientv3.Op, keys.Len())
	for i := range ops {
		ops[i] = clientv3.OpPut(keys.Key(i), val)
	}
	pick := newPicker(o.KeySpec, o.Clients)
	bufs := make([][]clientv3.Op, o.Clients)
	for i := range bufs {
		bufs[i] = make([]clientv3.Op, o.TxnOps)
	}
	cs, err := o.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cs.Close()
	return o.closedLoop(ctx, "txn-put", cs, func(ctx context.Context, w int, n int64) error {
		// TxnOps consecutive keys from a sequential or random start:
		// distinct, as a txn must not put one key twice.
		buf := bufs[w]
		base := pick.pick(w, n*int64(len(buf)))
		for j := range buf {
			buf[j] = ops[(base+j)%len(ops)]
		}
		_, err := cs.For(w).Txn(ctx).Then(buf...).Commit()
		return err
	}), nil
}

// TxnMixedOptions configure the txn-mixed workload.
type TxnMixedOptions struct {
	Common
	KeySpec
	RWRatio     float64 // reads per write
	Consistency string
	Limit       int64
	EndKey      string // reads cover [key, EndKey) when set
}

// TxnMixed sends Total transactions, each either one read or one write,
// RWRatio reads for every write. The write/read choice of request n is a
// function of n, so every run of the same flags sends the same mix.
func TxnMixed(ctx context.Context, o TxnMixedOptions) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := o.KeySpec.Validate(); err != nil {
		return nil, err
	}
	if o.RWRatio < 0 {
		return nil, fmt.Errorf("--rw-ratio=%v: must not be negative", o.RWRatio)
	}
	readOpts, err := consistencyOpts(o.Consistency)
	if err != nil {
		return nil, err
	}
	if o.EndKey != "" {
		readOpts = append(readOpts, clientv3.WithRange(o.EndKey))
	}
	if o.Limit > 0 {
		readOpts = append(readOpts, clientv3.WithLimit(o.Limit))
	}
	ctx, cancel := o.runCtx(ctx)
	defer cancel()
	keys := NewKeys(o.KeySpec)
	val := RandomValue(o.ValSize)
	puts := make([]clientv3.Op, keys.Len())
	gets := make([]clientv3.Op, keys.Len())
	for i := range puts {
		puts[i] = clientv3.OpPut(keys.Key(i), val)
		gets[i] = clientv3.OpGet(keys.Key(i), readOpts...)
	}
	pick := newPicker(o.KeySpec, o.Clients)
	cs, err := o.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cs.Close()
	// Request n is a write when floor((n+1)/(r+1)) > floor(n/(r+1)): one
	// write in every r+1 requests, spread evenly.
	period := o.RWRatio + 1
	isWrite := func(n int64) bool {
		return int64(float64(n+1)/period) > int64(float64(n)/period)
	}
	rep := o.closedLoop(ctx, "txn-mixed", cs, func(ctx context.Context, w int, n int64) error {
		k := pick.pick(w, n)
		op := gets[k]
		if isWrite(n) {
			op = puts[k]
		}
		_, err := cs.For(w).Txn(ctx).Then(op).Commit()
		return err
	})
	var writes int64
	for n := range int64(o.Total) {
		if isWrite(n) {
			writes++
		}
	}
	rep.Extra = map[string]int64{"writes_sent": writes, "reads_sent": int64(o.Total) - writes}
	return rep, nil
}

// LeaseKeepAliveOptions configure the lease-keepalive workload.
type LeaseKeepAliveOptions struct {
	Common
	TTL int64 // seconds, of the lease each worker keeps alive
}

// LeaseKeepAlive grants one lease per worker, then sends Total keep-alive
// requests, each one request and its response on the worker's own
// LeaseKeepAlive stream (as etcd's benchmark does): the measured cost is
// the server's keep-alive path, not stream setup.
func LeaseKeepAlive(ctx context.Context, o LeaseKeepAliveOptions) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.TTL < 1 {
		return nil, fmt.Errorf("--ttl=%d: must be at least 1", o.TTL)
	}
	ctx, cancel := o.runCtx(ctx)
	defer cancel()
	cs, err := o.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cs.Close()
	streams := make([]pb.Lease_LeaseKeepAliveClient, o.Clients)
	reqs := make([]*pb.LeaseKeepAliveRequest, o.Clients)
	for w := range o.Clients {
		cli := cs.For(w)
		g, err := cli.Grant(ctx, o.TTL)
		if err != nil {
			return nil, fmt.Errorf("lease-keepalive: granting a lease: %w", err)
		}
		s, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(ctx)
		if err != nil {
			return nil, fmt.Errorf("lease-keepalive: opening a keep-alive stream: %w", err)
		}
		streams[w] = s
		reqs[w] = &pb.LeaseKeepAliveRequest{ID: int64(g.ID)}
	}
	rep := o.closedLoop(ctx, "lease-keepalive", cs, func(ctx context.Context, w int, n int64) error {
		if err := streams[w].Send(reqs[w]); err != nil {
			return err
		}
		resp, err := streams[w].Recv()
		if err != nil {
			return err
		}
		if resp.TTL <= 0 {
			return fmt.Errorf("lease %x: keep-alive answered TTL %d (lease not found)", resp.ID, resp.TTL)
		}
		return nil
	})
	for _, s := range streams {
		_ = s.CloseSend()
	}
	return rep, nil
}
