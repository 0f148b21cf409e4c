package warden

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the warden's Prometheus metrics, per service.
type Metrics struct {
	Registry       *prometheus.Registry
	Restarts       *prometheus.CounterVec
	Failovers      *prometheus.CounterVec
	HealthFailures *prometheus.CounterVec
	Recovery       *prometheus.HistogramVec
	Running        *prometheus.GaugeVec
	Failed         *prometheus.GaugeVec
}

// NewMetrics registers the warden's metrics (and the Go and process
// collectors) in a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "warden", Name: "restarts_total",
			Help: "Restarts of a service by this warden (after an exit or failed health checks).",
		}, []string{"service"}),
		Failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "warden", Name: "failovers_total",
			Help: "Times this warden took a group service over from another warden.",
		}, []string{"service"}),
		HealthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "warden", Name: "health_check_failures_total",
			Help: "Failed health checks of a service.",
		}, []string{"service"}),
		Recovery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "cairn", Subsystem: "warden", Name: "recovery_seconds",
			Help:    "Time from detecting a service failure (exit, failed health checks, takeover) to the service being registered again.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}, []string{"service"}),
		Running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "warden", Name: "service_running",
			Help: "1 while this warden runs the service and it is registered.",
		}, []string{"service"}),
		Failed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "warden", Name: "service_failed",
			Help: "1 once the service restarted too often and was given up.",
		}, []string{"service"}),
	}
	m.Registry.MustRegister(m.Restarts, m.Failovers, m.HealthFailures, m.Recovery, m.Running, m.Failed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
