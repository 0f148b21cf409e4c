package snapshot

import (
	"fmt"
	"math/rand/v2"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// op is one change of a transaction: a put of Key (with Lease when set) or a
// delete of Key.
type op struct {
	Key    string
	Value  string
	Lease  int64
	Delete bool
}

// entry is one record of the key bucket.
type entry struct {
	Rev       Revision
	Tombstone bool
	KV        *mvccpb.KeyValue
}

// history is a naive MVCC model: it turns transactions into the key-bucket
// records etcd writes for them, and answers what a key looked like at a
// revision. The first transaction gets revision 2, as in a fresh etcd.
type history struct {
	entries []entry
	rev     int64
	live    map[string]*mvccpb.KeyValue
}

func newHistory() *history {
	return &history{rev: 1, live: map[string]*mvccpb.KeyValue{}}
}

// apply records one transaction and returns its main revision.
func (h *history) apply(ops []op) int64 {
	main := h.rev + 1
	for sub, o := range ops {
		rev := Revision{Main: main, Sub: int64(sub)}
		if o.Delete {
			if _, ok := h.live[o.Key]; !ok {
				panic(fmt.Sprintf("delete of missing key %q", o.Key))
			}
			delete(h.live, o.Key)
			h.entries = append(h.entries, entry{Rev: rev, Tombstone: true, KV: &mvccpb.KeyValue{Key: []byte(o.Key)}})
			continue
		}
		kv := &mvccpb.KeyValue{Key: []byte(o.Key), Value: []byte(o.Value), ModRevision: main, Version: 1, CreateRevision: main, Lease: o.Lease}
		if prev, ok := h.live[o.Key]; ok {
			kv.CreateRevision = prev.CreateRevision
			kv.Version = prev.Version + 1
		}
		h.live[o.Key] = kv
		h.entries = append(h.entries, entry{Rev: rev, KV: kv})
	}
	h.rev = main
	return main
}

// stateAt returns the live keys after revision rev.
func (h *history) stateAt(rev int64) map[string]*mvccpb.KeyValue {
	st := map[string]*mvccpb.KeyValue{}
	for _, e := range h.entries {
		if e.Rev.Main > rev {
			break
		}
		if e.Tombstone {
			delete(st, string(e.KV.Key))
		} else {
			st[string(e.KV.Key)] = e.KV
		}
	}
	return st
}

// compacted returns the records etcd keeps after compacting at rev: every
// record above rev, and for each key the latest record at or below rev
// unless that record is a tombstone.
func (h *history) compacted(rev int64) []entry {
	latest := map[string]int{}
	for i, e := range h.entries {
		if e.Rev.Main <= rev {
			latest[string(e.KV.Key)] = i
		}
	}
	var out []entry
	for i, e := range h.entries {
		if e.Rev.Main > rev || (latest[string(e.KV.Key)] == i && !e.Tombstone) {
			out = append(out, e)
		}
	}
	return out
}

// randomTxns generates n transactions over nkeys keys: 1 to 3 changes of
// distinct keys each, about one change in eight a delete of a live key, one
// put in five attached to one of leases.
func randomTxns(seed uint64, n, nkeys int, leases []int64) [][]op {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	live := map[string]bool{}
	var txns [][]op
	for range n {
		k := 1 + rng.IntN(3)
		used := map[string]bool{}
		var ops []op
		for len(ops) < k {
			key := fmt.Sprintf("key/%05d", rng.IntN(nkeys))
			if used[key] {
				continue
			}
			used[key] = true
			if live[key] && rng.IntN(8) == 0 {
				ops = append(ops, op{Key: key, Delete: true})
				delete(live, key)
				continue
			}
			o := op{Key: key, Value: fmt.Sprintf("value %d of %s %x", rng.IntN(1000), key, rng.Uint64())}
			if len(leases) > 0 && rng.IntN(5) == 0 {
				o.Lease = leases[rng.IntN(len(leases))]
			}
			ops = append(ops, o)
			live[key] = true
		}
		txns = append(txns, ops)
	}
	return txns
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
