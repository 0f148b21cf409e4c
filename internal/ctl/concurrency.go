package ctl

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

func (r *Root) newLockCommand() *cobra.Command {
	ttl := 10
	cmd := &cobra.Command{
		Use:   "lock <lockname> [exec-command arg1 arg2 ...]",
		Short: "Acquires a named lock",
		Long: `Acquires a named lock and holds it until interrupted (SIGINT/SIGTERM), printing
the lock's key and value once acquired. With a command after the name, holds
the lock while the command runs (with ETCD_LOCK_KEY and ETCD_LOCK_REV in its
environment), then releases it; a failing command makes lock exit 1.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return exitf(ExitBadArgs, "lock takes a lock name argument and an optional command to execute")
			}
			return r.withClient(func(c *clientv3.Client) error {
				return r.lock(c, ttl, args[0], args[1:])
			})
		},
	}
	cmd.Flags().IntVar(&ttl, "ttl", ttl, "timeout for session")
	return cmd
}

func (r *Root) lock(c *clientv3.Client, ttl int, name string, cmdArgs []string) error {
	s, err := concurrency.NewSession(c, concurrency.WithTTL(ttl))
	if err != nil {
		return exitErr(ExitError, err)
	}
	defer s.Close()
	m := concurrency.NewMutex(s, name)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	interrupted := make(chan struct{})
	go func() {
		select {
		case <-sigc:
			cancel()
			close(interrupted)
		case <-ctx.Done():
		}
	}()
	if err := m.Lock(ctx); err != nil {
		return exitErr(ExitError, err)
	}
	if len(cmdArgs) > 0 {
		run := exec.Command(cmdArgs[0], cmdArgs[1:]...)
		run.Env = append([]string{"ETCD_LOCK_KEY=" + m.Key(), fmt.Sprintf("ETCD_LOCK_REV=%d", m.Header().Revision)}, os.Environ()...)
		run.Stdin, run.Stdout, run.Stderr = r.stdin, r.stdout, r.stderr
		runErr := run.Run()
		uctx, ucancel := r.CommandContext()
		unlockErr := m.Unlock(uctx)
		ucancel()
		// A failed command fails lock with exit code 1 and "exit status
		// N", as etcdctl 3.4 does.
		if runErr != nil {
			return exitErr(ExitError, runErr)
		}
		return exitErr(ExitError, unlockErr)
	}
	resp, err := c.Get(ctx, m.Key())
	if err != nil {
		return exitErr(ExitError, err)
	}
	if len(resp.Kvs) == 0 {
		return exitf(ExitError, "lock lost on init")
	}
	if err := r.printer().Get((*pb.RangeResponse)(resp), false); err != nil {
		return err
	}
	select {
	case <-interrupted:
		uctx, ucancel := r.CommandContext()
		defer ucancel()
		return exitErr(ExitError, m.Unlock(uctx))
	case <-s.Done():
	}
	return exitf(ExitError, "session expired")
}

func (r *Root) newElectCommand() *cobra.Command {
	var listen bool
	cmd := &cobra.Command{
		Use:   "elect <election-name> [proposal]",
		Short: "Observes and participates in leader election",
		Long: `With a proposal, campaigns in the election, prints the leader key once elected
and holds leadership until interrupted. With -l, prints every leader change.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 && len(args) != 2 {
				return exitf(ExitBadArgs, "elect takes one election name argument and an optional proposal argument")
			}
			if len(args) == 1 && !listen {
				return exitf(ExitBadArgs, "no proposal argument but -l not set")
			}
			if len(args) == 2 && listen {
				return exitf(ExitBadArgs, "proposal given but -l is set")
			}
			return r.withClient(func(c *clientv3.Client) error {
				if listen {
					return r.observe(c, args[0])
				}
				return r.campaign(c, args[0], args[1])
			})
		},
	}
	cmd.Flags().BoolVarP(&listen, "listen", "l", false, "observation mode")
	return cmd
}

// interruptible returns a context canceled by SIGINT or SIGTERM, and a
// channel closed at that moment.
func interruptible() (context.Context, <-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	interrupted := make(chan struct{})
	go func() {
		select {
		case <-sigc:
			close(interrupted)
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, interrupted, func() { signal.Stop(sigc); cancel() }
}

func (r *Root) observe(c *clientv3.Client, name string) error {
	s, err := concurrency.NewSession(c)
	if err != nil {
		return exitErr(ExitError, err)
	}
	defer s.Close()
	e := concurrency.NewElection(s, name)
	ctx, interrupted, stop := interruptible()
	defer stop()
	p := r.printer()
	for resp := range e.Observe(ctx) {
		if err := p.Get((*pb.RangeResponse)(resp), false); err != nil {
			return err
		}
	}
	select {
	case <-interrupted:
		return nil
	default:
		return exitf(ExitError, "elect: observer lost")
	}
}

func (r *Root) campaign(c *clientv3.Client, name, proposal string) error {
	s, err := concurrency.NewSession(c)
	if err != nil {
		return exitErr(ExitError, err)
	}
	defer s.Close()
	e := concurrency.NewElection(s, name)
	ctx, interrupted, stop := interruptible()
	defer stop()
	if err := e.Campaign(ctx, proposal); err != nil {
		return exitErr(ExitError, err)
	}
	resp, err := c.Get(ctx, e.Key())
	if err != nil {
		return exitErr(ExitError, err)
	}
	if err := r.printer().Get((*pb.RangeResponse)(resp), false); err != nil {
		return err
	}
	select {
	case <-interrupted:
	case <-s.Done():
		return exitf(ExitError, "elect: session expired")
	}
	rctx, cancel := r.CommandContext()
	defer cancel()
	return exitErr(ExitError, e.Resign(rctx))
}
