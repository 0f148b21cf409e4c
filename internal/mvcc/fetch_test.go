package mvcc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

func randomKV(rng *rand.Rand) *mvccpb.KeyValue {
	bytesOf := func(max int) []byte {
		n := rng.IntN(max + 1)
		if n == 0 {
			return nil
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	num := func() int64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return -rng.Int64()
		default:
			return rng.Int64N(1 << uint(rng.IntN(62)+1))
		}
	}
	return &mvccpb.KeyValue{
		Key: bytesOf(20), Value: bytesOf(300), CreateRevision: num(),
		ModRevision: num(), Version: num(), Lease: num(),
	}
}

// TestEncodeKVMatchesProtoMarshal checks the hand-written encoder against
// the protobuf library: same bytes (members hash the records), same size.
func TestEncodeKVMatchesProtoMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 2000; i++ {
		kv := randomKV(rng)
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(kv)
		if err != nil {
			t.Fatal(err)
		}
		got := encodeKV(nil, kv)
		if string(got) != string(want) {
			t.Fatalf("encodeKV(%v) = %x, proto.Marshal = %x", kv, got, want)
		}
		if sizeKV(kv) != len(want) {
			t.Fatalf("sizeKV(%v) = %d, want %d", kv, sizeKV(kv), len(want))
		}
	}
}

// TestDecodeKVMatchesProtoUnmarshal checks the hand-written decoder
// against the protobuf library, including records with a field it does not
// know (decoded by the library).
func TestDecodeKVMatchesProtoUnmarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 2000; i++ {
		b, err := proto.Marshal(randomKV(rng))
		if err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			b = protowire.AppendTag(b, 9, protowire.VarintType)
			b = protowire.AppendVarint(b, 42)
		}
		want := &mvccpb.KeyValue{}
		if err := proto.Unmarshal(b, want); err != nil {
			t.Fatal(err)
		}
		got := &mvccpb.KeyValue{}
		if err := decodeKV(b, got); err != nil {
			t.Fatalf("decodeKV(%x): %v", b, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("decodeKV(%x) = %v, proto.Unmarshal = %v", b, got, want)
		}
	}
	if err := decodeKV([]byte{0x0a, 0x05, 'a'}, &mvccpb.KeyValue{}); err == nil {
		t.Fatal("decodeKV of a truncated record: no error")
	}
}

// TestFetchOrderAndMissing checks fetch on both of its paths (point
// lookups, one iterator): results in the order asked, a missing record
// reported as ErrKeyNotFound wherever it falls.
func TestFetchOrderAndMissing(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := db.NewBatch()
	for main := int64(2); main <= 40; main++ {
		if main%7 == 0 {
			continue // a hole
		}
		for sub := int64(0); sub < 2; sub++ {
			kv := &mvccpb.KeyValue{Key: []byte(fmt.Sprintf("k%d_%d", main, sub)), ModRevision: main, Value: []byte("v")}
			if err := b.Set(storage.KVKey(main, sub, false), encodeKV(nil, kv), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// Every other fetch goes through a record cache, which the earlier
	// ones filled: the answers must be the same.
	var cache recordCache
	for i := 0; i < 1000; i++ {
		c := &cache
		if i%2 == 0 {
			c = nil
		}
		var revs []Revision
		missing := false
		for n := rng.IntN(12) + 1; n > 0; n-- {
			r := Revision{Main: rng.Int64N(42) + 1, Sub: rng.Int64N(2)}
			if r.Main < 2 || r.Main > 40 || r.Main%7 == 0 {
				if rng.IntN(4) != 0 {
					continue
				}
				missing = true
			}
			revs = append(revs, r)
		}
		kvs, err := fetch(db, revs, c)
		if missing {
			if !errors.Is(err, ErrKeyNotFound) {
				t.Fatalf("fetch(%v) = %v, %v; want ErrKeyNotFound", revs, kvs, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("fetch(%v): %v", revs, err)
		}
		if len(kvs) != len(revs) {
			t.Fatalf("fetch(%v): %d results", revs, len(kvs))
		}
		for j, r := range revs {
			if want := fmt.Sprintf("k%d_%d", r.Main, r.Sub); string(kvs[j].Key) != want || kvs[j].ModRevision != r.Main {
				t.Fatalf("fetch(%v)[%d] = %v, want key %s", revs, j, kvs[j], want)
			}
		}
	}
}

func TestRecordCache(t *testing.T) {
	var c recordCache
	a, b := Revision{Main: 5}, Revision{Main: 5, Sub: 1}
	if c.get(a) != nil {
		t.Fatal("empty cache answered")
	}
	rec := []byte("record a")
	c.put(a, rec)
	rec[0] = 'X' // the cache holds its own copy
	if got := string(c.get(a)); got != "record a" {
		t.Fatalf("get(a) = %q", got)
	}
	if c.get(b) != nil {
		t.Fatal("another sub-revision answered from a's entry")
	}
	// A revision that takes the same slot replaces the entry.
	other := Revision{Main: 6}
	for c.slot(other) != c.slot(a) {
		other.Main++
	}
	c.put(other, []byte("record other"))
	if c.get(a) != nil || string(c.get(other)) != "record other" {
		t.Fatal("a colliding revision did not replace the entry")
	}
	c.put(b, make([]byte, recordCacheMax+1))
	if c.get(b) != nil {
		t.Fatal("a record over the size limit was cached")
	}
	c.clear()
	if c.get(other) != nil {
		t.Fatal("clear left an entry")
	}
}
