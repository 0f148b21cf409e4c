// Package discovery reads the service registry that cairn-warden keeps in
// cairn (or etcd): one key per running service, holding a JSON Record and
// attached to the lease of the warden that runs it. A key exists while its
// service runs and is healthy (Status "running") or after the warden gave
// up on it (Status "failed", with a Reason); it disappears the moment the
// warden sees the service die, and when the warden itself dies (its lease
// expires).
//
// List reads the registry once, Watch follows its changes, and Addresses
// keeps the current address list of one service name for a client that
// wants to connect to whatever instance is up:
//
//	recs, rev, err := discovery.List(ctx, cli, "/services/")
//	for ev := range discovery.Watch(ctx, cli, "/services/", discovery.AfterRevision(rev)) { ... }
//
//	addrs := discovery.NewAddresses(ctx, cli, "/services/", "db1")
//	defer addrs.Close()
//	<-addrs.Changed(); dial(addrs.List())
package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultPrefix is where cairn-warden registers services unless a
// service's key says otherwise.
const DefaultPrefix = "/services/"

// Service statuses written by cairn-warden.
const (
	StatusRunning = "running"
	StatusFailed  = "failed"
)

// Health values written by cairn-warden.
const (
	HealthHealthy = "healthy" // the last check passed
	HealthFailing = "failing" // the last check failed, below the failure threshold
	HealthNone    = "none"    // the service has no health check
)

// Record is the value of one registry key.
type Record struct {
	Name      string    `json:"name"`
	Hostname  string    `json:"hostname"`
	Address   string    `json:"address"`
	PID       int       `json:"pid"`
	Warden    string    `json:"warden"`
	StartedAt time.Time `json:"started_at"`
	Restarts  int       `json:"restarts"`
	Status    string    `json:"status"`
	Health    string    `json:"health"`
	Reason    string    `json:"reason,omitempty"`

	// Key is the registry key the record was read from (not stored).
	Key string `json:"-"`
	// ModRevision is the cluster revision of the record's last write
	// (not stored).
	ModRevision int64 `json:"-"`
}

// Live reports whether the service is running (not failed).
func (r Record) Live() bool { return r.Status == StatusRunning }

// Decode parses a registry value read from key.
func Decode(key string, value []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(value, &r); err != nil {
		return Record{}, fmt.Errorf("discovery: %s: not a service record: %w", key, err)
	}
	r.Key = key
	return r, nil
}

// List returns the records under prefix, ordered by key, and the revision
// they were read at (to Watch from). Values that are not records are
// skipped.
func List(ctx context.Context, cli *clientv3.Client, prefix string) ([]Record, int64, error) {
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	recs := make([]Record, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		r, err := Decode(string(kv.Key), kv.Value)
		if err != nil {
			continue
		}
		r.ModRevision = kv.ModRevision
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Key < recs[j].Key })
	return recs, resp.Header.Revision, nil
}

// EventType says what happened to a registry key.
type EventType int

const (
	// Put: the key was created or its record changed.
	Put EventType = iota
	// Delete: the key is gone (service down, or its warden died).
	Delete
)

func (t EventType) String() string {
	if t == Delete {
		return "DELETE"
	}
	return "PUT"
}

// Event is one change of the registry. Err is set (and nothing else but
// Key) when a value could not be decoded or the watch failed; a failed
// watch is the last event before the channel closes.
type Event struct {
	Type     EventType
	Key      string
	Record   Record // for Put
	Revision int64
	Err      error
}

type watchOptions struct{ after int64 }

// WatchOption tunes Watch.
type WatchOption func(*watchOptions)

// AfterRevision makes Watch report the changes made after rev (as returned
// by List), so that nothing is missed between a List and a Watch.
func AfterRevision(rev int64) WatchOption { return func(o *watchOptions) { o.after = rev } }

// Watch reports the changes under prefix, in order, until ctx is done or
// the watch fails (compaction, permissions); the channel is then closed.
// Without AfterRevision it starts at the current revision.
func Watch(ctx context.Context, cli *clientv3.Client, prefix string, opts ...WatchOption) <-chan Event {
	var o watchOptions
	for _, f := range opts {
		f(&o)
	}
	wopts := []clientv3.OpOption{clientv3.WithPrefix()}
	if o.after > 0 {
		wopts = append(wopts, clientv3.WithRev(o.after+1))
	}
	out := make(chan Event)
	go func() {
		defer close(out)
		send := func(ev Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for wr := range cli.Watch(wctx, prefix, wopts...) {
			if err := wr.Err(); err != nil {
				send(Event{Err: err, Revision: wr.Header.Revision})
				return
			}
			for _, ev := range wr.Events {
				e := Event{Key: string(ev.Kv.Key), Revision: ev.Kv.ModRevision}
				if ev.Type == clientv3.EventTypeDelete {
					e.Type = Delete
				} else if r, err := Decode(e.Key, ev.Kv.Value); err != nil {
					e.Err = err
				} else {
					r.ModRevision = ev.Kv.ModRevision
					e.Record = r
				}
				if !send(e) {
					return
				}
			}
		}
	}()
	return out
}

// Addresses keeps the addresses of the live instances of one service name
// current. Its methods are safe for concurrent use.
type Addresses struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	recs    map[string]Record // by key
	changed chan struct{}
	err     error
}

// NewAddresses follows the records under prefix whose Name is name (or whose
// key is prefix+name) until ctx is done or Close.
func NewAddresses(ctx context.Context, cli *clientv3.Client, prefix, name string) *Addresses {
	ctx, cancel := context.WithCancel(ctx)
	a := &Addresses{cancel: cancel, done: make(chan struct{}), recs: map[string]Record{}, changed: make(chan struct{})}
	match := func(key string, r Record) bool { return r.Name == name || key == prefix+name }
	go func() {
		defer close(a.done)
		for ctx.Err() == nil {
			recs, rev, err := List(ctx, cli, prefix)
			if err != nil {
				a.fail(err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			m := map[string]Record{}
			for _, r := range recs {
				if match(r.Key, r) {
					m[r.Key] = r
				}
			}
			a.set(func(cur map[string]Record) map[string]Record { return m })
			for ev := range Watch(ctx, cli, prefix, AfterRevision(rev)) {
				if ev.Err != nil {
					a.fail(ev.Err)
					continue
				}
				a.set(func(cur map[string]Record) map[string]Record {
					if ev.Type == Delete {
						delete(cur, ev.Key)
					} else if match(ev.Key, ev.Record) {
						cur[ev.Key] = ev.Record
					} else {
						delete(cur, ev.Key)
					}
					return cur
				})
			}
		}
	}()
	return a
}

func (a *Addresses) set(f func(map[string]Record) map[string]Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = f(a.recs)
	a.err = nil
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *Addresses) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.err = err
}

// List returns the addresses of the live instances, sorted.
func (a *Addresses) List() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, r := range a.recs {
		if r.Live() && r.Address != "" {
			out = append(out, r.Address)
		}
	}
	sort.Strings(out)
	return out
}

// Changed returns a channel closed at the next update of the list.
func (a *Addresses) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

// Err returns the last error reading the registry, nil once it reads again.
func (a *Addresses) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Close stops following the registry.
func (a *Addresses) Close() {
	a.cancel()
	<-a.done
}
