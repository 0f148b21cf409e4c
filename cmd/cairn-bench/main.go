// Command cairn-bench is cairn's load generator: put, range, txn, watch and
// lease workloads against any etcd v3 API endpoint, with latency
// histograms and text or JSON reports. The work is done by internal/bench;
// see docs/benchmarks.md.
package main

import (
	"fmt"
	"os"

	"github.com/cairn-kv/cairn/internal/bench"
)

func main() {
	if err := bench.NewCommand().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "cairn-bench: %v\n", err)
		os.Exit(1)
	}
}
