package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeRun(t *testing.T, dir, wl, server string, round int, tput, p50, p99 float64, rssKB int64) {
	t.Helper()
	rep := &Report{Workload: "put", Requests: 100, Throughput: tput, Latency: LatencyMS{P50: p50, P99: p99}}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, fmt.Sprintf("%s__%s__r%d", wl, server, round))
	if err := os.WriteFile(base+".json", buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".rss", []byte(fmt.Sprintf("%d\n", rssKB)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCompareMarkdown(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "workloads.txt"), []byte("put-1c\tput, 1 client\nrange-s\tserializable range\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Three rounds; the medians are the middle values whatever the order.
	for i, v := range []float64{300, 100, 200} {
		writeRun(t, dir, "put-1c", "cairn", i+1, v, v/100, v/10, int64(v)*1024)
		writeRun(t, dir, "put-1c", "etcd", i+1, v/2, v/50, v/5, int64(v)*2048)
		writeRun(t, dir, "put-1c", "ceiling", i+1, v*4, v/400, v/40, 1024)
	}
	writeRun(t, dir, "range-s", "etcd", 1, 50, 1, 2, 4096) // etcd only: no ratio row
	if err := os.WriteFile(filepath.Join(dir, "large__cairn__r1.kv"), []byte("restart_s 1.5\ndb_bytes 1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "large__cairn__r2.kv"), []byte("restart_s 2.5\ndb_bytes 3000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "large__etcd__r1.kv"), []byte("restart_s 4\ndb_bytes 4000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := LoadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := res.WriteMarkdown(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"| put-1c | cairn | 3 | 200 (100–300) | 2.00 (1.00–3.00) | 20.00 (10.00–30.00) | 200 (100–300) | 0 |",
		"| put-1c | etcd | 3 | 100 (50–150) | 4.00 (2.00–6.00) | 40.00 (20.00–60.00) | 400 (200–600) | 0 |",
		"| put-1c | ceiling | 3 | 800 (400–1200) | 0.50 (0.25–0.75) | 5.00 (2.50–7.50) | 1 | 0 |",
		"| put-1c | **cairn/etcd** | | **2.00** | **0.50** | **0.50** | **0.50** | |",
		"| put-1c | **cairn/ceiling** | | **0.25** | **4.00** | **4.00** | **200.00** | |",
		"| range-s | etcd | 1 | 50 | 1.00 | 2.00 | 4 | 0 |",
		"| large | cairn | db_bytes | 2 | 2000.00 (1000.00–3000.00) |",
		"| large | cairn | restart_s | 2 | 2.00 (1.50–2.50) |",
		"| large | etcd | restart_s | 1 | 4.00 |",
		"| large | **cairn/etcd** | db_bytes | | **0.50** |",
		"| large | **cairn/etcd** | restart_s | | **0.50** |",
		"- `put-1c`: put, 1 client\n- `range-s`: serializable range\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks\n%s\n---\n%s", want, out)
		}
	}
	if strings.Contains(out, "range-s | **cairn/") {
		t.Errorf("ratio row without cairn results:\n%s", out)
	}
	// Workloads appear in workloads.txt order.
	if strings.Index(out, "put-1c") > strings.Index(out, "range-s") {
		t.Errorf("order not kept:\n%s", out)
	}
}
