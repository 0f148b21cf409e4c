package ctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/internal/restore"
	"github.com/cairn-kv/cairn/internal/snapshot"
)

func (r *Root) newSnapshotCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot <subcommand>", Short: "Manages etcd node snapshots"}
	cmd.AddCommand(r.newSnapshotSaveCommand(), r.newSnapshotStatusCommand(), r.newSnapshotRestoreCommand())
	return cmd
}

func (r *Root) newSnapshotSaveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "save <filename>",
		Short: "Stores an etcd node backend snapshot to a given file",
		Long: `Stores a snapshot of one member's backend to a file, in etcd's format
(bbolt database and sha256 trailer): etcdutl and etcdctl restore it, and so
does cairnctl snapshot restore. The stream goes to <filename>.part, is
fsynced, and is renamed to <filename> only when complete.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "snapshot save expects one argument")
			}
			if len(r.g.endpoints) != 1 {
				return exitf(ExitInterrupted, "snapshot must be requested to one selected node, not multiple %v", r.g.endpoints)
			}
			path := args[0]
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if cmd.Flags().Changed("command-timeout") || cmd.InheritedFlags().Changed("command-timeout") {
					ctx, cancel = context.WithTimeout(ctx, r.g.commandTimeout)
					defer cancel()
				}
				n, err := r.saveSnapshot(ctx, c, path)
				if err != nil {
					return err
				}
				fmt.Fprintf(r.stderr, "Snapshot of %s (%s) written\n", r.g.endpoints[0], humanBytes(uint64(n)))
				fmt.Fprintf(r.stdout, "Snapshot saved at %s\n", path)
				return nil
			})
		},
	}
}

// saveSnapshot streams the snapshot into path+".part", fsyncs it and its
// directory, and renames it to path. On failure the part file is removed.
func (r *Root) saveSnapshot(ctx context.Context, c *clientv3.Client, path string) (n int64, err error) {
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, exitf(ExitIO, "could not open %s (%v)", part, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(part)
		}
	}()
	// The raw stream, for RemainingBytes: progress can show the total.
	// Failures exit 5 with the bare error, as etcdctl's; the context goes
	// to a line of its own.
	stream, err := pb.NewMaintenanceClient(c.ActiveConnection()).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		fmt.Fprintf(r.stderr, "could not start the snapshot stream from %s; check --endpoints (%v)\n", r.g.endpoints[0], rpctypes.Error(err))
		return 0, &CodeError{Code: ExitInterrupted, Err: err}
	}
	prog := newProgress(r.stderr)
	var total int64
	for {
		resp, rerr := stream.Recv()
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			prog.done()
			fmt.Fprintf(r.stderr, "the snapshot stream from %s failed after %s; %s was not written\n", r.g.endpoints[0], humanBytes(uint64(n)), path)
			return n, &CodeError{Code: ExitInterrupted, Err: rerr}
		}
		if _, werr := f.Write(resp.Blob); werr != nil {
			prog.done()
			return n, exitf(ExitIO, "writing %s: %v", part, werr)
		}
		n += int64(len(resp.Blob))
		if total == 0 {
			total = n + int64(resp.RemainingBytes)
		}
		prog.step("snapshot: received " + bytesDone(n, total))
	}
	prog.done()
	if n == 0 {
		return 0, exitf(ExitInterrupted, "snapshot stream from %s was empty", r.g.endpoints[0])
	}
	if err := f.Sync(); err != nil {
		return n, exitf(ExitIO, "fsync %s: %v", part, err)
	}
	if err := f.Close(); err != nil {
		return n, exitf(ExitIO, "closing %s: %v", part, err)
	}
	if err := os.Rename(part, path); err != nil {
		return n, exitf(ExitIO, "could not rename %s to %s (%v)", part, path, err)
	}
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return n, nil
}

func (r *Root) newSnapshotStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status <filename>",
		Short: "Gets backend snapshot status of a given file",
		Long: `When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are hash, revision, total keys, total size.
`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "snapshot status requires exactly one argument")
			}
			p := r.printer()
			if p.format == "protobuf" {
				return p.unsupported()
			}
			if _, err := os.Stat(args[0]); err != nil {
				return exitErr(ExitError, err)
			}
			rd, err := snapshot.Open(args[0], false)
			if err != nil {
				return exitErr(ExitError, err)
			}
			defer rd.Close()
			st, err := rd.Status()
			if err != nil {
				return exitErr(ExitError, err)
			}
			return p.DBStatus(dbStatus{Hash: st.Hash, Revision: st.Revision, TotalKey: st.TotalKey, TotalSize: st.TotalSize})
		},
	}
}

func (r *Root) newSnapshotRestoreCommand() *cobra.Command {
	var o restore.Options
	var peerURLs string
	cmd := &cobra.Command{
		Use:   "restore <filename> [options]",
		Short: "Restores an etcd member snapshot to an etcd directory",
		Long: `Restores a snapshot (saved from cairn or etcd) into the data dir of one
member of a new cluster. Run it once per member, with the same file,
--initial-cluster and --initial-cluster-token and each member's own --name and
--initial-advertise-peer-urls, then start the members with that
--initial-cluster. The data dir must not exist yet.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "snapshot restore requires exactly one argument")
			}
			o.SnapshotPath = args[0]
			o.InitialAdvertisePeerURLs = splitURLs(peerURLs)
			prog := newProgress(r.stderr)
			o.Progress = func(done, total int64) { prog.step("restore: copied " + bytesDone(done, total)) }
			err := restore.Restore(context.Background(), o)
			prog.done()
			if err != nil {
				msg := err.Error()
				if strings.Contains(msg, "hash") && !o.SkipHashCheck {
					msg += " (a database copied from a data dir has no hash: add --skip-hash-check)"
				}
				return exitf(ExitError, "%s", msg)
			}
			dir := o.DataDir
			if dir == "" {
				name := o.Name
				if name == "" {
					name = "default"
				}
				dir = name + ".cairn"
			}
			fmt.Fprintf(r.stderr, "Snapshot %s restored into %s\n", o.SnapshotPath, dir)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.DataDir, "data-dir", "", "Path to the data directory (default <name>.cairn)")
	fs.StringVar(&o.WALDir, "wal-dir", "", "Path to the WAL directory (use --data-dir if none given)")
	fs.StringVar(&o.InitialCluster, "initial-cluster", "", "Initial cluster configuration for restore bootstrap (default <name>=http://localhost:2380)")
	fs.StringVar(&o.InitialClusterToken, "initial-cluster-token", "etcd-cluster", "Initial cluster token for the etcd cluster during restore bootstrap")
	fs.StringVar(&peerURLs, "initial-advertise-peer-urls", "http://localhost:2380", "List of this member's peer URLs to advertise to the rest of the cluster")
	fs.StringVar(&o.Name, "name", "default", "Human-readable name for this member")
	fs.BoolVar(&o.SkipHashCheck, "skip-hash-check", false, "Ignore snapshot integrity hash value (required if copied from data directory)")
	return cmd
}
