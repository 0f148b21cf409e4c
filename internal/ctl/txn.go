package ctl

import (
	"bufio"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (r *Root) newTxnCommand() *cobra.Command {
	var interactive bool
	cmd := &cobra.Command{
		Use:   "txn [options]",
		Short: "Txn processes all the requests in one transaction",
		Long: `Txn reads multiple etcd requests from standard input and applies them as a single atomic transaction.

A transaction consists of three components:
1) a list of conditions,
2) a list of requests to apply if all the conditions are true,
3) a list of requests to apply if any condition is false.

Each list ends with an empty line. Example input:

mod("key1") > "0"

put key1 "overwrote-key1"

put key1 "created-key1"
put key2 "some extra key"

Comparisons: ver|version, c|create, m|mod, val|value, lease ("key") =|!=|<|> "operand".
Requests: get, put and del with their flags.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return exitf(ExitBadArgs, "txn command does not accept argument")
			}
			p := r.printer()
			if p.format == "table" {
				return p.unsupported()
			}
			in := bufio.NewReader(r.stdin)
			prompt := func(s string) {
				if interactive {
					fmt.Fprintln(r.stdout, s)
				}
			}
			prompt("compares:")
			cmps, err := readCompares(in)
			if err != nil {
				return err
			}
			prompt("success requests (get, put, del):")
			thenOps, err := readOps(in)
			if err != nil {
				return err
			}
			prompt("failure requests (get, put, del):")
			elseOps, err := readOps(in)
			if err != nil {
				return err
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.Txn(ctx).If(cmps...).Then(thenOps...).Else(elseOps...).Commit()
				if err != nil {
					return exitErr(ExitError, err)
				}
				return p.Txn((*pb.TxnResponse)(resp))
			})
		},
	}
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "Input transaction in interactive mode")
	return cmd
}

// readLines reads trimmed lines up to the first empty one. Running out of
// input before it is an error (etcdctl exits with EOF too).
func readSection(in *bufio.Reader, fn func(line string) error) error {
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			return exitErr(ExitInvalidInput, err)
		}
		line = strings.TrimSpace(line)
		if line == "" {
			return nil
		}
		if err := fn(line); err != nil {
			return exitErr(ExitInvalidInput, err)
		}
	}
}

func readCompares(in *bufio.Reader) ([]clientv3.Cmp, error) {
	var cmps []clientv3.Cmp
	err := readSection(in, func(line string) error {
		c, err := parseCompare(line)
		if err != nil {
			return err
		}
		cmps = append(cmps, *c)
		return nil
	})
	return cmps, err
}

func readOps(in *bufio.Reader) ([]clientv3.Op, error) {
	var ops []clientv3.Op
	err := readSection(in, func(line string) error {
		op, err := parseRequest(line)
		if err != nil {
			return err
		}
		ops = append(ops, op)
		return nil
	})
	return ops, err
}

var argRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s]\S*[^'"\s]?`)

// argify splits a line into words as etcdctl does: "double quoted" strings
// with Go escapes, 'single quoted' strings verbatim, or bare words.
func argify(s string) ([]string, error) {
	args := argRE.FindAllString(s, -1)
	for i, a := range args {
		switch {
		case a == "":
		case a[0] == '\'':
			args[i] = a[1 : len(a)-1]
		case a[0] == '"':
			u, err := strconv.Unquote(a)
			if err != nil {
				return nil, fmt.Errorf("bad quoted string %s: %v", a, err)
			}
			args[i] = u
		}
	}
	return args, nil
}

// parseRequest parses one "get|put|del ..." line of a transaction, with
// the same flags as the commands.
func parseRequest(line string) (clientv3.Op, error) {
	args, err := argify(line)
	if err != nil {
		return clientv3.Op{}, err
	}
	if len(args) < 2 {
		return clientv3.Op{}, fmt.Errorf("invalid txn compare request: %s", line)
	}
	var (
		op    clientv3.Op
		opErr error
	)
	var g getOpts
	get := &cobra.Command{Use: "get", RunE: func(_ *cobra.Command, a []string) error {
		key, opts, err := g.op(a)
		op, opErr = clientv3.OpGet(key, opts...), err
		return nil
	}}
	g.register(get)
	var pu putOpts
	put := &cobra.Command{Use: "put", RunE: func(_ *cobra.Command, a []string) error {
		key, val, opts, err := pu.op(a, nil)
		op, opErr = clientv3.OpPut(key, val, opts...), err
		return nil
	}}
	pu.register(put)
	var d delOpts
	del := &cobra.Command{Use: "del", RunE: func(_ *cobra.Command, a []string) error {
		key, opts, err := d.op(a)
		op, opErr = clientv3.OpDelete(key, opts...), err
		return nil
	}}
	d.register(del)
	root := &cobra.Command{Use: "txn", SilenceErrors: true, SilenceUsage: true}
	root.AddCommand(get, put, del)
	root.SetArgs(args)
	root.SetOut(discard{})
	root.SetErr(discard{})
	if err := root.Execute(); err != nil {
		return clientv3.Op{}, fmt.Errorf("invalid txn request: %s", line)
	}
	if opErr != nil {
		// etcdctl reports the request's own usage error (and its code).
		return clientv3.Op{}, opErr
	}
	return op, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// parseCompare parses `target("key") op "value"`.
func parseCompare(line string) (*clientv3.Cmp, error) {
	var key, op, val string
	target, rest, ok := strings.Cut(line, "(")
	if !ok {
		return nil, fmt.Errorf("malformed comparison: %s", line)
	}
	n, serr := fmt.Sscanf(rest, "%q) %s %q", &key, &op, &val)
	if n != 3 {
		return nil, fmt.Errorf("malformed comparison: %s; got %s(%q) %s %q", line, target, key, op, val)
	}
	if serr != nil {
		return nil, fmt.Errorf("malformed comparison: %s (%v)", line, serr)
	}
	switch op {
	case "=", "!=", "<", ">":
	default:
		return nil, fmt.Errorf("malformed comparison: %s (unknown op %s)", line, op)
	}
	var (
		v   int64
		err error
		cmp clientv3.Cmp
	)
	switch target {
	case "ver", "version":
		if v, err = strconv.ParseInt(val, 10, 64); err == nil {
			cmp = clientv3.Compare(clientv3.Version(key), op, v)
		}
	case "c", "create":
		if v, err = strconv.ParseInt(val, 10, 64); err == nil {
			cmp = clientv3.Compare(clientv3.CreateRevision(key), op, v)
		}
	case "m", "mod":
		if v, err = strconv.ParseInt(val, 10, 64); err == nil {
			cmp = clientv3.Compare(clientv3.ModRevision(key), op, v)
		}
	case "val", "value":
		cmp = clientv3.Compare(clientv3.Value(key), op, val)
	case "lease":
		if v, err = strconv.ParseInt(val, 16, 64); err == nil {
			cmp = clientv3.Compare(clientv3.LeaseValue(key), op, v)
		}
	default:
		return nil, fmt.Errorf("malformed comparison: %s (unknown target %s)", line, target)
	}
	if err != nil {
		return nil, fmt.Errorf("invalid txn compare request: %s", line)
	}
	return &cmp, nil
}
