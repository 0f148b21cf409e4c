package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Reader reads a snapshot file through a private read-only copy of its
// database. Its methods are safe for concurrent use.
type Reader struct {
	path   string // the copy
	db     *bolt.DB
	digest []byte // sha256 of the database (the file without its trailer)
	size   int64  // the file's size
}

// Open checks the snapshot file at path and opens a copy of its database.
//
// A file whose size % 512 == 32 ends with a sha256 trailer: unless
// skipHashCheck is set, the trailer must match the database, or Open fails
// with ErrIntegrity. A file without a trailer (a database copied from a data
// directory) opens only with skipHashCheck; otherwise Open fails with
// ErrMissingHash. The copy is made in the system temp directory and removed
// by Close.
func Open(path string, skipHashCheck bool) (*Reader, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	size := fi.Size()
	trailer := hasTrailer(size)
	if !trailer && !skipHashCheck {
		return nil, fmt.Errorf("%w (%s: %d bytes)", ErrMissingHash, path, size)
	}
	dbSize := size
	if trailer {
		dbSize -= trailerSize
	}

	tmp, err := os.CreateTemp("", "cairn-snapshot-read-*.db")
	if err != nil {
		return nil, fmt.Errorf("snapshot: create copy: %w", err)
	}
	r := &Reader{path: tmp.Name()}
	ok := false
	defer func() {
		if !ok {
			r.Close()
		}
	}()

	sum := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(tmp, sum), src, dbSize); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("snapshot: copy %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("snapshot: copy %s: %w", path, err)
	}
	if trailer && !skipHashCheck {
		want := make([]byte, trailerSize)
		if _, err := io.ReadFull(src, want); err != nil {
			return nil, fmt.Errorf("snapshot: read trailer of %s: %w", path, err)
		}
		if got := sum.Sum(nil); !bytes.Equal(want, got) {
			return nil, fmt.Errorf("%w: %s: expected sha256 %x, got %x", ErrIntegrity, path, want, got)
		}
	}
	r.digest, r.size = sum.Sum(nil), size

	r.db, err = bolt.Open(r.path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("snapshot: open %s as bbolt db: %w", path, err)
	}
	ok = true
	return r, nil
}

// Digest is the sha256 of the snapshot's database (what the trailer, when
// there is one, holds).
func (r *Reader) Digest() []byte { return r.digest }

// Size is the size of the snapshot file.
func (r *Reader) Size() int64 { return r.size }

// Close closes and removes the copy of the database.
func (r *Reader) Close() error {
	var err error
	if r.db != nil {
		err = r.db.Close()
		r.db = nil
	}
	if r.path != "" {
		if rerr := os.Remove(r.path); rerr != nil && err == nil {
			err = rerr
		}
		r.path = ""
	}
	return err
}

// forEach calls fn for each pair of a bucket in key order; a missing bucket
// is empty. k and v are valid only during the call.
func (r *Reader) forEach(bucket []byte, fn func(k, v []byte) error) error {
	return r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(fn)
	})
}

// ForEachKV calls fn for each entry of the key bucket in revision order: kv
// is the marshaled mvccpb.KeyValue, valid only during the call (copy it to
// keep it). An error from fn stops the walk and is returned.
func (r *Reader) ForEachKV(fn func(rev Revision, tombstone bool, kv []byte) error) error {
	return r.forEach(bucketKey, func(k, v []byte) error {
		rev, tombstone, err := parseRevKey(k)
		if err != nil {
			return err
		}
		return fn(rev, tombstone, v)
	})
}

// ForEachLease calls fn for each lease in ID order (as unsigned 64-bit
// numbers).
func (r *Reader) ForEachLease(fn func(Lease) error) error {
	return r.forEach(bucketLease, func(k, v []byte) error {
		l, err := unmarshalLease(v)
		if err != nil {
			return fmt.Errorf("snapshot: lease %x: %w", k, err)
		}
		return fn(l)
	})
}

// Members returns the cluster members in the order of their hex IDs.
func (r *Reader) Members() ([]Member, error) {
	var ms []Member
	err := r.forEach(bucketMembers, func(k, v []byte) error {
		id, err := parseMemberKey(k)
		if err != nil {
			return err
		}
		var j memberJSON
		if err := json.Unmarshal(v, &j); err != nil {
			return fmt.Errorf("snapshot: member %s: %w", k, err)
		}
		ms = append(ms, Member{ID: id, Name: j.Name, PeerURLs: j.PeerURLs, ClientURLs: j.ClientURLs, IsLearner: j.IsLearner})
		return nil
	})
	return ms, err
}

// RemovedMembers returns the IDs of members removed from the cluster.
func (r *Reader) RemovedMembers() ([]uint64, error) {
	var ids []uint64
	err := r.forEach(bucketMembersRemoved, func(k, _ []byte) error {
		id, err := parseMemberKey(k)
		ids = append(ids, id)
		return err
	})
	return ids, err
}

// Alarms returns the raised alarms.
func (r *Reader) Alarms() ([]Alarm, error) {
	var as []Alarm
	err := r.forEach(bucketAlarm, func(k, _ []byte) error {
		a, err := unmarshalAlarm(k)
		if err != nil {
			return fmt.Errorf("snapshot: alarm %x: %w", k, err)
		}
		as = append(as, a)
		return nil
	})
	return as, err
}

