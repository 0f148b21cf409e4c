package ctl

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func memberID(args []string) (uint64, error) {
	if len(args) != 1 {
		return 0, exitf(ExitBadArgs, "member ID is not provided")
	}
	id, err := strconv.ParseUint(args[0], 16, 64)
	if err != nil {
		return 0, exitf(ExitBadArgs, "bad member ID arg (%v), expecting ID in Hex", err)
	}
	return id, nil
}

func splitURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

func (r *Root) newMemberCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "member <subcommand>", Short: "Membership related commands"}

	var addPeers string
	var learner bool
	add := &cobra.Command{
		Use:   "add <memberName> [options]",
		Short: "Adds a member into the cluster",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return exitf(ExitBadArgs, "member name not provided")
			}
			if len(args) > 1 {
				return exitf(ExitBadArgs, "too many arguments, did you mean --peer-urls=%s", strings.Join(args[1:], ","))
			}
			name := args[0]
			if addPeers == "" {
				return exitf(ExitBadArgs, "member peer urls not provided")
			}
			urls := splitURLs(addPeers)
			p := r.printer()
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				var resp *clientv3.MemberAddResponse
				var err error
				if learner {
					resp, err = c.MemberAddAsLearner(ctx, urls)
				} else {
					resp, err = c.MemberAdd(ctx, urls)
				}
				if err != nil {
					return exitErr(ExitError, err)
				}
				if err := p.memberChange("added", resp.Member.ID, resp.Member.IsLearner, resp.Header, (*pb.MemberAddResponse)(resp)); err != nil {
					return err
				}
				if p.format != "simple" {
					return nil
				}
				var conf []string
				for _, m := range resp.Members {
					for _, u := range m.PeerURLs {
						n := m.Name
						if m.ID == resp.Member.ID {
							n = name
						}
						conf = append(conf, fmt.Sprintf("%s=%s", n, u))
					}
				}
				fmt.Fprint(r.stdout, "\n")
				fmt.Fprintf(r.stdout, "ETCD_NAME=%q\n", name)
				fmt.Fprintf(r.stdout, "ETCD_INITIAL_CLUSTER=%q\n", strings.Join(conf, ","))
				fmt.Fprintf(r.stdout, "ETCD_INITIAL_ADVERTISE_PEER_URLS=%q\n", strings.Join(urls, ","))
				fmt.Fprintf(r.stdout, "ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n")
				return nil
			})
		},
	}
	add.Flags().StringVar(&addPeers, "peer-urls", "", "comma separated peer URLs for the new member.")
	add.Flags().BoolVar(&learner, "learner", false, "indicates if the new member is raft learner")

	remove := &cobra.Command{
		Use:   "remove <memberID>",
		Short: "Removes a member from the cluster",
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := memberID(args)
			if err != nil {
				return err
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.MemberRemove(ctx, id)
				if err != nil {
					return exitErr(ExitError, err)
				}
				return r.printer().memberChange("removed", id, false, resp.Header, (*pb.MemberRemoveResponse)(resp))
			})
		},
	}

	var updatePeers string
	update := &cobra.Command{
		Use:   "update <memberID> [options]",
		Short: "Updates a member in the cluster",
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := memberID(args)
			if err != nil {
				return err
			}
			if updatePeers == "" {
				return exitf(ExitBadArgs, "member peer urls not provided")
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.MemberUpdate(ctx, id, splitURLs(updatePeers))
				if err != nil {
					return exitErr(ExitError, err)
				}
				return r.printer().memberChange("updated", id, false, resp.Header, (*pb.MemberUpdateResponse)(resp))
			})
		},
	}
	update.Flags().StringVar(&updatePeers, "peer-urls", "", "comma separated peer URLs for the updated member.")

	var consistency string
	list := &cobra.Command{
		Use:   "list",
		Short: "Lists all members in the cluster",
		Long: `When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.
The items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner.
`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []clientv3.OpOption
			switch consistency {
			case "l":
			case "s":
				opts = append(opts, clientv3.WithSerializable())
			default:
				return exitf(ExitBadFeature, "unknown consistency flag %q", consistency)
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.MemberList(ctx, opts...)
				if err != nil {
					return exitErr(ExitError, err)
				}
				return r.printer().MemberList((*pb.MemberListResponse)(resp))
			})
		},
	}
	list.Flags().StringVar(&consistency, "consistency", "l", "Linearizable(l) or Serializable(s)")

	promote := &cobra.Command{
		Use:   "promote <memberID>",
		Short: "Promotes a non-voting member in the cluster",
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := memberID(args)
			if err != nil {
				return err
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.MemberPromote(ctx, id)
				if err != nil {
					return exitErr(ExitError, err)
				}
				return r.printer().memberChange("promoted", id, false, resp.Header, (*pb.MemberPromoteResponse)(resp))
			})
		},
	}
	cmd.AddCommand(add, remove, update, list, promote)
	return cmd
}

