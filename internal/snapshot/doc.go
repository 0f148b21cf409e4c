// Package snapshot writes and reads cairn's backup files, which are etcd v3
// snapshot files byte for byte: what Maintenance.Snapshot streams, what
// `etcdctl snapshot save` stores, what `cairnctl snapshot restore` and
// `etcdutl snapshot restore` read. The live store of cairn is pebble; this
// package only translates cairn's state into etcd's backup format and back,
// so an etcd backup restores into cairn and a cairn backup restores into etcd
// 3.4 to 3.7.
//
// # File layout
//
// A snapshot file is a bbolt database followed by a trailer:
//
//	offset 0                                        N            N+32
//	+-----------------------------------------------+------------+
//	| bbolt database, N bytes (N = pages * pagesize) | sha256     |
//	| meta page 0 | meta page 1 | freelist, B+trees  | of [0, N)  |
//	+-----------------------------------------------+------------+
//
// bbolt page sizes are multiples of 512, so N % 512 == 0 and a file carries a
// trailer exactly when its size % 512 == 32 (sha256.Size). This is the rule
// etcd applies; a file that fails it is a database copied out of a data
// directory, accepted only with skipHashCheck (--skip-hash-check).
//
// # Buckets
//
// The database holds only top-level buckets, named as etcd names them. Every
// integer below is big-endian.
//
//	bucket           key                                value
//	---------------  ---------------------------------  ------------------------------------
//	alarm            proto AlarmMember{1: memberID,     empty
//	                   2: alarm type}
//	auth             "authEnabled"                      1 byte: 0x00 off, 0x01 on
//	                 "authRevision"                     uint64 (1 in a fresh store)
//	authRoles        role name                          proto authpb.Role
//	authUsers        user name                          proto authpb.User
//	cluster          "clusterVersion"                   "3.6.0" (major.minor.patch)
//	key              revision key, 17 or 18 bytes       proto mvccpb.KeyValue
//	lease            lease ID, int64 as 8 bytes         proto leasepb.Lease{1: ID, 2: TTL,
//	                                                      3: RemainingTTL}
//	members          member ID in lower-case hex        JSON {"id","peerURLs","isLearner",
//	                                                      "name","clientURLs"}
//	members_removed  member ID in lower-case hex        "removed"
//	meta             "consistent_index"                 uint64, the applied raft index
//	                 "term"                             uint64, its raft term (etcd >= 3.5)
//	                 "confState"                        JSON raftpb.ConfState (etcd >= 3.5)
//	                 "scheduledCompactRev"              revision key {main, 0}
//	                 "finishedCompactRev"               revision key {main, 0}
//	                 "storageVersion"                   "3.6.0" (etcd >= 3.6)
//
// A revision key orders the key bucket by revision:
//
//	0                   8     9                  17    18
//	+-------------------+-----+-------------------+-----+
//	| main, uint64      | '_' | sub, uint64       | 't' |  <- only on a tombstone
//	+-------------------+-----+-------------------+-----+
//
// The value under a tombstone is a KeyValue holding only the deleted key.
//
// Writers set storageVersion to "3.6.0": etcd 3.4 and 3.5 ignore it, etcd 3.6
// refuses a newer storage version than its own, and etcd 3.7 upgrades 3.6
// storage in place (the two layouts are identical). ClusterVersion is written
// only when the caller sets it, since an etcd member older than the recorded
// cluster version refuses to start from the file.
//
// # Status
//
// Reader.Status reproduces `etcdctl snapshot status`: after bbolt's
// consistency check, a CRC-32 (Castagnoli) runs over every bucket in name
// order, feeding the bucket name and then each key and value in key order;
// TotalKey counts the pairs of all buckets, Revision is the main revision of
// the last key in the key bucket, TotalSize is the database size without the
// trailer and Version is the storageVersion.
//
// # Usage
//
// Writing: NewWriter, then any number of PutKV, PutLease, PutMember,
// PutRemovedMember, PutAlarm, PutAuthUser, PutAuthRole, SetAuth and SetMeta
// calls in any order (PutKV is fastest in revision order), then Finish, then
// WriteTo as many times as needed, then Close. Writes are grouped into large
// bbolt transactions; nothing is durable before Finish, and the temporary
// database lives only until Close.
//
// Reading: Open verifies the trailer and opens a private read-only copy of
// the database; the accessors may be called in any order and concurrently;
// Close removes the copy.
package snapshot
