package snapshot

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Batch limits of one bbolt write transaction. Large transactions make bulk
// loading fast; the byte bound caps the memory a transaction pins (bbolt keeps
// every key and value of an open transaction alive).
const (
	batchPuts  = 200_000
	batchBytes = 64 << 20
	arenaChunk = 1 << 20
)

// Writer builds a snapshot file in a temporary bbolt database.
//
// The methods are not safe for concurrent use. Errors from the database are
// sticky: after one, every later call returns it.
type Writer struct {
	path string
	db   *bolt.DB

	tx           *bolt.Tx
	buckets      map[string]*bolt.Bucket // buckets of tx
	pendingPuts  int
	pendingBytes int
	arena        []byte // holds keys and values until tx commits

	finished bool
	dbSize   int64 // database bytes, set by Finish
	err      error
}

// NewWriter creates a temporary database in dir with etcd's buckets and the
// records a fresh etcd store holds: storageVersion in meta and authRevision 1
// in auth. The database is removed by Close.
func NewWriter(dir string) (*Writer, error) {
	f, err := os.CreateTemp(dir, "cairn-snapshot-*.db")
	if err != nil {
		return nil, fmt.Errorf("snapshot: create temp db: %w", err)
	}
	path := f.Name()
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("snapshot: create temp db: %w", err)
	}
	// The database is scratch space until Finish: no fsync per commit.
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoGrowSync: true})
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("snapshot: open temp db: %w", err)
	}
	w := &Writer{path: path, db: db}
	err = w.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		if err := tx.Bucket(bucketMeta).Put(metaStorageVersion, []byte(StorageVersion)); err != nil {
			return err
		}
		return tx.Bucket(bucketAuth).Put(authRevisionKey, uint64Bytes(1))
	})
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("snapshot: init temp db: %w", err)
	}
	return w, nil
}

// PutKV stores one entry of the key bucket: kv is a marshaled
// mvccpb.KeyValue written at rev (for a tombstone, a KeyValue holding only
// the key). kv is copied. Entries may come in any order; revision order is
// fastest.
func (w *Writer) PutKV(rev Revision, tombstone bool, kv []byte) error {
	if rev.Main < 0 || rev.Sub < 0 {
		return fmt.Errorf("snapshot: negative revision %+v", rev)
	}
	if len(kv) == 0 {
		return fmt.Errorf("snapshot: empty KeyValue at revision %+v", rev)
	}
	return w.put(bucketKey, appendRevKey(w.alloc(tombstoneKeyLen), rev, tombstone), kv)
}

// PutLease stores a lease record.
func (w *Writer) PutLease(l Lease) error {
	if l.ID == 0 {
		return errors.New("snapshot: lease ID 0")
	}
	return w.put(bucketLease, l.key(), l.marshal())
}

// PutMember stores a cluster member. A restore drops the recorded members and
// writes those of the new cluster, so they document the source cluster.
func (w *Writer) PutMember(m Member) error {
	if m.ID == 0 {
		return errors.New("snapshot: member ID 0")
	}
	v, err := json.Marshal(memberJSON{
		ID:         m.ID,
		PeerURLs:   m.PeerURLs,
		IsLearner:  m.IsLearner,
		Name:       m.Name,
		ClientURLs: m.ClientURLs,
	})
	if err != nil {
		return fmt.Errorf("snapshot: member %x: %w", m.ID, err)
	}
	return w.put(bucketMembers, memberKey(m.ID), v)
}

// PutRemovedMember records that member id was removed from the cluster.
func (w *Writer) PutRemovedMember(id uint64) error {
	if id == 0 {
		return errors.New("snapshot: member ID 0")
	}
	return w.put(bucketMembersRemoved, memberKey(id), memberRemovedValue)
}

// PutAlarm stores an alarm raised on a member.
func (w *Writer) PutAlarm(memberID uint64, alarm etcdserverpb.AlarmType) error {
	if alarm == etcdserverpb.AlarmType_NONE {
		return errors.New("snapshot: alarm type NONE")
	}
	return w.put(bucketAlarm, Alarm{MemberID: memberID, Alarm: alarm}.marshal(), nil)
}

