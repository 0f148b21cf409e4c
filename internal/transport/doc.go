// Package transport carries Raft messages between the members of a cairn
// cluster over HTTP: one long-lived stream per peer for ordinary messages,
// and a separate request per snapshot so that a large snapshot never sits
// in front of a heartbeat.
//
// # Place in the server
//
// raftnode's Ready loop calls Transport.Send (raftnode.Transport); the
// peer listener serves Transport.Handler under /raft/; what arrives goes
// to a Handler, which the server implements over the Raft node. The
// package imports no other cairn package. Wiring, in internal/server:
//
//	tr, err := transport.New(transport.Config{
//		ClusterID: cid, ID: id,
//		Handler:        raftHandler,   // Process -> node.Step, Report* -> node.Report*
//		SnapshotSource: openSnapshot,  // state-machine data for an outgoing MsgSnap
//		SnapshotSink:   storeSnapshot, // durable before Raft sees the MsgSnap
//		OnRefused:      stopIfRemoved, // ErrMemberRemoved: this member must stop
//		Logger: lg, Registerer: prometheus.DefaultRegisterer,
//		TLS: peerClientTLS,            // nil for http:// peer URLs
//	})
//	peerMux.Handle(transport.PathPrefix, tr.Handler())
//	for _, m := range others { tr.AddPeer(m.ID, m.PeerURLs) }
//	// node := raftnode.Start(raftnode.Config{..., Transport: tr})
//	// membership changes: AddPeer / RemovePeer / UpdatePeer after applying them
//	// shutdown: stop the Raft node, then tr.Close(), then the peer listener
//
// The peer http.Server must not set ReadTimeout/WriteTimeout (streams are
// long-lived; the handler keeps its own deadlines). For HTTP/2 without TLS
// both sides must opt in: Config.UnencryptedHTTP2 and the server's
// Protocols with SetUnencryptedHTTP2; with TLS, ALPN picks HTTP/2.
//
// # Sending
//
//	Raft loop ──Send(msgs)──> per-peer queue (QueueSize, non-blocking)
//	                │               │ one writer goroutine per peer
//	                │               v
//	                │         POST /raft/stream ── frames, batched per flush ──> peer
//	                │         <── pongs ───────────────────────────────────────
//	                └─ MsgSnap ─> per-peer snapshot goroutine (one at a time)
//	                                 SnapshotSource(m) ─> POST /raft/snapshot ──> peer
//	                                 ReportSnapshot(id, failed) <── 204 / error
//
// Send never blocks: a message to an unknown peer, to a peer whose stream
// is down, or to a full queue is dropped and the peer reported unreachable
// (reports are coalesced and delivered by a transport goroutine, never
// inside Send, so the Raft loop is never re-entered). Messages to one peer
// are written in Send order. While a connection attempt is in flight
// messages wait in the queue; when an attempt fails or a stream breaks,
// the queue is emptied (stale messages are worth nothing to Raft) and the
// writer retries after a backoff that doubles from BackoffMin to
// BackoffMax and resets on success. Peer URLs are tried in turn.
//
// A peer is active while its stream is connected (Status, the
// etcd_network_active_peers gauge). The sender pings every PingInterval
// and closes a stream with no pong for IdleTimeout; the receiver closes a
// stream with no frame for IdleTimeout. So a partition that drops packets
// silently is detected from both ends, and the time from ping to pong is
// the round-trip-time metric (it includes the peer's time on the messages
// queued ahead of the ping).
//
// # Snapshots
//
// A MsgSnap carries Raft's metadata only; the state machine travels
// beside it, on its own connection:
//
//	leader                                      follower
//	  SnapshotSource(m) -> data, size
//	  POST /raft/snapshot  ─ MsgSnap frame, size, data, CRC-32C ─>
//	                                            SnapshotSink(ctx, m, data, size)
//	                                              reads to io.EOF (checksum ok),
//	                                              makes the data durable
//	                                            Handler.Process(m)  (Raft sees it)
//	  <─ 204 No Content ─────────────────────────
//	  ReportSnapshot(id, false)
//
// Any failure (source error, short data, checksum mismatch, sink error,
// Process error, no progress for SnapshotStallTimeout) ends in
// ReportSnapshot(id, true). At most one transfer per peer runs and one
// more may wait; a further MsgSnap fails at once (Raft sends the next one
// only after the report of the last). Because the snapshot uses its own
// connection (and its own HTTP client, also under HTTP/2), heartbeats on
// the stream keep flowing while it is sent.
//
// # Receiving and refusals
//
// Every request carries the sender's identity and is checked before its
// body is read:
//
//	X-Cairn-Peer-Protocol: 1
//	X-Cairn-Cluster-Id:    <cluster ID, hex>
//	X-Cairn-From:          <sender member ID, hex>
//	X-Cairn-To:            <recipient member ID, hex>
//
//	refusal                         status  X-Cairn-Refused    sender's error
//	other protocol, bad headers     400     bad-request        ErrBadRequest
//	another cluster ID              412     cluster-mismatch   ErrClusterMismatch
//	for another member ID           412     wrong-member       ErrWrongMember
//	sender was removed (RemovePeer) 410     member-removed     ErrMemberRemoved
//	transport closed                503     stopped            ErrStopped
//	snapshot not stored/accepted    4xx/5xx snapshot-failed    ErrSnapshotRefused
//
// A refusal is logged by the refusing member (at most once per sender and
// reason every 10s) and by the refused one, and passed to
// Config.OnRefused. Requests from members that are neither peers nor
// removed are accepted: a member added to the cluster may talk before
// every member applied its addition.
//
// A stream that sends garbage is cut: an unknown frame kind, a length over
// MaxFrameBytes, an undecodable message, a message whose From/To differ
// from the headers, or a MsgSnap on the stream. The connection is dropped
// (HTTP/1.1) or the stream reset (HTTP/2) without reading further and
// without allocating the claimed length: payloads over 64 KiB are read
// into a buffer that grows only with the bytes that actually arrive. A
// newer stream from the same peer replaces the older one.
//
// # Wire format
//
// A frame, on the stream and at the head of a snapshot request:
//
//	+--------+-------------------+---------------------------+
//	| kind   | length            | payload                   |
//	| 1 byte | 4 bytes, big end. | length bytes              |
//	+--------+-------------------+---------------------------+
//	kind 1  message  payload: one raftpb.Message, protobuf (proto.Marshal);
//	                 1 <= length <= MaxFrameBytes
//	kind 2  ping     length 0; sender to receiver
//	kind 3  pong     length 0; receiver to sender, one per ping, in order
//
// POST /raft/stream (Content-Type application/x-cairn-raft-stream): the
// request body is an endless sequence of frames, starting with a ping
// (HTTP/1.1 clients send headers with the first body bytes); the
// receiver answers 200 at once and its response body is the pongs.
//
//	request:  ping | message | message | ... | ping | message | ...
//	response: pong | pong | ...
//
// POST /raft/snapshot (application/x-cairn-raft-snapshot, Content-Length
// set):
//
//	+---------------------+----------------+-------------+-----------------+
//	| frame: kind 1,      | size           | data        | CRC-32C of data |
//	| the MsgSnap         | 8 bytes, b.e.  | size bytes  | 4 bytes, b.e.   |
//	+---------------------+----------------+-------------+-----------------+
//
// answered 204 once stored and accepted.
//
// # Metrics
//
// With etcd's names and labels (member IDs in hex): etcd_network_
// active_peers, disconnected_peers_total, peer_sent_bytes_total,
// peer_received_bytes_total, peer_sent_failures_total (dropped messages),
// peer_received_failures_total (refusals, bad frames, Process errors),
// peer_round_trip_time_seconds, snapshot_send_success, _failures,
// _inflights_total, _total_duration_seconds, and the snapshot_receive_
// counterparts. They are registered on Config.Registerer; nil registers
// nothing.
//
// # Test doubles
//
// MemNetwork is the in-memory fake of this package for tests of the
// packages above it: members join with a Handler, and partitions, cuts
// and drops take effect at once, without timers. Package proxy is a
// fault-injecting TCP proxy for end-to-end partition tests of real
// transports and processes.
package transport
