package storage

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// RaftState is what a member recovers from disk at start: the hard state,
// the metadata of the last Raft snapshot and the log entries after it.
type RaftState struct {
	HardState *raftpb.HardState
	Snapshot  *raftpb.SnapshotMetadata
	Entries   []*raftpb.Entry
}

// Empty reports whether nothing was ever persisted (a new member).
func (s *RaftState) Empty() bool {
	return isEmptyHardState(s.HardState) && s.Snapshot.GetIndex() == 0 && len(s.Entries) == 0
}

func entryKey(index uint64) []byte { return withPrefix(prefixEntry, u64(index)) }

// LoadRaft reads the persisted Raft state.
func (e *Engine) LoadRaft() (*RaftState, error) {
	st := &RaftState{HardState: &raftpb.HardState{}, Snapshot: &raftpb.SnapshotMetadata{}}
	if v, ok, err := get(e.db, keyHardState); err != nil {
		return nil, Classify(err)
	} else if ok {
		if err := proto.Unmarshal(v, st.HardState); err != nil {
			return nil, fmt.Errorf("%w: hard state: %v", ErrCorrupt, err)
		}
	}
	if v, ok, err := get(e.db, keySnapMeta); err != nil {
		return nil, Classify(err)
	} else if ok {
		if err := proto.Unmarshal(v, st.Snapshot); err != nil {
			return nil, fmt.Errorf("%w: snapshot metadata: %v", ErrCorrupt, err)
		}
	}
	st.Snapshot = raftpb.EnsureSnapshotMetadata(st.Snapshot)
	it, err := e.db.NewIter(&pebble.IterOptions{
		LowerBound: entryKey(st.Snapshot.GetIndex() + 1),
		UpperBound: withPrefix(prefixEntry, u64(^uint64(0))),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	next := st.Snapshot.GetIndex() + 1
	for it.First(); it.Valid(); it.Next() {
		ent := &raftpb.Entry{}
		if err := proto.Unmarshal(it.Value(), ent); err != nil {
			return nil, fmt.Errorf("%w: raft entry: %v", ErrCorrupt, err)
		}
		if ent.GetIndex() != next {
			return nil, fmt.Errorf("%w: raft log has a gap: want index %d, found %d", ErrCorrupt, next, ent.GetIndex())
		}
		st.Entries = append(st.Entries, ent)
		next++
	}
	if err := it.Error(); err != nil {
		return nil, Classify(err)
	}
	if err := e.Fatal(); err != nil {
		return nil, err
	}
	return st, nil
}

// SaveRaft persists a Ready's hard state and entries in one batch,
// synced when sync is true (new entries, a new term or vote: what Raft
// must not forget). A commit index alone needs no sync: it can be learned
// again. Entries replace any persisted entries at the same or later
// indexes (a new leader may overwrite an uncommitted tail): lastIndex is
// the last index persisted before this call.
func (e *Engine) SaveRaft(hs *raftpb.HardState, ents []*raftpb.Entry, lastIndex uint64, sync bool) error {
	if isEmptyHardState(hs) && len(ents) == 0 {
		return nil
	}
	b := e.db.NewBatch()
	defer b.Close()
	if !isEmptyHardState(hs) {
		v, err := proto.Marshal(hs)
		if err != nil {
			return err
		}
		if err := b.Set(keyHardState, v, nil); err != nil {
			return err
		}
	}
	if len(ents) > 0 {
		last := ents[len(ents)-1].GetIndex()
		if lastIndex > last {
			// A conflicting, longer tail from an earlier term: drop it.
			if err := b.DeleteRange(entryKey(last+1), entryKey(lastIndex+1), nil); err != nil {
				return err
			}
		}
		var buf []byte
		for _, ent := range ents {
			var err error
			buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], ent)
			if err != nil {
				return err
			}
			if err := b.Set(entryKey(ent.GetIndex()), buf, nil); err != nil {
				return err
			}
		}
	}
	if !sync {
		return b.Commit(pebble.NoSync)
	}
	start := time.Now()
	err := b.Commit(pebble.Sync)
	if e.OnSync != nil {
		e.OnSync(time.Since(start))
	}
	return err
}

// SaveSnapshot records a new Raft snapshot and drops log entries before
// compactIndex. The state machine up to the snapshot index must already be
// applied; the synced commit makes that state durable first (same WAL).
func (e *Engine) SaveSnapshot(meta *raftpb.SnapshotMetadata, compactIndex uint64) error {
	v, err := proto.Marshal(meta)
	if err != nil {
		return err
	}
	b := e.db.NewBatch()
	defer b.Close()
	if err := b.Set(keySnapMeta, v, nil); err != nil {
		return err
	}
	if compactIndex > 0 {
		if err := b.DeleteRange(entryKey(0), entryKey(compactIndex), nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.Sync)
}

func isEmptyHardState(hs *raftpb.HardState) bool {
	return hs == nil || (hs.GetTerm() == 0 && hs.GetVote() == 0 && hs.GetCommit() == 0)
}
