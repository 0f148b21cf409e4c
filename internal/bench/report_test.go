package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	r := NewRecorder(0, 0)
	for i := 1; i <= 1000; i++ {
		r.Add(time.Duration(i) * time.Microsecond)
	}
	errs := &ErrorLog{}
	for i := range 9 {
		errs.Add(fmt.Errorf("error %d", i%7)) // 7 distinct, 9 in all
	}
	return NewReport("put", map[string]string{"clients": "4"}, Summarize(r), errs, 2*time.Second)
}

// The JSON object has exactly the documented fields, latencies in ms.
func TestReportJSONShape(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.HasSuffix(buf.String(), "}\n") {
		t.Fatalf("want one JSON object on one line, got %q", buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"error_samples", "errors", "flags", "histogram", "latency_ms", "requests", "requests_per_sec", "samples", "total_seconds", "workload"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	lat := m["latency_ms"].(map[string]any)
	var lkeys []string
	for k := range lat {
		lkeys = append(lkeys, k)
	}
	slices.Sort(lkeys)
	wantL := []string{"average", "fastest", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99.9", "slowest", "stddev"}
	if !slices.Equal(lkeys, wantL) {
		t.Fatalf("latency keys %v, want %v", lkeys, wantL)
	}
	checks := map[string]float64{
		"requests":         m["requests"].(float64),
		"errors":           m["errors"].(float64),
		"requests_per_sec": m["requests_per_sec"].(float64),
		"p50":              lat["p50"].(float64),
		"p99.9":            lat["p99.9"].(float64),
		"fastest":          lat["fastest"].(float64),
		"slowest":          lat["slowest"].(float64),
	}
	wantV := map[string]float64{"requests": 1000, "errors": 9, "requests_per_sec": 500, "p50": 0.5, "p99.9": 0.999, "fastest": 0.001, "slowest": 1}
	for k, w := range wantV {
		if checks[k] != w {
			t.Errorf("%s = %v, want %v", k, checks[k], w)
		}
	}
	if n := len(m["error_samples"].([]any)); n != maxErrorSamples {
		t.Errorf("%d error samples, want %d", n, maxErrorSamples)
	}
	if m["workload"] != "put" || m["flags"].(map[string]any)["clients"] != "4" {
		t.Errorf("workload/flags: %v %v", m["workload"], m["flags"])
	}
	// It reads back into a Report unchanged (compare relies on it).
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Latency.P999 != 0.999 || back.Requests != 1000 || len(back.Histogram) != histogramBuckets {
		t.Fatalf("round trip: %+v", back)
	}
}

func TestReportText(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"Summary (put):", "Total:\t2.0000 secs.", "1000 ok, 9 errors", "Requests/sec:\t500.0000",
		"Response time histogram (ms):", "50% in 0.5000 ms.", "99.9% in 0.9990 ms.", "Errors (9;", "error 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}

func TestErrorLogDistinct(t *testing.T) {
	l := &ErrorLog{}
	for range 3 {
		l.Add(errors.New("same"))
	}
	n, s := l.Snapshot()
	if n != 3 || !slices.Equal(s, []string{"same"}) {
		t.Fatalf("%d %q", n, s)
	}
}
