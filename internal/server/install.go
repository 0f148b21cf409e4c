package server

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/restore"
	"github.com/cairn-kv/cairn/internal/snapshot"
	"github.com/cairn-kv/cairn/internal/storage"
)

// snapDir holds snapshots received from a leader until they are installed.
func (s *Server) snapDir() string { return filepath.Join(s.cfg.MemberDataDir(), "snap") }

// snapFile is where the snapshot for a Raft snapshot at index is kept.
func (s *Server) snapFile(index uint64) string {
	return filepath.Join(s.snapDir(), fmt.Sprintf("%016x.snap.db", index))
}

// installSnapshot replaces the state machine with the snapshot a leader
// sent (an etcd-format file received by the transport), in one synced
// batch together with its applied index, then rebuilds every in-memory
// view of the state. It runs on the apply goroutine, between entries.
func (s *Server) installSnapshot(snap *raftpb.Snapshot) error {
	idx := snap.GetMetadata().GetIndex()
	path := s.snapFile(idx)
	r, err := snapshot.Open(path, false)
	if err != nil {
		return fmt.Errorf("opening received snapshot %s: %w", path, err)
	}
	defer r.Close()
	b := s.eng.DB().NewBatch()
	defer b.Close()
	for _, span := range [][2][]byte{kvSpan(), leaseSpan(), alarmSpan(), memberSpan()} {
		if err := b.DeleteRange(span[0], span[1], nil); err != nil {
			return err
		}
	}
	for _, name := range []string{storage.MetaScheduledCompact, storage.MetaFinishedCompact} {
		if err := b.Delete(storage.MetaKey(name), nil); err != nil {
			return err
		}
	}
	meta, err := restore.WriteState(b, r, restore.Parts{Members: true, Alarms: true}, nil)
	if err != nil {
		return err
	}
	// The file may be newer than the Raft snapshot that announced it: its
	// own applied index is the truth; entries up to it are skipped.
	applied, term, cs := idx, snap.GetMetadata().GetTerm(), snap.GetMetadata().GetConfState()
	if meta.ConsistentIndex > applied {
		applied, term = meta.ConsistentIndex, meta.Term
		if meta.ConfState != nil {
			cs = meta.ConfState
		}
	}
	if err := b.Set(storage.MetaKey(storage.MetaApplied), append(storage.PutU64(applied), storage.PutU64(term)...), nil); err != nil {
		return err
	}
	if cs != nil {
		v, err := proto.Marshal(cs)
		if err != nil {
			return err
		}
		if err := b.Set(storage.MetaKey(storage.MetaConfState), v, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	if err := s.reloadState(); err != nil {
		return err
	}
	os.Remove(path)
	s.lg.Info("installed snapshot from leader", zap.Uint64("snapshot-index", idx), zap.Uint64("applied-index", applied),
		zap.Int64("revision", s.kv.Rev()))
	s.kickCompaction()
	return nil
}

// reloadState rebuilds the in-memory views of the state after it was
// replaced on disk.
func (s *Server) reloadState() error {
	if err := s.kv.Reload(); err != nil {
		return err
	}
	if err := s.applier.Reload(); err != nil {
		return err
	}
	if err := s.members.Reload(s.eng.DB()); err != nil {
		return err
	}
	if err := s.restoreLeases(); err != nil {
		return err
	}
	s.hub.Restore()
	s.syncPeers()
	return nil
}

func kvSpan() [2][]byte     { lo, hi := storage.KVSpan(); return [2][]byte{lo, hi} }
func leaseSpan() [2][]byte  { lo, hi := storage.LeaseSpan(); return [2][]byte{lo, hi} }
func alarmSpan() [2][]byte  { lo, hi := storage.AlarmSpan(); return [2][]byte{lo, hi} }
func memberSpan() [2][]byte { lo, hi := storage.MemberSpan(); return [2][]byte{lo, hi} }
