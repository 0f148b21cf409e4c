package ctl

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func leaseID(arg string) (clientv3.LeaseID, error) {
	id, err := strconv.ParseInt(arg, 16, 64)
	if err != nil {
		return 0, exitf(ExitBadArgs, "bad lease ID arg (%v), expecting ID in Hex", err)
	}
	return clientv3.LeaseID(id), nil
}

func (r *Root) newLeaseCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "lease <subcommand>", Short: "Lease related commands"}

	grant := &cobra.Command{
		Use:   "grant <ttl>",
		Short: "Creates leases",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "lease grant command needs TTL argument")
			}
			ttl, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return exitf(ExitBadArgs, "bad TTL (%v)", err)
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.Grant(ctx, ttl)
				if err != nil {
					return exitf(ExitError, "failed to grant lease (%v)", err)
				}
				return r.printer().Grant(resp)
			})
		},
	}

	revoke := &cobra.Command{
		Use:   "revoke <leaseID>",
		Short: "Revokes leases",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "lease revoke command needs 1 argument")
			}
			id, err := leaseID(args[0])
			if err != nil {
				return err
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.Revoke(ctx, id)
				if err != nil {
					return exitf(ExitError, "failed to revoke lease (%v)", err)
				}
				return r.printer().Revoke(id, resp)
			})
		},
	}

	var withKeys bool
	ttl := &cobra.Command{
		Use:   "timetolive <leaseID> [options]",
		Short: "Get lease information",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "lease timetolive command needs lease ID as argument")
			}
			id, err := leaseID(args[0])
			if err != nil {
				return err
			}
			var opts []clientv3.LeaseOption
			if withKeys {
				opts = append(opts, clientv3.WithAttachedKeys())
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.TimeToLive(ctx, id, opts...)
				if err != nil {
					return exitErr(ExitError, err)
				}
				return r.printer().TimeToLive(resp, withKeys)
			})
		},
	}
	ttl.Flags().BoolVar(&withKeys, "keys", false, "Get keys attached to this lease")

	list := &cobra.Command{
		Use:   "list",
		Short: "List all active leases",
		RunE: func(cmd *cobra.Command, args []string) error {
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.Leases(ctx)
				if err != nil {
					return exitErr(ExitBadConnection, err)
				}
				return r.printer().Leases(resp)
			})
		},
	}

	var once bool
	keepAlive := &cobra.Command{
		Use:   "keep-alive [options] <leaseID>",
		Short: "Keeps leases alive (renew)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "lease keep-alive command needs lease ID as argument")
			}
			id, err := leaseID(args[0])
			if err != nil {
				return err
			}
			p := r.printer()
			return r.withClient(func(c *clientv3.Client) error {
				if once {
					ctx, cancel := r.CommandContext()
					defer cancel()
					resp, err := c.KeepAliveOnce(ctx, id)
					if err != nil {
						return exitErr(ExitBadConnection, err)
					}
					return p.KeepAlive(resp)
				}
				ch, err := c.KeepAlive(context.Background(), id)
				if err != nil {
					return exitErr(ExitBadConnection, err)
				}
				for resp := range ch {
					if err := p.KeepAlive(resp); err != nil {
						return err
					}
				}
				if p.format == "simple" {
					fmt.Fprintf(r.stdout, "lease %016x expired or revoked.\n", id)
				}
				return nil
			})
		},
	}
	keepAlive.Flags().BoolVar(&once, "once", false, "Resets the keep-alive time to its original value and exits immediately")

	cmd.AddCommand(grant, revoke, ttl, list, keepAlive)
	return cmd
}
