// Package apply turns committed Raft entries into state: MVCC changes,
// leases, alarms, members. It is deterministic: the same entries give the
// same bytes on every member.
//
// For each run of committed entries handed over by the Raft loop:
//
//	b := one indexed pebble batch
//	for each entry: decode; apply into b (reads see earlier changes in b)
//	b.Set(applied index)                   // same batch as the state
//	b.Commit(NoSync)                       // the Raft log is the durable copy
//	store.Publish(rev)                     // reads now see the new revisions
//	watch.Notify(events); waiters.Trigger  // clients are answered
//
// A crash before the commit loses the batch but not the entries: they are
// in the synced Raft log after the recorded applied index, and are applied
// again at start.
package apply

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/failpoint"
	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/membership"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/propose"
	"github.com/cairn-kv/cairn/internal/storage"
)

// Errors that apply reports in results, with etcd's texts.
var (
	ErrNoSpace        = errors.New("etcdserver: mvcc: database space exceeded")
	ErrCorrupt        = errors.New("etcdserver: corrupt cluster")
	ErrKeyNotFound    = errors.New("etcdserver: key not found")
	ErrLeaseNotFound  = errors.New("etcdserver: requested lease not found")
	ErrUnknownRequest = errors.New("apply: request of an unknown kind")
)

// ConfChanger applies configuration changes to Raft.
type ConfChanger interface {
	ApplyConfChange(cc raftpb.ConfChangeI) *raftpb.ConfState
}

// Notifier hands out the results of applied proposals.
type Notifier interface {
	Trigger(id uint64, r propose.Result)
}

// Watchers receive committed events.
type Watchers interface {
	Notify(rev int64, events []*mvccpb.Event)
}

// Applier applies entries. Only the apply goroutine calls Apply.
type Applier struct {
	db      *pebble.DB
	kv      *mvcc.Store
	lessor  *lease.Lessor
	members *membership.Set
	conf    ConfChanger
	waits   Notifier
	watch   Watchers
	lg      *zap.Logger

	// WarnApply is the duration after which applying one entry is logged
	// as slow.
	WarnApply time.Duration
	// OnCompaction is called after a compaction was scheduled (the
	// server starts the physical compaction).
	OnCompaction func(rev int64)
	// OnConfChange is called after a run of entries that changed the
	// member set is durable (the server updates its peers).
	OnConfChange func()

	mu        sync.Mutex
	cond      *sync.Cond
	applied   uint64
	term      uint64
	confState *raftpb.ConfState
	alarms    map[alarmKey]struct{}
}

type alarmKey struct {
	member uint64
	alarm  pb.AlarmType
}

// Deps are the Applier's collaborators.
type Deps struct {
	DB      *pebble.DB
	KV      *mvcc.Store
	Lessor  *lease.Lessor
	Members *membership.Set
	Conf    ConfChanger
	Waits   Notifier
	Watch   Watchers
	Logger  *zap.Logger
}

// New restores the applier's state (applied index, conf state, alarms)
// from the store.
func New(d Deps) (*Applier, error) {
	a := &Applier{
		db: d.DB, kv: d.KV, lessor: d.Lessor, members: d.Members, conf: d.Conf,
		waits: d.Waits, watch: d.Watch, lg: d.Logger,
		WarnApply: 100 * time.Millisecond,
		alarms:    make(map[alarmKey]struct{}),
		confState: &raftpb.ConfState{},
	}
	a.cond = sync.NewCond(&a.mu)
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload re-reads the applied index, configuration and alarms from the
// store (at start, and after a leader's snapshot replaced the state).
func (a *Applier) Reload() error {
	var applied, term uint64
	if v, ok, err := storage.GetMeta(a.db, storage.MetaApplied); err != nil {
		return err
	} else if ok {
		applied = storage.U64(v)
		if len(v) >= 16 {
			term = storage.U64(v[8:])
		}
	}
	cs := &raftpb.ConfState{}
	if v, ok, err := storage.GetMeta(a.db, storage.MetaConfState); err != nil {
		return err
	} else if ok {
		if err := proto.Unmarshal(v, cs); err != nil {
			return fmt.Errorf("%w: conf state: %v", storage.ErrCorrupt, err)
		}
	}
	alarms := make(map[alarmKey]struct{})
	lo, hi := storage.AlarmSpan()
	it, err := a.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if m, al, ok := storage.ParseAlarmKey(it.Key()); ok {
			alarms[alarmKey{m, pb.AlarmType(al)}] = struct{}{}
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	a.mu.Lock()
	a.applied, a.term, a.confState, a.alarms = applied, term, cs, alarms
	a.mu.Unlock()
	a.cond.Broadcast()
	return nil
}

// Applied is the last applied index.
func (a *Applier) Applied() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applied
}

// AppliedTerm is the term of the last applied entry.
func (a *Applier) AppliedTerm() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.term
}

// ConfState is the configuration after the last applied entry.
func (a *Applier) ConfState() *raftpb.ConfState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return proto.Clone(a.confState).(*raftpb.ConfState)
}

// WaitApplied blocks until index is applied or ctx ends.
func (a *Applier) WaitApplied(ctx context.Context, index uint64) error {
	a.mu.Lock()
	if a.applied >= index {
		a.mu.Unlock()
		return nil
	}
	a.mu.Unlock()
	done := make(chan struct{})
	go func() {
		a.mu.Lock()
		for a.applied < index && ctx.Err() == nil {
			a.cond.Wait()
		}
		a.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		a.cond.Broadcast() // let the helper goroutine see ctx is done
		<-done
		return ctx.Err()
	}
}

