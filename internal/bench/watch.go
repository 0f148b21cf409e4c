package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// WatchOptions configure the watch workload: Streams watch streams with
// WatchPerStream watchers each, on WatchedKeys keys (watcher i watches key
// i mod WatchedKeys); then PutTotal puts on those keys (put n writes key
// n mod WatchedKeys) from Clients workers at PutRate. Every event a
// watcher should see is counted and timed from the moment its put was sent.
type WatchOptions struct {
	Config
	Flags          map[string]string
	Streams        int
	WatchPerStream int
	WatchedKeys    int
	PutTotal       int
	PutRate        int
	KeySize        int
	ValSize        int
	// EventTimeout bounds the wait for the last events after the last put.
	EventTimeout time.Duration
}

// watchStreamCtx gives stream s its own gRPC stream: clientv3 shares one
// stream among watches whose contexts carry the same metadata.
func watchStreamCtx(ctx context.Context, s int) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "cairn-bench-stream", strconv.Itoa(s))
}

// openWatch starts a watch with a created notification and waits for it.
func openWatch(ctx context.Context, cli *clientv3.Client, key string, timeout time.Duration) (clientv3.WatchChan, error) {
	wch := cli.Watch(ctx, key, clientv3.WithCreatedNotify())
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case resp, ok := <-wch:
		if !ok {
			return nil, fmt.Errorf("watch on %q closed before it was created: %w", key, ctx.Err())
		}
		if err := resp.Err(); err != nil {
			return nil, fmt.Errorf("watch on %q: %w", key, err)
		}
		if !resp.Created {
			return nil, fmt.Errorf("watch on %q: first response is not the created notification", key)
		}
		return wch, nil
	case <-t.C:
		return nil, fmt.Errorf("watch on %q not created within %v", key, timeout)
	}
}

