package ctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type watchOpts struct {
	rev                            int64
	prefix, prevKV, progressNotify bool
}

func (o *watchOpts) register(fs *pflag.FlagSet) {
	fs.BoolVar(&o.prefix, "prefix", false, "Watch on a prefix if prefix is set")
	fs.Int64Var(&o.rev, "rev", 0, "Revision to start watching")
	fs.BoolVar(&o.prevKV, "prev-kv", false, "get the previous key-value pair before the event happens")
	fs.BoolVar(&o.progressNotify, "progress-notify", false, "get periodic watch progress notification from server")
}

func (o *watchOpts) watch(c *clientv3.Client, args []string) (clientv3.WatchChan, error) {
	if len(args) < 1 || len(args) > 2 {
		return nil, errors.New("bad number of arguments")
	}
	opts := []clientv3.OpOption{clientv3.WithRev(o.rev)}
	if len(args) == 2 {
		if o.prefix {
			return nil, errors.New("`range_end` and `--prefix` are mutually exclusive")
		}
		opts = append(opts, clientv3.WithRange(args[1]))
	}
	if o.prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	if o.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	if o.progressNotify {
		opts = append(opts, clientv3.WithProgressNotify())
	}
	return c.Watch(clientv3.WithRequireLeader(context.Background()), args[0], opts...), nil
}

func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

func (r *Root) newWatchCommand() *cobra.Command {
	var o watchOpts
	var interactive bool
	cmd := &cobra.Command{
		Use:   "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
		Short: "Watches events stream on keys or prefixes",
		Long: `Watches events stream on keys or prefixes.

With a command after '--', runs it once per event with ETCD_WATCH_REVISION,
ETCD_WATCH_EVENT_TYPE, ETCD_WATCH_KEY and ETCD_WATCH_VALUE in its environment.
ETCDCTL_WATCH_KEY and ETCDCTL_WATCH_RANGE_END give the key and range end.
In interactive mode (-i) each line of stdin is "watch [options] key [range_end] [-- command...]"
or "progress".`,
		RunE: func(cmd *cobra.Command, args []string) error {
			envKey := envValue(r.g.env, "ETCDCTL_WATCH_KEY")
			envRange := envValue(r.g.env, "ETCDCTL_WATCH_RANGE_END")
			if envKey == "" && envRange != "" {
				return exitf(ExitBadArgs, "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END=%q", envRange)
			}
			p := r.printer()
			if p.format == "table" {
				return p.unsupported()
			}
			if interactive {
				return r.watchInteractive(p, envKey, envRange)
			}
			watchArgs, execArgs := args, []string(nil)
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				watchArgs, execArgs = args[:dash], args[dash:]
				if len(execArgs) == 0 {
					return exitf(ExitBadArgs, "bad number of arguments (found separator --, but no commands)")
				}
			}
			if envKey != "" {
				if len(watchArgs) > 0 {
					return exitf(ExitBadArgs, "bad number of arguments (found conflicting environment key)")
				}
				watchArgs = []string{envKey}
				if envRange != "" {
					watchArgs = append(watchArgs, envRange)
				}
			}
			if len(watchArgs) == 0 {
				return exitf(ExitBadArgs, "bad number of arguments")
			}
			if len(watchArgs) > 2 {
				return exitf(ExitBadArgs, "bad number of arguments")
			}
			return r.withClient(func(c *clientv3.Client) error {
				wc, err := o.watch(c, watchArgs)
				if err != nil {
					return exitErr(ExitBadArgs, err)
				}
				var mu sync.Mutex
				if err := r.printWatch(c, p, &mu, wc, execArgs); err != nil {
					return err
				}
				return exitf(ExitInterrupted, "watch is canceled by the server")
			})
		},
	}
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "Interactive mode")
	o.register(cmd.Flags())
	return cmd
}