// Alarms lists raised alarms.
func (a *Applier) Alarms() []*pb.AlarmMember {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*pb.AlarmMember, 0, len(a.alarms))
	for k := range a.alarms {
		out = append(out, &pb.AlarmMember{MemberID: k.member, Alarm: k.alarm})
	}
	sortAlarms(out)
	return out
}

// NoSpace reports whether the NOSPACE alarm is raised.
func (a *Applier) NoSpace() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.alarms {
		if k.alarm == pb.AlarmType_NOSPACE {
			return true
		}
	}
	return false
}

func (a *Applier) corrupt() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.alarms {
		if k.alarm == pb.AlarmType_CORRUPT {
			return true
		}
	}
	return false
}

// pending is a result to hand out after the batch commits.
type pending struct {
	id  uint64
	res propose.Result
}

// Apply applies a run of committed entries.
func (a *Applier) Apply(ents []*raftpb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	a.mu.Lock()
	applied := a.applied
	a.mu.Unlock()
	b := a.db.NewIndexedBatch()
	defer b.Close()
	var results []pending
	var events []*mvccpb.Event
	var lastTerm uint64
	confChanged := false
	lastIndex := applied
	for _, ent := range ents {
		if ent.GetIndex() <= applied {
			// Already in the state machine (it came with a leader's
			// snapshot newer than Raft's): Raft still needs to hear of
			// configuration changes, the state does not.
			if err := a.replayConfChange(ent); err != nil {
				return err
			}
			continue
		}
		start := time.Now()
		switch ent.GetType() {
		case raftpb.EntryNormal:
			if len(ent.GetData()) == 0 {
				break // a new leader's empty entry
			}
			req := &pb.InternalRaftRequest{}
			if err := proto.Unmarshal(ent.GetData(), req); err != nil {
				return fmt.Errorf("%w: entry %d does not decode: %v", storage.ErrCorrupt, ent.GetIndex(), err)
			}
			resp, evs, err := a.applyRequest(b, req)
			events = append(events, evs...)
			id := req.ID
			if req.Header != nil && req.Header.ID != 0 {
				id = req.Header.ID
			}
			results = append(results, pending{id: id, res: propose.Result{Resp: resp, Err: err}})
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			cc, err := decodeConfChange(ent)
			if err != nil {
				return err
			}
			if err := a.applyConfChange(b, cc); err != nil {
				return err
			}
			confChanged = true
			if v1, ok := cc.(*raftpb.ConfChange); ok {
				results = append(results, pending{id: v1.GetId()})
			}
		}
		if d := time.Since(start); d > a.WarnApply {
			a.lg.Warn("apply request took too long",
				zap.Duration("took", d), zap.Duration("expected-duration", a.WarnApply),
				zap.Uint64("index", ent.GetIndex()))
		}
		lastIndex, lastTerm = ent.GetIndex(), ent.GetTerm()
	}
	if lastIndex == applied {
		return nil
	}
	meta := append(storage.PutU64(lastIndex), storage.PutU64(lastTerm)...)
	if err := b.Set(storage.MetaKey(storage.MetaApplied), meta, nil); err != nil {
		return err
	}
	failpoint.Hit("apply-before-commit")
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("committing applied state: %w", err)
	}
	failpoint.Hit("apply-after-commit")
	rev := a.kv.PendingRev()
	a.kv.Publish(rev)
	if len(events) > 0 && a.watch != nil {
		a.watch.Notify(rev, events)
	}
	a.mu.Lock()
	a.applied = lastIndex
	a.term = lastTerm
	a.mu.Unlock()
	a.cond.Broadcast()
	if confChanged && a.OnConfChange != nil {
		a.OnConfChange()
	}
	for _, p := range results {
		a.waits.Trigger(p.id, p.res)
	}
	return nil
}

func (a *Applier) replayConfChange(ent *raftpb.Entry) error {
	if t := ent.GetType(); t != raftpb.EntryConfChange && t != raftpb.EntryConfChangeV2 {
		return nil
	}
	cc, err := decodeConfChange(ent)
	if err != nil {
		return err
	}
	a.conf.ApplyConfChange(cc)
	return nil
}

// decodeConfChange decodes a configuration entry of either version.
func decodeConfChange(ent *raftpb.Entry) (raftpb.ConfChangeI, error) {
	var cc interface {
		raftpb.ConfChangeI
		proto.Message
	} = &raftpb.ConfChange{}
	if ent.GetType() == raftpb.EntryConfChangeV2 {
		cc = &raftpb.ConfChangeV2{}
	}
	if err := proto.Unmarshal(ent.GetData(), cc); err != nil {
		return nil, fmt.Errorf("%w: conf change %d: %v", storage.ErrCorrupt, ent.GetIndex(), err)
	}
	return cc, nil
}

func (a *Applier) applyConfChange(b *pebble.Batch, cc raftpb.ConfChangeI) error {
	cs := a.conf.ApplyConfChange(cc)
	v, err := proto.Marshal(cs)
	if err != nil {
		return err
	}
	if err := b.Set(storage.MetaKey(storage.MetaConfState), v, nil); err != nil {
		return err
	}
	a.mu.Lock()
	a.confState = cs
	a.mu.Unlock()
	if a.members != nil {
		return a.members.ApplyConfChange(b, cc)
	}
	return nil
}