// endpoints returns the endpoints a per-endpoint command visits: the
// --endpoints list, or with cluster every client URL in the member list.
func (r *Root) endpoints(cluster bool) ([]string, error) {
	if !cluster {
		return r.g.endpoints, nil
	}
	c, err := r.Client()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := r.CommandContext()
	defer cancel()
	resp, err := c.MemberList(ctx)
	if err != nil {
		return nil, exitf(ExitError, "failed to fetch endpoints from etcd cluster member list: %v", err)
	}
	var eps []string
	for _, m := range resp.Members {
		eps = append(eps, m.ClientURLs...)
	}
	return eps, nil
}

// clientFor returns a client for exactly one endpoint.
func (r *Root) clientFor(ep string) (*clientv3.Client, error) {
	cfg, err := r.g.clientConfig(r)
	if err != nil {
		return nil, err
	}
	cfg.Endpoints = []string{ep}
	c, err := clientv3.New(*cfg)
	if err != nil {
		return nil, exitErr(ExitBadConnection, err)
	}
	return c, nil
}

func (r *Root) newEndpointCommand() *cobra.Command {
	var cluster bool
	cmd := &cobra.Command{Use: "endpoint <subcommand>", Short: "Endpoint related commands"}
	cmd.PersistentFlags().BoolVar(&cluster, "cluster", false, "use all endpoints from the cluster member list")

	health := &cobra.Command{
		Use:   "health",
		Short: "Checks the healthiness of endpoints specified in `--endpoints` flag",
		RunE: func(cmd *cobra.Command, args []string) error {
			eps, err := r.endpoints(cluster)
			if err != nil {
				return err
			}
			hs := make([]epHealth, len(eps))
			var wg sync.WaitGroup
			for i, ep := range eps {
				wg.Add(1)
				go func() {
					defer wg.Done()
					hs[i] = r.checkHealth(ep)
				}()
			}
			wg.Wait()
			if err := r.printer().EndpointHealth(hs, r.stderr); err != nil {
				return err
			}
			for _, h := range hs {
				if !h.Health {
					return exitf(ExitError, "unhealthy cluster")
				}
			}
			return nil
		},
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "Prints out the status of endpoints specified in `--endpoints` flag",
		Long: `When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors.
`,
		RunE: func(cmd *cobra.Command, args []string) error {
			eps, err := r.endpoints(cluster)
			if err != nil {
				return err
			}
			var list []epStatus
			var failed bool
			err = r.withClient(func(c *clientv3.Client) error {
				for _, ep := range eps {
					ctx, cancel := r.CommandContext()
					resp, serr := c.Status(ctx, ep)
					cancel()
					if serr != nil {
						failed = true
						fmt.Fprintf(r.stderr, "Failed to get the status of endpoint %s (%v)\n", ep, serr)
						continue
					}
					list = append(list, epStatus{Ep: ep, Resp: (*pb.StatusResponse)(resp)})
				}
				return nil
			})
			if err != nil {
				return err
			}
			if err := r.printer().EndpointStatus(list); err != nil {
				return err
			}
			if failed {
				// etcdctl exits 1 after the per-endpoint lines, with no
				// "Error:" line.
				return &CodeError{Code: ExitError, Err: errSilent}
			}
			return nil
		},
	}

	var rev int64
	hashkv := &cobra.Command{
		Use:   "hashkv",
		Short: "Prints the KV history hash for each endpoint in --endpoints",
		RunE: func(cmd *cobra.Command, args []string) error {
			eps, err := r.endpoints(cluster)
			if err != nil {
				return err
			}
			var list []epHashKV
			var last error
			err = r.withClient(func(c *clientv3.Client) error {
				for _, ep := range eps {
					ctx, cancel := r.CommandContext()
					resp, serr := c.HashKV(ctx, ep, rev)
					cancel()
					if serr != nil {
						last = serr
						fmt.Fprintf(r.stderr, "Failed to get the hash of endpoint %s (%v)\n", ep, serr)
						continue
					}
					list = append(list, epHashKV{Ep: ep, Resp: (*pb.HashKVResponse)(resp)})
				}
				return nil
			})
			if err != nil {
				return err
			}
			if err := r.printer().EndpointHashKV(list); err != nil {
				return err
			}
			return exitErr(ExitError, last)
		},
	}
	hashkv.Flags().Int64Var(&rev, "rev", 0, "maximum revision to hash (default: all revisions)")

	cmd.AddCommand(health, status, hashkv)
	return cmd
}

