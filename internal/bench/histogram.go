package bench

import (
	"math"
	"slices"
	"time"
)

// DefaultMaxSamples bounds the latency samples kept per run (8 bytes each):
// percentiles are exact up to this many requests and computed from a
// uniform sample of them beyond it. Count, fastest, slowest, average and
// stddev are always exact.
const DefaultMaxSamples = 4 << 20

// Recorder collects the latencies of one worker. It is not safe for
// concurrent use: each worker goroutine owns one, and Summarize merges them
// when the run is over, so recording takes no lock and, once the buffer is
// sized, allocates nothing.
//
// A Recorder keeps every sample until it holds limit of them; after that it
// keeps a uniform random sample of limit (reservoir sampling), while the
// count, sum, sum of squares, minimum and maximum stay exact.
type Recorder struct {
	samples []int64 // nanoseconds
	limit   int
	n       int64
	sum     float64
	sumSq   float64
	min     int64
	max     int64
	rng     uint64
}

// NewRecorder returns a recorder that expects about expected samples and
// keeps at most limit (limit <= 0 means DefaultMaxSamples).
func NewRecorder(expected, limit int) *Recorder {
	if limit <= 0 {
		limit = DefaultMaxSamples
	}
	if expected < 0 {
		expected = 0
	}
	return &Recorder{
		samples: make([]int64, 0, min(expected, limit)),
		limit:   limit,
		min:     math.MaxInt64,
		rng:     0x9e3779b97f4a7c15,
	}
}

// Add records one latency. Negative durations count as zero.
func (r *Recorder) Add(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	r.n++
	f := float64(v)
	r.sum += f
	r.sumSq += f * f
	if v < r.min {
		r.min = v
	}
	if v > r.max {
		r.max = v
	}
	if len(r.samples) < r.limit {
		r.samples = append(r.samples, v)
		return
	}
	// Reservoir: the n-th sample replaces a random kept one with
	// probability limit/n.
	if j := r.next() % uint64(r.n); j < uint64(r.limit) {
		r.samples[j] = v
	}
}

// Count is the number of latencies recorded.
func (r *Recorder) Count() int64 { return r.n }

// next is xorshift64*: cheap, deterministic and good enough to pick
// reservoir slots.
func (r *Recorder) next() uint64 {
	r.rng ^= r.rng >> 12
	r.rng ^= r.rng << 25
	r.rng ^= r.rng >> 27
	return r.rng * 2685821657736338717
}

// Percentiles are the ranks every report shows.
var Percentiles = []float64{10, 25, 50, 75, 90, 95, 99, 99.9}

// Stats summarizes the latencies of a run.
type Stats struct {
	Count       int64
	Fastest     time.Duration
	Slowest     time.Duration
	Average     time.Duration
	Stddev      time.Duration
	Percentiles []time.Duration // one per entry of Percentiles
	Histogram   []Bucket
	// Samples is how many latencies the percentiles and the histogram
	// were computed from: Count, unless the run outgrew the sample limit.
	Samples int
}

// Bucket is one bar of the latency histogram: Count samples took at most
// UpTo (and more than the previous bucket's UpTo).
type Bucket struct {
	UpTo  time.Duration
	Count int
}

// histogramBuckets is the number of bars in a histogram.
const histogramBuckets = 10

// Summarize merges the recorders and computes the statistics. The
// recorders' samples are reordered.
func Summarize(recs ...*Recorder) Stats {
	var st Stats
	var sum, sumSq float64
	mn, mx := int64(math.MaxInt64), int64(0)
	total := 0
	for _, r := range recs {
		if r == nil {
			continue
		}
		st.Count += r.n
		sum += r.sum
		sumSq += r.sumSq
		mn = min(mn, r.min)
		mx = max(mx, r.max)
		total += len(r.samples)
	}
	st.Percentiles = make([]time.Duration, len(Percentiles))
	if st.Count == 0 {
		return st
	}
	n := float64(st.Count)
	mean := sum / n
	variance := max(sumSq/n-mean*mean, 0)
	st.Fastest = time.Duration(mn)
	st.Slowest = time.Duration(mx)
	st.Average = time.Duration(math.Round(mean))
	st.Stddev = time.Duration(math.Round(math.Sqrt(variance)))

	all := make([]int64, 0, total)
	for _, r := range recs {
		if r != nil {
			all = append(all, r.samples...)
		}
	}
	slices.Sort(all)
	st.Samples = len(all)
	for i, p := range Percentiles {
		st.Percentiles[i] = time.Duration(percentile(all, p))
	}
	st.Histogram = histogram(all, mn, mx)
	return st
}

// percentile is the nearest-rank percentile p (0 < p <= 100) of the sorted
// samples: the smallest sample that at least p percent of them do not exceed.
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon keeps float error from pushing an exact rank (99.9% of
	// 1000 is 999) up by one.
	rank := int(math.Ceil(p/100*float64(len(sorted)) - 1e-9))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// histogram spreads the sorted samples over histogramBuckets bars between
// the fastest and the slowest latency. The bars are spaced geometrically
// (each bound a constant factor above the previous one), because latencies
// are skewed: equal-width bars put nearly everything in the first one.
func histogram(sorted []int64, fastest, slowest int64) []Bucket {
	if len(sorted) == 0 {
		return nil
	}
	lo := max(float64(fastest), 1000) // 1µs: the geometric spacing needs lo > 0
	hi := max(float64(slowest), lo)
	bounds := make([]int64, histogramBuckets)
	for i := range bounds {
		if i == histogramBuckets-1 {
			bounds[i] = slowest
			continue
		}
		f := float64(i+1) / histogramBuckets
		bounds[i] = int64(lo * math.Pow(hi/lo, f))
	}
	out := make([]Bucket, histogramBuckets)
	j := 0
	for i, b := range bounds {
		b = max(b, fastest)
		out[i].UpTo = time.Duration(b)
		for j < len(sorted) && sorted[j] <= b {
			out[i].Count++
			j++
		}
	}
	// Anything left (cannot happen: the last bound is the maximum) goes
	// into the last bar rather than being lost.
	out[len(out)-1].Count += len(sorted) - j
	return out
}
