package ctl

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// authCall runs fn with a client and the command timeout; the error gets
// ExitError.
func (r *Root) authCall(fn func(ctx context.Context, c *clientv3.Client) error) error {
	return r.withClient(func(c *clientv3.Client) error {
		ctx, cancel := r.CommandContext()
		defer cancel()
		return exitErr(ExitError, fn(ctx, c))
	})
}

// headerOnly prints a response that carries nothing but its header:
// simple prints msg, json the response, fields the header.
func (p *printer) headerOnly(msg string, h *pb.ResponseHeader, resp any) error {
	switch p.format {
	case "simple":
		p.println(msg)
	case "json":
		return p.json(resp)
	case "fields":
		p.fieldsHeader(h)
	default:
		return p.unsupported()
	}
	return nil
}

func (r *Root) newAuthCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "auth <enable or disable>", Short: "Enable or disable authentication"}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "enable",
			Short: "Enables authentication",
			RunE: func(cmd *cobra.Command, args []string) error {
				if len(args) != 0 {
					return exitf(ExitBadArgs, "auth enable command does not accept any arguments")
				}
				return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
					if _, err := c.AuthEnable(ctx); err != nil {
						return err
					}
					fmt.Fprintln(r.stdout, "Authentication Enabled")
					return nil
				})
			},
		},
		&cobra.Command{
			Use:   "disable",
			Short: "Disables authentication",
			RunE: func(cmd *cobra.Command, args []string) error {
				if len(args) != 0 {
					return exitf(ExitBadArgs, "auth disable command does not accept any arguments")
				}
				return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
					if _, err := c.AuthDisable(ctx); err != nil {
						return err
					}
					fmt.Fprintln(r.stdout, "Authentication Disabled")
					return nil
				})
			},
		},
		&cobra.Command{
			Use:   "status",
			Short: "Returns authentication status",
			RunE: func(cmd *cobra.Command, args []string) error {
				if len(args) != 0 {
					return exitf(ExitBadArgs, "auth status command does not accept any arguments")
				}
				return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
					resp, err := c.AuthStatus(ctx)
					if err != nil {
						return err
					}
					p := r.printer()
					switch p.format {
					case "simple":
						p.printf("Authentication Status: %t\nAuthRevision: %d\n", resp.Enabled, resp.AuthRevision)
					case "json":
						return p.json((*pb.AuthStatusResponse)(resp))
					case "fields":
						p.fieldsHeader(resp.Header)
						p.println(`"Enabled" :`, resp.Enabled)
						p.println(`"AuthRevision" :`, resp.AuthRevision)
					default:
						return p.unsupported()
					}
					return nil
				})
			},
		},
	)
	return cmd
}

// readNewPassword asks for a password twice on a terminal, or reads one
// line from stdin otherwise.
func (r *Root) readNewPassword(name string, interactive bool) (string, error) {
	if !interactive {
		line, err := bufio.NewReader(r.stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", exitf(ExitBadArgs, "reading the password of %s from stdin: %v", name, err)
		}
		return strings.TrimSpace(line), nil
	}
	p1, err := readPassword(r, fmt.Sprintf("Password of %s: ", name))
	if err != nil {
		return "", exitErr(ExitBadArgs, err)
	}
	if p1 == "" {
		return "", exitf(ExitBadArgs, "empty password")
	}
	p2, err := readPassword(r, fmt.Sprintf("Type password of %s again for confirmation: ", name))
	if err != nil {
		return "", exitErr(ExitBadArgs, err)
	}
	if p1 != p2 {
		return "", exitf(ExitBadArgs, "given passwords are different")
	}
	return p1, nil
}

