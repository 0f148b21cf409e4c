package ctl

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// withClient runs fn with a client built from the global flags.
func (r *Root) withClient(fn func(c *clientv3.Client) error) error {
	c, err := r.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

type getOpts struct {
	consistency, order, sortBy       string
	limit, rev                       int64
	prefix, fromKey, keysOnly, count bool
	valueOnly                        bool
}

func (o *getOpts) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&o.consistency, "consistency", "l", "Linearizable(l) or Serializable(s)")
	fs.StringVar(&o.order, "order", "", "Order of results; ASCEND or DESCEND (ASCEND by default)")
	fs.StringVar(&o.sortBy, "sort-by", "", "Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION")
	fs.Int64Var(&o.limit, "limit", 0, "Maximum number of results")
	fs.BoolVar(&o.prefix, "prefix", false, "Get keys with matching prefix")
	fs.BoolVar(&o.fromKey, "from-key", false, "Get keys that are greater than or equal to the given key using byte compare")
	fs.Int64Var(&o.rev, "rev", 0, "Specify the kv revision")
	fs.BoolVar(&o.keysOnly, "keys-only", false, "Get only the keys")
	fs.BoolVar(&o.count, "count-only", false, "Get only the count")
	fs.BoolVar(&o.valueOnly, "print-value-only", false, `Only write values when using the "simple" output format`)
}

// op turns the arguments into a range request, with etcdctl's checks.
func (o *getOpts) op(args []string) (string, []clientv3.OpOption, error) {
	if len(args) == 0 {
		return "", nil, exitf(ExitBadArgs, "get command needs one argument as key and an optional argument as range_end")
	}
	if o.prefix && o.fromKey {
		return "", nil, exitf(ExitBadArgs, "`--prefix` and `--from-key` cannot be set at the same time, choose one")
	}
	if o.keysOnly && o.count {
		return "", nil, exitf(ExitBadArgs, "`--keys-only` and `--count-only` cannot be set at the same time, choose one")
	}
	var opts []clientv3.OpOption
	switch o.consistency {
	case "s":
		opts = append(opts, clientv3.WithSerializable())
	case "l":
	default:
		return "", nil, exitf(ExitBadFeature, "unknown consistency flag %q", o.consistency)
	}
	key := args[0]
	if len(args) > 1 {
		if o.prefix || o.fromKey {
			return "", nil, exitf(ExitBadArgs, "too many arguments, only accept one argument when `--prefix` or `--from-key` is set")
		}
		opts = append(opts, clientv3.WithRange(args[1]))
	}
	opts = append(opts, clientv3.WithLimit(o.limit))
	if o.rev > 0 {
		opts = append(opts, clientv3.WithRev(o.rev))
	}
	order := clientv3.SortNone
	switch strings.ToUpper(o.order) {
	case "ASCEND":
		order = clientv3.SortAscend
	case "DESCEND":
		order = clientv3.SortDescend
	case "":
	default:
		return "", nil, exitf(ExitBadFeature, "bad sort order %v", o.order)
	}
	target := clientv3.SortByKey
	switch strings.ToUpper(o.sortBy) {
	case "CREATE":
		target = clientv3.SortByCreateRevision
	case "KEY":
		target = clientv3.SortByKey
	case "MODIFY":
		target = clientv3.SortByModRevision
	case "VALUE":
		target = clientv3.SortByValue
	case "VERSION":
		target = clientv3.SortByVersion
	case "":
	default:
		return "", nil, exitf(ExitBadFeature, "bad sort target %v", o.sortBy)
	}
	opts = append(opts, clientv3.WithSort(target, order))
	if o.prefix {
		if key == "" {
			key = "\x00"
			opts = append(opts, clientv3.WithFromKey())
		} else {
			opts = append(opts, clientv3.WithPrefix())
		}
	}
	if o.fromKey {
		if key == "" {
			key = "\x00"
		}
		opts = append(opts, clientv3.WithFromKey())
	}
	if o.keysOnly {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	if o.count {
		opts = append(opts, clientv3.WithCountOnly())
	}
	return key, opts, nil
}

func (r *Root) newGetCommand() *cobra.Command {
	var o getOpts
	cmd := &cobra.Command{
		Use:   "get [options] <key> [range_end]",
		Short: "Gets the key or a range of keys",
		RunE: func(cmd *cobra.Command, args []string) error {
			key, opts, err := o.op(args)
			if err != nil {
				return err
			}
			p := r.printer()
			if o.valueOnly {
				if p.format != "simple" {
					return exitf(ExitBadArgs, "print-value-only is only for `--write-out=simple`")
				}
				p.valueOnly = true
			}
			if p.format == "table" {
				return p.unsupported()
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.Get(ctx, key, opts...)
				if err != nil {
					return exitErr(ExitError, err)
				}
				return p.Get((*pb.RangeResponse)(resp), o.count)
			})
		},
	}
	o.register(cmd)
	return cmd
}

type putOpts struct {
	lease                          string
	prevKV, ignoreVal, ignoreLease bool
}

func (o *putOpts) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&o.lease, "lease", "0", "lease ID (in hexadecimal) to attach to the key")
	fs.BoolVar(&o.prevKV, "prev-kv", false, "return the previous key-value pair before modification")
	fs.BoolVar(&o.ignoreVal, "ignore-value", false, "updates the key using its current value")
	fs.BoolVar(&o.ignoreLease, "ignore-lease", false, "updates the key using its current lease")
}

