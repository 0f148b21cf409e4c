package ctl

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/mirror"
)

type mirrorOpts struct {
	prefix, destPrefix  string
	noDestPrefix        bool
	cert, key, cacert   string
	insecureTransport   bool
	user, password      string
	maxTxnOps           int
	reportEvery         time.Duration
	destInsecureSkipTLS bool
}

func (r *Root) newMakeMirrorCommand() *cobra.Command {
	var o mirrorOpts
	cmd := &cobra.Command{
		Use:   "make-mirror [options] <destination>",
		Short: "Makes a mirror at the destination etcd cluster",
		Long: `Copies every key under --prefix to the destination cluster, then keeps the
destination up to date from the source's watch stream until interrupted.
Prints the number of keys mirrored so far every 30 seconds (as etcdctl does);
on a terminal a progress line on stderr shows it continuously.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "make-mirror takes one destination argument")
			}
			if o.noDestPrefix && o.destPrefix != "" {
				return exitf(ExitBadArgs, "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one")
			}
			if !o.noDestPrefix && o.destPrefix == "" {
				o.destPrefix = o.prefix
			}
			dg := r.g
			dg.endpoints = []string{args[0]}
			dg.cert, dg.key, dg.cacert = o.cert, o.key, o.cacert
			dg.insecureTransport, dg.insecureSkipVerify = o.insecureTransport, o.destInsecureSkipTLS
			dg.user, dg.password = o.user, o.password
			dcfg, err := dg.clientConfig(r)
			if err != nil {
				return err
			}
			dc, err := clientv3.New(*dcfg)
			if err != nil {
				return exitErr(ExitBadConnection, err)
			}
			defer dc.Close()
			return r.withClient(func(c *clientv3.Client) error {
				ctx, _, stop := interruptible()
				defer stop()
				err := r.mirror(ctx, c, dc, o)
				if ctx.Err() != nil {
					return nil
				}
				return exitErr(ExitError, err)
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.prefix, "prefix", "", "Key-value prefix to mirror")
	fs.StringVar(&o.destPrefix, "dest-prefix", "", "destination prefix to mirror a prefix to a different prefix in the destination cluster")
	fs.BoolVar(&o.noDestPrefix, "no-dest-prefix", false, "mirror key-values to the root of the destination cluster")
	fs.StringVar(&o.cert, "dest-cert", "", "Identify secure client using this TLS certificate file for the destination cluster")
	fs.StringVar(&o.key, "dest-key", "", "Identify secure client using this TLS key file")
	fs.StringVar(&o.cacert, "dest-cacert", "", "Verify certificates of TLS enabled secure servers using this CA bundle")
	fs.BoolVar(&o.insecureTransport, "dest-insecure-transport", true, "Disable transport security for client connections")
	fs.BoolVar(&o.destInsecureSkipTLS, "dest-insecure-skip-tls-verify", false, "skip the destination's server certificate verification")
	fs.StringVar(&o.user, "dest-user", "", "Destination username[:password] for authentication (prompt if password is not supplied)")
	fs.StringVar(&o.password, "dest-password", "", "Destination password for authentication (if this option is used, --user option shouldn't include password)")
	fs.IntVar(&o.maxTxnOps, "max-txn-ops", 128, "Maximum number of operations per transaction on the destination (the server's --max-txn-ops)")
	fs.DurationVar(&o.reportEvery, "report-interval", 30*time.Second, "how often to print the number of keys mirrored so far")
	return cmd
}

func (r *Root) mirror(ctx context.Context, c, dc *clientv3.Client, o mirrorOpts) error {
	var total atomic.Int64
	prog := newProgress(r.stderr)
	stopReport := make(chan struct{})
	defer close(stopReport)
	go func() {
		t := time.NewTicker(o.reportEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprintln(r.stdout, total.Load())
			case <-stopReport:
				return
			}
		}
	}()
	rename := func(k []byte) string { return strings.Replace(string(k), o.prefix, o.destPrefix, 1) }

	s := mirror.NewSyncer(c, o.prefix, 0)
	rc, errc := s.SyncBase(ctx)
	for resp := range rc {
		for _, kv := range resp.Kvs {
			if _, err := dc.Put(ctx, rename(kv.Key), string(kv.Value)); err != nil {
				return err
			}
			n := total.Add(1)
			if prog.tty {
				prog.step(fmt.Sprintf("make-mirror: %d keys copied", n))
			}
		}
	}
	if err := <-errc; err != nil {
		return err
	}
	commit := func(ops []clientv3.Op) error {
		for len(ops) > 0 {
			n := min(len(ops), max(o.maxTxnOps, 1))
			if _, err := dc.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
				return err
			}
			ops = ops[n:]
		}
		return nil
	}
	for wr := range s.SyncUpdates(ctx) {
		if wr.CompactRevision != 0 {
			return rpctypes.ErrCompacted
		}
		if err := wr.Err(); err != nil {
			return err
		}
		var ops []clientv3.Op
		var lastRev int64
		for _, ev := range wr.Events {
			// One destination transaction per source revision.
			if lastRev != 0 && ev.Kv.ModRevision > lastRev {
				if err := commit(ops); err != nil {
					return err
				}
				ops = nil
			}
			lastRev = ev.Kv.ModRevision
			switch ev.Type {
			case mvccpb.PUT:
				ops = append(ops, clientv3.OpPut(rename(ev.Kv.Key), string(ev.Kv.Value)))
			case mvccpb.DELETE:
				ops = append(ops, clientv3.OpDelete(rename(ev.Kv.Key)))
			}
			n := total.Add(1)
			if prog.tty {
				prog.step(fmt.Sprintf("make-mirror: %d keys mirrored", n))
			}
		}
		if err := commit(ops); err != nil {
			return err
		}
	}
	prog.done()
	return ctx.Err()
}