// Watch runs the watch workload.
func Watch(ctx context.Context, o WatchOptions) (*Report, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	switch {
	case o.Streams < 1:
		return nil, fmt.Errorf("--streams=%d: must be at least 1", o.Streams)
	case o.WatchPerStream < 1:
		return nil, fmt.Errorf("--watch-per-stream=%d: must be at least 1", o.WatchPerStream)
	case o.WatchedKeys < 1:
		return nil, fmt.Errorf("--watched-key-total=%d: must be at least 1", o.WatchedKeys)
	case o.PutTotal < 1:
		return nil, fmt.Errorf("--put-total=%d: must be at least 1", o.PutTotal)
	case o.PutRate < 0:
		return nil, fmt.Errorf("--put-rate=%d: must not be negative", o.PutRate)
	}
	keySpec := KeySpec{KeySize: o.KeySize, ValSize: o.ValSize, KeySpace: o.WatchedKeys}
	if err := keySpec.Validate(); err != nil {
		return nil, err
	}
	// The value of put n is n in decimal: the watcher learns from the
	// event which put it belongs to.
	if d := len(strconv.Itoa(o.PutTotal - 1)); d > o.ValSize {
		return nil, fmt.Errorf("--val-size=%d: the watch workload writes the put number into the value and needs %d bytes", o.ValSize, d)
	}
	if o.EventTimeout <= 0 {
		o.EventTimeout = 10 * time.Second
	}
	rctx, cancel := (&Common{Config: o.Config}).runCtx(ctx)
	defer cancel()
	keys := NewKeys(keySpec)
	values := NewKeys(KeySpec{KeySize: o.ValSize, KeySpace: o.PutTotal})

	cs, err := o.Dial(rctx)
	if err != nil {
		return nil, err
	}
	defer cs.Close()

	watchers := o.Streams * o.WatchPerStream
	// expected[k]: how many watchers watch key k.
	expected := make([]int64, o.WatchedKeys)
	for i := range watchers {
		expected[i%o.WatchedKeys]++
	}
	perWatcher := func(i int) int64 {
		k := i % o.WatchedKeys
		// puts n with n mod WatchedKeys == k
		return int64((o.PutTotal - k + o.WatchedKeys - 1) / o.WatchedKeys)
	}
	var totalEvents int64
	for i := range watchers {
		totalEvents += perWatcher(i)
	}

	wctx, wcancel := context.WithCancel(rctx)
	defer wcancel()
	chans := make([]clientv3.WatchChan, watchers)
	for s := range o.Streams {
		sctx := watchStreamCtx(wctx, s)
		cli := cs.For(s)
		for j := range o.WatchPerStream {
			i := s*o.WatchPerStream + j
			wch, err := openWatch(sctx, cli, keys.Key(i%o.WatchedKeys), createTimeout)
			if err != nil {
				return nil, err
			}
			chans[i] = wch
		}
	}

	sent := make([]atomic.Int64, o.PutTotal) // unix nanos when put n was sent
	recs := make([]*Recorder, watchers)
	var delivered atomic.Int64
	var lastEvent atomic.Int64
	errs := &ErrorLog{}
	limit := max(o.maxSamples()/watchers, 1)
	var wg sync.WaitGroup
	for i, wch := range chans {
		want := perWatcher(i)
		recs[i] = NewRecorder(int(want), limit)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := recs[i]
			got := int64(0)
			for got < want {
				resp, ok := <-wch
				if !ok {
					return
				}
				now := time.Now()
				if err := resp.Err(); err != nil {
					errs.Add(err)
					return
				}
				for _, ev := range resp.Events {
					n, err := strconv.Atoi(string(ev.Kv.Value))
					if err != nil || n < 0 || n >= len(sent) {
						errs.Add(fmt.Errorf("watch event with a value that is no put number: %q", ev.Kv.Value))
						continue
					}
					if t := sent[n].Load(); t != 0 {
						rec.Add(now.Sub(time.Unix(0, t)))
					} else {
						rec.Add(0)
					}
					got++
				}
				delivered.Add(int64(len(resp.Events)))
				lastEvent.Store(now.UnixNano())
			}
		}()
	}

	start := time.Now()
	putRes := runLoop(rctx, runSpec{
		total:      int64(o.PutTotal),
		workers:    o.Clients,
		rate:       o.PutRate,
		maxSamples: 1 << 16,
		do: func(ctx context.Context, w int, n int64) error {
			sent[n].Store(time.Now().UnixNano())
			_, err := cs.For(w).Put(ctx, keys.Key(int(n%int64(o.WatchedKeys))), values.Key(int(n)))
			return err
		},
	})
	// Wait for the events of the successful puts, bounded.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	deadline := time.NewTimer(o.EventTimeout)
	select {
	case <-done:
	case <-deadline.C:
	case <-rctx.Done():
	}
	deadline.Stop()
	wcancel()
	<-done
	end := time.Now()
	if t := lastEvent.Load(); t != 0 {
		end = time.Unix(0, t)
	}

	putErrs, putSamples := putRes.errs.Snapshot()
	for _, e := range putSamples {
		errs.Add(fmt.Errorf("put: %s", e))
	}
	got := delivered.Load()
	if missing := totalEvents - got; missing > 0 {
		errs.Add(fmt.Errorf("%d of %d watch events not delivered within %v of the last put (%d puts failed)", missing, totalEvents, o.EventTimeout, putErrs))
	}
	st := Summarize(recs...)
	rep := NewReport("watch", o.Flags, st, errs, end.Sub(start))
	// Errors counts failed puts and missing events, not messages.
	rep.Errors = putErrs + max(totalEvents-got, 0)
	if rep.Errors == 0 {
		rep.ErrorSamples = nil
	}
	rep.Extra = map[string]int64{
		"watchers":         int64(watchers),
		"puts":             putRes.stats.Count,
		"events_expected":  totalEvents,
		"events_delivered": got,
	}
	return rep, nil
}

// createTimeout bounds the creation of one watch.
const createTimeout = 30 * time.Second

func (c *Config) maxSamples() int {
	if c.MaxSamples > 0 {
		return c.MaxSamples
	}
	return DefaultMaxSamples
}

