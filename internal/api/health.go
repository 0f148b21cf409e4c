package api

// Health endpoints, with etcd 3.7's paths, bodies and status codes:
//
//	/health   JSON {"health":"true","reason":""}; 503 {"health":"false","reason":...}
//	          checks, in order: alarms (minus ?exclude=NOSPACE|CORRUPT), a known
//	          leader (skipped with ?serializable=true), a read (linearizable, or
//	          serializable with ?serializable=true) within Timeout.
//	          Reasons: "ALARM NOSPACE", "ALARM CORRUPT", "ALARM UNKNOWN",
//	          "RAFT NO LEADER", "RANGE ERROR:<err>".
//	/livez    checks: serializable_read
//	/readyz   checks: data_corruption, serializable_read, linearizable_read, non_learner
//	          200 "ok\n" (with ?verbose the "[+]name ok" lines first);
//	          503 with every line, failures as "[-]name failed: <err>".
//	          ?exclude=name skips a check; unknown names are ignored (etcd keeps
//	          old probes working). /livez/<name> and /readyz/<name> run one check.
//
// Only GET is allowed (405 with "Allow: GET" otherwise).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// HealthSource is what the health endpoints need from the server. Every
// method is called per request and must be safe for concurrent use.
type HealthSource interface {
	// HasLeader reports whether this member knows a current Raft leader.
	HasLeader() bool
	// Alarms returns the active alarms of the cluster (all members).
	Alarms() []*pb.AlarmMember
	// IsLearner reports whether this member is a Raft learner.
	IsLearner() bool
	// LinearizableReadCheck does a linearizable read (etcd: Range, keys only,
	// limit 1, with root permission) and returns its error. It must honour
	// ctx's deadline.
	LinearizableReadCheck(ctx context.Context) error
	// SerializableReadCheck does the same read served locally.
	SerializableReadCheck(ctx context.Context) error
}

// DefaultHealthTimeout bounds /health's read: etcd's request timeout with the
// default election timeout (5s + 2 x 1s).
const DefaultHealthTimeout = 7 * time.Second

// HealthOptions tunes NewHealth. The zero value uses the defaults.
type HealthOptions struct {
	// Logger receives etcd's warnings for failed checks; nil discards them.
	Logger *zap.Logger
	// Registerer gets etcd's health metrics (etcd_server_health_success,
	// etcd_server_health_failures, etcd_server_healthcheck,
	// etcd_server_healthchecks_total). nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Timeout bounds /health's read; 0 means DefaultHealthTimeout. Set it to
	// the server's request timeout (5s + 2 x --election-timeout).
	Timeout time.Duration
}

// Health serves the health endpoints for one HealthSource. One Health can be
// installed on several muxes (client port and --listen-metrics-urls); they
// share its metrics.
type Health struct {
	src     HealthSource
	lg      *zap.Logger
	timeout time.Duration

	success, failures prometheus.Counter
	checkGauge        *prometheus.GaugeVec
	checkCount        *prometheus.CounterVec

	livez, readyz []namedCheck
}

type namedCheck struct {
	name  string
	check func(context.Context) error
}

// NewHealth returns the health endpoints for src. It fails only if the
// metrics cannot be registered (already registered on opts.Registerer).
func NewHealth(src HealthSource, opts HealthOptions) (*Health, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultHealthTimeout
	}
	h := &Health{
		src:     src,
		lg:      opts.Logger,
		timeout: opts.Timeout,
		success: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "health_success",
			Help: "The total number of successful health checks",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "health_failures",
			Help: "The total number of failed health checks",
		}),
		checkGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "server", Name: "healthcheck",
			Help: "The result of each kind of healthcheck.",
		}, []string{"type", "name"}),
		checkCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "healthchecks_total",
			Help: "The total number of each kind of healthcheck.",
		}, []string{"type", "name", "status"}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{h.success, h.failures, h.checkGauge, h.checkCount} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register health metrics: %w", err)
			}
		}
	}
	serializable := func(ctx context.Context) error { return src.SerializableReadCheck(ctx) }
	h.livez = []namedCheck{{"serializable_read", serializable}}
	h.readyz = []namedCheck{
		{"data_corruption", func(context.Context) error {
			for _, a := range src.Alarms() {
				if a.Alarm == pb.AlarmType_CORRUPT {
					return fmt.Errorf("alarm activated: %s", a.Alarm)
				}
			}
			return nil
		}},
		{"serializable_read", serializable},
		{"linearizable_read", func(ctx context.Context) error { return src.LinearizableReadCheck(ctx) }},
		{"non_learner", func(context.Context) error {
			if src.IsLearner() {
				return errors.New("not supported for learner")
			}
			return nil
		}},
	}
	return h, nil
}

