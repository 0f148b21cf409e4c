package restore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/membership"
	"github.com/cairn-kv/cairn/internal/snapshot"
	"github.com/cairn-kv/cairn/internal/storage"
)

// Options are the flags of `cairnctl snapshot restore`, named as etcdctl
// names them. Empty fields take etcd's defaults (see Restore).
type Options struct {
	SnapshotPath  string
	SkipHashCheck bool

	Name                     string
	DataDir                  string
	WALDir                   string
	InitialCluster           string
	InitialClusterToken      string
	InitialAdvertisePeerURLs []string

	// Progress, when not nil, is called as the keys are copied with the
	// bytes done so far and the snapshot's size.
	Progress func(done, total int64)
}

const defaultPeerURL = "http://localhost:2380"

func (o *Options) defaults() {
	if o.Name == "" {
		o.Name = "default"
	}
	if o.DataDir == "" {
		o.DataDir = o.Name + ".cairn"
	}
	if len(o.InitialAdvertisePeerURLs) == 0 {
		o.InitialAdvertisePeerURLs = []string{defaultPeerURL}
	}
	if o.InitialCluster == "" {
		var parts []string
		for _, u := range o.InitialAdvertisePeerURLs {
			parts = append(parts, o.Name+"="+u)
		}
		o.InitialCluster = strings.Join(parts, ",")
	}
	if o.InitialClusterToken == "" {
		o.InitialClusterToken = "etcd-cluster"
	}
}

// Restore writes a new data dir for one member of a new cluster from a
// snapshot file: a snapshot streamed by cairn or etcd (checked against its
// sha256 trailer unless SkipHashCheck), or with SkipHashCheck an etcd
// database file copied out of a data dir.
//
// The data dir holds the snapshot's keys (every revision), leases and
// compaction state, and a new membership: the members of
// InitialCluster, with IDs derived from their peer URLs and the token as
// etcd derives them. The cluster ID also depends on the snapshot's
// content, so a restored member is never taken for a member of the
// cluster the snapshot came from, even with the same URLs and token: that
// cluster's members refuse its messages. Every member of the new cluster
// is restored from the same file with its own Name, then started with
// the same --initial-cluster.
//
// Nothing is left behind on failure. The data dir (and WAL dir) must not
// exist yet.
func Restore(ctx context.Context, o Options) (err error) {
	o.defaults()
	members, err := membership.ParseInitialCluster(o.InitialCluster, o.InitialClusterToken)
	if err != nil {
		return err
	}
	var self *membership.Member
	for _, m := range members {
		if m.Name == o.Name {
			self = m
		}
	}
	if self == nil {
		return fmt.Errorf("couldn't find local name %q in the initial cluster configuration", o.Name)
	}
	adv := slices.Clone(o.InitialAdvertisePeerURLs)
	sort.Strings(adv)
	if !slices.Equal(adv, self.PeerURLs) {
		return fmt.Errorf("--initial-cluster has %s=%s but missing from --initial-advertise-peer-urls=%s",
			self.Name, strings.Join(self.PeerURLs, ","), strings.Join(o.InitialAdvertisePeerURLs, ","))
	}
	for _, dir := range []string{o.DataDir, o.WALDir} {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(dir); err == nil {
			return fmt.Errorf("data-dir %q exists", dir)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}

	r, err := snapshot.Open(o.SnapshotPath, o.SkipHashCheck)
	if err != nil {
		if errors.Is(err, snapshot.ErrMissingHash) {
			return fmt.Errorf("snapshot missing hash but --skip-hash-check=false (%s; a database file copied from a data dir needs --skip-hash-check)", o.SnapshotPath)
		}
		return err
	}
	defer r.Close()
	size := r.Size()

	eng, err := storage.Open(filepath.Join(o.DataDir, "member"), storage.Options{WALDir: o.WALDir})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := eng.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.RemoveAll(o.DataDir)
			if o.WALDir != "" {
				os.RemoveAll(o.WALDir)
			}
		}
	}()

	w := &chunked{ctx: ctx, db: eng.DB(), b: eng.DB().NewBatch()}
	defer func() { w.b.Close() }()
	var progress func(int64)
	if o.Progress != nil {
		progress = func(done int64) { o.Progress(min(done, size), size) }
	}
	if _, err := WriteState(w, r, Parts{}, progress); err != nil {
		return fmt.Errorf("restoring %s: %w", o.SnapshotPath, err)
	}
	ids := make([]uint64, 0, len(members))
	for _, m := range members {
		ids = append(ids, m.ID)
		if err := SetMember(w, m); err != nil {
			return err
		}
	}
	slices.Sort(ids)

	// The new cluster starts as if its members had just bootstrapped: one
	// Raft entry per member (the conf changes that added them) is
	// committed and applied in term 1, and a Raft snapshot stands for it.
	applied, term := uint64(len(members)), uint64(1)
	cs := &raftpb.ConfState{Voters: ids}
	csBytes, err := proto.Marshal(cs)
	if err != nil {
		return err
	}
	id, _ := json.Marshal(&membership.Identity{ClusterID: ClusterID(ids, r.Digest()), MemberID: self.ID, Name: o.Name})
	for _, kv := range [][2][]byte{
		{storage.MetaKey(storage.MetaApplied), append(storage.PutU64(applied), storage.PutU64(term)...)},
		{storage.MetaKey(storage.MetaConfState), csBytes},
		{storage.MetaKey(storage.MetaCluster), id},
	} {
		if err := w.Set(kv[0], kv[1], nil); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := w.b.Commit(pebble.Sync); err != nil {
		return err
	}
	if err := eng.SaveRaft(&raftpb.HardState{Term: &term, Commit: &applied}, nil, 0, true); err != nil {
		return err
	}
	if err := eng.SaveSnapshot(&raftpb.SnapshotMetadata{Index: &applied, Term: &term, ConfState: cs}, 0); err != nil {
		return err
	}
	if o.Progress != nil {
		o.Progress(size, size)
	}
	return nil
}

// ClusterID is the ID of a cluster restored from a snapshot whose
// database has the sha256 digest sum: etcd's cluster ID for these members,
// mixed with the digest.
func ClusterID(ids []uint64, sum []byte) uint64 {
	h := sha256.New()
	binary.Write(h, binary.BigEndian, membership.ComputeClusterID(ids))
	h.Write(sum)
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])
}

// chunked writes into a batch that it commits (unsynced; the final
// commit syncs) whenever it holds chunkBytes, so a restore of a large
// snapshot needs little memory. The data dir is new: nothing reads it
// before the restore finishes, and a failed restore removes it.
type chunked struct {
	ctx context.Context
	db  *pebble.DB
	b   *pebble.Batch
}

const chunkBytes = 32 << 20

func (c *chunked) Set(k, v []byte, _ *pebble.WriteOptions) error {
	if err := c.b.Set(k, v, nil); err != nil {
		return err
	}
	if c.b.Len() < chunkBytes {
		return nil
	}
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if err := c.b.Commit(pebble.NoSync); err != nil {
		return err
	}
	c.b.Close()
	c.b = c.db.NewBatch()
	return nil
}
