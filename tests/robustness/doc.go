// Package robustness tries hard to break cairn's promises under faults and
// checks, by machine, that it did not: KV operations are linearizable and
// durable once acknowledged; watches are ordered, unique, atomic,
// bookmarkable, reliable and resumable; every member applies the same
// history. docs/robustness.md is the user manual (how to run, what each
// scenario and checker does, what was found).
//
// # Order of operations of one run (Run)
//
//  1. Start the cluster through tests/e2e (one member, three, or three
//     behind a PeerNet when the fault cuts peer links). Each member gets
//     CAIRN_FAILPOINTS_FILE so the fault can arm its crash points.
//  2. Open one full watch per member from revision 1 (the reference
//     history), start the traffic (History records every request with
//     call and return times), the compactor (never past what a full watch
//     still needs) and the offset watches.
//  3. Inject the scenario's one Fault; it returns once every member runs
//     and every link is healed. Check recovery, let the traffic run on.
//  4. Stop the traffic, read the final revision, wait for every watch to
//     reach it, compare HashKV, and run Check.
//
// # Invariants the checkers rely on
//
//   - Only the traffic writes keys under KeyPrefix, and every put value is
//     unique, so a value identifies its write and every revision after
//     the start is a traffic write with at least one event.
//   - Leases live far longer than a run: keys disappear only by delete or
//     revoke.
//   - A request that failed may or may not have taken effect; its return
//     time is "never" for porcupine, and the watch history resolves it
//     when it can.
//
// The checkers (Check) are pure functions of the recorded data, tested
// on hand-made histories in check_test.go, each of which must be caught.
package robustness
