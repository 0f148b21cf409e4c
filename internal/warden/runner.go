package warden

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cairn-kv/cairn/pkg/discovery"
	"go.uber.org/zap"
)

// runner supervises one service: the loop of acquire a term, start, watch,
// stop, back off, restart. It is driven by one goroutine (run).
type runner struct {
	svc     *Service
	w       *Warden
	reg     registry
	starter Starter
	gate    gate
	check   Checker
	lg      *zap.Logger
	clock   Clock
	metrics *Metrics
}

// startPoll is the health check interval of a process that has not been
// healthy yet (if shorter than the configured one), so that a restarted
// service is registered again soon after it is ready.
const startPoll = 50 * time.Millisecond

// registry is what a runner needs of the registry in cairn (link).
type registry interface {
	Put(key, value string, f *Fence)
	Delete(key string)
	CheckFence(ctx context.Context, f Fence) (bool, error)
}

// outcome is how one run of the process ended.
type outcome struct {
	status     string // exit status or why it was stopped
	clean      bool   // exited with status 0 on its own
	lost       bool   // the term was lost (another warden runs it now)
	healthyFor time.Duration
	at         time.Time // when the end was detected
}

func (r *runner) run(ctx context.Context) {
	var (
		t          *term
		restarts   int         // restarts so far (in the record)
		recent     []time.Time // restart times within the window
		streak     int         // restarts since the backoff was reset
		failedAt   time.Time   // start of the current outage, zero if none
		err        error
		maxRestart = *r.svc.MaxRestarts
	)
	for {
		if t == nil {
			if t, err = r.gate.acquire(ctx); err != nil {
				return
			}
			if t.failover {
				r.metrics.Failovers.WithLabelValues(r.svc.Name).Inc()
				r.lg.Info("took the service over from another warden")
				if failedAt.IsZero() {
					failedAt = r.clock.Now()
				}
			}
		}
		out := r.runOnce(ctx, t, restarts, failedAt)
		if ctx.Err() != nil {
			t.release()
			return
		}
		if out.lost {
			t.release()
			t, failedAt = nil, time.Time{}
			continue
		}
		if out.healthyFor > 0 {
			failedAt = time.Time{}
		}
		if failedAt.IsZero() {
			failedAt = out.at
		}
		if r.svc.Restart == RestartNever || (r.svc.Restart == RestartOnFailure && out.clean) {
			r.lg.Info("service ended; not restarting (restart policy)", zap.String("restart", r.svc.Restart), zap.String("status", out.status))
			r.wait(ctx, t, 0)
			t.release()
			return
		}
		if out.healthyFor >= r.svc.Backoff.ResetAfter.D {
			streak = 0
		}
		now := r.clock.Now()
		kept := recent[:0]
		for _, at := range recent {
			if now.Sub(at) < r.svc.RestartWindow.D {
				kept = append(kept, at)
			}
		}
		recent = kept
		if maxRestart > 0 && len(recent) >= maxRestart {
			reason := fmt.Sprintf("%d restarts within %v; last: %s", len(recent), r.svc.RestartWindow.D, out.status)
			r.lg.Error("service failed; giving up", zap.String("reason", reason))
			r.metrics.Failed.WithLabelValues(r.svc.Name).Set(1)
			rec := r.record(0, now, restarts)
			rec.Status, rec.Reason, rec.Health = discovery.StatusFailed, reason, ""
			r.reg.Put(r.svc.Key, encode(rec), t.fence)
			r.wait(ctx, t, 0)
			t.release()
			return
		}
		recent = append(recent, now)
		delay := backoffDelay(r.svc.Backoff, streak)
		restarts++
		streak++
		r.metrics.Restarts.WithLabelValues(r.svc.Name).Inc()
		r.lg.Info("restarting", zap.Duration("backoff", delay), zap.Int("restarts", restarts), zap.String("last", out.status))
		if !r.wait(ctx, t, delay) {
			t.release()
			if ctx.Err() != nil {
				return
			}
			t, failedAt = nil, time.Time{}
		}
	}
}

// wait waits d (forever if d is 0) and reports true, or false as soon as
// ctx is done or t is lost.
func (r *runner) wait(ctx context.Context, t *term, d time.Duration) bool {
	var timer <-chan time.Time
	if d > 0 {
		tm := r.clock.NewTimer(d)
		defer tm.Stop()
		timer = tm.C()
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.lost:
		return false
	case <-timer:
		return true
	}
}

// backoffDelay is the delay before restart number streak+1 of a streak.
func backoffDelay(b Backoff, streak int) time.Duration {
	d := float64(b.Initial.D)
	for i := 0; i < streak && d < float64(b.Max.D); i++ {
		d *= b.Multiplier
	}
	if d > float64(b.Max.D) {
		d = float64(b.Max.D)
	}
	return time.Duration(d)
}

