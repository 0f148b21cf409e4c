package ctl

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// perfLoad is one of etcdctl's check perf workloads: a target write rate,
// the number of clients and the duration in seconds.
type perfLoad struct {
	limit, clients, duration int
}

var perfLoads = map[string]perfLoad{
	"s":  {limit: 150, clients: 50, duration: 60},
	"m":  {limit: 1000, clients: 200, duration: 60},
	"l":  {limit: 8000, clients: 500, duration: 60},
	"xl": {limit: 15000, clients: 1000, duration: 60},
}

var perfAliases = map[string]string{
	"s": "s", "small": "s", "m": "m", "medium": "m", "l": "l", "large": "l", "xl": "xl", "xLarge": "xl",
}

func (r *Root) newCheckCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "check <subcommand>", Short: "commands for checking properties of the etcd cluster"}
	var load, prefix string
	var autoCompact, autoDefrag bool
	var duration time.Duration
	perf := &cobra.Command{
		Use:   "perf [options]",
		Short: "Check the performance of the etcd cluster",
		Long: `Writes 256-byte keys with 1 KiB values under --prefix at the workload's rate
from the workload's number of clients for 60 seconds, deletes them, and
judges the run as etcdctl does: PASS when there were no errors, the
throughput reached 90% of the target, the slowest request took at most 0.5s
and the standard deviation of latencies is at most 0.1s.

Workloads (--load): s 150 writes/s from 50 clients, m 1000/s from 200,
l 8000/s from 500, xl 15000/s from 1000.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			model, ok := perfAliases[load]
			if !ok {
				return exitf(ExitBadFeature, "unknown load option %v", load)
			}
			cfg := perfLoads[model]
			d := time.Duration(cfg.duration) * time.Second
			if duration > 0 {
				d = duration
			}
			return r.checkPerf(cfg, d, prefix, autoCompact, autoDefrag)
		},
	}
	fs := perf.Flags()
	fs.StringVar(&load, "load", "s", "The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)")
	fs.StringVar(&prefix, "prefix", "/etcdctl-check-perf/", "The prefix for writing the performance check's keys.")
	fs.BoolVar(&autoCompact, "auto-compact", false, "Compact storage with last revision after test is finished.")
	fs.BoolVar(&autoDefrag, "auto-defrag", false, "Defragment storage after test is finished.")
	fs.DurationVar(&duration, "duration", 0, "cairnctl only: run for this long instead of the workload's 60s (a shorter run is a weaker check)")
	cmd.AddCommand(perf, r.newCheckDatascaleCommand())
	return cmd
}

// scaleLoad is one of etcdctl's check datascale workloads.
type scaleLoad struct {
	limit, kvSize, clients int
}

var scaleLoads = map[string]scaleLoad{
	"s":  {limit: 10000, kvSize: 1024, clients: 50},
	"m":  {limit: 100000, kvSize: 1024, clients: 200},
	"l":  {limit: 1000000, kvSize: 1024, clients: 500},
	"xl": {limit: 3000000, kvSize: 1024, clients: 1000},
}

func (r *Root) newCheckDatascaleCommand() *cobra.Command {
	var load, prefix string
	var autoCompact, autoDefrag bool
	cmd := &cobra.Command{
		Use:   "datascale [options]",
		Short: "Check the memory usage of holding data for different workloads on a given server endpoint.",
		Long: `Writes the workload's number of key-value pairs (512-byte keys, 512-byte
values) under --prefix from its number of clients, reads the server's
process_resident_memory_bytes from /metrics before and after, deletes the
keys and prints the difference. If several endpoints are given, the first
one's memory is read.

Workloads (--load): s 10,000 pairs from 50 clients, m 100,000 from 200,
l 1,000,000 from 500, xl 3,000,000 from 1000.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			model, ok := perfAliases[load]
			if !ok {
				return exitf(ExitBadFeature, "unknown load option %v", load)
			}
			return r.checkDatascale(scaleLoads[model], prefix, autoCompact, autoDefrag)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&load, "load", "s", "The datascale check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)")
	fs.StringVar(&prefix, "prefix", "/etcdctl-check-datascale/", "The prefix for writing the datascale check's keys.")
	fs.BoolVar(&autoCompact, "auto-compact", false, "Compact storage with last revision after test is finished.")
	fs.BoolVar(&autoDefrag, "auto-defrag", false, "Defragment storage after test is finished.")
	return cmd
}