// checkHealth does what etcdctl's endpoint health does: a linearizable get
// (permission denied counts as healthy: it went through consensus), then
// no active alarms.
func (r *Root) checkHealth(ep string) epHealth {
	h := epHealth{Ep: ep}
	c, err := r.clientFor(ep)
	if err != nil {
		h.Error = err.Error()
		return h
	}
	defer c.Close()
	start := time.Now()
	ctx, cancel := r.CommandContext()
	defer cancel()
	_, err = c.Get(ctx, "health")
	if err == nil || errors.Is(err, rpctypes.ErrPermissionDenied) {
		h.Health = true
	} else {
		h.Error = err.Error()
	}
	if h.Health {
		resp, aerr := c.AlarmList(ctx)
		if aerr == nil && len(resp.Alarms) > 0 {
			h.Health = false
			var as []string
			for _, a := range resp.Alarms {
				as = append(as, a.Alarm.String())
			}
			h.Error = "Active Alarm(s): " + strings.Join(as, " ")
		} else if aerr != nil {
			h.Health = false
			h.Error = "Unable to fetch the alarm list"
		}
	}
	h.Took = time.Since(start).String()
	return h
}

func (r *Root) newAlarmCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "alarm <subcommand>", Short: "Alarm related commands"}
	disarm := &cobra.Command{
		Use:   "disarm",
		Short: "Disarms all alarms",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return exitf(ExitBadArgs, "alarm disarm command accepts no arguments")
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.AlarmDisarm(ctx, &clientv3.AlarmMember{})
				if err != nil {
					return exitErr(ExitError, err)
				}
				return r.printer().Alarm((*pb.AlarmResponse)(resp))
			})
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "Lists all alarms",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return exitf(ExitBadArgs, "alarm list command accepts no arguments")
			}
			return r.withClient(func(c *clientv3.Client) error {
				ctx, cancel := r.CommandContext()
				defer cancel()
				resp, err := c.AlarmList(ctx)
				if err != nil {
					return exitErr(ExitError, err)
				}
				return r.printer().Alarm((*pb.AlarmResponse)(resp))
			})
		},
	}
	cmd.AddCommand(disarm, list)
	return cmd
}

func (r *Root) newDefragCommand() *cobra.Command {
	var cluster bool
	var dataDir string
	cmd := &cobra.Command{
		Use:   "defrag",
		Short: "Defragments the storage of the etcd members with given endpoints",
		Long: `Defragments the storage of the members with given endpoints.

cairn stores its data in pebble, which reclaims space by background
compaction without stopping the member; defrag on cairn asks for a manual
compaction and returns when it is done. On etcd it is etcd's defragmentation.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir != "" {
				return exitf(ExitBadFeature, "offline defragmentation (--data-dir) is not supported by cairnctl: cairn compacts its storage online; run defrag against the member's endpoint instead")
			}
			eps, err := r.endpoints(cluster)
			if err != nil {
				return err
			}
			prog := newProgress(r.stderr)
			failures := 0
			err = r.withClient(func(c *clientv3.Client) error {
				for i, ep := range eps {
					prog.step(fmt.Sprintf("defragmenting %s (%d/%d)", ep, i+1, len(eps)))
					ctx, cancel := r.CommandContext()
					_, derr := c.Defragment(ctx, ep)
					cancel()
					prog.done()
					if derr != nil {
						fmt.Fprintf(r.stderr, "Failed to defragment etcd member[%s] (%v)\n", ep, derr)
						failures++
						continue
					}
					fmt.Fprintf(r.stdout, "Finished defragmenting etcd member[%s]\n", ep)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if failures > 0 {
				return &CodeError{Code: ExitError, Err: errSilent}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&cluster, "cluster", false, "use all endpoints from the cluster member list")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "Optional. If present, defragments a data directory not in use by etcd (not supported by cairnctl).")
	return cmd
}

func (r *Root) newMoveLeaderCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "move-leader <transferee-member-id>",
		Short: "Transfers leadership to another etcd cluster member.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "move-leader command needs 1 argument")
			}
			target, err := strconv.ParseUint(args[0], 16, 64)
			if err != nil {
				return exitErr(ExitBadArgs, err)
			}
			ctx, cancel := r.CommandContext()
			defer cancel()
			for _, ep := range r.g.endpoints {
				c, err := r.clientFor(ep)
				if err != nil {
					return err
				}
				st, serr := c.Status(ctx, ep)
				if serr != nil {
					c.Close()
					return exitErr(ExitError, serr)
				}
				if st.Header.GetMemberId() != st.Leader {
					c.Close()
					continue
				}
				resp, merr := c.MoveLeader(ctx, target)
				c.Close()
				if merr != nil {
					return exitErr(ExitError, merr)
				}
				return r.printer().MoveLeader(st.Leader, target, (*pb.MoveLeaderResponse)(resp))
			}
			return exitf(ExitBadArgs, "no leader endpoint given at %v", r.g.endpoints)
		},
	}
}
