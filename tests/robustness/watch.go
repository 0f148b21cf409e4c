package robustness

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Event is one watch event.
type Event struct {
	Delete bool
	KV     KV  // for a delete: Key and Mod (the deletion revision) only
	Prev   *KV // prev_kv, when asked for and present
}

func (e Event) String() string {
	t := "PUT"
	if e.Delete {
		t = "DELETE"
	}
	s := fmt.Sprintf("%s %s", t, e.KV)
	if e.Prev != nil {
		s += " prev " + e.Prev.String()
	}
	return s
}

// WatchResp is one response a watcher got.
type WatchResp struct {
	Time       int64 // history clock
	Rev        int64 // header revision
	Events     []Event
	Progress   bool // a progress notification (bookmark)
	Canceled   bool
	CompactRev int64
	Err        string
}

// WatchSpec says what a watcher asked for.
type WatchSpec struct {
	Key      int // key index; -1: every traffic key (prefix)
	StartRev int64
	PrevKV   bool
	NoPut    bool // filter out puts
	NoDelete bool // filter out deletes
	Progress bool // progress notifications asked for
}

func (s WatchSpec) String() string {
	k := KeyPrefix + "*"
	if s.Key >= 0 {
		k = KeyName(s.Key)
	}
	return fmt.Sprintf("watch(%s from %d prev_kv=%v noput=%v nodelete=%v progress=%v)", k, s.StartRev, s.PrevKV, s.NoPut, s.NoDelete, s.Progress)
}

// wants reports whether an event passes the watcher's key and filters.
func (s WatchSpec) wants(e Event) bool {
	if s.Key >= 0 && e.KV.Key != s.Key {
		return false
	}
	if e.Delete {
		return !s.NoDelete
	}
	return !s.NoPut
}

// Watcher records what one watch delivered.
type Watcher struct {
	Name    string
	Spec    WatchSpec
	Started int64 // history clock when the watch was opened

	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	resps   []WatchResp
	lastRev int64 // highest revision known delivered (event or bookmark)
	ended   bool  // canceled by the server or the channel closed
}

// StartWatcher opens a watch on cli and records its responses until Stop.
func StartWatcher(cli *clientv3.Client, name string, spec WatchSpec, h *History) *Watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{Name: name, Spec: spec, Started: h.Now(), cancel: cancel, done: make(chan struct{})}
	key := KeyPrefix
	opts := []clientv3.OpOption{clientv3.WithRev(spec.StartRev)}
	if spec.Key >= 0 {
		key = KeyName(spec.Key)
	} else {
		opts = append(opts, clientv3.WithPrefix())
	}
	if spec.PrevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	if spec.NoPut {
		opts = append(opts, clientv3.WithFilterPut())
	}
	if spec.NoDelete {
		opts = append(opts, clientv3.WithFilterDelete())
	}
	if spec.Progress {
		opts = append(opts, clientv3.WithProgressNotify())
	}
	ch := cli.Watch(ctx, key, opts...)
	go func() {
		defer close(w.done)
		for wr := range ch {
			r := WatchResp{Time: h.Now(), Rev: wr.Header.Revision, Progress: wr.IsProgressNotify(),
				Canceled: wr.Canceled, CompactRev: wr.CompactRevision}
			if err := wr.Err(); err != nil {
				r.Err = err.Error()
			}
			for _, ev := range wr.Events {
				r.Events = append(r.Events, toEvent(ev))
			}
			w.mu.Lock()
			w.resps = append(w.resps, r)
			if n := len(r.Events); n > 0 {
				w.lastRev = max(w.lastRev, r.Events[n-1].KV.Mod)
			}
			if r.Progress {
				w.lastRev = max(w.lastRev, r.Rev)
			}
			if r.Canceled {
				w.ended = true
			}
			w.mu.Unlock()
		}
		w.mu.Lock()
		w.ended = true
		w.mu.Unlock()
	}()
	return w
}

// LastRev is the highest revision the watcher knows it has everything up to.
func (w *Watcher) LastRev() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastRev
}

// Ended reports whether the watch ended (canceled or closed).
func (w *Watcher) Ended() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ended
}

// Stop cancels the watch and waits for its goroutine.
func (w *Watcher) Stop() {
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		// The client library closes the channel on cancel; if it did
		// not, the responses so far are still checked.
	}
}

// Resps returns a copy of the recorded responses.
func (w *Watcher) Resps() []WatchResp {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WatchResp(nil), w.resps...)
}

// Events flattens the recorded responses.
func (w *Watcher) Events() []Event {
	var evs []Event
	for _, r := range w.Resps() {
		evs = append(evs, r.Events...)
	}
	return evs
}

func toKV(kv *mvccpb.KeyValue) KV {
	return KV{Key: keyIndex(string(kv.Key)), Value: string(kv.Value), Mod: kv.ModRevision,
		Create: kv.CreateRevision, Version: kv.Version, Lease: kv.Lease}
}

func toKVs(kvs []*mvccpb.KeyValue) []KV {
	var out []KV
	for _, kv := range kvs {
		out = append(out, toKV(kv))
	}
	return out
}

func toEvent(ev *clientv3.Event) Event {
	e := Event{Delete: ev.Type == clientv3.EventTypeDelete, KV: toKV(ev.Kv)}
	if ev.PrevKv != nil {
		p := toKV(ev.PrevKv)
		e.Prev = &p
	}
	return e
}