func (r *Root) newUserCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "user <subcommand>", Short: "User related commands"}

	var interactive, noPassword bool
	var newPassword string
	add := &cobra.Command{
		Use:   "add <user name or user:password> [options]",
		Short: "Adds a new user",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "user add command requires user name as its argument")
			}
			name, pass, hasPass := strings.Cut(args[0], ":")
			switch {
			case noPassword:
				pass = ""
			case newPassword != "":
				pass = newPassword
			case !hasPass:
				p, err := r.readNewPassword(name, interactive)
				if err != nil {
					return err
				}
				pass = p
			}
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				var resp *clientv3.AuthUserAddResponse
				var err error
				if noPassword {
					resp, err = c.UserAddWithOptions(ctx, name, "", &clientv3.UserAddOptions{NoPassword: true})
				} else {
					resp, err = c.UserAdd(ctx, name, pass)
				}
				if err != nil {
					return err
				}
				return r.printer().headerOnly("User "+name+" created", resp.Header, (*pb.AuthUserAddResponse)(resp))
			})
		},
	}
	add.Flags().BoolVar(&interactive, "interactive", true, "Read password from stdin instead of interactive terminal")
	add.Flags().StringVar(&newPassword, "new-user-password", "", "Supply password from the command line flag")
	add.Flags().BoolVar(&noPassword, "no-password", false, "Create a user without password (CN based auth only)")

	del := &cobra.Command{
		Use:   "delete <user name>",
		Short: "Deletes a user",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "user delete command requires user name as its argument")
			}
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				resp, err := c.UserDelete(ctx, args[0])
				if err != nil {
					return err
				}
				return r.printer().headerOnly("User "+args[0]+" deleted", resp.Header, (*pb.AuthUserDeleteResponse)(resp))
			})
		},
	}

	var detail bool
	get := &cobra.Command{
		Use:   "get <user name> [options]",
		Short: "Gets detailed information of a user",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "user get command requires user name as its argument")
			}
			name := args[0]
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				resp, err := c.UserGet(ctx, name)
				if err != nil {
					return err
				}
				p := r.printer()
				if detail {
					fmt.Fprintf(r.stdout, "User: %s\n", name)
					for _, role := range resp.Roles {
						fmt.Fprintln(r.stdout)
						rr, err := c.RoleGet(ctx, role)
						if err != nil {
							return err
						}
						if err := p.RoleGet(role, (*pb.AuthRoleGetResponse)(rr)); err != nil {
							return err
						}
					}
					return nil
				}
				switch p.format {
				case "simple":
					p.printf("User: %s\nRoles:", name)
					for _, role := range resp.Roles {
						p.printf(" %s", role)
					}
					p.println()
				case "json":
					return p.json((*pb.AuthUserGetResponse)(resp))
				default:
					return p.unsupported()
				}
				return nil
			})
		},
	}
	get.Flags().BoolVar(&detail, "detail", false, "Show permissions of roles granted to the user")

	list := &cobra.Command{
		Use:   "list",
		Short: "Lists all users",
		RunE: func(cmd *cobra.Command, args []string) error {
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				resp, err := c.UserList(ctx)
				if err != nil {
					return err
				}
				p := r.printer()
				switch p.format {
				case "simple":
					for _, u := range resp.Users {
						p.println(u)
					}
				case "json":
					return p.json((*pb.AuthUserListResponse)(resp))
				default:
					return p.unsupported()
				}
				return nil
			})
		},
	}

	var pwInteractive bool
	passwd := &cobra.Command{
		Use:   "passwd <user name> [options]",
		Short: "Changes password of user",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "user passwd command requires user name as its argument")
			}
			pass, err := r.readNewPassword(args[0], pwInteractive)
			if err != nil {
				return err
			}
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				resp, err := c.UserChangePassword(ctx, args[0], pass)
				if err != nil {
					return err
				}
				return r.printer().headerOnly("Password updated", resp.Header, (*pb.AuthUserChangePasswordResponse)(resp))
			})
		},
	}
	passwd.Flags().BoolVar(&pwInteractive, "interactive", true, "If true, read password interactively instead of from stdin")

	grant := &cobra.Command{
		Use:   "grant-role <user name> <role name>",
		Short: "Grants a role to a user",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return exitf(ExitBadArgs, "user grant command requires user name and role name as its argument")
			}
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				resp, err := c.UserGrantRole(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				return r.printer().headerOnly(fmt.Sprintf("Role %s is granted to user %s", args[1], args[0]), resp.Header, (*pb.AuthUserGrantRoleResponse)(resp))
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke-role <user name> <role name>",
		Short: "Revokes a role from a user",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return exitf(ExitBadArgs, "user revoke-role requires user name and role name as its argument")
			}
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				resp, err := c.UserRevokeRole(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				return r.printer().headerOnly(fmt.Sprintf("Role %s is revoked from user %s", args[1], args[0]), resp.Header, (*pb.AuthUserRevokeRoleResponse)(resp))
			})
		},
	}
	cmd.AddCommand(add, del, get, list, passwd, grant, revoke)
	return cmd
}