func (r *runner) record(pid int, started time.Time, restarts int) discovery.Record {
	return discovery.Record{
		Name: r.svc.Name, Hostname: r.w.hostname, Address: r.svc.Address, PID: pid,
		Warden: r.w.name, StartedAt: started.UTC(), Restarts: restarts, Status: discovery.StatusRunning,
	}
}

func encode(rec discovery.Record) string {
	b, err := json.Marshal(rec)
	if err != nil {
		panic(err) // a Record always encodes
	}
	return string(b)
}

// runOnce starts the process and supervises it until it exits, fails its
// health checks, the term is lost or ctx is done. It registers the service
// once healthy and deletes the key (first) and stops the process (then)
// when the run ends.
func (r *runner) runOnce(ctx context.Context, t *term, restarts int, failedAt time.Time) (out outcome) {
	if t.fence != nil {
		ok, err := r.reg.CheckFence(ctx, *t.fence)
		if err != nil || !ok {
			r.lg.Warn("not starting: cannot confirm this warden is still the elected one", zap.Bool("still-leader", ok), zap.Error(err))
			return outcome{lost: true, at: r.clock.Now()}
		}
	}
	spec := specOf(r.svc)
	proc, err := r.starter.Start(spec)
	if err != nil {
		r.lg.Error("cannot start", zap.Error(err))
		return outcome{status: "start: " + err.Error(), at: r.clock.Now()}
	}
	started := r.clock.Now()
	r.lg.Info("started", zap.Int("pid", proc.Pid()), zap.String("command", spec.Path), zap.Strings("args", spec.Args), zap.Int("restarts", restarts))
	rec := r.record(proc.Pid(), started, restarts)
	healthy := false
	var healthySince time.Time
	resetTick := func() {}
	register := func(health string) {
		rec.Health = health
		r.reg.Put(r.svc.Key, encode(rec), t.fence)
	}
	becameHealthy := func(health string) {
		healthy, healthySince = true, r.clock.Now()
		register(health)
		r.metrics.Running.WithLabelValues(r.svc.Name).Set(1)
		if !failedAt.IsZero() {
			d := healthySince.Sub(failedAt)
			r.metrics.Recovery.WithLabelValues(r.svc.Name).Observe(d.Seconds())
			r.lg.Info("service recovered", zap.Int("pid", proc.Pid()), zap.Duration("time-to-recover", d))
		} else {
			r.lg.Info("service registered", zap.Int("pid", proc.Pid()), zap.String("key", r.svc.Key))
		}
	}
	// The first check runs at once, so that a quick start registers
	// quickly; the next ones an interval after the previous one ended.
	var tick <-chan time.Time
	if r.check == nil {
		becameHealthy(discovery.HealthNone)
	} else {
		tm := r.clock.NewTimer(0)
		defer tm.Stop()
		tick = tm.C()
		resetTick = func() {
			if d := r.svc.Health.Interval.D; healthy || d < startPoll {
				tm.Reset(d)
			} else {
				tm.Reset(startPoll)
			}
		}
	}
	fails := 0
loop:
	for {
		select {
		case <-proc.Done():
			out.status, out.clean = proc.ExitStatus()
			r.lg.Warn("process exited", zap.Int("pid", proc.Pid()), zap.String("status", out.status))
			break loop
		case <-t.lost:
			out.lost, out.status = true, "lost the election"
			r.lg.Warn("lost the election; stopping the service", zap.Int("pid", proc.Pid()))
			break loop
		case <-ctx.Done():
			out.status = "warden stopping"
			break loop
		case <-tick:
		}
		cctx, cancel := context.WithTimeout(ctx, r.svc.Health.Timeout.D)
		err := r.check(cctx)
		cancel()
		if ctx.Err() != nil {
			continue
		}
		switch {
		case err == nil:
			if !healthy {
				becameHealthy(discovery.HealthHealthy)
			} else if fails > 0 {
				register(discovery.HealthHealthy)
			}
			fails = 0
		case !healthy && r.clock.Now().Sub(started) < r.svc.Health.StartPeriod.D:
			r.lg.Debug("health check failed within the start period", zap.Error(err))
		default:
			fails++
			r.metrics.HealthFailures.WithLabelValues(r.svc.Name).Inc()
			r.lg.Warn("health check failed", zap.Int("failures", fails), zap.Int("threshold", r.svc.Health.FailureThreshold), zap.Error(err))
			if fails >= r.svc.Health.FailureThreshold {
				out.status = fmt.Sprintf("%d health checks failed; last: %v", fails, err)
				break loop
			}
			if healthy && fails == 1 {
				register(discovery.HealthFailing)
			}
		}
		resetTick()
	}
	out.at = r.clock.Now()
	r.reg.Delete(r.svc.Key)
	r.metrics.Running.WithLabelValues(r.svc.Name).Set(0)
	stopProc(proc, r.svc.Signal, r.svc.StopGrace.D)
	if healthy {
		out.healthyFor = out.at.Sub(healthySince)
	}
	return out
}
