// Package servicescmd is `cairnctl services`: the registry that
// cairn-warden keeps, read with pkg/discovery.
//
//	cairnctl services [list] [--prefix /services/]   a table of the services
//	cairnctl services watch [--prefix ...]           one line per change, until interrupted
//	cairnctl services get NAME [--prefix ...]        one record as JSON
package servicescmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairn-kv/cairn/pkg/discovery"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// requestTimeout bounds list and get.
const requestTimeout = 10 * time.Second

// NewCommand returns the services command. dial opens a client (closed by
// the command); out receives the output.
func NewCommand(dial func() (*clientv3.Client, error), out io.Writer) *cobra.Command {
	var prefix string
	list := func(cmd *cobra.Command, _ []string) error {
		cli, err := dial()
		if err != nil {
			return err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(ctxOf(cmd), requestTimeout)
		defer cancel()
		recs, _, err := discovery.List(ctx, cli, prefix)
		if err != nil {
			return err
		}
		return printTable(out, recs, time.Now())
	}
	root := &cobra.Command{
		Use:   "services",
		Short: "Lists the services registered by cairn-warden (list, watch, get)",
		Args:  cobra.NoArgs,
		RunE:  list,
	}
	root.PersistentFlags().StringVar(&prefix, "prefix", discovery.DefaultPrefix, "the registry's key prefix")
	root.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "A table of the registered services",
		Args:  cobra.NoArgs,
		RunE:  list,
	})
	root.AddCommand(&cobra.Command{
		Use:   "watch",
		Short: "Prints one line per registry change until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cli, err := dial()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx := ctxOf(cmd)
			for ev := range discovery.Watch(ctx, cli, prefix) {
				if ev.Err != nil && ev.Key == "" {
					return ev.Err
				}
				fmt.Fprintln(out, eventLine(ev))
			}
			return ctx.Err()
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "get NAME",
		Short: "Prints the record of one service as JSON (NAME: the service name or the last part of its key)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cli, err := dial()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(ctxOf(cmd), requestTimeout)
			defer cancel()
			recs, _, err := discovery.List(ctx, cli, prefix)
			if err != nil {
				return err
			}
			r, ok := find(recs, prefix, args[0])
			if !ok {
				return fmt.Errorf("service %q not found under %s", args[0], prefix)
			}
			b, err := json.MarshalIndent(r, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s\n", b)
			return nil
		},
	})
	return root
}

func ctxOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// find picks the record named name, else the one at key prefix+name.
func find(recs []discovery.Record, prefix, name string) (discovery.Record, bool) {
	for _, r := range recs {
		if r.Name == name {
			return r, true
		}
	}
	for _, r := range recs {
		if r.Key == prefix+name || strings.TrimPrefix(r.Key[strings.LastIndex(r.Key, "/")+1:], "/") == name {
			return r, true
		}
	}
	return discovery.Record{}, false
}

func printTable(out io.Writer, recs []discovery.Record, now time.Time) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tHOST\tPID\tSTATUS\tRESTARTS\tSINCE\tWARDEN")
	for _, r := range recs {
		status := r.Status
		if r.Health == discovery.HealthFailing {
			status += " (failing)"
		}
		pid := "-"
		if r.PID > 0 {
			pid = strconv.Itoa(r.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Name, dash(r.Address), dash(r.Hostname), pid, status, r.Restarts, since(r.StartedAt, now), r.Warden)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// since is the age of t, rounded to the second ("3m12s ago").
func since(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func eventLine(ev discovery.Event) string {
	switch {
	case ev.Err != nil:
		return fmt.Sprintf("ERROR %s %v", ev.Key, ev.Err)
	case ev.Type == discovery.Delete:
		return fmt.Sprintf("DELETE %s", ev.Key)
	}
	r := ev.Record
	line := fmt.Sprintf("PUT %s name=%s address=%s host=%s pid=%d status=%s health=%s restarts=%d warden=%s",
		ev.Key, r.Name, dash(r.Address), dash(r.Hostname), r.PID, r.Status, dash(r.Health), r.Restarts, r.Warden)
	if r.Reason != "" {
		line += fmt.Sprintf(" reason=%q", r.Reason)
	}
	return line
}