// WatchLatencyOptions configure the watch-latency workload: Clients
// watchers (spread over Conns connections) watch one key; Total puts are
// made to it one at a time at PutRate; for each put and watcher the
// latency is the time from the put's acknowledgement to the event's
// delivery (zero when the event arrived first).
type WatchLatencyOptions struct {
	Config
	Flags        map[string]string
	Total        int
	PutRate      int
	KeySize      int
	ValSize      int
	EventTimeout time.Duration
}

type arrival struct {
	watcher int
	rev     int64
	at      time.Time
}

// WatchLatency runs the watch-latency workload.
func WatchLatency(ctx context.Context, o WatchLatencyOptions) (*Report, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Total < 1 {
		return nil, fmt.Errorf("--total=%d: must be at least 1", o.Total)
	}
	if o.PutRate < 0 {
		return nil, fmt.Errorf("--put-rate=%d: must not be negative", o.PutRate)
	}
	if o.KeySize < 1 || o.ValSize < 0 {
		return nil, errors.New("--key-size must be at least 1 and --val-size not negative")
	}
	if o.EventTimeout <= 0 {
		o.EventTimeout = 10 * time.Second
	}
	rctx, cancel := (&Common{Config: o.Config}).runCtx(ctx)
	defer cancel()
	key := "w" + RandomValue(o.KeySize-1)
	val := RandomValue(o.ValSize)
	cs, err := o.Dial(rctx)
	if err != nil {
		return nil, err
	}
	defer cs.Close()

	watchers := o.Clients
	wctx, wcancel := context.WithCancel(rctx)
	defer wcancel()
	arrivals := make(chan arrival, watchers*4)
	var wg sync.WaitGroup
	for i := range watchers {
		wch, err := openWatch(watchStreamCtx(wctx, i), cs.For(i), key, createTimeout)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for resp := range wch {
				now := time.Now()
				for _, ev := range resp.Events {
					select {
					case arrivals <- arrival{watcher: i, rev: ev.Kv.ModRevision, at: now}:
					case <-wctx.Done():
						return
					}
				}
			}
		}()
	}
	defer func() { wcancel(); wg.Wait() }()

	rec := NewRecorder(o.Total*watchers, o.maxSamples())
	errs := &ErrorLog{}
	var missing int64
	var interval time.Duration
	if o.PutRate > 0 {
		interval = time.Second / time.Duration(o.PutRate)
	}
	putter := cs.For(0)
	seen := make([]bool, watchers)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	start := time.Now()
	for n := range o.Total {
		if interval > 0 {
			if d := time.Until(start.Add(time.Duration(n) * interval)); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-rctx.Done():
				}
			}
		}
		if rctx.Err() != nil {
			errs.Add(rctx.Err())
			missing += int64(watchers)
			continue
		}
		resp, err := putter.Put(rctx, key, val)
		acked := time.Now()
		if err != nil {
			errs.Add(fmt.Errorf("put: %w", err))
			missing += int64(watchers)
			continue
		}
		rev := resp.Header.Revision
		clear(seen)
		got := 0
		timer.Reset(o.EventTimeout)
	collect:
		for got < watchers {
			select {
			case a := <-arrivals:
				if a.rev != rev || seen[a.watcher] {
					continue // a late event of an earlier put
				}
				seen[a.watcher] = true
				got++
				rec.Add(a.at.Sub(acked))
			case <-timer.C:
				break collect
			case <-rctx.Done():
				break collect
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if got < watchers {
			missing += int64(watchers - got)
			errs.Add(fmt.Errorf("put at revision %d: %d of %d watchers got no event within %v", rev, watchers-got, watchers, o.EventTimeout))
		}
	}
	elapsed := time.Since(start)
	rep := NewReport("watch-latency", o.Flags, Summarize(rec), errs, elapsed)
	rep.Errors = missing
	rep.Extra = map[string]int64{
		"watchers":         int64(watchers),
		"puts":             int64(o.Total),
		"events_expected":  int64(o.Total * watchers),
		"events_delivered": rec.Count(),
	}
	return rep, nil
}