// printWatch prints every response of wc until it closes, running
// execArgs once per event.
func (r *Root) printWatch(c *clientv3.Client, p *printer, mu *sync.Mutex, wc clientv3.WatchChan, execArgs []string) error {
	for resp := range wc {
		mu.Lock()
		if resp.Canceled {
			fmt.Fprintf(r.stderr, "watch was canceled (%v)\n", resp.Err())
		}
		if resp.IsProgressNotify() {
			fmt.Fprintf(r.stdout, "progress notify: %d\n", resp.Header.Revision)
		}
		err := p.Watch(resp)
		mu.Unlock()
		if err != nil {
			return err
		}
		for _, ev := range resp.Events {
			if len(execArgs) == 0 {
				break
			}
			cmd := exec.CommandContext(c.Ctx(), execArgs[0], execArgs[1:]...)
			cmd.Env = append(os.Environ(),
				fmt.Sprintf("ETCD_WATCH_REVISION=%d", resp.Header.Revision),
				fmt.Sprintf("ETCD_WATCH_EVENT_TYPE=%q", ev.Type),
				fmt.Sprintf("ETCD_WATCH_KEY=%q", ev.Kv.Key),
				fmt.Sprintf("ETCD_WATCH_VALUE=%q", ev.Kv.Value),
			)
			cmd.Stdout, cmd.Stderr = r.stdout, r.stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(r.stderr, "command %q error (%v)\n", execArgs, err)
				return &CodeError{Code: ExitError, Err: errSilent}
			}
		}
	}
	return nil
}

// watchInteractive reads "watch ..." and "progress" lines from stdin and
// runs each watch in the background, printing all of them to stdout.
func (r *Root) watchInteractive(p *printer, envKey, envRange string) error {
	return r.withClient(func(c *clientv3.Client) error {
		var mu sync.Mutex
		// A watch's command failing ends the session (as in etcdctl), even
		// while stdin is quiet: lines are read on their own goroutine.
		errc := make(chan error, 1)
		type lineOrErr struct {
			line string
			err  error
		}
		lines := make(chan lineOrErr)
		go func() {
			in := bufio.NewReader(r.stdin)
			for {
				l, err := in.ReadString('\n')
				lines <- lineOrErr{l, err}
				if err != nil {
					return
				}
			}
		}()
		for {
			var line string
			select {
			case werr := <-errc:
				return werr
			case le := <-lines:
				if le.err != nil {
					return exitf(ExitInvalidInput, "error reading watch request line: %v", le.err)
				}
				line = le.line
			}
			line = strings.TrimSuffix(line, "\n")
			args, aerr := argify(line)
			if aerr != nil || len(args) < 1 {
				fmt.Fprintf(r.stderr, "Invalid command: %s (watch and progress supported)\n", line)
				continue
			}
			switch args[0] {
			case "watch":
				var o watchOpts
				fs := pflag.NewFlagSet("watch", pflag.ContinueOnError)
				fs.SetOutput(discard{})
				o.register(fs)
				rest := args[1:]
				var execArgs []string
				for i, a := range rest {
					if a == "--" {
						rest, execArgs = rest[:i], rest[i+1:]
						if len(execArgs) == 0 {
							return exitf(ExitBadArgs, "bad number of arguments (found separator --, but no commands)")
						}
						break
					}
				}
				if err := fs.Parse(rest); err != nil {
					return exitErr(ExitBadArgs, err)
				}
				wargs := fs.Args()
				if envKey != "" {
					wargs = append([]string{envKey}, wargs...)
					if envRange != "" {
						wargs = append([]string{envKey, envRange}, fs.Args()...)
					}
				}
				if len(wargs) == 0 {
					fmt.Fprintf(r.stderr, "Invalid command %s (command type or key is not provided)\n", line)
					continue
				}
				wc, err := o.watch(c, wargs)
				if err != nil {
					fmt.Fprintf(r.stderr, "Invalid command %s (%v)\n", line, err)
					continue
				}
				go func() {
					if err := r.printWatch(c, p, &mu, wc, execArgs); err != nil {
						select {
						case errc <- err:
						default:
						}
					}
				}()
			case "progress":
				if err := c.RequestProgress(clientv3.WithRequireLeader(context.Background())); err != nil {
					return exitErr(ExitError, err)
				}
			default:
				fmt.Fprintf(r.stderr, "Invalid command %s (only support watch)\n", line)
			}
		}
	})
}
