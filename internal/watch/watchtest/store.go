// Package watchtest provides an in-memory watch.Store: an event log that
// tests append to and then hand to Hub.Notify.
package watchtest

import (
	"fmt"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/internal/watch"
)

// Store is an append-only event log with mvcc's revision rules: every write
// call is one revision, puts carry the full KeyValue, deletes carry
// Kv{Key, ModRevision}. It is safe for concurrent use.
type Store struct {
	mu        sync.Mutex
	rev       int64
	compacted int64
	log       []*mvccpb.Event // in revision order
	live      map[string]*mvccpb.KeyValue

	// BeforeEvents, when set, runs at the start of every Events call,
	// without the store lock: tests use it to interleave writes with a read.
	BeforeEvents func(from, to int64)
}

var _ watch.Store = (*Store)(nil)

// NewStore returns an empty store at revision 0.
func NewStore() *Store { return &Store{live: map[string]*mvccpb.KeyValue{}} }

// Op is one write of a transaction: a put of Value, or a delete.
type Op struct {
	Key    string
	Value  string
	Delete bool
}

// Put writes one key in a new revision and returns the revision and events.
func (s *Store) Put(key, value string) (int64, []*mvccpb.Event) {
	return s.Txn(Op{Key: key, Value: value})
}

// Delete deletes one key in a new revision. Deleting a missing key still
// takes a revision here but yields no event; callers skip Notify then.
func (s *Store) Delete(key string) (int64, []*mvccpb.Event) {
	return s.Txn(Op{Key: key, Delete: true})
}

// Txn applies ops as one revision. Ops on the same key: the last wins, as
// the events are one per op like etcd's changes list.
func (s *Store) Txn(ops ...Op) (int64, []*mvccpb.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	rev := s.rev
	var evs []*mvccpb.Event
	for _, op := range ops {
		old := s.live[op.Key]
		if op.Delete {
			if old == nil {
				continue
			}
			delete(s.live, op.Key)
			evs = append(evs, &mvccpb.Event{Type: mvccpb.Event_DELETE, Kv: &mvccpb.KeyValue{Key: []byte(op.Key), ModRevision: rev}})
			continue
		}
		kv := &mvccpb.KeyValue{Key: []byte(op.Key), Value: []byte(op.Value), CreateRevision: rev, ModRevision: rev, Version: 1}
		if old != nil {
			kv.CreateRevision = old.CreateRevision
			kv.Version = old.Version + 1
		}
		s.live[op.Key] = kv
		evs = append(evs, &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv})
	}
	s.log = append(s.log, evs...)
	return rev, evs
}

// Compact forgets the events below rev (those at rev are still served,
// as by the real store).
func (s *Store) Compact(rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev > s.rev {
		panic(fmt.Sprintf("watchtest: compact %d above revision %d", rev, s.rev))
	}
	if rev > s.compacted {
		s.compacted = rev
	}
}

// Revs implements watch.Store.
func (s *Store) Revs() (current, compacted int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev, s.compacted
}

// Events implements watch.Store. fn runs without the store lock.
func (s *Store) Events(from, to int64, fn func(ev *mvccpb.Event) bool) error {
	if s.BeforeEvents != nil {
		s.BeforeEvents(from, to)
	}
	s.mu.Lock()
	if from < s.compacted {
		s.mu.Unlock()
		return watch.ErrCompacted
	}
	log := s.log
	s.mu.Unlock()
	for _, ev := range log {
		r := ev.Kv.ModRevision
		if r < from {
			continue
		}
		if r > to {
			break
		}
		if !fn(ev) {
			break
		}
	}
	return nil
}

// Get implements watch.Store: the value of key as of rev.
func (s *Store) Get(key []byte, rev int64) (*mvccpb.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev < s.compacted {
		return nil, watch.ErrCompacted
	}
	var kv *mvccpb.KeyValue
	for _, ev := range s.log {
		if ev.Kv.ModRevision > rev {
			break
		}
		if string(ev.Kv.Key) != string(key) {
			continue
		}
		if ev.Type == mvccpb.Event_DELETE {
			kv = nil
		} else {
			kv = ev.Kv
		}
	}
	return kv, nil
}

// Log returns a copy of every event written, compacted or not: the oracle
// for what watchers should have seen.
func (s *Store) Log() []*mvccpb.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*mvccpb.Event(nil), s.log...)
}
