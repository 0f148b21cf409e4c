package mvcc

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

// pointReads is the largest number of records fetch reads with point
// lookups; more are read through one iterator, seeking forward in
// revision order, which costs far less per record than a lookup each.
const pointReads = 2

// fetch reads the records of revs from r and returns their key-values in
// the order of revs. It returns ErrKeyNotFound if a record is missing (a
// compaction removed it).
//
// The key-values are allocated together and their keys and values share
// buffers; callers may change their fields but not the bytes of a key or a
// value in place.
//
// With a cache, point reads look there first and fill it.
func fetch(r pebble.Reader, revs []Revision, cache *recordCache) ([]*mvccpb.KeyValue, error) {
	if len(revs) == 0 {
		return []*mvccpb.KeyValue{}, nil
	}
	slab := make([]mvccpb.KeyValue, len(revs))
	kvs := make([]*mvccpb.KeyValue, len(revs))
	for i := range slab {
		kvs[i] = &slab[i]
	}
	var a arena
	if len(revs) <= pointReads {
		for i, rv := range revs {
			if cache != nil {
				if v := cache.get(rv); v != nil {
					if err := decodeKV(a.copy(v, len(revs)-i), kvs[i]); err != nil {
						return nil, fmt.Errorf("%w: revision %d_%d: %v", storage.ErrCorrupt, rv.Main, rv.Sub, err)
					}
					continue
				}
			}
			v, closer, err := r.Get(storage.KVKey(rv.Main, rv.Sub, false))
			if errors.Is(err, pebble.ErrNotFound) {
				return nil, ErrKeyNotFound
			}
			if err != nil {
				return nil, err
			}
			err = decodeKV(a.copy(v, len(revs)-i), kvs[i])
			if err == nil && cache != nil {
				cache.put(rv, v)
			}
			closer.Close()
			if err != nil {
				return nil, fmt.Errorf("%w: revision %d_%d: %v", storage.ErrCorrupt, rv.Main, rv.Sub, err)
			}
		}
		return kvs, nil
	}

	// Visit the records in revision order with one iterator: each seek
	// goes forward from the last one.
	order := make([]int32, len(revs))
	for i := range order {
		order[i] = int32(i)
	}
	byRev := func(x, y int32) int {
		a, b := revs[x], revs[y]
		switch {
		case a.Less(b):
			return -1
		case b.Less(a):
			return 1
		}
		return 0
	}
	// Keys written in key order (a common load) have their revisions in
	// order already.
	if !slices.IsSortedFunc(order, byRev) {
		slices.SortFunc(order, byRev)
	}
	first, last := revs[order[0]], revs[order[len(order)-1]]
	it, err := r.NewIter(&pebble.IterOptions{
		LowerBound: storage.KVKey(first.Main, first.Sub, false),
		UpperBound: storage.KVKey(last.Main, last.Sub+1, false),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var want [1 + storage.RevisionKeyLen]byte
	for n, i := range order {
		rv := revs[i]
		if n > 0 && rv == revs[order[n-1]] {
			// The same record again: the iterator is on it.
			if err := decodeKV(a.copy(it.Value(), len(revs)-n), kvs[i]); err != nil {
				return nil, fmt.Errorf("%w: revision %d_%d: %v", storage.ErrCorrupt, rv.Main, rv.Sub, err)
			}
			continue
		}
		copy(want[:], storage.KVKey(rv.Main, rv.Sub, false))
		// The records are dense in revision order when the keys were
		// written together: try the next record before seeking.
		ok := false
		if n > 0 && it.Valid() && it.Next() {
			ok = string(it.Key()) >= string(want[:])
		}
		if !ok {
			it.SeekGE(want[:])
		}
		if !it.Valid() || string(it.Key()) != string(want[:]) {
			if err := it.Error(); err != nil {
				return nil, err
			}
			return nil, ErrKeyNotFound
		}
		if err := decodeKV(a.copy(it.Value(), len(revs)-n), kvs[i]); err != nil {
			return nil, fmt.Errorf("%w: revision %d_%d: %v", storage.ErrCorrupt, rv.Main, rv.Sub, err)
		}
	}
	return kvs, nil
}

// arena hands out copies of records from larger shared buffers, so a
// range of many keys makes a few allocations instead of two per key.
type arena struct{ buf []byte }

const arenaChunk = 32 << 10

// copy returns a copy of b; left is the number of records still to copy,
// this one included, so that a few records get a buffer of their size.
func (a *arena) copy(b []byte, left int) []byte {
	if len(b) > cap(a.buf)-len(a.buf) {
		n := len(b) * left
		if n > arenaChunk || n < 0 {
			n = max(arenaChunk, len(b))
		}
		a.buf = make([]byte, 0, n)
	}
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[start:len(a.buf):len(a.buf)]
}

// decodeKV decodes a stored mvccpb.KeyValue from b into kv (which must be
// zero). The key and value alias b. A record with fields this decoder does
// not know is decoded by the protobuf library instead.
func decodeKV(b []byte, kv *mvccpb.KeyValue) error {
	rest := b
	for len(rest) > 0 {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return protowire.ParseError(n)
		}
		rest = rest[n:]
		switch {
		case (num == 1 || num == 5) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(rest)
			if n < 0 {
				return protowire.ParseError(n)
			}
			rest = rest[n:]
			if num == 1 {
				kv.Key = v
			} else {
				kv.Value = v
			}
		case num >= 2 && num <= 6 && num != 5 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(rest)
			if n < 0 {
				return protowire.ParseError(n)
			}
			rest = rest[n:]
			switch num {
			case 2:
				kv.CreateRevision = int64(v)
			case 3:
				kv.ModRevision = int64(v)
			case 4:
				kv.Version = int64(v)
			case 6:
				kv.Lease = int64(v)
			}
		default:
			kv.Key, kv.Value = nil, nil
			kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease = 0, 0, 0, 0
			return proto.Unmarshal(b, kv)
		}
	}
	return nil
}

// encodeKV appends the protobuf encoding of kv to b: the bytes
// proto.Marshal makes for it (fields in number order, zero values left
// out), without going through reflection.
func encodeKV(b []byte, kv *mvccpb.KeyValue) []byte {
	if len(kv.Key) > 0 {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, kv.Key)
	}
	for _, f := range [...]struct {
		num protowire.Number
		v   int64
	}{{2, kv.CreateRevision}, {3, kv.ModRevision}, {4, kv.Version}} {
		if f.v != 0 {
			b = protowire.AppendTag(b, f.num, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(f.v))
		}
	}
	if len(kv.Value) > 0 {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, kv.Value)
	}
	if kv.Lease != 0 {
		b = protowire.AppendTag(b, 6, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(kv.Lease))
	}
	return b
}

// sizeKV is the length of encodeKV's output for kv.
func sizeKV(kv *mvccpb.KeyValue) int {
	n := 0
	if len(kv.Key) > 0 {
		n += 1 + protowire.SizeBytes(len(kv.Key))
	}
	for _, v := range [...]int64{kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease} {
		if v != 0 {
			n += 1 + protowire.SizeVarint(uint64(v))
		}
	}
	if len(kv.Value) > 0 {
		n += 1 + protowire.SizeBytes(len(kv.Value))
	}
	return n
}
