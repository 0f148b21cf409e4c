package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The results directory that scripts/bench-vs-etcd fills and `cairn-bench
// compare` reads:
//
//	workloads.txt                       one "name<TAB>description" per line, in table order
//	NAME__SERVER__rROUND.json           the --json report of one run
//	NAME__SERVER__rROUND.rss            peak RSS of the server in that run, in kB (VmHWM)
//	NAME__SERVER__rROUND.kv             other measurements: "metric value" per line
//
// NAME is a workload row (e.g. put-1000c), SERVER is cairn, etcd or
// ceiling, ROUND counts from 1.

// Run is one measured run of one workload against one server.
type Run struct {
	Report  *Report
	RSSKB   int64              // 0 when not sampled
	Metrics map[string]float64 // from the .kv file
}

// Results are the runs of a results directory, by workload and server.
type Results struct {
	Order        []string          // workload names in table order
	Descriptions map[string]string // workload -> description
	Runs         map[string]map[string][]Run
}

// LoadResults reads a results directory.
func LoadResults(dir string) (*Results, error) {
	res := &Results{Descriptions: map[string]string{}, Runs: map[string]map[string][]Run{}}
	if f, err := os.Open(filepath.Join(dir, "workloads.txt")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			name, desc, _ := strings.Cut(sc.Text(), "\t")
			if name = strings.TrimSpace(name); name != "" {
				res.Order = append(res.Order, name)
				res.Descriptions[name] = strings.TrimSpace(desc)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type key struct{ w, s, r string }
	runs := map[key]*Run{}
	get := func(k key) *Run {
		if r, ok := runs[k]; ok {
			return r
		}
		r := &Run{}
		runs[k] = r
		return r
	}
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		parts := strings.Split(strings.TrimSuffix(name, ext), "__")
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "r") {
			continue
		}
		k := key{parts[0], parts[1], parts[2]}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		switch ext {
		case ".json":
			var rep Report
			if err := json.Unmarshal(b, &rep); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			get(k).Report = &rep
		case ".rss":
			txt := strings.TrimSpace(string(b))
			if txt == "" {
				continue // the process was gone before it was sampled
			}
			v, err := strconv.ParseInt(txt, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			get(k).RSSKB = v
		case ".kv":
			r := get(k)
			if r.Metrics == nil {
				r.Metrics = map[string]float64{}
			}
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) != 2 {
					continue
				}
				v, err := strconv.ParseFloat(f[1], 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %q: %w", name, line, err)
				}
				r.Metrics[f[0]] = v
			}
		}
	}
	keys := make([]key, 0, len(runs))
	for k := range runs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.w != b.w {
			return a.w < b.w
		}
		if a.s != b.s {
			return a.s < b.s
		}
		ra, _ := strconv.Atoi(strings.TrimPrefix(a.r, "r"))
		rb, _ := strconv.Atoi(strings.TrimPrefix(b.r, "r"))
		return ra < rb
	})
	for _, k := range keys {
		if res.Runs[k.w] == nil {
			res.Runs[k.w] = map[string][]Run{}
			if !slices.Contains(res.Order, k.w) {
				res.Order = append(res.Order, k.w)
			}
		}
		res.Runs[k.w][k.s] = append(res.Runs[k.w][k.s], *runs[k])
	}
	return res, nil
}

// spread is the median and range of one measure over the rounds.
type spread struct {
	n             int
	med, min, max float64
}

