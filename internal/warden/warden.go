package warden

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultElectionPrefix is where group services' elections live:
// PREFIX<group>/<service>/.
const DefaultElectionPrefix = "/cairn-warden/elect/"

// Options configure a Warden.
type Options struct {
	Name           string   // the warden's name in records and elections; the host name if empty
	Groups         []string // the groups this warden belongs to
	LeaseTTL       time.Duration
	ElectionPrefix string // DefaultElectionPrefix if empty
	Client         *clientv3.Client
	Logger         *zap.Logger
	Starter        Starter  // ExecStarter if nil
	Metrics        *Metrics // NewMetrics() if nil
	// ShutdownTimeout bounds writing the last deletes before the lease is
	// revoked on shutdown (5s if zero).
	ShutdownTimeout time.Duration
}

// Warden supervises the services of one configuration.
type Warden struct {
	name     string
	hostname string
	cfg      *Config
	opts     Options
	lg       *zap.Logger
	starter  Starter
	metrics  *Metrics
	link     *link
}

// New prepares a warden; Run starts it.
func New(cfg *Config, opts Options) (*Warden, error) {
	if opts.Client == nil {
		return nil, fmt.Errorf("warden: no cairn client")
	}
	host, _ := os.Hostname()
	w := &Warden{name: opts.Name, hostname: host, cfg: cfg, opts: opts, lg: opts.Logger,
		starter: opts.Starter, metrics: opts.Metrics}
	if w.name == "" {
		w.name = host
	}
	if w.lg == nil {
		w.lg = zap.NewNop()
	}
	if w.starter == nil {
		w.starter = ExecStarter{}
	}
	if w.metrics == nil {
		w.metrics = NewMetrics()
	}
	if w.opts.LeaseTTL <= 0 {
		w.opts.LeaseTTL = 10 * time.Second
	}
	if w.opts.ElectionPrefix == "" {
		w.opts.ElectionPrefix = DefaultElectionPrefix
	}
	if w.opts.ShutdownTimeout <= 0 {
		w.opts.ShutdownTimeout = 5 * time.Second
	}
	return w, nil
}

// Name is the warden's name.
func (w *Warden) Name() string { return w.name }

// Metrics returns the warden's metrics.
func (w *Warden) Metrics() *Metrics { return w.metrics }

// Run supervises every service placed on this warden until ctx is done,
// then stops them (stop signal, grace period, SIGKILL), deletes their keys
// and revokes the warden's lease.
func (w *Warden) Run(ctx context.Context) error {
	w.link = newLink(w.opts.Client, w.opts.LeaseTTL, w.lg)
	member := map[string]bool{}
	for _, g := range w.opts.Groups {
		member[g] = true
	}
	w.lg.Info("warden starting", zap.String("name", w.name), zap.Strings("groups", w.opts.Groups),
		zap.Int("services", len(w.cfg.Services)), zap.Duration("lease-ttl", w.opts.LeaseTTL))
	var wg sync.WaitGroup
	for _, s := range w.cfg.Services {
		lg := w.lg.With(zap.String("service", s.Name))
		r := &runner{svc: s, w: w, reg: w.link, starter: w.starter, check: checkerFor(s), lg: lg, clock: RealClock{}, metrics: w.metrics, gate: hostGate{}}
		if g := s.Placement.Group; g != "" {
			if !member[g] {
				lg.Info("not in this service's group; not running it", zap.String("group", g))
				continue
			}
			prefix := w.opts.ElectionPrefix + g + "/" + s.Name + "/"
			r.gate = &groupGate{link: w.link, prefix: prefix, warden: w.name, lg: lg}
			lg.Info("campaigning for the service", zap.String("group", g), zap.String("election", prefix))
		}
		w.metrics.Running.WithLabelValues(s.Name).Set(0)
		w.metrics.Failed.WithLabelValues(s.Name).Set(0)
		w.metrics.Restarts.WithLabelValues(s.Name)
		w.metrics.Failovers.WithLabelValues(s.Name)
		w.metrics.HealthFailures.WithLabelValues(s.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(ctx)
		}()
	}
	<-ctx.Done()
	w.lg.Info("warden stopping: stopping services")
	wg.Wait()
	w.lg.Info("services stopped; deregistering")
	w.link.shutdown(w.opts.ShutdownTimeout)
	w.lg.Info("warden stopped")
	return nil
}

// GroupsFlag splits repeated or comma-separated --group values.
func GroupsFlag(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, g := range strings.Split(v, ",") {
			if g = strings.TrimSpace(g); g != "" {
				out = append(out, g)
			}
		}
	}
	return out
}
