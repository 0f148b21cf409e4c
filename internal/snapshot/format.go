package snapshot

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// Bucket names, as etcd names them.
var (
	bucketKey            = []byte("key")
	bucketMeta           = []byte("meta")
	bucketLease          = []byte("lease")
	bucketAlarm          = []byte("alarm")
	bucketCluster        = []byte("cluster")
	bucketMembers        = []byte("members")
	bucketMembersRemoved = []byte("members_removed")
	bucketAuth           = []byte("auth")
	bucketAuthUsers      = []byte("authUsers")
	bucketAuthRoles      = []byte("authRoles")

	allBuckets = [][]byte{
		bucketKey, bucketMeta, bucketLease, bucketAlarm, bucketCluster,
		bucketMembers, bucketMembersRemoved, bucketAuth, bucketAuthUsers, bucketAuthRoles,
	}
)

// Keys of the meta, cluster and auth buckets.
var (
	metaConsistentIndex  = []byte("consistent_index")
	metaTerm             = []byte("term")
	metaConfState        = []byte("confState")
	metaScheduledCompact = []byte("scheduledCompactRev")
	metaFinishedCompact  = []byte("finishedCompactRev")
	metaStorageVersion   = []byte("storageVersion")
	clusterVersionKey    = []byte("clusterVersion")
	authEnabledKey       = []byte("authEnabled")
	authRevisionKey      = []byte("authRevision")
	memberRemovedValue   = []byte("removed")
)

// StorageVersion is the storageVersion cairn writes into the meta bucket.
// etcd 3.4 and 3.5 ignore it, etcd 3.6 accepts nothing newer than its own
// version, and etcd 3.7 upgrades it in place, so "3.6.0" is the one value all
// of them start from.
const StorageVersion = "3.6.0"

const (
	// revKeyLen is the length of a revision key: main, '_', sub.
	revKeyLen = 8 + 1 + 8
	// tombstoneKeyLen is a revision key followed by the tombstone marker.
	tombstoneKeyLen = revKeyLen + 1
	revSeparator    = '_'
	tombstoneMarker = 't'

	// trailerSize is the length of the sha256 trailer after the database.
	trailerSize = sha256.Size
	// trailerAlign is the unit database sizes are a multiple of; a file whose
	// size modulo trailerAlign is trailerSize ends with a trailer.
	trailerAlign = 512
)

// Errors returned by Open and Status. They are wrapped with details; test for
// them with errors.Is.
var (
	// ErrIntegrity means the file is damaged: the sha256 trailer does not
	// match the database, or bbolt's consistency check failed.
	ErrIntegrity = errors.New("snapshot file integrity check failed")
	// ErrMissingHash means the file has no sha256 trailer (it is a database
	// copied from a data directory) and the caller did not skip the check.
	ErrMissingHash = errors.New("snapshot missing hash but --skip-hash-check=false")
	// ErrNotFinished is returned by WriteTo and Size before Finish.
	ErrNotFinished = errors.New("snapshot: writer not finished")
	// ErrFinished is returned by the Put and Set methods after Finish.
	ErrFinished = errors.New("snapshot: writer already finished")
)

// hasTrailer reports whether a file of size n ends with a sha256 trailer,
// by etcd's rule.
func hasTrailer(n int64) bool {
	return n%trailerAlign == trailerSize
}

// Revision is an MVCC revision: Main counts transactions, Sub counts changes
// inside one. Both are non-negative.
type Revision struct {
	Main, Sub int64
}

// appendRevKey appends the bucket key of rev, with the tombstone marker when
// tombstone is set.
func appendRevKey(dst []byte, rev Revision, tombstone bool) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(rev.Main))
	dst = append(dst, revSeparator)
	dst = binary.BigEndian.AppendUint64(dst, uint64(rev.Sub))
	if tombstone {
		dst = append(dst, tombstoneMarker)
	}
	return dst
}

// parseRevKey decodes a key of the key bucket.
func parseRevKey(k []byte) (rev Revision, tombstone bool, err error) {
	if len(k) != revKeyLen && len(k) != tombstoneKeyLen {
		return rev, false, fmt.Errorf("snapshot: revision key %x: length %d, want %d or %d", k, len(k), revKeyLen, tombstoneKeyLen)
	}
	if k[8] != revSeparator {
		return rev, false, fmt.Errorf("snapshot: revision key %x: separator %q, want %q", k, k[8], revSeparator)
	}
	main, sub := int64(binary.BigEndian.Uint64(k[:8])), int64(binary.BigEndian.Uint64(k[9:17]))
	if main < 0 || sub < 0 {
		return rev, false, fmt.Errorf("snapshot: revision key %x: negative revision", k)
	}
	if len(k) == tombstoneKeyLen && k[revKeyLen] != tombstoneMarker {
		return rev, false, fmt.Errorf("snapshot: revision key %x: marker %q, want %q", k, k[revKeyLen], tombstoneMarker)
	}
	return Revision{Main: main, Sub: sub}, len(k) == tombstoneKeyLen, nil
}