// AuthUser is a user record: User is a marshaled authpb.User.
type AuthUser struct {
	Name string
	User []byte
}

// AuthRole is a role record: Role is a marshaled authpb.Role.
type AuthRole struct {
	Name string
	Role []byte
}

// Auth returns whether authentication is enabled and the auth revision.
func (r *Reader) Auth() (enabled bool, revision uint64, err error) {
	err = r.forEach(bucketAuth, func(k, v []byte) error {
		switch {
		case bytes.Equal(k, authEnabledKey):
			enabled = len(v) == 1 && v[0] == 1
		case bytes.Equal(k, authRevisionKey):
			revision, err = parseUint64(k, v)
			return err
		}
		return nil
	})
	return enabled, revision, err
}

// AuthUsers returns the users in name order.
func (r *Reader) AuthUsers() ([]AuthUser, error) {
	var us []AuthUser
	err := r.forEach(bucketAuthUsers, func(k, v []byte) error {
		us = append(us, AuthUser{Name: string(k), User: bytes.Clone(v)})
		return nil
	})
	return us, err
}

// AuthRoles returns the roles in name order.
func (r *Reader) AuthRoles() ([]AuthRole, error) {
	var rs []AuthRole
	err := r.forEach(bucketAuthRoles, func(k, v []byte) error {
		rs = append(rs, AuthRole{Name: string(k), Role: bytes.Clone(v)})
		return nil
	})
	return rs, err
}

// Meta returns the raft and compaction state; absent records are zero.
func (r *Reader) Meta() (Meta, error) {
	var m Meta
	err := r.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta); b != nil {
			var err error
			if v := b.Get(metaConsistentIndex); v != nil {
				if m.ConsistentIndex, err = parseUint64(metaConsistentIndex, v); err != nil {
					return err
				}
			}
			if v := b.Get(metaTerm); v != nil {
				if m.Term, err = parseUint64(metaTerm, v); err != nil {
					return err
				}
			}
			if v := b.Get(metaScheduledCompact); v != nil {
				rev, _, err := parseRevKey(v)
				if err != nil {
					return fmt.Errorf("%s: %w", metaScheduledCompact, err)
				}
				m.ScheduledCompactRev = rev.Main
			}
			if v := b.Get(metaFinishedCompact); v != nil {
				rev, _, err := parseRevKey(v)
				if err != nil {
					return fmt.Errorf("%s: %w", metaFinishedCompact, err)
				}
				m.FinishedCompactRev = rev.Main
			}
			if v := b.Get(metaConfState); v != nil {
				if m.ConfState, err = unmarshalConfState(v); err != nil {
					return err
				}
			}
		}
		if b := tx.Bucket(bucketCluster); b != nil {
			m.ClusterVersion = string(b.Get(clusterVersionKey))
		}
		return nil
	})
	return m, err
}

// Status summarizes a snapshot as `etcdctl snapshot status` does.
type Status struct {
	// Hash is the CRC-32 (Castagnoli) of all bucket names, keys and values.
	Hash uint32 `json:"hash"`
	// Revision is the highest main revision in the key bucket.
	Revision int64 `json:"revision"`
	// TotalKey counts the pairs of all buckets.
	TotalKey int `json:"totalKey"`
	// TotalSize is the database size in bytes, trailer excluded.
	TotalSize int64 `json:"totalSize"`
	// Version is the storage version, empty for files of etcd before 3.6.
	Version string `json:"version"`
}

// semverRE matches the versions etcd accepts as a storage version.
var semverRE = regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// Status runs bbolt's consistency check and computes the file's status. A
// failed check returns ErrIntegrity with bbolt's findings.
func (r *Reader) Status() (Status, error) {
	var st Status
	err := r.db.View(func(tx *bolt.Tx) error {
		var problems []string
		for err := range tx.Check() {
			problems = append(problems, err.Error())
		}
		if len(problems) > 0 {
			return fmt.Errorf("%w. %d errors found.\n%s", ErrIntegrity, len(problems), strings.Join(problems, "\n"))
		}
		st.TotalSize = tx.Size()
		if b := tx.Bucket(bucketMeta); b != nil {
			if v := string(b.Get(metaStorageVersion)); semverRE.MatchString(v) {
				st.Version = v
			}
		}
		h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		c := tx.Cursor()
		for name, _ := c.First(); name != nil; name, _ = c.Next() {
			b := tx.Bucket(name)
			if b == nil {
				return fmt.Errorf("snapshot: top-level key %q is not a bucket", name)
			}
			h.Write(name)
			isKey := bytes.Equal(name, bucketKey)
			err := b.ForEach(func(k, v []byte) error {
				h.Write(k)
				h.Write(v)
				if isKey {
					rev, _, err := parseRevKey(k)
					if err != nil {
						return err
					}
					st.Revision = rev.Main
				}
				st.TotalKey++
				return nil
			})
			if err != nil {
				return err
			}
		}
		st.Hash = h.Sum32()
		return nil
	})
	if err != nil {
		return Status{}, err
	}
	return st, nil
}