func spreadOf(vs []float64) spread {
	if len(vs) == 0 {
		return spread{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{n: len(s), med: m, min: s[0], max: s[len(s)-1]}
}

func (s spread) format(prec int) string {
	if s.n == 0 {
		return "–"
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	if s.n == 1 || s.min == s.max {
		return f(s.med)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.med), f(s.min), f(s.max))
}

func ratio(a, b spread) string {
	if a.n == 0 || b.n == 0 || b.med == 0 {
		return "–"
	}
	return strconv.FormatFloat(a.med/b.med, 'f', 2, 64)
}

// serverOrder puts the usual servers first.
func serverOrder(servers map[string][]Run) []string {
	rank := map[string]int{"cairn": 0, "etcd": 1, "ceiling": 2}
	out := make([]string, 0, len(servers))
	for s := range servers {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		ri, oki := rank[out[i]]
		rj, okj := rank[out[j]]
		switch {
		case oki && okj:
			return ri < rj
		case oki != okj:
			return oki
		}
		return out[i] < out[j]
	})
	return out
}

type measures struct {
	tput, p50, p99, rssMiB spread
	errors                 int64
	rounds                 int
}

func measure(runs []Run) measures {
	var tput, p50, p99, rss []float64
	var m measures
	for _, r := range runs {
		if r.Report != nil {
			m.rounds++
			m.errors += r.Report.Errors
			tput = append(tput, r.Report.Throughput)
			p50 = append(p50, r.Report.Latency.P50)
			p99 = append(p99, r.Report.Latency.P99)
		}
		if r.RSSKB > 0 {
			rss = append(rss, float64(r.RSSKB)/1024)
		}
	}
	m.tput, m.p50, m.p99, m.rssMiB = spreadOf(tput), spreadOf(p50), spreadOf(p99), spreadOf(rss)
	return m
}

// WriteMarkdown writes the comparison: for each workload one row per
// server with the median and (min–max) over the rounds of throughput,
// p50, p99 and peak RSS, then the ratios of the medians cairn/etcd and
// cairn/ceiling. Workloads with extra measurements (.kv files) get a
// second table. A list of the workloads' descriptions follows.
func (res *Results) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| workload | server | rounds | req/s | p50 ms | p99 ms | peak RSS MiB | errors |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|\n")
	var kvRows []string
	for _, wl := range res.Order {
		servers := res.Runs[wl]
		if len(servers) == 0 {
			continue
		}
		name := wl
		ms := map[string]measures{}
		hasReports := false
		for _, s := range serverOrder(servers) {
			m := measure(servers[s])
			ms[s] = m
			if m.rounds == 0 {
				continue
			}
			hasReports = true
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %d |\n", name, s, m.rounds,
				m.tput.format(0), m.p50.format(2), m.p99.format(2), m.rssMiB.format(0), m.errors)
		}
		if hasReports {
			c := ms["cairn"]
			for _, other := range []string{"etcd", "ceiling"} {
				o, ok := ms[other]
				if !ok || c.rounds == 0 || o.rounds == 0 {
					continue
				}
				fmt.Fprintf(&b, "| %s | **cairn/%s** | | **%s** | **%s** | **%s** | **%s** | |\n", name, other,
					ratio(c.tput, o.tput), ratio(c.p50, o.p50), ratio(c.p99, o.p99), ratio(c.rssMiB, o.rssMiB))
			}
		}
		// Measures per server, then cairn's median over etcd's per measure.
		kv := map[string]map[string]spread{}
		for _, s := range serverOrder(servers) {
			metrics := map[string][]float64{}
			for _, r := range servers[s] {
				for k, v := range r.Metrics {
					metrics[k] = append(metrics[k], v)
				}
			}
			names := make([]string, 0, len(metrics))
			for k := range metrics {
				names = append(names, k)
			}
			sort.Strings(names)
			kv[s] = map[string]spread{}
			for _, k := range names {
				sp := spreadOf(metrics[k])
				kv[s][k] = sp
				kvRows = append(kvRows, fmt.Sprintf("| %s | %s | %s | %d | %s |\n", name, s, k, sp.n, sp.format(2)))
			}
		}
		if c, e := kv["cairn"], kv["etcd"]; len(c) > 0 && len(e) > 0 {
			names := make([]string, 0, len(c))
			for k := range c {
				if _, ok := e[k]; ok {
					names = append(names, k)
				}
			}
			sort.Strings(names)
			for _, k := range names {
				kvRows = append(kvRows, fmt.Sprintf("| %s | **cairn/etcd** | %s | | **%s** |\n", name, k, ratio(c[k], e[k])))
			}
		}
	}
	if len(kvRows) > 0 {
		b.WriteString("\n| workload | server | measure | rounds | median (min–max) |\n")
		b.WriteString("|---|---|---|---:|---:|\n")
		for _, r := range kvRows {
			b.WriteString(r)
		}
	}
	legend := false
	for _, wl := range res.Order {
		if d := res.Descriptions[wl]; d != "" && len(res.Runs[wl]) > 0 {
			if !legend {
				b.WriteString("\n")
				legend = true
			}
			fmt.Fprintf(&b, "- `%s`: %s\n", wl, d)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
