package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// NewCommand returns the cairn-bench command tree. Flags follow etcd's
// benchmark tool (tools/benchmark) where it has them.
func NewCommand() *cobra.Command {
	var (
		cfg      Config
		jsonOut  bool
		flagsSet = func(cmd *cobra.Command) map[string]string { return effectiveFlags(cmd) }
	)
	root := &cobra.Command{
		Use:   "cairn-bench",
		Short: "Load generator for etcd-API servers (cairn, etcd, anything speaking the etcd v3 gRPC API)",
		Long: `cairn-bench drives any etcd v3 API server with one workload per subcommand
and reports throughput, latency percentiles and a latency histogram, as text
or (--json) as one JSON object.

Workers (--clients) are spread over gRPC connections (--conns) and pull
request numbers from one shared counter until --total requests are done.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringSliceVar(&cfg.Endpoints, "endpoints", []string{"127.0.0.1:2379"}, "gRPC endpoints")
	pf.IntVar(&cfg.Conns, "conns", 1, "total number of gRPC connections")
	pf.IntVar(&cfg.Clients, "clients", 1, "total number of concurrent clients (worker goroutines)")
	pf.DurationVar(&cfg.DialTimeout, "dial-timeout", 0, "dial timeout for client connections")
	pf.BoolVar(&cfg.TargetLeader, "target-leader", false, "find the leader with Status and connect only to it")
	pf.StringVar(&cfg.CACert, "cacert", "", "verify certificates of TLS-enabled servers using this CA bundle")
	pf.StringVar(&cfg.Cert, "cert", "", "identify the client using this TLS certificate file")
	pf.StringVar(&cfg.Key, "key", "", "identify the client using this TLS key file")
	pf.BoolVar(&cfg.InsecureTLS, "insecure-skip-tls-verify", false, "accept any server certificate")
	pf.StringVar(&cfg.User, "user", "", "username[:password] for authentication")
	pf.StringVar(&cfg.Password, "password", "", "password, when --user has none")
	pf.DurationVar(&cfg.RunTimeout, "run-timeout", 0, "stop the run after this long; requests not done count as errors (0: no limit)")
	pf.IntVar(&cfg.MaxSamples, "max-samples", DefaultMaxSamples, "latencies kept for percentiles; beyond this, a uniform sample of them")
	pf.BoolVar(&jsonOut, "json", false, "print the result as one JSON object")

	// run runs one workload until it ends or a signal stops it, and
	// prints its report.
	run := func(cmd *cobra.Command, workload func(context.Context) (*Report, error)) error {
		ctx, stop := signalContext(cmd)
		defer stop()
		rep, err := workload(ctx)
		if err != nil {
			return err
		}
		if jsonOut {
			return rep.WriteJSON(cmd.OutOrStdout())
		}
		return rep.WriteText(cmd.OutOrStdout())
	}
	common := func(cmd *cobra.Command, total, rate int) Common {
		return Common{Config: cfg, Total: total, Rate: rate, Flags: flagsSet(cmd)}
	}
	keyFlags := func(fs *pflag.FlagSet, k *KeySpec) {
		fs.IntVar(&k.KeySize, "key-size", 8, "key size in bytes")
		fs.IntVar(&k.ValSize, "val-size", 8, "value size in bytes")
		fs.IntVar(&k.KeySpace, "key-space-size", 1, "number of distinct keys")
		fs.BoolVar(&k.Sequential, "sequential-keys", false, "write keys in order (n mod key-space-size) instead of at random")
	}

	// put
	{
		var o PutOptions
		var total, rate int
		c := &cobra.Command{
			Use:   "put",
			Short: "Write keys (one Put per request)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				o.Common = common(cmd, total, rate)
				return run(cmd, func(ctx context.Context) (*Report, error) { return Put(ctx, o) })
			},
		}
		c.Flags().IntVar(&total, "total", 10000, "total number of put requests")
		c.Flags().IntVar(&rate, "rate", 0, "maximum puts per second (0: no limit)")
		keyFlags(c.Flags(), &o.KeySpec)
		root.AddCommand(c)
	}
	// range
	{
		var o RangeOptions
		var total, rate int
		c := &cobra.Command{
			Use:   "range KEY [END]",
			Short: "Read a key or the range [KEY, END)",
			Args:  cobra.RangeArgs(1, 2),
			RunE: func(cmd *cobra.Command, args []string) error {
				o.Common = common(cmd, total, rate)
				o.Key = args[0]
				if len(args) == 2 {
					o.End = args[1]
				}
				return run(cmd, func(ctx context.Context) (*Report, error) { return Range(ctx, o) })
			},
		}
		c.Flags().IntVar(&total, "total", 10000, "total number of range requests")
		c.Flags().IntVar(&rate, "rate", 0, "maximum range requests per second (0: no limit)")
		c.Flags().StringVar(&o.Consistency, "consistency", "l", "l (linearizable) or s (serializable)")
		c.Flags().Int64Var(&o.Limit, "limit", 0, "maximum number of keys per response (0: no limit)")
		c.Flags().BoolVar(&o.CountOnly, "count-only", false, "ask only for the count")
		c.Flags().IntVar(&o.Prefill, "prefill", -1, "before the run, put a value of this many bytes at KEY (-1: do not)")
		root.AddCommand(c)
	}
	// txn-put
	{
		var o TxnPutOptions
		var total, rate int
		c := &cobra.Command{
			Use:   "txn-put",
			Short: "Commit transactions of --txn-ops puts",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				o.Common = common(cmd, total, rate)
				return run(cmd, func(ctx context.Context) (*Report, error) { return TxnPut(ctx, o) })
			},
		}
		c.Flags().IntVar(&total, "total", 10000, "total number of transactions")
		c.Flags().IntVar(&rate, "rate", 0, "maximum transactions per second (0: no limit)")
		c.Flags().IntVar(&o.TxnOps, "txn-ops", 1, "puts per transaction")
		keyFlags(c.Flags(), &o.KeySpec)
		root.AddCommand(c)
	}
	// txn-mixed
	{
		var o TxnMixedOptions
		var total, rate int
		c := &cobra.Command{
			Use:   "txn-mixed",
			Short: "Transactions that read or write one key, --rw-ratio reads per write",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				o.Common = common(cmd, total, rate)
				return run(cmd, func(ctx context.Context) (*Report, error) { return TxnMixed(ctx, o) })
			},
		}
		c.Flags().IntVar(&total, "total", 10000, "total number of transactions")
		c.Flags().IntVar(&rate, "rate", 0, "maximum transactions per second (0: no limit)")
		c.Flags().Float64Var(&o.RWRatio, "rw-ratio", 1, "read transactions per write transaction")
		c.Flags().StringVar(&o.Consistency, "consistency", "l", "reads: l (linearizable) or s (serializable)")
		c.Flags().Int64Var(&o.Limit, "limit", 0, "reads: maximum number of keys per response (0: no limit)")
		c.Flags().StringVar(&o.EndKey, "end-key", "", "reads cover [key, end-key) when set")
		keyFlags(c.Flags(), &o.KeySpec)
		root.AddCommand(c)
	}
	// watch
	{
		var o WatchOptions
		c := &cobra.Command{
			Use:   "watch",
			Short: "Many watchers, then puts on the watched keys; counts and times the events delivered",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				o.Config, o.Flags = cfg, flagsSet(cmd)
				return run(cmd, func(ctx context.Context) (*Report, error) { return Watch(ctx, o) })
			},
		}
		fs := c.Flags()
		fs.IntVar(&o.Streams, "streams", 10, "watch streams (spread over --conns)")
		fs.IntVar(&o.WatchPerStream, "watch-per-stream", 100, "watchers per stream")
		fs.IntVar(&o.WatchedKeys, "watched-key-total", 1, "distinct keys watched")
		fs.IntVar(&o.PutTotal, "put-total", 1000, "puts to the watched keys (by --clients workers)")
		fs.IntVar(&o.PutRate, "put-rate", 0, "maximum puts per second (0: no limit)")
		fs.IntVar(&o.KeySize, "key-size", 32, "key size in bytes")
		fs.IntVar(&o.ValSize, "val-size", 32, "value size in bytes (holds the put number)")
		fs.DurationVar(&o.EventTimeout, "event-timeout", 10*time.Second, "how long to wait for the last events after the last put")
		root.AddCommand(c)
	}
	// watch-latency
	{
		var o WatchLatencyOptions
		c := &cobra.Command{
			Use:   "watch-latency",
			Short: "Time from a put's acknowledgement to its event's delivery, per watcher (--clients watchers)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				o.Config, o.Flags = cfg, flagsSet(cmd)
				return run(cmd, func(ctx context.Context) (*Report, error) { return WatchLatency(ctx, o) })
			},
		}
		fs := c.Flags()
		fs.IntVar(&o.Total, "total", 10000, "total number of puts")
		fs.IntVar(&o.PutRate, "put-rate", 100, "puts per second (0: as fast as the events arrive)")
		fs.IntVar(&o.KeySize, "key-size", 32, "key size in bytes")
		fs.IntVar(&o.ValSize, "val-size", 32, "value size in bytes")
		fs.DurationVar(&o.EventTimeout, "event-timeout", 10*time.Second, "how long to wait for one put's events")
		root.AddCommand(c)
	}
	// lease-keepalive
	{
		var o LeaseKeepAliveOptions
		var total, rate int
		c := &cobra.Command{
			Use:   "lease-keepalive",
			Short: "Keep-alive requests on one lease per client, over a LeaseKeepAlive stream",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				o.Common = common(cmd, total, rate)
				return run(cmd, func(ctx context.Context) (*Report, error) { return LeaseKeepAlive(ctx, o) })
			},
		}
		c.Flags().IntVar(&total, "total", 10000, "total number of keep-alive requests")
		c.Flags().IntVar(&rate, "rate", 0, "maximum keep-alives per second (0: no limit)")
		c.Flags().Int64Var(&o.TTL, "ttl", 60, "TTL in seconds of each client's lease")
		root.AddCommand(c)
	}
	// ready
	{
		var timeout time.Duration
		c := &cobra.Command{
			Use:   "ready",
			Short: "Wait until every endpoint answers Status and knows a leader",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				ctx, stop := signalContext(cmd)
				defer stop()
				return WaitReady(ctx, cfg, timeout, cmd.ErrOrStderr())
			},
		}
		c.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
		root.AddCommand(c)
	}
	// compare
	{
		c := &cobra.Command{
			Use:   "compare DIR",
			Short: "Summarize the results that scripts/bench-vs-etcd collected in DIR as a markdown table",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				res, err := LoadResults(args[0])
				if err != nil {
					return err
				}
				return res.WriteMarkdown(cmd.OutOrStdout())
			},
		}
		root.AddCommand(c)
	}
	return root
}

// effectiveFlags lists every flag of the run with its value, so a JSON
// result says how it was produced. Credentials are left out.
func effectiveFlags(cmd *cobra.Command) map[string]string {
	out := map[string]string{}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		switch f.Name {
		case "help", "password":
			return
		case "user":
			if v := f.Value.String(); v != "" {
				name, _, _ := strings.Cut(v, ":")
				out[f.Name] = name
			}
			return
		}
		out[f.Name] = f.Value.String()
	})
	return out
}

// signalContext is cancelled by SIGINT or SIGTERM, so an interrupted run
// still reports what it measured.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// WaitReady polls every endpoint with Status until each answers and
// reports a leader, or timeout passes. Each attempt uses a new client: a
// client whose first dial was refused waits out gRPC's reconnect backoff
// (a second), which would make a quick start look slow.
func WaitReady(ctx context.Context, cfg Config, timeout time.Duration, log io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cc, err := cfg.clientConfig(cfg.Endpoints)
	if err != nil {
		return err
	}
	cc.DialTimeout = 0 // never block in New: the attempt below is bounded
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	// A refused dial makes Status wait for its whole timeout, so the first
	// attempts are short; later ones give a slow server more time.
	attempt := 200 * time.Millisecond
	for {
		last := readyOnce(ctx, cc, cfg.Endpoints, attempt)
		if last == nil {
			return nil
		}
		attempt = min(2*attempt, 2*time.Second)
		select {
		case <-ctx.Done():
			fmt.Fprintf(log, "cairn-bench ready: %v\n", last)
			return fmt.Errorf("not ready within %v: %w", timeout, last)
		case <-tick.C:
		}
	}
}

// readyOnce asks every endpoint for its Status once.
func readyOnce(ctx context.Context, cc clientv3.Config, endpoints []string, timeout time.Duration) error {
	cli, err := clientv3.New(cc)
	if err != nil {
		return err
	}
	defer cli.Close()
	for _, ep := range endpoints {
		sctx, c := context.WithTimeout(ctx, timeout)
		st, err := cli.Status(sctx, ep)
		c()
		if err == nil && st.Leader == 0 {
			err = errors.New("no leader yet")
		}
		if err != nil {
			return fmt.Errorf("%s: %w", ep, err)
		}
	}
	return nil
}
