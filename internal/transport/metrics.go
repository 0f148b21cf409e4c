package transport

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the transport's Prometheus collectors. Names and labels are
// etcd's (etcd_network_*), so etcd dashboards and alerts work unchanged;
// member IDs in labels are lower-case hex, as etcd prints them.
type metrics struct {
	activePeers       *prometheus.GaugeVec   // Local, Remote
	disconnectedPeers *prometheus.CounterVec // Local, Remote
	sentBytes         *prometheus.CounterVec // To
	receivedBytes     *prometheus.CounterVec // From
	sentFailures      *prometheus.CounterVec // To
	recvFailures      *prometheus.CounterVec // From
	rtt               *prometheus.HistogramVec

	snapSend          *prometheus.CounterVec
	snapSendFailures  *prometheus.CounterVec
	snapSendInflights *prometheus.GaugeVec
	snapSendSeconds   *prometheus.HistogramVec
	snapRecv          *prometheus.CounterVec
	snapRecvFailures  *prometheus.CounterVec
	snapRecvInflights *prometheus.GaugeVec
	snapRecvSeconds   *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var regErr error
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "etcd", Subsystem: "network", Name: name, Help: help}
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), labels), &regErr)
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts(opts(name, help)), labels), &regErr)
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		o := opts(name, help)
		return register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: o.Namespace, Subsystem: o.Subsystem, Name: o.Name, Help: o.Help, Buckets: buckets,
		}, labels), &regErr)
	}
	snapBuckets := prometheus.ExponentialBuckets(0.1, 2, 10)
	m := &metrics{
		activePeers:       gauge("active_peers", "Peers with a connected message stream.", "Local", "Remote"),
		disconnectedPeers: counter("disconnected_peers_total", "Times a peer's message stream was lost.", "Local", "Remote"),
		sentBytes:         counter("peer_sent_bytes_total", "Bytes sent to a peer (messages and snapshots).", "To"),
		receivedBytes:     counter("peer_received_bytes_total", "Bytes received from a peer (messages and snapshots).", "From"),
		sentFailures:      counter("peer_sent_failures_total", "Messages to a peer that were dropped.", "To"),
		recvFailures:      counter("peer_received_failures_total", "Refused requests, malformed frames and messages Raft did not accept, per sender.", "From"),
		rtt: histogram("peer_round_trip_time_seconds", "Time from a ping on a peer's message stream to its pong.",
			prometheus.ExponentialBuckets(0.0001, 2, 16), "To"),
		snapSend:          counter("snapshot_send_success", "Snapshots a peer stored and accepted.", "To"),
		snapSendFailures:  counter("snapshot_send_failures", "Snapshot transfers to a peer that failed.", "To"),
		snapSendInflights: gauge("snapshot_send_inflights_total", "Snapshot transfers to a peer in progress.", "To"),
		snapSendSeconds:   histogram("snapshot_send_total_duration_seconds", "Duration of successful snapshot transfers to a peer.", snapBuckets, "To"),
		snapRecv:          counter("snapshot_receive_success", "Snapshots received, stored and accepted from a peer.", "From"),
		snapRecvFailures:  counter("snapshot_receive_failures", "Snapshot transfers from a peer that failed.", "From"),
		snapRecvInflights: gauge("snapshot_receive_inflights_total", "Snapshot transfers from a peer in progress.", "From"),
		snapRecvSeconds:   histogram("snapshot_receive_total_duration_seconds", "Duration of successful snapshot transfers from a peer.", snapBuckets, "From"),
	}
	return m, regErr
}

// register registers c on reg, or returns the collector already there
// (several transports in one process share one registry's collectors).
// Any other failure is recorded in *firstErr.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, firstErr *error) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		if *firstErr == nil {
			*firstErr = fmt.Errorf("transport: registering metrics: %w", err)
		}
	}
	return c
}