// Install registers /health, /livez, /readyz and their per-check paths.
func (h *Health) Install(mux *http.ServeMux) {
	mux.HandleFunc("/health", h.serveHealth)
	h.installChecks(mux, "livez", h.livez)
	h.installChecks(mux, "readyz", h.readyz)
}

// healthBody is /health's JSON.
type healthBody struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

func (h *Health) serveHealth(w http.ResponseWriter, r *http.Request) {
	if !allowGET(w, r) {
		return
	}
	q := r.URL.Query()
	serializable := q.Get("serializable") == "true"
	reason := h.check(r.Context(), querySet(q["exclude"]), serializable)
	ok := reason == ""
	if ok {
		h.success.Inc()
	} else {
		h.failures.Inc()
	}
	body := healthBody{Health: "true", Reason: reason}
	if !ok {
		body.Health = "false"
	}
	d, _ := json.Marshal(body)
	if !ok {
		h.lg.Warn("/health error", zap.String("output", string(d)), zap.Int("status-code", http.StatusServiceUnavailable))
		http.Error(w, string(d), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(d)
}

// check returns why the member is unhealthy, or "" if it is healthy.
func (h *Health) check(ctx context.Context, excludedAlarms map[string]bool, serializable bool) string {
	for _, a := range h.src.Alarms() {
		if excludedAlarms[a.Alarm.String()] {
			continue
		}
		h.lg.Warn("serving /health false due to an alarm", zap.String("alarm", a.String()))
		switch a.Alarm {
		case pb.AlarmType_NOSPACE:
			return "ALARM NOSPACE"
		case pb.AlarmType_CORRUPT:
			return "ALARM CORRUPT"
		default:
			return "ALARM UNKNOWN"
		}
	}
	if !serializable && !h.src.HasLeader() {
		h.lg.Warn("serving /health false; no leader")
		return "RAFT NO LEADER"
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	read := h.src.LinearizableReadCheck
	if serializable {
		read = h.src.SerializableReadCheck
	}
	if err := read(ctx); err != nil {
		h.lg.Warn("serving /health false; Range fails", zap.Error(err))
		return "RANGE ERROR:" + err.Error()
	}
	return ""
}

func (h *Health) installChecks(mux *http.ServeMux, kind string, checks []namedCheck) {
	root := "/" + kind
	mux.HandleFunc(root, func(w http.ResponseWriter, r *http.Request) {
		excluded := querySet(r.URL.Query()["exclude"])
		run := make([]namedCheck, 0, len(checks))
		for _, c := range checks {
			if excluded[c.name] {
				delete(excluded, c.name)
				continue
			}
			run = append(run, c)
		}
		if len(excluded) > 0 {
			names := make([]string, 0, len(excluded))
			for n := range excluded {
				names = append(names, fmt.Sprintf("%q", n))
			}
			h.lg.Warn("some health checks cannot be excluded", zap.String("missing-health-checks", strings.Join(names, ",")))
		}
		h.serveChecks(w, r, kind, run)
	})
	for _, c := range checks {
		one := []namedCheck{c}
		mux.HandleFunc(root+"/"+c.name, func(w http.ResponseWriter, r *http.Request) {
			h.serveChecks(w, r, kind, one)
		})
	}
}

func (h *Health) serveChecks(w http.ResponseWriter, r *http.Request, kind string, checks []namedCheck) {
	if !allowGET(w, r) {
		return
	}
	var out strings.Builder
	failed := false
	for _, c := range checks {
		status := "success"
		if err := c.check(r.Context()); err != nil {
			fmt.Fprintf(&out, "[-]%s failed: %v\n", c.name, err)
			failed = true
			status = "error"
			h.checkGauge.WithLabelValues(kind, c.name).Set(0)
		} else {
			fmt.Fprintf(&out, "[+]%s ok\n", c.name)
			h.checkGauge.WithLabelValues(kind, c.name).Set(1)
		}
		h.checkCount.WithLabelValues(kind, c.name, status).Inc()
	}
	if failed {
		h.lg.Error("Health check error", zap.String("path", r.URL.Path), zap.String("reason", out.String()), zap.Int("status-code", http.StatusServiceUnavailable))
		http.Error(w, out.String(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if _, verbose := r.URL.Query()["verbose"]; verbose {
		_, _ = fmt.Fprint(w, out.String())
	}
	_, _ = fmt.Fprint(w, "ok\n")
}

// querySet is the set of non-empty values of a repeated query parameter.
func querySet(values []string) map[string]bool {
	set := make(map[string]bool, len(values))
	for _, v := range values {
		if v != "" {
			set[v] = true
		}
	}
	return set
}

// allowGET answers anything but GET with 405, as etcd does.
func allowGET(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet {
		return true
	}
	w.Header().Set("Allow", http.MethodGet)
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	return false
}