// Lease is a lease record of the lease bucket. RemainingTTL is the last
// checkpointed remaining time in seconds, 0 when never checkpointed.
type Lease struct {
	ID, TTL, RemainingTTL int64
}

func (l Lease) key() []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(l.ID))
}

// marshal encodes l as etcd's leasepb.Lease (proto3: zero fields omitted).
func (l Lease) marshal() []byte {
	var b []byte
	for i, v := range [...]int64{l.ID, l.TTL, l.RemainingTTL} {
		if v != 0 {
			b = protowire.AppendTag(b, protowire.Number(i+1), protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		}
	}
	return b
}

func unmarshalLease(b []byte) (Lease, error) {
	var l Lease
	err := consumeVarints(b, func(num protowire.Number, v uint64) {
		switch num {
		case 1:
			l.ID = int64(v)
		case 2:
			l.TTL = int64(v)
		case 3:
			l.RemainingTTL = int64(v)
		}
	})
	return l, err
}

// Alarm is an alarm raised on a member, a key of the alarm bucket.
type Alarm struct {
	MemberID uint64
	Alarm    etcdserverpb.AlarmType
}

// marshal encodes a as etcd's etcdserverpb.AlarmMember.
func (a Alarm) marshal() []byte {
	var b []byte
	if a.MemberID != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, a.MemberID)
	}
	if a.Alarm != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(a.Alarm))
	}
	return b
}

func unmarshalAlarm(b []byte) (Alarm, error) {
	var a Alarm
	err := consumeVarints(b, func(num protowire.Number, v uint64) {
		switch num {
		case 1:
			a.MemberID = v
		case 2:
			a.Alarm = etcdserverpb.AlarmType(int32(v))
		}
	})
	return a, err
}

// consumeVarints walks a protobuf message, handing each varint field to fn
// and skipping fields of other wire types.
func consumeVarints(b []byte, fn func(protowire.Number, uint64)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			fn(num, v)
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// Member is a cluster member of the members bucket.
type Member struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	IsLearner  bool
}

// memberJSON is the member record as etcd stores it.
type memberJSON struct {
	ID         uint64   `json:"id"`
	PeerURLs   []string `json:"peerURLs"`
	IsLearner  bool     `json:"isLearner,omitempty"`
	Name       string   `json:"name,omitempty"`
	ClientURLs []string `json:"clientURLs,omitempty"`
}

// memberKey is the bucket key of a member: its ID in lower-case hex.
func memberKey(id uint64) []byte {
	return strconv.AppendUint(nil, id, 16)
}

func parseMemberKey(k []byte) (uint64, error) {
	id, err := strconv.ParseUint(string(k), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("snapshot: member key %q: %w", k, err)
	}
	return id, nil
}

// Meta is the raft and compaction state a snapshot records. A zero field is
// absent from the file.
type Meta struct {
	// ConsistentIndex is the raft index of the last applied entry.
	ConsistentIndex uint64
	// Term is the raft term of that entry.
	Term uint64
	// ScheduledCompactRev is the revision of the last compaction started.
	ScheduledCompactRev int64
	// FinishedCompactRev is the revision of the last compaction completed.
	FinishedCompactRev int64
	// ConfState is the raft configuration at ConsistentIndex.
	ConfState *raftpb.ConfState
	// ClusterVersion is the cluster version, major.minor.patch ("3.6.0").
	ClusterVersion string
}

// confStateJSON is a raft ConfState as etcd 3.5 and later store it.
type confStateJSON struct {
	Voters         []uint64 `json:"voters,omitempty"`
	Learners       []uint64 `json:"learners,omitempty"`
	VotersOutgoing []uint64 `json:"voters_outgoing,omitempty"`
	LearnersNext   []uint64 `json:"learners_next,omitempty"`
	AutoLeave      bool     `json:"auto_leave"`
}

func marshalConfState(cs *raftpb.ConfState) ([]byte, error) {
	return json.Marshal(confStateJSON{
		Voters:         cs.GetVoters(),
		Learners:       cs.GetLearners(),
		VotersOutgoing: cs.GetVotersOutgoing(),
		LearnersNext:   cs.GetLearnersNext(),
		AutoLeave:      cs.GetAutoLeave(),
	})
}

func unmarshalConfState(b []byte) (*raftpb.ConfState, error) {
	var j confStateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("snapshot: confState %q: %w", b, err)
	}
	cs := &raftpb.ConfState{
		Voters:         j.Voters,
		Learners:       j.Learners,
		VotersOutgoing: j.VotersOutgoing,
		LearnersNext:   j.LearnersNext,
	}
	if j.AutoLeave {
		cs.AutoLeave = &j.AutoLeave
	}
	return cs, nil
}

func uint64Bytes(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

func parseUint64(name, b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("snapshot: %s: %d bytes, want 8", name, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