// RoleGet prints a role's permissions.
func (p *printer) RoleGet(role string, r *pb.AuthRoleGetResponse) error {
	switch p.format {
	case "simple":
		p.printf("Role %s\n", role)
		section := func(title string, types ...authpb.Permission_Type) {
			p.println(title)
			for _, perm := range r.Perm {
				match := false
				for _, t := range types {
					match = match || perm.PermType == t
				}
				if !match {
					continue
				}
				key, end := string(perm.Key), string(perm.RangeEnd)
				if end == "" {
					p.printf("\t%s\n", key)
					continue
				}
				if end != "\x00" {
					p.printf("\t[%s, %s)", key, end)
				} else {
					p.printf("\t[%s, <open ended>", key)
				}
				if clientv3.GetPrefixRangeEnd(key) == end {
					p.printf(" (prefix %s)", key)
				}
				p.println()
			}
		}
		section("KV Read:", authpb.Permission_READ, authpb.Permission_READWRITE)
		section("KV Write:", authpb.Permission_WRITE, authpb.Permission_READWRITE)
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.Header)
		for _, perm := range r.Perm {
			p.println(`"PermType" : `, perm.PermType.String())
			p.printf("\"Key\" : %q\n", string(perm.Key))
			p.printf("\"RangeEnd\" : %q\n", string(perm.RangeEnd))
		}
	default:
		return p.unsupported()
	}
	return nil
}

// permRange turns role permission arguments into a key and range end, as
// etcdctl does (an empty key with --prefix or --from-key is the whole
// key space).
func permRange(args []string, prefix, fromKey bool) (string, string, error) {
	if prefix && fromKey {
		return "", "", exitf(ExitBadArgs, "--from-key and --prefix flags are mutually exclusive")
	}
	key := args[0]
	if key == "" {
		if prefix || fromKey {
			return "\x00", "\x00", nil
		}
		return "\x00", "", nil
	}
	if len(args) == 1 {
		switch {
		case prefix:
			return key, clientv3.GetPrefixRangeEnd(key), nil
		case fromKey:
			return key, "\x00", nil
		}
		return key, "", nil
	}
	if prefix {
		return "", "", exitf(ExitBadArgs, "unexpected endkey argument with --prefix flag")
	}
	if fromKey {
		return "", "", exitf(ExitBadArgs, "unexpected endkey argument with --from-key flag")
	}
	return key, args[1], nil
}

