package bench

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"
)

// KeySpec says which keys a write workload uses.
type KeySpec struct {
	KeySize    int
	ValSize    int
	KeySpace   int  // number of distinct keys
	Sequential bool // key n is n mod KeySpace; otherwise a random one
}

// Validate checks the key flags.
func (k KeySpec) Validate() error {
	if k.KeySize < 1 {
		return fmt.Errorf("--key-size=%d: must be at least 1", k.KeySize)
	}
	if k.ValSize < 0 {
		return fmt.Errorf("--val-size=%d: must not be negative", k.ValSize)
	}
	if k.KeySpace < 1 {
		return fmt.Errorf("--key-space-size=%d: must be at least 1", k.KeySpace)
	}
	if d := len(strconv.Itoa(k.KeySpace - 1)); d > k.KeySize {
		return fmt.Errorf("--key-space-size=%d needs keys of %d bytes, --key-size is %d", k.KeySpace, d, k.KeySize)
	}
	return nil
}

// Keys are the pre-generated keys of a run: key i is i in decimal,
// zero-padded to the key size ("00000042"), so keys sort by number, are
// printable, and a range [Key(a), Key(b)) holds b-a keys. They are slices
// of one string, generated once; a request only indexes them.
type Keys struct {
	all  string
	size int
	n    int
}

// NewKeys generates the keys of spec.
func NewKeys(spec KeySpec) *Keys {
	var b strings.Builder
	b.Grow(spec.KeySize * spec.KeySpace)
	for i := range spec.KeySpace {
		b.WriteString(FormatKey(i, spec.KeySize))
	}
	return &Keys{all: b.String(), size: spec.KeySize, n: spec.KeySpace}
}

// FormatKey is key i of a key space with keys of size bytes.
func FormatKey(i, size int) string {
	s := strconv.Itoa(i)
	if len(s) >= size {
		return s
	}
	return strings.Repeat("0", size-len(s)) + s
}

// Key returns key i (0 <= i < Len).
func (k *Keys) Key(i int) string { return k.all[i*k.size : (i+1)*k.size] }

// Len is the number of keys.
func (k *Keys) Len() int { return k.n }

// RandomValue returns size random printable bytes.
func RandomValue(size int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, size)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// picker chooses the key index of request n: sequential, or random from
// a per-worker generator (no lock, no allocation).
type picker struct {
	sequential bool
	space      uint64
	states     []pickerState
}

// pickerState is one worker's generator state, alone on its cache line so
// that workers on different cores do not contend for it.
type pickerState struct {
	s uint64
	_ [56]byte
}

func newPicker(spec KeySpec, workers int) *picker {
	p := &picker{sequential: spec.Sequential, space: uint64(spec.KeySpace), states: make([]pickerState, workers)}
	var seed [8]byte
	for i := range p.states {
		_, _ = rand.Read(seed[:])
		s := uint64(0)
		for _, c := range seed {
			s = s<<8 | uint64(c)
		}
		p.states[i].s = s | 1
	}
	return p
}

func (p *picker) pick(w int, n int64) int {
	if p.sequential {
		return int(uint64(n) % p.space)
	}
	s := p.states[w].s
	s ^= s >> 12
	s ^= s << 25
	s ^= s >> 27
	p.states[w].s = s
	return int((s * 2685821657736338717) % p.space)
}
