// Package lease is cairn's lessor: the lease state machine and the leader's
// expiry and checkpoint bookkeeping. It is pure: no IO, no goroutines, no
// Raft, no storage. Time comes from an injected Clock, so tests drive it with
// a FakeClock and never sleep.
//
// # Two kinds of methods
//
// Deterministic methods are called by the apply loop when a committed Raft
// entry is applied. Given the same entries (and the same MinTTL) they produce
// the same lease records on every member:
//
//	Grant(id, ttl)            LeaseGrant entry
//	Revoke(id)                LeaseRevoke entry; returns the keys to delete
//	Attach(id, key)           a put with a lease
//	Detach(id, key)           a put that drops or changes the lease, a delete
//	Checkpoint(id, remaining) LeaseCheckpoint entry
//	Restore(records)          startup or snapshot install, before any Attach
//
// The lessor keeps no durable state. Grant and Checkpoint return the Record
// to persist; Revoke means "delete the record". The caller writes these in
// the same storage batch as the rest of the entry's effects and the applied
// index. Keys are not persisted by the lessor either: after Restore the caller
// attaches every leased key it finds in mvcc.
//
// Primary methods run only on the leader and never go through Raft. They
// manage expiry, which is local, non-deterministic knowledge:
//
//	Promote(extend)    when this member becomes leader
//	Demote()           when it stops being leader
//	Renew(id)          LeaseKeepAlive
//	Expired(limit)     polled by the leader loop; it proposes a LeaseRevoke for each
//	Checkpoints(limit) polled by the leader loop; it proposes one LeaseCheckpointRequest
//
// Queries (Lookup, Leases, Keys, IsPrimary) may be called from anywhere.
//
// # Expiry
//
// Only the primary knows expiries. Followers never expire leases; a lease is
// removed only by an applied LeaseRevoke, proposed by the leader after
// Expired reports it. Promote gives every lease the expiry
//
//	now + (checkpointed remaining TTL, or the full TTL when none) + extend
//
// and Demote forgets all expiries. A lease is expired once now >= expiry.
// Renew refuses an expired lease (ErrLeaseExpired): its revoke may already be
// in the log. Expired keeps reporting a lease on every call until it is
// revoked or given a new expiry by a Checkpoint, Restore or Promote, so a
// revoke proposal that was lost is proposed again on the next poll; the apply
// loop must therefore tolerate ErrLeaseNotFound from Revoke.
//
// # Checkpoints
//
// A checkpoint records a lease's remaining TTL through Raft so that it
// survives a leader change or a restart (etcd resets it to the full TTL; cairn
// does not). The record's RemainingTTL is 0 when no checkpoint applies and
// the full TTL counts; Checkpoint normalises values <= 0 or >= TTL to 0.
//
// With a CheckpointInterval > 0, the primary schedules every lease whose TTL
// exceeds the interval for a checkpoint one interval after Grant or Promote
// and then once per interval (a corrective checkpoint, below, restarts the
// cycle). When a lease is due, Checkpoints reports
// ceil(expiry-now) in seconds (0 if that is the full TTL), unless the record
// already holds that value. Leases with a TTL of at most one interval are
// never checkpointed: the full TTL already overstates their remaining time by
// at most one interval. So after a leader change or restart a lease keeps at
// most one interval (plus poll delay, Raft latency and the new leader's
// extend) more than it had left.
//
// Renew on the primary sets expiry = now+TTL. If the record holds a
// checkpointed remaining TTL, that record is now stale (a new leader would
// use it and could expire a live lease early), so Renew returns
// resetCheckpoint = true: the caller must propose
// LeaseCheckpoint{ID: id, Remaining_TTL: 0} and wait for it to apply before
// answering the client, as etcd does. Renew reports this once until a
// checkpoint for the lease applies, so a burst of keepalives proposes one
// reset.
//
// Applying a Checkpoint on the primary also moves the expiry, to now plus the
// checkpointed value (or the TTL for 0), because a checkpoint committed in an
// earlier term carries newer information than what Promote used. Two
// exceptions keep the primary's own knowledge when it is newer:
//
//   - the lease was renewed on this primary since Promote: the expiry is kept;
//     if the checkpointed value is below the primary's own remaining TTL (a
//     checkpoint computed before the renewal, or a stale one from an earlier
//     term), the record would understate the lease, so the lease is
//     rescheduled for an immediate corrective checkpoint;
//   - the value is the one this primary itself last proposed: the expiry is
//     kept (otherwise every checkpoint would extend the lease by the Raft
//     latency and rounding).
//
// # Errors
//
// Methods return the sentinel errors below, named on each method. The API
// layer maps them to rpctypes: ErrLeaseNotFound and ErrLeaseExpired to
// ErrGRPCLeaseNotFound, ErrLeaseExists to ErrGRPCLeaseExist,
// ErrLeaseTTLTooLarge to ErrGRPCLeaseTTLTooLarge; ErrNotPrimary means
// "forward to the leader".
//
// # Concurrency
//
// The apply goroutine, the leader loop and gRPC handlers call a Lessor
// concurrently. One mutex guards all state; every method holds it briefly
// and returns copies, never internal slices or maps.
//
// # Costs
//
// Expiries and checkpoint times live in two B-trees ordered by (time, ID).
// Expired(limit) and Checkpoints(limit) cost O(log n + k) and O(k log n) for
// k results; Renew, Grant, Revoke and Checkpoint are O(log n). Promote and
// Restore are O(n log n); Demote is O(n).
package lease
