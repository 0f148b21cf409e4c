package robustness

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// NumKeys is the size of the keyspace the traffic touches: key0..key9.
// Few keys make operations collide, which is what finds bugs.
const NumKeys = 10

// KeyName is the etcd key of key index i.
func KeyName(i int) string { return fmt.Sprintf("key%d", i) }

// KeyPrefix is what every traffic key starts with (a range reads them all).
const KeyPrefix = "key"

// keyIndex is the index of a traffic key, or -1.
func keyIndex(k string) int {
	var i int
	if _, err := fmt.Sscanf(k, "key%d", &i); err != nil || i < 0 || i >= NumKeys || KeyName(i) != k {
		return -1
	}
	return i
}

// OpKind is one kind of request the traffic sends.
type OpKind int

const (
	OpGet         OpKind = iota // linearizable get of one key
	OpRange                     // linearizable range over every traffic key
	OpStaleGet                  // serializable get (checked against the watch history only)
	OpPut                       // put, unique value
	OpPutLease                  // put attached to a lease
	OpDelete                    // delete one key
	OpTxn                       // if mod_revision(key) == Expect then put else get
	OpLeaseRevoke               // revoke a lease (deletes its keys in one revision)
	OpGetAtRev                  // get of one key at an older revision (checked against the watch history only)
)

var opNames = [...]string{"get", "range", "stale-get", "put", "put-lease", "delete", "txn", "lease-revoke", "get-at-rev"}

func (k OpKind) String() string { return opNames[k] }

// IsWrite reports whether the request may change the keyspace.
func (k OpKind) IsWrite() bool { return k >= OpPut && k <= OpLeaseRevoke }

// Request is the input of one recorded operation.
type Request struct {
	Kind   OpKind
	Key    int    // key index (not for range and lease-revoke)
	Value  string // put, put-lease, txn: unique in the run
	Lease  int64  // put-lease, lease-revoke
	Expect int64  // txn: the mod revision compared
	AtRev  int64  // get-at-rev: the revision read
}

func (r Request) String() string {
	switch r.Kind {
	case OpRange:
		return "range(" + KeyPrefix + "*)"
	case OpGet, OpStaleGet, OpDelete:
		return fmt.Sprintf("%s(%s)", r.Kind, KeyName(r.Key))
	case OpGetAtRev:
		return fmt.Sprintf("get(%s at %d)", KeyName(r.Key), r.AtRev)
	case OpPut:
		return fmt.Sprintf("put(%s, %s)", KeyName(r.Key), r.Value)
	case OpPutLease:
		return fmt.Sprintf("put(%s, %s, lease %x)", KeyName(r.Key), r.Value, r.Lease)
	case OpTxn:
		return fmt.Sprintf("txn(mod(%s)==%d ? put %s)", KeyName(r.Key), r.Expect, r.Value)
	case OpLeaseRevoke:
		return fmt.Sprintf("revoke(%x)", r.Lease)
	}
	return "?"
}

// KV is one key's value as a response or a watch event shows it.
type KV struct {
	Key     int
	Value   string
	Mod     int64
	Create  int64
	Version int64
	Lease   int64
}

func (kv KV) String() string {
	return fmt.Sprintf("%s=%s@%d(c%d,v%d,l%x)", KeyName(kv.Key), kv.Value, kv.Mod, kv.Create, kv.Version, kv.Lease)
}

// Response is the output of one recorded operation. Unknown means the
// client got an error: the request may or may not have taken effect.
type Response struct {
	Unknown   bool
	Err       string
	Compacted bool  // the server said the revision asked for is compacted
	Rev       int64 // header revision
	KVs       []KV  // get, range, txn else-branch
	Deleted   int64 // delete
	Succeeded bool  // txn
}

func (r Response) String() string {
	if r.Unknown {
		return "unknown: " + r.Err
	}
	var kvs []string
	for _, kv := range r.KVs {
		kvs = append(kvs, kv.String())
	}
	return fmt.Sprintf("rev %d deleted %d succeeded %v [%s]", r.Rev, r.Deleted, r.Succeeded, strings.Join(kvs, " "))
}

// keyState is one key in the model; the zero value is an absent key.
type keyState struct {
	Value   string
	Mod     int64
	Create  int64
	Version int64
	Lease   int64
}

func (k keyState) exists() bool { return k.Mod != 0 }

// State is the model of the keyspace: the revision and every key. It is
// a value (arrays, no maps), so Step copies it and == compares it.
type State struct {
	Rev  int64
	Keys [NumKeys]keyState
}

