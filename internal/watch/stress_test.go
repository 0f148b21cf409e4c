package watch_test

import (
	"fmt"
	"math/rand"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/internal/watch"
	"github.com/cairn-kv/cairn/internal/watch/watchtest"
)

// TestConcurrentStress runs the real catch-up goroutine against a writer
// that notifies as fast as it can, a goroutine creating watchers at past
// revisions, and consumers of which some read only now and then, then checks
// every stream with the oracle. Run it with -race.
func TestConcurrentStress(t *testing.T) {
	writes := 3000
	if testing.Short() {
		writes = 500
	}
	st := watchtest.NewStore()
	h := watch.NewHub(st, watch.Options{StreamBuffer: 3, CatchupEvents: 20})
	defer h.Close()
	o := &oracle{t: t, rng: rand.New(rand.NewSource(1)), store: st, hub: h}
	for range 4 {
		o.streams = append(o.streams, &oracleStream{s: h.NewStream(), watchers: map[int64]*oracleWatcher{}})
	}

	var mu sync.Mutex // guards o.streams[i].got and .watchers
	stop := make(chan struct{})
	permits := make(chan struct{}, writes)
	creates := make(chan struct{}, writes)
	var wg sync.WaitGroup
	for i, s := range o.streams {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-s.s.Ready():
				}
				if i%2 == 1 {
					// A slow reader: one pop per permit from the writer.
					select {
					case <-stop:
						return
					case <-permits:
					}
				}
				got := s.s.Pop()
				mu.Lock()
				s.got = append(s.got, got...)
				mu.Unlock()
			}
		})
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		rng := rand.New(rand.NewSource(2))
		var pending []*mvccpb.Event
		for i := range writes {
			k := oracleKeys[rng.Intn(len(oracleKeys))]
			var evs []*mvccpb.Event
			if rng.Intn(4) == 0 {
				_, evs = st.Delete(k)
			} else {
				_, evs = st.Put(k, fmt.Sprint(i))
			}
			pending = append(pending, evs...)
			if rng.Intn(3) > 0 {
				cur, _ := st.Revs()
				h.Notify(cur, pending)
				pending = nil
			}
			if i%50 == 0 {
				permits <- struct{}{}
			}
			if i%15 == 0 {
				creates <- struct{}{}
			}
		}
		if cur, _ := st.Revs(); cur > h.Rev() {
			h.Notify(cur, pending)
		}
	}()
	creator := rand.New(rand.NewSource(3))
	for i := 0; ; i++ {
		select {
		case <-writerDone:
		case <-creates:
			s := o.streams[creator.Intn(len(o.streams))]
			req := watch.WatchRequest{Key: []byte(oracleKeys[creator.Intn(len(oracleKeys))]), RangeEnd: []byte{0}}
			if cur := h.Rev(); cur > 0 && creator.Intn(2) == 0 {
				req.StartRevision = 1 + creator.Int63n(cur)
			}
			mu.Lock()
			id, err := s.s.Watch(req)
			if err != nil {
				t.Fatal(err)
			}
			s.watchers[id] = &oracleWatcher{req: req, id: id, effStart: req.StartRevision}
			mu.Unlock()
			if i%7 == 3 {
				s.s.RequestProgress()
			}
			continue
		}
		break
	}
	close(stop)
	wg.Wait()
	o.notified = h.Rev()

	// Drain until every watcher is synced and every queue is empty.
	deadline := time.After(30 * time.Second)
	cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(deadline)}}
	for _, s := range o.streams {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s.s.Ready())})
	}
	for {
		for _, s := range o.streams {
			s.got = append(s.got, s.s.Pop()...)
		}
		_, unsynced := h.WatcherCounts()
		empty := true
		for _, s := range o.streams {
			empty = empty && s.s.QueueLen() == 0
		}
		if unsynced == 0 && empty {
			break
		}
		if unsynced == 0 {
			continue
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			t.Fatalf("catch-up did not finish: %d watchers unsynced", unsynced)
		}
	}
	o.verify(0)
	n := 0
	for _, s := range o.streams {
		n += len(s.watchers)
	}
	t.Logf("%d watchers checked", n)
}