// PutAuthUser stores a user: user is a marshaled authpb.User.
func (w *Writer) PutAuthUser(name string, user []byte) error {
	if name == "" {
		return errors.New("snapshot: empty user name")
	}
	return w.put(bucketAuthUsers, []byte(name), user)
}

// PutAuthRole stores a role: role is a marshaled authpb.Role.
func (w *Writer) PutAuthRole(name string, role []byte) error {
	if name == "" {
		return errors.New("snapshot: empty role name")
	}
	return w.put(bucketAuthRoles, []byte(name), role)
}

// SetAuth records whether authentication is enabled and the auth revision
// (which counts changes to users, roles and the enabled flag; 1 in a fresh
// store).
func (w *Writer) SetAuth(enabled bool, revision uint64) error {
	flag := []byte{0}
	if enabled {
		flag[0] = 1
	}
	if err := w.put(bucketAuth, authEnabledKey, flag); err != nil {
		return err
	}
	return w.put(bucketAuth, authRevisionKey, uint64Bytes(revision))
}

// SetMeta records the raft and compaction state, replacing what an earlier
// SetMeta wrote. Zero fields are left out of the file, as etcd leaves them.
func (w *Writer) SetMeta(m Meta) error {
	if m.ScheduledCompactRev < 0 || m.FinishedCompactRev < 0 {
		return fmt.Errorf("snapshot: negative compaction revision in %+v", m)
	}
	set := func(bucket, key, value []byte, present bool) error {
		if present {
			return w.put(bucket, key, value)
		}
		return w.del(bucket, key)
	}
	var cs []byte
	if m.ConfState != nil {
		var err error
		if cs, err = marshalConfState(m.ConfState); err != nil {
			return fmt.Errorf("snapshot: confState: %w", err)
		}
	}
	for _, f := range []struct {
		bucket, key, value []byte
		present            bool
	}{
		{bucketMeta, metaConsistentIndex, uint64Bytes(m.ConsistentIndex), m.ConsistentIndex != 0},
		{bucketMeta, metaTerm, uint64Bytes(m.Term), m.Term != 0},
		{bucketMeta, metaScheduledCompact, appendRevKey(nil, Revision{Main: m.ScheduledCompactRev}, false), m.ScheduledCompactRev != 0},
		{bucketMeta, metaFinishedCompact, appendRevKey(nil, Revision{Main: m.FinishedCompactRev}, false), m.FinishedCompactRev != 0},
		{bucketMeta, metaConfState, cs, m.ConfState != nil},
		{bucketCluster, clusterVersionKey, []byte(m.ClusterVersion), m.ClusterVersion != ""},
	} {
		if err := set(f.bucket, f.key, f.value, f.present); err != nil {
			return err
		}
	}
	return nil
}

// Finish commits the pending writes and closes the database. The file is then
// ready for WriteTo.
func (w *Writer) Finish() error {
	if w.finished {
		return w.err
	}
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.commit(); err != nil {
		return err
	}
	var size int64
	if err := w.db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil }); err != nil {
		return w.fail(fmt.Errorf("snapshot: read db size: %w", err))
	}
	if err := w.db.Close(); err != nil {
		w.db = nil
		return w.fail(fmt.Errorf("snapshot: close db: %w", err))
	}
	w.db = nil
	// The file may extend past the last page bbolt uses; the snapshot is
	// exactly the used pages, as etcd streams them.
	if fi, err := os.Stat(w.path); err != nil {
		return w.fail(fmt.Errorf("snapshot: stat db: %w", err))
	} else if fi.Size() < size {
		return w.fail(fmt.Errorf("snapshot: db file is %d bytes, bbolt uses %d", fi.Size(), size))
	} else if fi.Size() > size {
		if err := os.Truncate(w.path, size); err != nil {
			return w.fail(fmt.Errorf("snapshot: trim db: %w", err))
		}
	}
	w.dbSize = size
	w.finished = true
	return nil
}

