package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// op performs request n (0 <= n < total) on behalf of worker w.
type op func(ctx context.Context, w int, n int64) error

// runSpec says how to drive a closed-loop workload.
type runSpec struct {
	total   int64
	workers int
	// rate caps requests per second over the whole run (0: no cap).
	// Request n is not sent before start + n/rate.
	rate       int
	maxSamples int
	do         op
}

// runResult is what a closed-loop run measured.
type runResult struct {
	stats   Stats
	errs    *ErrorLog
	elapsed time.Duration
}

// runLoop runs spec.total requests on spec.workers goroutines. The workers
// pull request numbers from one shared counter, so a fast worker does more
// of them; each records its latencies in its own Recorder, so the hot path
// takes no lock and allocates nothing of its own.
func runLoop(ctx context.Context, spec runSpec) runResult {
	var next atomic.Int64
	errs := &ErrorLog{}
	recs := make([]*Recorder, spec.workers)
	perWorker := int(spec.total)/spec.workers + 1
	limit := spec.maxSamples
	if limit <= 0 {
		limit = DefaultMaxSamples
	}
	limit = max(limit/spec.workers, 1)
	for i := range recs {
		recs[i] = NewRecorder(perWorker, limit)
	}
	var interval time.Duration
	if spec.rate > 0 {
		interval = time.Second / time.Duration(spec.rate)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range spec.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := recs[w]
			var timer *time.Timer
			for {
				n := next.Add(1) - 1
				if n >= spec.total {
					return
				}
				if ctx.Err() != nil {
					// Count what the run could not do, so that
					// requests + errors is always the total.
					errs.Add(ctx.Err())
					continue
				}
				if interval > 0 {
					if d := time.Until(start.Add(time.Duration(n) * interval)); d > 0 {
						if timer == nil {
							timer = time.NewTimer(d)
						} else {
							timer.Reset(d)
						}
						select {
						case <-timer.C:
						case <-ctx.Done():
						}
					}
				}
				st := time.Now()
				err := spec.do(ctx, w, n)
				if err != nil {
					errs.Add(err)
					continue
				}
				rec.Add(time.Since(st))
			}
		}()
	}
	wg.Wait()
	return runResult{stats: Summarize(recs...), errs: errs, elapsed: time.Since(start)}
}
