// Package watch fans committed key-value events out to watchers, off the
// apply path.
//
// # Roles
//
// A Hub sits between the apply loop and the watch streams:
//
//	apply loop ──Notify(rev, events)──> Hub ──Response──> Stream ──Pop──> gRPC send loop
//	                                     │
//	                                     └─ catch-up goroutine ──Store.Events──> mvcc
//
// The apply loop calls Notify after each committed revision is durable and
// visible in the Store. Notify never blocks on a watcher and never reads the
// Store: it matches the events against the synced watchers, appends one
// Response per matching watcher to that watcher's Stream queue, and returns.
//
// A Stream is one client watch stream (one gRPC Watch call). It owns many
// watchers and one ordered queue of Responses: created/canceled replies,
// events, compaction notices and progress notifications all go through that
// queue, so a client sees them in the order the hub decided them. The stream's
// consumer waits on Ready and takes responses with Pop; Pop fills prev_kv
// (Store.Get) on the consumer's goroutine.
//
// # Watcher states
//
//	Watch(start=0 or start>rev)              Watch(start<=rev)
//	           │                                   │
//	           v        queue full in Notify       v
//	        synced ──────────────────────────> unsynced
//	           ^                                   │
//	           └──── catch-up reached hub rev ─────┤
//	                                               │ next <= compacted
//	                                               v
//	                                        done (compaction sent;
//	                                        id kept until Cancel)
//
// Each watcher has next, the lowest revision it has not been given yet.
// A synced watcher has been given every matching event up to the hub revision
// (its next is brought up to date when it gets events or leaves the set; a
// future start revision keeps next ahead); Notify gives it the events with
// revision >= next. An unsynced watcher has next <= hub revision; the catch-up
// goroutine reads Store.Events(next, hubRev) in bounded batches without holding
// the hub lock, then, under the lock, queues the matching events and advances
// next. When next passes the hub revision the watcher joins the synced set.
// Because catch-up only reads up to the hub revision it snapshotted, and Notify
// skips events below next, a watcher never misses or repeats a revision.
//
// # Slow watchers
//
// A stream's queue is bounded (Options.StreamBuffer responses,
// Options.StreamBufferBytes of key and value bytes). When Notify finds the
// queue full, the watcher is demoted to unsynced instead of buffering more; it
// catches up again from the Store once its consumer has drained the queue.
// Notify's cost is therefore bounded by the events and matching watchers of
// one call, whatever the clients do. If a demoted watcher's revisions are
// compacted before it catches up, it gets the compaction notice, as in etcd.
//
// # Compaction
//
// A watcher whose next revision is below the Store's compacted revision C
// gets a Response with CompactRevision C and Canceled true (etcd's response;
// header revision 0). A watcher starting exactly at C is served, as in etcd:
// the Store keeps the events of revision C (the compaction keeps a
// tombstone at C, so a delete at C reaches it too).
// A start revision below zero is refused at creation with etcd's reason
// "etcdserver: mvcc: required revision has been compacted".
//
// # Progress
//
// Stream.RequestProgress queues a header-only Response with WatchID -1 and
// the hub revision once every live watcher of the stream is synced and has
// reached its start revision; until then the request waits (and is answered
// once, however many requests arrived meanwhile). Stream.ProgressTick is the
// periodic progress notify: every watcher that asked for progress_notify and
// got no events since the previous tick, and is synced, gets a Response with
// its own WatchID and the hub revision. The caller owns the ticker.
//
// # Notify contract
//
// Notify(rev, events) takes the events of one or more revisions, in revision
// order, every event's Kv.ModRevision in (previous rev, rev]. rev is the
// Store's revision after those events (normally the last event's revision).
// A batch spanning several revisions reaches each watcher as one Response
// whose header revision is rev. An empty events slice only advances the hub
// revision. Revisions at or below the hub revision are ignored (the store
// already held them when the hub read its revision). Events out of revision
// order, or above rev, panic: that is a broken apply loop, not a runtime
// condition.
//
// # Store errors
//
// A failed catch-up read is retried after Options.RetryDelay, or sooner when
// a write or a drained stream wakes catch-up. If the store's compacted
// revision passed the read's start, whatever the error value, the affected
// watchers get their compaction notice instead.
//
// Put events carry the full KeyValue; Delete events carry Kv{Key, ModRevision}.
// The hub shares event values between watchers and never modifies them.
package watch
