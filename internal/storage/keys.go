package storage

import (
	"encoding/binary"

	"github.com/cockroachdb/pebble/v2"
)

// Meta names, under the 0x02 namespace.
const (
	MetaApplied          = "applied"            // applied index and term: 16 bytes
	MetaConfState        = "confstate"          // raftpb.ConfState
	MetaScheduledCompact = "compact_scheduled"  // revision, 8 bytes
	MetaFinishedCompact  = "compact_finished"   // revision, 8 bytes
	MetaCluster          = "cluster"            // cluster identity (JSON)
	MetaLeaseCheckpoints = "lease_checkpointed" // reserved
)

// MetaKey is the key of a metadata record.
func MetaKey(name string) []byte { return append([]byte{nsMeta}, name...) }

// GetMeta reads a metadata record from r.
func GetMeta(r pebble.Reader, name string) ([]byte, bool, error) {
	return get(r, MetaKey(name))
}

// RevisionKeyLen is the length of a revision key without the namespace byte
// and without the tombstone marker: main (8), '_' (1), sub (8).
const RevisionKeyLen = 17

// KVKey is the store key of an MVCC revision: the namespace byte followed by
// etcd's revision key, with 't' appended for a deletion.
func KVKey(main, sub int64, tombstone bool) []byte {
	n := 1 + RevisionKeyLen
	if tombstone {
		n++
	}
	k := make([]byte, n)
	k[0] = nsKV
	binary.BigEndian.PutUint64(k[1:], uint64(main))
	k[9] = '_'
	binary.BigEndian.PutUint64(k[10:], uint64(sub))
	if tombstone {
		k[18] = 't'
	}
	return k
}

// KVKeyLowerBound is the smallest store key with the given main revision.
func KVKeyLowerBound(main int64) []byte { return KVKey(main, 0, false) }

// KVSpan is the span of all MVCC revision keys.
func KVSpan() (lower, upper []byte) { return []byte{nsKV}, []byte{nsKV + 1} }

// ParseKVKey decodes a store key made by KVKey.
func ParseKVKey(k []byte) (main, sub int64, tombstone bool, ok bool) {
	if len(k) < 1+RevisionKeyLen || k[0] != nsKV {
		return 0, 0, false, false
	}
	main = int64(binary.BigEndian.Uint64(k[1:]))
	sub = int64(binary.BigEndian.Uint64(k[10:]))
	return main, sub, len(k) == 2+RevisionKeyLen && k[18] == 't', true
}

// LeaseKey is the store key of a lease record.
func LeaseKey(id int64) []byte { return append([]byte{nsLease}, u64(uint64(id))...) }

// LeaseSpan is the span of all lease records.
func LeaseSpan() (lower, upper []byte) { return []byte{nsLease}, []byte{nsLease + 1} }

// AlarmKey is the store key of a raised alarm.
func AlarmKey(member uint64, alarm int32) []byte {
	k := append([]byte{nsAlarm}, u64(member)...)
	var t [4]byte
	binary.BigEndian.PutUint32(t[:], uint32(alarm))
	return append(k, t[:]...)
}

// ParseAlarmKey decodes a key made by AlarmKey.
func ParseAlarmKey(k []byte) (member uint64, alarm int32, ok bool) {
	if len(k) != 13 || k[0] != nsAlarm {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), int32(binary.BigEndian.Uint32(k[9:])), true
}

// AlarmSpan is the span of all alarm records.
func AlarmSpan() (lower, upper []byte) { return []byte{nsAlarm}, []byte{nsAlarm + 1} }

// MemberKey is the store key of a member record.
func MemberKey(id uint64) []byte { return append([]byte{nsMember}, u64(id)...) }

// MemberSpan is the span of all member records.
func MemberSpan() (lower, upper []byte) { return []byte{nsMember}, []byte{nsMember + 1} }

// PutU64 encodes v as 8 bytes big-endian.
func PutU64(v uint64) []byte { return u64(v) }

// U64 decodes 8 bytes big-endian; short input gives 0.
func U64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