func (o *putOpts) op(args []string, stdin io.Reader) (key, value string, opts []clientv3.OpOption, err error) {
	if len(args) == 0 {
		return "", "", nil, exitf(ExitBadArgs, "put command needs 1 argument and input from stdin or 2 arguments")
	}
	key = args[0]
	if o.ignoreVal && len(args) > 1 {
		return "", "", nil, exitf(ExitBadArgs, "put command needs only 1 argument when 'ignore-value' is set")
	}
	if !o.ignoreVal {
		if len(args) > 1 {
			value = args[1]
		} else {
			if stdin == nil {
				return "", "", nil, exitf(ExitBadArgs, "put command needs 1 argument and input from stdin or 2 arguments")
			}
			b, rerr := io.ReadAll(stdin)
			if rerr != nil || len(b) == 0 {
				return "", "", nil, exitf(ExitBadArgs, "put command needs 1 argument and input from stdin or 2 arguments")
			}
			value = string(b)
		}
	}
	id, perr := strconv.ParseInt(o.lease, 16, 64)
	if perr != nil {
		return "", "", nil, exitf(ExitBadArgs, "bad lease ID (%v), expecting ID in Hex", perr)
	}
	if id != 0 {
		opts = append(opts, clientv3.WithLease(clientv3.LeaseID(id)))
	}
	if o.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	if o.ignoreVal {
		opts = append(opts, clientv3.WithIgnoreValue())
	}
	if o.ignoreLease {
		opts = append(opts, clientv3.WithIgnoreLease())
	}
	return key, value, opts, nil
}

func (r *Root) newPutCommand() *cobra.Command {
	var o putOpts
	cmd := &cobra.Command{
		Use:   "put [options] <key> <value> (<value> can also be given from stdin)",
		Short: "Puts the given key into the store",
		Long: `
Puts the given key into the store.

When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:

$ put <key> -- <value>
$ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not specified,
this command tries to read the value from standard input.

For example,
$ cat file | put <key>
will store the content of the file to <key>.
`,
		RunE: func(cmd *cobra.Command, args []string) error {
			key, value, opts, err := o.op(args, r.stdin)
			if err != nil {
				return err
			}
			p := r.printer()
			if p.format == "table" {
				return p.unsupported()
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.Put(ctx, key, value, opts...)
				if err != nil {
					return exitErr(ExitError, err)
				}
				return p.Put((*pb.PutResponse)(resp))
			})
		},
	}
	o.register(cmd)
	return cmd
}

type delOpts struct {
	prefix, prevKV, fromKey, rangeFlag bool
}

func (o *delOpts) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.BoolVar(&o.prefix, "prefix", false, "delete keys with matching prefix")
	fs.BoolVar(&o.prevKV, "prev-kv", false, "return deleted key-value pairs")
	fs.BoolVar(&o.fromKey, "from-key", false, "delete keys that are greater than or equal to the given key using byte compare")
	fs.BoolVar(&o.rangeFlag, "range", false, "delete range of keys (accepted for compatibility; cairnctl never waits)")
}

func (o *delOpts) op(args []string) (string, []clientv3.OpOption, error) {
	if len(args) == 0 || len(args) > 2 {
		return "", nil, exitf(ExitBadArgs, "del command needs one argument as key and an optional argument as range_end")
	}
	if o.prefix && o.fromKey {
		return "", nil, exitf(ExitBadArgs, "`--prefix` and `--from-key` cannot be set at the same time, choose one")
	}
	var opts []clientv3.OpOption
	key := args[0]
	if len(args) > 1 {
		if o.prefix || o.fromKey {
			return "", nil, exitf(ExitBadArgs, "too many arguments, only accept one argument when `--prefix` or `--from-key` is set")
		}
		opts = append(opts, clientv3.WithRange(args[1]))
	}
	if o.prefix {
		if key == "" {
			key = "\x00"
			opts = append(opts, clientv3.WithFromKey())
		} else {
			opts = append(opts, clientv3.WithPrefix())
		}
	}
	if o.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	if o.fromKey {
		if key == "" {
			key = "\x00"
		}
		opts = append(opts, clientv3.WithFromKey())
	}
	return key, opts, nil
}

func (r *Root) newDelCommand() *cobra.Command {
	var o delOpts
	cmd := &cobra.Command{
		Use:   "del [options] <key> [range_end]",
		Short: "Removes the specified key or range of keys [key, range_end)",
		RunE: func(cmd *cobra.Command, args []string) error {
			key, opts, err := o.op(args)
			if err != nil {
				return err
			}
			p := r.printer()
			if p.format == "table" {
				return p.unsupported()
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.Delete(ctx, key, opts...)
				if err != nil {
					return exitErr(ExitError, err)
				}
				return p.Del((*pb.DeleteRangeResponse)(resp))
			})
		},
	}
	o.register(cmd)
	return cmd
}

func (r *Root) newCompactionCommand() *cobra.Command {
	var physical bool
	cmd := &cobra.Command{
		Use:   "compaction [options] <revision>",
		Short: "Compacts the event history in etcd",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "compaction command needs 1 argument")
			}
			rev, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return exitErr(ExitError, err)
			}
			var opts []clientv3.CompactOption
			if physical {
				opts = append(opts, clientv3.WithCompactPhysical())
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				if _, err := c.Compact(ctx, rev, opts...); err != nil {
					return exitErr(ExitError, err)
				}
				fmt.Fprintf(r.stdout, "compacted revision %v\n", rev)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&physical, "physical", false, "'true' to wait for compaction to physically remove all old revisions")
	return cmd
}

func (r *Root) newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Prints the version of cairnctl",
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprint(r.stdout, versionText())
			return nil
		},
	}
}