// Size returns the number of bytes WriteTo writes: the database and the
// 32-byte trailer. It is 0 before Finish.
func (w *Writer) Size() int64 {
	if !w.finished || w.err != nil {
		return 0
	}
	return w.dbSize + trailerSize
}

// WriteTo streams the snapshot file: the database bytes followed by their
// sha256. It may be called several times after Finish.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	if !w.finished {
		return 0, ErrNotFinished
	}
	f, err := os.Open(w.path)
	if err != nil {
		return 0, fmt.Errorf("snapshot: open db: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyN(io.MultiWriter(out, h), f, w.dbSize)
	if err != nil {
		return n, fmt.Errorf("snapshot: stream db: %w", err)
	}
	m, err := out.Write(h.Sum(nil))
	n += int64(m)
	if err != nil {
		return n, fmt.Errorf("snapshot: write trailer: %w", err)
	}
	return n, nil
}

// Close discards the temporary database. It is safe to call more than once
// and at any point.
func (w *Writer) Close() error {
	var err error
	if w.tx != nil {
		w.tx.Rollback()
		w.tx = nil
	}
	if w.db != nil {
		err = w.db.Close()
		w.db = nil
	}
	if w.path != "" {
		if rerr := os.Remove(w.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
		w.path = ""
	}
	if w.err == nil {
		w.err = errors.New("snapshot: writer closed")
	}
	return err
}

func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.finished {
		return ErrFinished
	}
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// bucket returns the named bucket of the open transaction, opening one if
// needed.
func (w *Writer) bucket(name []byte) (*bolt.Bucket, error) {
	if w.tx == nil {
		tx, err := w.db.Begin(true)
		if err != nil {
			return nil, w.fail(fmt.Errorf("snapshot: begin tx: %w", err))
		}
		w.tx = tx
		w.buckets = make(map[string]*bolt.Bucket, len(allBuckets))
	}
	if b, ok := w.buckets[string(name)]; ok {
		return b, nil
	}
	b := w.tx.Bucket(name)
	if b == nil {
		return nil, w.fail(fmt.Errorf("snapshot: bucket %s missing", name))
	}
	if string(name) == string(bucketKey) {
		// Revisions arrive mostly in order: fill pages completely.
		b.FillPercent = 1.0
	}
	w.buckets[string(name)] = b
	return b, nil
}

func (w *Writer) put(bucket, key, value []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	b, err := w.bucket(bucket)
	if err != nil {
		return err
	}
	value = append(w.alloc(len(value)), value...)
	if err := b.Put(key, value); err != nil {
		// bbolt rejects bad keys and values before touching the tree.
		return fmt.Errorf("snapshot: put %s/%x: %w", bucket, key, err)
	}
	w.pendingPuts++
	w.pendingBytes += len(key) + len(value)
	if w.pendingPuts >= batchPuts || w.pendingBytes >= batchBytes {
		return w.commit()
	}
	return nil
}

func (w *Writer) del(bucket, key []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	b, err := w.bucket(bucket)
	if err != nil {
		return err
	}
	if err := b.Delete(key); err != nil {
		return w.fail(fmt.Errorf("snapshot: delete %s/%s: %w", bucket, key, err))
	}
	return nil
}

// alloc returns an empty slice with room for n bytes that stays valid until
// the open transaction commits, as bbolt requires of keys and values.
func (w *Writer) alloc(n int) []byte {
	if cap(w.arena)-len(w.arena) < n {
		w.arena = make([]byte, 0, max(arenaChunk, n))
	}
	start := len(w.arena)
	w.arena = w.arena[:start+n]
	return w.arena[start : start : start+n]
}

func (w *Writer) commit() error {
	if w.tx == nil {
		return nil
	}
	tx := w.tx
	w.tx, w.buckets = nil, nil
	w.pendingPuts, w.pendingBytes = 0, 0
	w.arena = nil
	if err := tx.Commit(); err != nil {
		return w.fail(fmt.Errorf("snapshot: commit: %w", err))
	}
	return nil
}
