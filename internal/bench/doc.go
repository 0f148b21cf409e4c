// Package bench is cairn-bench: load workloads for any server that speaks
// the etcd v3 gRPC API, their latency statistics and their reports.
// cmd/cairn-bench is a thin main over NewCommand; scripts/bench-vs-etcd
// drives it and tools/ceiling is the do-nothing server it is compared with
// (docs/benchmarks.md).
//
// # A run
//
// Every closed-loop workload (put, range, txn-put, txn-mixed,
// lease-keepalive) runs in this order:
//
//  1. validate the flags (Config.Validate, KeySpec.Validate);
//  2. generate keys and values (Keys, RandomValue) before any clock starts;
//  3. dial Config.Conns clients (Config.Dial; with TargetLeader, only the
//     endpoint whose Status says it is the leader), and do any set-up that
//     is not measured (range --prefill, one lease per worker);
//  4. start Config.Clients workers; each takes the next request number
//     from one shared atomic counter until Total, waits for its slot when
//     Rate is set (request n not before start + n/Rate), times the call
//     and records the latency in its own Recorder (no lock, no allocation);
//  5. merge the recorders (Summarize) and build the Report.
//
// The watch workloads are open loops of their own: Watch counts every
// event each watcher should receive and times it from its put's send;
// WatchLatency puts one key at a time and times each watcher's event from
// the put's acknowledgement.
//
// # Invariants
//
//   - Report.Requests + Report.Errors is the number of requests the run
//     was asked for (for the watch workloads: events expected, plus failed
//     puts); a run cut short by Config.RunTimeout or a signal counts what
//     it could not do as errors.
//   - Percentiles are nearest-rank over the recorded latencies, exact while
//     a run records at most Config.MaxSamples of them, a uniform sample
//     beyond; count, fastest, slowest, average and stddev are always exact.
//   - Only successful requests are timed.
package bench