// residentMemory reads process_resident_memory_bytes from the endpoint's
// /metrics, or 0 when it cannot.
func (r *Root) residentMemory(ep string) float64 {
	u := ep
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		u = "http://" + u
	}
	hc := &http.Client{Timeout: r.g.commandTimeout}
	if tc, err := r.g.tlsConfig([]string{ep}); err == nil && tc != nil {
		hc.Transport = &http.Transport{TLSClientConfig: tc}
	}
	resp, err := hc.Get(u + "/metrics")
	if err != nil {
		fmt.Fprintf(r.stdout, "fetch error: %v\n", err)
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes"); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				fmt.Fprintf(r.stdout, "parse error: %v\n", err)
				return 0
			}
			return v
		}
	}
	fmt.Fprintln(r.stdout, "could not find: process_resident_memory_bytes")
	return 0
}

func (r *Root) checkDatascale(cfg scaleLoad, prefix string, autoCompact, autoDefrag bool) error {
	clients := make([]*clientv3.Client, cfg.clients)
	for i := range clients {
		c, err := r.Client()
		if err != nil {
			return err
		}
		defer c.Close()
		clients[i] = c
	}
	ctx, cancel := r.CommandContext()
	resp, err := clients[0].Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(1))
	cancel()
	if err != nil {
		return exitErr(ExitError, err)
	}
	if len(resp.Kvs) > 0 {
		return exitf(ExitInvalidInput, "prefix %q has keys. Delete with etcdctl del --prefix %s first", prefix, prefix)
	}
	ep := r.g.endpoints[0]
	before := r.residentMemory(ep)
	if before == 0 {
		fmt.Fprintln(r.stdout, "FAIL: Could not read process_resident_memory_bytes before the put operations.")
		return &CodeError{Code: ExitError, Err: errSilent}
	}
	fmt.Fprintf(r.stdout, "Start data scale check for work load [%v key-value pairs, %v bytes per key-value, %v concurrent clients].\n", cfg.limit, cfg.kvSize, cfg.clients)

	value := string(make([]byte, cfg.kvSize/2))
	requests := make(chan clientv3.Op, cfg.clients)
	errs := map[string]int{}
	var mu sync.Mutex
	var done int
	prog := newProgress(r.stderr)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for op := range requests {
				_, err := c.Do(context.Background(), op)
				mu.Lock()
				done++
				if err != nil {
					errs[err.Error()]++
				}
				if prog.tty {
					prog.step(fmt.Sprintf("check datascale: %d of %d", done, cfg.limit))
				}
				mu.Unlock()
			}
		}()
	}
	key := make([]byte, cfg.kvSize/2)
	for i := 0; i < cfg.limit; i++ {
		binary.PutVarint(key, rand.Int64N(math.MaxInt64))
		requests <- clientv3.OpPut(prefix+string(key), value)
	}
	close(requests)
	wg.Wait()
	prog.done()

	after := r.residentMemory(ep)
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	dresp, err := clients[0].Delete(dctx, prefix, clientv3.WithPrefix())
	dcancel()
	if err != nil {
		return exitErr(ExitError, err)
	}
	if err := r.afterCheck(clients[0], dresp.Header.Revision, autoCompact, autoDefrag); err != nil {
		return err
	}
	if after == 0 {
		fmt.Fprintln(r.stdout, "FAIL: Could not read process_resident_memory_bytes after the put operations.")
		return &CodeError{Code: ExitError, Err: errSilent}
	}
	if len(errs) != 0 {
		fmt.Fprintln(r.stdout, "FAIL: too many errors")
		keys := make([]string, 0, len(errs))
		for k := range errs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(r.stdout, "FAIL: ERROR(%v) -> %d\n", k, errs[k])
		}
		return &CodeError{Code: ExitError, Err: errSilent}
	}
	fmt.Fprintf(r.stdout, "PASS: Approximate system memory used : %v MB.\n", strconv.FormatFloat((after-before)/(1024*1024), 'f', 2, 64))
	return nil
}

// afterCheck compacts and defragments after a check, as asked.
func (r *Root) afterCheck(c *clientv3.Client, rev int64, autoCompact, autoDefrag bool) error {
	if autoCompact {
		fmt.Fprintf(r.stdout, "Compacting with revision %d\n", rev)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := c.Compact(ctx, rev, clientv3.WithCompactPhysical())
		cancel()
		if err != nil {
			return exitErr(ExitError, err)
		}
		fmt.Fprintf(r.stdout, "Compacted with revision %d\n", rev)
	}
	if autoDefrag {
		for _, ep := range c.Endpoints() {
			fmt.Fprintf(r.stdout, "Defragmenting %q\n", ep)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := c.Defragment(ctx, ep)
			cancel()
			if err != nil {
				return exitErr(ExitError, err)
			}
			fmt.Fprintf(r.stdout, "Defragmented %q\n", ep)
		}
	}
	return nil
}

