package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxErrorSamples is how many distinct error messages a report keeps.
const maxErrorSamples = 5

// Report is the result of one workload run. Its JSON form (--json) is one
// object with these fields; latencies are in milliseconds.
type Report struct {
	Workload string `json:"workload"`
	// Flags are the effective flag values of the run, by etcd name.
	Flags map[string]string `json:"flags"`
	// Requests is the number of requests that succeeded; Errors the
	// number that failed. Their sum is what the run attempted.
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// ErrorSamples are the first few distinct error messages.
	ErrorSamples []string `json:"error_samples,omitempty"`
	// TotalSeconds is the wall time of the measured phase.
	TotalSeconds float64 `json:"total_seconds"`
	// Throughput is Requests / TotalSeconds.
	Throughput float64    `json:"requests_per_sec"`
	Latency    LatencyMS  `json:"latency_ms"`
	Histogram  []BucketMS `json:"histogram"`
	// Samples is how many latencies the percentiles come from (equal to
	// the number of latencies recorded unless that exceeded the limit).
	Samples int `json:"samples"`
	// Extra holds workload-specific counts, e.g. watch events expected
	// and delivered.
	Extra map[string]int64 `json:"extra,omitempty"`
}

// LatencyMS are the latency statistics in milliseconds.
type LatencyMS struct {
	Fastest float64 `json:"fastest"`
	Slowest float64 `json:"slowest"`
	Average float64 `json:"average"`
	Stddev  float64 `json:"stddev"`
	P10     float64 `json:"p10"`
	P25     float64 `json:"p25"`
	P50     float64 `json:"p50"`
	P75     float64 `json:"p75"`
	P90     float64 `json:"p90"`
	P95     float64 `json:"p95"`
	P99     float64 `json:"p99"`
	P999    float64 `json:"p99.9"`
}

// BucketMS is one histogram bar: Count latencies of at most UpToMS.
type BucketMS struct {
	UpToMS float64 `json:"up_to_ms"`
	Count  int     `json:"count"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// NewReport builds a report from the latency statistics of the successful
// requests, the errors and the wall time of the run.
func NewReport(workload string, flags map[string]string, st Stats, errs *ErrorLog, elapsed time.Duration) *Report {
	r := &Report{
		Workload:     workload,
		Flags:        flags,
		Requests:     st.Count,
		TotalSeconds: elapsed.Seconds(),
		Samples:      st.Samples,
		Histogram:    []BucketMS{},
	}
	if errs != nil {
		r.Errors, r.ErrorSamples = errs.Snapshot()
	}
	if r.TotalSeconds > 0 {
		r.Throughput = float64(r.Requests) / r.TotalSeconds
	}
	r.Latency = LatencyMS{
		Fastest: ms(st.Fastest),
		Slowest: ms(st.Slowest),
		Average: ms(st.Average),
		Stddev:  ms(st.Stddev),
	}
	ps := []*float64{&r.Latency.P10, &r.Latency.P25, &r.Latency.P50, &r.Latency.P75,
		&r.Latency.P90, &r.Latency.P95, &r.Latency.P99, &r.Latency.P999}
	for i, p := range ps {
		if i < len(st.Percentiles) {
			*p = ms(st.Percentiles[i])
		}
	}
	for _, b := range st.Histogram {
		r.Histogram = append(r.Histogram, BucketMS{UpToMS: ms(b.UpTo), Count: b.Count})
	}
	return r
}

// WriteJSON writes the report as one JSON object and a newline.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteText writes the report for people: a summary, the histogram, the
// percentiles and the errors.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Summary (%s):\n", r.Workload)
	fmt.Fprintf(&b, "  Total:\t%.4f secs.\n", r.TotalSeconds)
	fmt.Fprintf(&b, "  Requests:\t%d ok, %d errors\n", r.Requests, r.Errors)
	fmt.Fprintf(&b, "  Slowest:\t%.4f ms.\n", r.Latency.Slowest)
	fmt.Fprintf(&b, "  Fastest:\t%.4f ms.\n", r.Latency.Fastest)
	fmt.Fprintf(&b, "  Average:\t%.4f ms.\n", r.Latency.Average)
	fmt.Fprintf(&b, "  Stddev:\t%.4f ms.\n", r.Latency.Stddev)
	fmt.Fprintf(&b, "  Requests/sec:\t%.4f\n", r.Throughput)
	if len(r.Extra) > 0 {
		keys := make([]string, 0, len(r.Extra))
		for k := range r.Extra {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s:\t%d\n", k, r.Extra[k])
		}
	}
	if len(r.Histogram) > 0 {
		b.WriteString("\nResponse time histogram (ms):\n")
		most := 0
		for _, h := range r.Histogram {
			most = max(most, h.Count)
		}
		for _, h := range r.Histogram {
			bar := 0
			if most > 0 {
				bar = h.Count * 40 / most
			}
			fmt.Fprintf(&b, "  %10.4f [%d]\t|%s\n", h.UpToMS, h.Count, strings.Repeat("∎", bar))
		}
		b.WriteString("\nLatency distribution:\n")
		ps := []float64{r.Latency.P10, r.Latency.P25, r.Latency.P50, r.Latency.P75,
			r.Latency.P90, r.Latency.P95, r.Latency.P99, r.Latency.P999}
		for i, p := range Percentiles {
			fmt.Fprintf(&b, "  %s%% in %.4f ms.\n", strconv.FormatFloat(p, 'f', -1, 64), ps[i])
		}
		if int64(r.Samples) < r.Requests {
			fmt.Fprintf(&b, "  (percentiles from a uniform sample of %d of %d latencies)\n", r.Samples, r.Requests)
		}
	}
	if r.Errors > 0 {
		fmt.Fprintf(&b, "\nErrors (%d; first distinct messages):\n", r.Errors)
		for _, e := range r.ErrorSamples {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ErrorLog counts errors and keeps the first few distinct messages. It is
// safe for concurrent use; errors are the slow path, so a mutex is fine.
type ErrorLog struct {
	mu      sync.Mutex
	n       int64
	samples []string
}

// Add counts err.
func (l *ErrorLog) Add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if len(l.samples) >= maxErrorSamples {
		return
	}
	msg := err.Error()
	for _, s := range l.samples {
		if s == msg {
			return
		}
	}
	l.samples = append(l.samples, msg)
}

// Snapshot returns the count and the sample messages.
func (l *ErrorLog) Snapshot() (int64, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, slices.Clone(l.samples)
}
