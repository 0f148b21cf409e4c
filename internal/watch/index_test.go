package watch

import (
	"math/rand"
	"sort"
	"testing"
)

// TestKeyIndexMatchesNaive checks the range index against a linear scan on
// random watchers, keys and removals.
func TestKeyIndexMatchesNaive(t *testing.T) {
	alphabet := []string{"", "a", "b", "c", "\x00", "\xff"}
	randKey := func(rng *rand.Rand) string {
		k := ""
		for range 1 + rng.Intn(3) {
			k += alphabet[1+rng.Intn(len(alphabet)-1)]
		}
		return k
	}
	for seed := range 300 {
		rng := rand.New(rand.NewSource(int64(seed)))
		x := newKeyIndex()
		var all []*watcher
		for step := range 200 {
			switch {
			case rng.Intn(3) > 0 || len(all) == 0:
				w := &watcher{id: int64(step), key: []byte(randKey(rng))}
				switch rng.Intn(3) {
				case 0:
					w.single = true
				case 1: // no end
				default:
					end := randKey(rng)
					if end <= string(w.key) {
						end = string(w.key) + "a"
					}
					w.end = []byte(end)
				}
				x.add(w)
				all = append(all, w)
			default:
				i := rng.Intn(len(all))
				x.remove(all[i])
				all = append(all[:i], all[i+1:]...)
			}
			key := []byte(randKey(rng))
			var got, want []int64
			x.each(key, func(w *watcher) { got = append(got, w.id) })
			for _, w := range all {
				if w.holds(key) {
					want = append(want, w.id)
				}
			}
			sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
			if len(got) != len(want) {
				t.Fatalf("seed %d step %d key %q: got %v want %v", seed, step, key, got, want)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("seed %d step %d key %q: got %v want %v", seed, step, key, got, want)
				}
			}
		}
	}
}
