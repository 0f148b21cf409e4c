package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// naivePercentile is the oracle: sort, then take the value at the
// nearest rank, computed the slow obvious way.
func naivePercentile(vals []int64, p float64) int64 {
	s := slices.Clone(vals)
	slices.Sort(s)
	for i := range s {
		// the smallest value that at least p% of the values do not exceed
		if float64(i+1) >= p/100*float64(len(s))-1e-9 {
			return s[i]
		}
	}
	return s[len(s)-1]
}

func TestPercentilesMatchOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		n := 1 + rng.IntN(3000)
		workers := 1 + rng.IntN(8)
		recs := make([]*Recorder, workers)
		for i := range recs {
			recs[i] = NewRecorder(n, 0)
		}
		var vals []int64
		for i := range n {
			v := rng.Int64N(int64(50 * time.Millisecond))
			if rng.IntN(10) == 0 {
				v *= 20 // a slow tail
			}
			vals = append(vals, v)
			recs[i%workers].Add(time.Duration(v))
		}
		st := Summarize(recs...)
		if st.Count != int64(n) || st.Samples != n {
			t.Fatalf("trial %d: count %d samples %d, want %d", trial, st.Count, st.Samples, n)
		}
		for i, p := range Percentiles {
			if got, want := int64(st.Percentiles[i]), naivePercentile(vals, p); got != want {
				t.Fatalf("trial %d: p%v = %d, want %d", trial, p, got, want)
			}
		}
		if int64(st.Fastest) != slices.Min(vals) || int64(st.Slowest) != slices.Max(vals) {
			t.Fatalf("trial %d: fastest/slowest %v/%v, want %v/%v", trial, st.Fastest, st.Slowest, slices.Min(vals), slices.Max(vals))
		}
		var sum float64
		for _, v := range vals {
			sum += float64(v)
		}
		mean := sum / float64(n)
		var sq float64
		for _, v := range vals {
			sq += (float64(v) - mean) * (float64(v) - mean)
		}
		if d := math.Abs(float64(st.Average) - mean); d > 1 {
			t.Fatalf("trial %d: average %v, want %v", trial, st.Average, mean)
		}
		if want := math.Sqrt(sq / float64(n)); math.Abs(float64(st.Stddev)-want) > want*1e-6+1 {
			t.Fatalf("trial %d: stddev %v, want %v", trial, st.Stddev, want)
		}
		total := 0
		prev := time.Duration(-1)
		for _, b := range st.Histogram {
			total += b.Count
			if b.UpTo < prev {
				t.Fatalf("trial %d: histogram bounds not increasing: %v", trial, st.Histogram)
			}
			prev = b.UpTo
		}
		if total != n || st.Histogram[len(st.Histogram)-1].UpTo != st.Slowest {
			t.Fatalf("trial %d: histogram holds %d of %d samples, last bound %v (slowest %v)", trial, total, n, st.Histogram[len(st.Histogram)-1].UpTo, st.Slowest)
		}
		// Each bar counts exactly the samples in (previous bound, bound].
		lo := int64(-1)
		for _, b := range st.Histogram {
			c := 0
			for _, v := range vals {
				if v > lo && v <= int64(b.UpTo) {
					c++
				}
			}
			if c != b.Count {
				t.Fatalf("trial %d: bar up to %v has %d, want %d", trial, b.UpTo, b.Count, c)
			}
			lo = max(lo, int64(b.UpTo))
		}
	}
}

func TestPercentileEdgeCases(t *testing.T) {
	st := Summarize()
	if st.Count != 0 || len(st.Percentiles) != len(Percentiles) || st.Histogram != nil {
		t.Fatalf("empty: %+v", st)
	}
	r := NewRecorder(1, 0)
	r.Add(-5) // clamped to zero
	r.Add(3 * time.Millisecond)
	st = Summarize(r, nil)
	if st.Fastest != 0 || st.Slowest != 3*time.Millisecond {
		t.Fatalf("fastest/slowest %v/%v", st.Fastest, st.Slowest)
	}
	// p10..p50 of {0, 3ms} are 0; p75 and up are 3ms.
	want := []time.Duration{0, 0, 0, 3 * time.Millisecond, 3 * time.Millisecond, 3 * time.Millisecond, 3 * time.Millisecond, 3 * time.Millisecond}
	if !slices.Equal(st.Percentiles, want) {
		t.Fatalf("percentiles %v, want %v", st.Percentiles, want)
	}
	// All samples equal: one value everywhere, histogram of them all.
	r = NewRecorder(0, 0)
	for range 10 {
		r.Add(time.Millisecond)
	}
	st = Summarize(r)
	for _, p := range st.Percentiles {
		if p != time.Millisecond {
			t.Fatalf("percentiles %v", st.Percentiles)
		}
	}
	if st.Stddev != 0 || st.Histogram[0].Count != 10 {
		t.Fatalf("stddev %v histogram %v", st.Stddev, st.Histogram)
	}
}

// Past the sample limit memory stays bounded, the exact statistics stay
// exact, and the percentiles come from a uniform sample, so they stay
// close to the truth.
func TestRecorderBoundedMemory(t *testing.T) {
	const limit = 1000
	const n = 200000
	r := NewRecorder(n, limit)
	for i := range n {
		r.Add(time.Duration(i)) // uniform over [0, n)
	}
	if len(r.samples) != limit || cap(r.samples) != limit {
		t.Fatalf("kept %d samples (cap %d), want %d", len(r.samples), cap(r.samples), limit)
	}
	st := Summarize(r)
	if st.Count != n || st.Samples != limit || st.Fastest != 0 || st.Slowest != n-1 {
		t.Fatalf("count %d samples %d fastest %v slowest %v", st.Count, st.Samples, st.Fastest, st.Slowest)
	}
	if want := time.Duration(math.Round((n - 1) / 2.0)); st.Average != want {
		t.Fatalf("average %v, want %v", st.Average, want)
	}
	p50 := float64(st.Percentiles[2])
	if p50 < 0.4*n || p50 > 0.6*n {
		t.Fatalf("sampled p50 %v far from %v: the reservoir is not uniform", p50, n/2)
	}
	// Late samples must be able to enter the reservoir.
	late := 0
	for _, v := range r.samples {
		if v >= n/2 {
			late++
		}
	}
	if late < limit/4 {
		t.Fatalf("only %d of %d kept samples come from the second half", late, limit)
	}
}

func TestRecorderAddDoesNotAllocate(t *testing.T) {
	r := NewRecorder(1000, 0)
	allocs := testing.AllocsPerRun(1000, func() { r.Add(time.Millisecond) })
	if allocs != 0 {
		t.Fatalf("Add allocates %v times per call", allocs)
	}
}