func (s State) kv(i int) KV {
	k := s.Keys[i]
	return KV{Key: i, Value: k.Value, Mod: k.Mod, Create: k.Create, Version: k.Version, Lease: k.Lease}
}

func (s State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rev %d:", s.Rev)
	for i, k := range s.Keys {
		if k.exists() {
			fmt.Fprintf(&b, " %s", s.kv(i))
		}
	}
	return b.String()
}

// put writes key i at a new revision.
func (s *State) put(i int, value string, lease int64) {
	s.Rev++
	k := &s.Keys[i]
	if !k.exists() {
		k.Create, k.Version = s.Rev, 0
	}
	k.Value, k.Mod, k.Lease = value, s.Rev, lease
	k.Version++
}

// Apply runs req on s and returns the response a correct server gives.
func (s State) Apply(req Request) (State, Response) {
	switch req.Kind {
	case OpGet, OpStaleGet, OpGetAtRev:
		r := Response{Rev: s.Rev}
		if s.Keys[req.Key].exists() {
			r.KVs = []KV{s.kv(req.Key)}
		}
		return s, r
	case OpRange:
		r := Response{Rev: s.Rev}
		for i := range s.Keys {
			if s.Keys[i].exists() {
				r.KVs = append(r.KVs, s.kv(i))
			}
		}
		// Keys sort as strings: key0 < key1 < ... < key9.
		return s, r
	case OpPut:
		s.put(req.Key, req.Value, 0)
		return s, Response{Rev: s.Rev}
	case OpPutLease:
		s.put(req.Key, req.Value, req.Lease)
		return s, Response{Rev: s.Rev}
	case OpDelete:
		if !s.Keys[req.Key].exists() {
			return s, Response{Rev: s.Rev}
		}
		s.Rev++
		s.Keys[req.Key] = keyState{}
		return s, Response{Rev: s.Rev, Deleted: 1}
	case OpTxn:
		if s.Keys[req.Key].Mod == req.Expect {
			s.put(req.Key, req.Value, 0)
			return s, Response{Rev: s.Rev, Succeeded: true}
		}
		r := Response{Rev: s.Rev}
		if s.Keys[req.Key].exists() {
			r.KVs = []KV{s.kv(req.Key)}
		}
		return s, r
	case OpLeaseRevoke:
		deleted := false
		for i := range s.Keys {
			if s.Keys[i].exists() && s.Keys[i].Lease == req.Lease {
				if !deleted {
					s.Rev++
					deleted = true
				}
				s.Keys[i] = keyState{}
			}
		}
		return s, Response{Rev: s.Rev}
	}
	panic(fmt.Sprintf("unknown op kind %d", req.Kind))
}

// matches reports whether a server's response got equals the model's.
func matches(req Request, got, want Response) bool {
	if got.Rev != want.Rev {
		return false
	}
	switch req.Kind {
	case OpPut, OpPutLease, OpLeaseRevoke:
		return true
	case OpDelete:
		return got.Deleted == want.Deleted
	case OpTxn:
		return got.Succeeded == want.Succeeded && (got.Succeeded || kvsEqual(got.KVs, want.KVs))
	}
	return kvsEqual(got.KVs, want.KVs)
}

func kvsEqual(a, b []KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Model is the porcupine model of the keyspace. An operation whose
// outcome is unknown may be linearized anywhere after its call (its
// return is "never"), and then takes effect with whatever revision the
// model gives it: placing it last is the same as it never happening.
func Model(init State) porcupine.Model {
	return porcupine.Model{
		Init: func() interface{} { return init },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			s, req, got := state.(State), input.(Request), output.(Response)
			next, want := s.Apply(req)
			if got.Unknown {
				return true, next
			}
			if !matches(req, got, want) {
				return false, s
			}
			return true, next
		},
		Hash: func(state interface{}) uint64 {
			s := state.(State)
			h := fnv.New64a()
			fmt.Fprintf(h, "%d", s.Rev)
			for _, k := range s.Keys {
				fmt.Fprintf(h, "|%s@%d", k.Value, k.Mod)
			}
			return h.Sum64()
		},
		DescribeOperation: func(input, output interface{}) string {
			return fmt.Sprintf("%s -> %s", input.(Request), output.(Response))
		},
		DescribeState: func(state interface{}) string { return state.(State).String() },
	}
}

// sortKVs orders kvs by key, as a range returns them.
func sortKVs(kvs []KV) {
	sort.Slice(kvs, func(i, j int) bool { return KeyName(kvs[i].Key) < KeyName(kvs[j].Key) })
}