type perfStats struct {
	count     int
	errors    map[string]int
	rps       float64
	slowest   float64
	stddev    float64
	latencies []float64
}

func (r *Root) checkPerf(cfg perfLoad, d time.Duration, prefix string, autoCompact, autoDefrag bool) error {
	clients := make([]*clientv3.Client, cfg.clients)
	for i := range clients {
		c, err := r.Client()
		if err != nil {
			return err
		}
		defer c.Close()
		clients[i] = c
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	resp, err := clients[0].Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(1))
	cancel()
	if err != nil {
		return exitErr(ExitError, err)
	}
	if len(resp.Kvs) > 0 {
		return exitf(ExitInvalidInput, "prefix %q has keys. Delete with etcdctl del --prefix %s first", prefix, prefix)
	}

	value := string(make([]byte, 1024))
	requests := make(chan clientv3.Op, cfg.clients)
	type result struct {
		err string
		lat float64
	}
	results := make(chan result, cfg.clients)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for op := range requests {
				st := time.Now()
				_, err := c.Do(context.Background(), op)
				res := result{lat: time.Since(st).Seconds()}
				if err != nil {
					res.err = err.Error()
				}
				results <- res
			}
		}()
	}
	start := time.Now()
	// The generator releases requests at cfg.limit per second: each 10ms
	// tick releases the writes due by then.
	go func() {
		defer close(requests)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		sent := 0
		key := make([]byte, 256)
		end := start.Add(d)
		for now := range tick.C {
			if now.After(end) {
				return
			}
			due := int(now.Sub(start).Seconds() * float64(cfg.limit))
			for ; sent < due; sent++ {
				binary.PutVarint(key, rand.Int64N(math.MaxInt64))
				requests <- clientv3.OpPut(prefix+string(key), value)
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	prog := newProgress(r.stderr)
	st := perfStats{errors: map[string]int{}}
	for res := range results {
		st.count++
		if res.err != "" {
			st.errors[res.err]++
			continue
		}
		st.latencies = append(st.latencies, res.lat)
		if prog.tty {
			prog.step(fmt.Sprintf("check perf: %d writes, %.0fs of %.0fs", st.count, time.Since(start).Seconds(), d.Seconds()))
		}
	}
	prog.done()
	elapsed := time.Since(start).Seconds()
	st.summarize(elapsed)

	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
	dresp, err := clients[0].Delete(dctx, prefix, clientv3.WithPrefix())
	dcancel()
	if err != nil {
		return exitErr(ExitError, err)
	}
	if err := r.afterCheck(clients[0], dresp.Header.Revision, autoCompact, autoDefrag); err != nil {
		return err
	}

	ok := true
	if len(st.errors) != 0 {
		fmt.Fprintln(r.stdout, "FAIL: too many errors")
		keys := make([]string, 0, len(st.errors))
		for k := range st.errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(r.stdout, "FAIL: ERROR(%v) -> %d\n", k, st.errors[k])
		}
		ok = false
	}
	if st.rps/float64(cfg.limit) <= 0.9 {
		fmt.Fprintf(r.stdout, "FAIL: Throughput too low: %d writes/s\n", int(st.rps)+1)
		ok = false
	} else {
		fmt.Fprintf(r.stdout, "PASS: Throughput is %d writes/s\n", int(st.rps)+1)
	}
	if st.slowest > 0.5 {
		fmt.Fprintf(r.stdout, "Slowest request took too long: %fs\n", st.slowest)
		ok = false
	} else {
		fmt.Fprintf(r.stdout, "PASS: Slowest request took %fs\n", st.slowest)
	}
	if st.stddev > 0.1 {
		fmt.Fprintf(r.stdout, "Stddev too high: %fs\n", st.stddev)
		ok = false
	} else {
		fmt.Fprintf(r.stdout, "PASS: Stddev is %fs\n", st.stddev)
	}
	if !ok {
		fmt.Fprintln(r.stdout, "FAIL")
		return &CodeError{Code: ExitError, Err: errSilent}
	}
	fmt.Fprintln(r.stdout, "PASS")
	return nil
}

// summarize computes the successful requests' rate over the run, the
// slowest latency and the standard deviation of latencies (seconds).
func (s *perfStats) summarize(elapsed float64) {
	if elapsed > 0 {
		s.rps = float64(len(s.latencies)) / elapsed
	}
	if len(s.latencies) == 0 {
		return
	}
	var sum float64
	for _, l := range s.latencies {
		sum += l
		s.slowest = max(s.slowest, l)
	}
	mean := sum / float64(len(s.latencies))
	var sq float64
	for _, l := range s.latencies {
		sq += (l - mean) * (l - mean)
	}
	s.stddev = math.Sqrt(sq / float64(len(s.latencies)))
}
