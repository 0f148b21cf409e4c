package robustness

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/e2e"
)

// RunsEnv asks for N randomized runs of every scenario (scripts/robustness
// --runs N) instead of the short mode's one.
const RunsEnv = "CAIRN_ROBUSTNESS_RUNS"

// TestRobustness runs every scenario: once with a fixed seed by default
// (the short mode, part of the normal test suite), or RunsEnv times with
// random seeds, or once with the seed of SeedEnv.
func TestRobustness(t *testing.T) {
	if e2e.Kind() != e2e.KindCairn {
		t.Skip("the robustness scenarios use cairn's crash points")
	}
	runs := 1
	if v := os.Getenv(RunsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", RunsEnv, v)
		}
		runs = n
	}
	var fixed *uint64
	if v := os.Getenv(SeedEnv); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want a number", SeedEnv, v)
		}
		fixed, runs = &s, 1
	}
	for _, sc := range Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			for i := 0; i < runs; i++ {
				seed := uint64(i + 1)
				switch {
				case fixed != nil:
					seed = *fixed
				case runs > 1:
					seed = rand.Uint64() >> 1
				}
				start := time.Now()
				rep := Run(t, sc, seed)
				recordResult(sc.Name, seed, rep, time.Since(start), t.Failed())
			}
		})
	}
}

// recordResult appends one line per run to the file named by
// CAIRN_ROBUSTNESS_RESULTS (scripts/robustness reads it to write
// docs/robustness.md).
func recordResult(name string, seed uint64, rep *Report, took time.Duration, failed bool) {
	path := os.Getenv("CAIRN_ROBUSTNESS_RESULTS")
	if path == "" || rep == nil {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	first := ""
	if len(rep.Violations) > 0 {
		first = rep.Violations[0]
	}
	fmt.Fprintf(f, "%s\t%d\t%v\t%d\t%d\t%s\t%q\n", name, seed, failed, len(rep.Violations), rep.Ops, took.Round(time.Second), first)
}