func (r *Root) newRoleCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "role <subcommand>", Short: "Role related commands"}
	add := &cobra.Command{
		Use:   "add <role name>",
		Short: "Adds a new role",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "role add command requires role name as its argument")
			}
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				resp, err := c.RoleAdd(ctx, args[0])
				if err != nil {
					return err
				}
				return r.printer().headerOnly("Role "+args[0]+" created", resp.Header, (*pb.AuthRoleAddResponse)(resp))
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete <role name>",
		Short: "Deletes a role",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "role delete command requires role name as its argument")
			}
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				resp, err := c.RoleDelete(ctx, args[0])
				if err != nil {
					return err
				}
				return r.printer().headerOnly("Role "+args[0]+" deleted", resp.Header, (*pb.AuthRoleDeleteResponse)(resp))
			})
		},
	}
	get := &cobra.Command{
		Use:   "get <role name>",
		Short: "Gets detailed information of a role",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return exitf(ExitBadArgs, "role get command requires role name as its argument")
			}
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				resp, err := c.RoleGet(ctx, args[0])
				if err != nil {
					return err
				}
				return r.printer().RoleGet(args[0], (*pb.AuthRoleGetResponse)(resp))
			})
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "Lists all roles",
		RunE: func(cmd *cobra.Command, args []string) error {
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				resp, err := c.RoleList(ctx)
				if err != nil {
					return err
				}
				p := r.printer()
				switch p.format {
				case "simple":
					for _, role := range resp.Roles {
						p.println(role)
					}
				case "json":
					return p.json((*pb.AuthRoleListResponse)(resp))
				case "fields":
					p.fieldsHeader(resp.Header)
					p.printf(`"Roles" :`)
					for _, role := range resp.Roles {
						p.printf(" %q", role)
					}
					p.println()
				default:
					return p.unsupported()
				}
				return nil
			})
		},
	}
	var gPrefix, gFromKey bool
	grant := &cobra.Command{
		Use:   "grant-permission [options] <role name> <permission type> <key> [endkey]",
		Short: "Grants a key to a role",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 3 || len(args) > 4 {
				return exitf(ExitBadArgs, "role grant command requires role name, permission type, and key [endkey] as its argument")
			}
			perm, err := clientv3.StrToPermissionType(args[1])
			if err != nil {
				return exitErr(ExitBadArgs, err)
			}
			key, end, err := permRange(args[2:], gPrefix, gFromKey)
			if err != nil {
				return err
			}
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				resp, err := c.RoleGrantPermission(ctx, args[0], key, end, perm)
				if err != nil {
					return err
				}
				return r.printer().headerOnly("Role "+args[0]+" updated", resp.Header, (*pb.AuthRoleGrantPermissionResponse)(resp))
			})
		},
	}
	grant.Flags().BoolVar(&gPrefix, "prefix", false, "grant a prefix permission")
	grant.Flags().BoolVar(&gFromKey, "from-key", false, "grant a permission of keys that are greater than or equal to the given key using byte compare")
	var rPrefix, rFromKey bool
	revoke := &cobra.Command{
		Use:   "revoke-permission <role name> <key> [endkey]",
		Short: "Revokes a key from a role",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || len(args) > 3 {
				return exitf(ExitBadArgs, "role revoke-permission command requires role name and key [endkey] as its argument")
			}
			key, end, err := permRange(args[1:], rPrefix, rFromKey)
			if err != nil {
				return err
			}
			return r.authCall(func(ctx context.Context, c *clientv3.Client) error {
				resp, err := c.RoleRevokePermission(ctx, args[0], key, end)
				if err != nil {
					return err
				}
				msg := fmt.Sprintf("Permission of key %s is revoked from role %s", key, args[0])
				switch {
				case end == "\x00":
					msg = fmt.Sprintf("Permission of range [%s, <open ended> is revoked from role %s", key, args[0])
				case end != "":
					msg = fmt.Sprintf("Permission of range [%s, %s) is revoked from role %s", key, end, args[0])
				}
				return r.printer().headerOnly(msg, resp.Header, (*pb.AuthRoleRevokePermissionResponse)(resp))
			})
		},
	}
	revoke.Flags().BoolVar(&rPrefix, "prefix", false, "revoke a prefix permission")
	revoke.Flags().BoolVar(&rFromKey, "from-key", false, "revoke a permission of keys that are greater than or equal to the given key using byte compare")
	cmd.AddCommand(add, del, get, list, grant, revoke)
	return cmd
}
