// Package restore turns an etcd-format snapshot file (one that cairn
// streams, or one that etcd's `etcdctl snapshot save` wrote) into cairn's
// storage: at run time when a member installs a snapshot from its leader
// (WriteState), and offline when an operator restores a snapshot into a
// new data dir for a new cluster (Restore, behind `cairnctl snapshot
// restore`).
package restore

import (
	"encoding/json"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairn-kv/cairn/internal/apply"
	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/membership"
	"github.com/cairn-kv/cairn/internal/snapshot"
	"github.com/cairn-kv/cairn/internal/storage"
)

// Setter receives the state's keys; *pebble.Batch is one.
type Setter interface {
	Set(key, value []byte, o *pebble.WriteOptions) error
}

// Parts says which parts of the snapshot WriteState copies besides the
// keys and leases, which it always copies.
type Parts struct {
	// Members copies the member list. A restore into a new cluster
	// writes its own members instead.
	Members bool
	// Alarms copies the raised alarms. They name members of the
	// snapshot's cluster, so a new cluster starts without them.
	Alarms bool
}

// WriteState copies the snapshot's state machine into w: every key
// revision, every lease, and the parts asked for, plus the scheduled
// compaction. progress, when not nil, is called with the bytes of key
// data copied so far. It returns the snapshot's metadata. The caller has
// cleared what was there before and writes the applied index.
func WriteState(w Setter, r *snapshot.Reader, parts Parts, progress func(int64)) (snapshot.Meta, error) {
	meta, err := r.Meta()
	if err != nil {
		return meta, err
	}
	var copied int64
	if err := r.ForEachKV(func(rev snapshot.Revision, tomb bool, kv []byte) error {
		copied += int64(len(kv)) + 17
		if progress != nil {
			progress(copied)
		}
		return w.Set(storage.KVKey(rev.Main, rev.Sub, tomb), kv, nil)
	}); err != nil {
		return meta, err
	}
	if err := r.ForEachLease(func(l snapshot.Lease) error {
		return w.Set(storage.LeaseKey(l.ID), apply.EncodeLease(lease.Record{ID: lease.ID(l.ID), TTL: l.TTL, RemainingTTL: l.RemainingTTL}), nil)
	}); err != nil {
		return meta, err
	}
	if parts.Members {
		ms, err := r.Members()
		if err != nil {
			return meta, err
		}
		for _, m := range ms {
			if err := SetMember(w, &membership.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner}); err != nil {
				return meta, err
			}
		}
	}
	if parts.Alarms {
		alarms, err := r.Alarms()
		if err != nil {
			return meta, err
		}
		for _, a := range alarms {
			if err := w.Set(storage.AlarmKey(a.MemberID, int32(a.Alarm)), nil, nil); err != nil {
				return meta, err
			}
		}
	}
	if meta.ScheduledCompactRev > 0 {
		if err := w.Set(storage.MetaKey(storage.MetaScheduledCompact), storage.PutU64(uint64(meta.ScheduledCompactRev)), nil); err != nil {
			return meta, err
		}
	}
	return meta, nil
}

// SetMember writes one member record as the member set stores it.
func SetMember(w Setter, m *membership.Member) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return w.Set(storage.MemberKey(m.ID), v, nil)
}
