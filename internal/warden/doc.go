// Package warden is cairn-warden's supervisor: it keeps the services of a
// configuration file running, registered in cairn, restarted when they die,
// and failed over between the wardens of a group. cmd/cairn-warden is a thin
// main over NewCommand; docs/warden.md is the operator's guide.
//
// # Pieces
//
//   - Parse/LoadFile: the configuration (YAML or JSON, the "services" list or
//     the {GROUP: {NAME: {key, PROGRAM: LINE}}} shorthand), defaulted and
//     validated as a whole; a *ConfigError names the service and the field
//     of every problem.
//   - runner: one goroutine per service, the supervision loop below.
//   - link: the warden's connection to cairn: one lease for every key and
//     election entry of the warden, and the registry keys as they should
//     be, written in the background. The lease is renewed every TTL/3 with
//     a request of its own bounded by TTL/3 (so a member that does not
//     answer costs one attempt and the next goes to another endpoint), and
//     counts as lost when cairn does not know it or no renewal sent within
//     the last TTL succeeded.
//   - gate: the right to run a service: always (placement host), or while
//     this warden leads the service's election (placement group), run
//     with etcd's concurrency.Election on a session over the same lease.
//
// # The supervision loop (runner.run)
//
//  1. Acquire a term from the gate (for a group service: campaign under
//     <election-prefix><group>/<service>/ and win).
//  2. For a group service, check the fence (the leader key still has the
//     create revision we won with), then start the process in its own
//     process group, with Pdeathsig=SIGKILL so it dies with the warden.
//  3. Health-check it: the first check at once, then every interval (every
//     50ms until the first success). Failures within the start period do
//     not count until the first success. The first success registers it:
//     the key gets a discovery.Record under the warden's lease (fenced for a
//     group service). A service without a check registers once started.
//  4. The run ends on exit, on failure_threshold consecutive failed checks,
//     when the term is lost, or at shutdown. Then, in this order: the key is
//     deleted (so watchers see the service go at once), the process group
//     gets the stop signal (and SIGCONT), then SIGKILL after the grace.
//  5. Restart policy decides; with max_restarts restarts already within the
//     window the service is failed: a record with status "failed" and the
//     reason is written, the error logged, and nothing more is started.
//     Otherwise wait the backoff (reset after reset_after healthy) and go
//     to 2 (or 1 if the term was lost meanwhile).
//
// # Invariants
//
//   - Supervision never waits on cairn: registry writes are recorded and
//     written by link's loop, retried while cairn is unreachable. When the
//     lease is lost, a new one is granted, the old one revoked if it still
//     exists, and every wanted key written again under the new one.
//   - A group service runs only under a live term: the term ends when the
//     lease is lost (see link) or the leader key goes; the process is stopped at
//     once. Every start and every registry write of a group service is
//     conditional on the leader key's create revision, so a warden that was
//     paused or partitioned and comes back never writes over its successor.
//   - A delete only removes a key that carries this warden's lease.
//   - Shutdown: stop every service (their keys deleted first), write the
//     pending deletes, revoke the lease (which also drops every election
//     entry, so the group's next warden takes over at once).
package warden
