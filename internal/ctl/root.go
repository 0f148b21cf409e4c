// Package ctl is cairnctl: a command-line client for cairn (and any etcd v3
// server) that is a drop-in for etcdctl v3. Commands, flags, ETCDCTL_*
// environment variables, exit codes and the simple, json and fields output
// formats follow etcdctl, so scripts written for etcdctl keep working.
//
// # Order of operations
//
// Main builds the command tree (NewRoot), applies ETCDCTL_* variables to the
// global flags that were not given on the command line, and runs the
// command. Every command that talks to a server builds its client from the
// global flags (Root.Client) when it runs, never before, so that bad usage is
// reported without dialing. A command returns an error; Main prints it as
// etcdctl does ("Error: ..." on stderr) and exits with the error's code
// (ExitError and friends, etcdctl's values).
//
// # Extending
//
// Another package adds a top-level command with Root.AddCommand before
// Execute; its RunE can call Root.Client and Root.CommandContext to reach
// the cluster with the user's global flags, print to Root.Stdout, and
// return a *CodeError to pick the exit code:
//
//	r := ctl.NewRoot()
//	r.AddCommand(warden.NewServicesCommand(r)) // its RunE calls r.Client()
//	os.Exit(r.Execute(os.Args[1:], os.Environ()))
package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes, etcdctl's values.
const (
	ExitSuccess       = 0
	ExitError         = 1
	ExitBadConnection = 2
	ExitInvalidInput  = 3 // txn and watch input
	ExitBadFeature    = 4 // a valid flag with an unsupported value
	ExitInterrupted   = 5
	ExitIO            = 6
	ExitBadArgs       = 128
)

// CodeError is an error with the process exit code it should produce.
type CodeError struct {
	Code int
	Err  error
}

func (e *CodeError) Error() string { return e.Err.Error() }
func (e *CodeError) Unwrap() error { return e.Err }

// errSilent marks a failure already reported on stdout (check perf's
// FAIL): the exit code says it, no "Error:" line follows.
var errSilent = errors.New("failed")

// exitf returns an *CodeError with code and a formatted message.
func exitf(code int, format string, a ...any) error {
	return &CodeError{Code: code, Err: fmt.Errorf(format, a...)}
}

// exitErr wraps err with code (nil stays nil).
func exitErr(code int, err error) error {
	if err == nil {
		return nil
	}
	var ee *CodeError
	if errors.As(err, &ee) {
		return err
	}
	return &CodeError{Code: code, Err: err}
}

// Root is cairnctl's command tree and its global flags.
type Root struct {
	cmd *cobra.Command
	g   globalFlags

	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// NewRoot builds the full command tree. extra commands are added at the top
// level (the same as calling AddCommand).
func NewRoot(extra ...*cobra.Command) *Root {
	r := &Root{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	r.cmd = &cobra.Command{
		Use:           "cairnctl",
		Short:         "A simple command line client for cairn and etcd v3.",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	r.cmd.SetOut(r.stdout)
	r.cmd.SetErr(r.stderr)
	r.g.register(r.cmd.PersistentFlags())
	r.cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		// etcdctl prints the command's usage on stdout, then the error.
		fmt.Fprintln(r.stdout, c.UsageString())
		return &CodeError{Code: ExitError, Err: err}
	})
	r.cmd.SetUsageTemplate(usageTemplate)
	r.cmd.SetHelpTemplate(helpTemplate)
	cobra.AddTemplateFunc("ctlCommands", leafCommands)
	cobra.AddTemplateFunc("ctlUseLine", useLine)
	cobra.AddTemplateFunc("ctlIndent", indent)
	cobra.AddTemplateFunc("ctlVersion", func() string { return versionLine() })

	r.cmd.AddCommand(
		r.newGetCommand(),
		r.newPutCommand(),
		r.newDelCommand(),
		r.newTxnCommand(),
		r.newCompactionCommand(),
		r.newWatchCommand(),
		r.newLeaseCommand(),
		r.newMemberCommand(),
		r.newEndpointCommand(),
		r.newAlarmCommand(),
		r.newDefragCommand(),
		r.newMoveLeaderCommand(),
		r.newSnapshotCommand(),
		r.newLockCommand(),
		r.newElectCommand(),
		r.newMakeMirrorCommand(),
		r.newCheckCommand(),
		r.newUserCommand(),
		r.newRoleCommand(),
		r.newAuthCommand(),
		r.newVersionCommand(),
		r.newCompletionCommand(),
	)
	r.cmd.CompletionOptions.DisableDefaultCmd = true
	for _, c := range extra {
		r.AddCommand(c)
	}
	return r
}

// AddCommand adds a top-level command (for example the warden's
// "services"). Call it before Execute. The command sees the global flags;
// its RunE may use r.Client and r.CommandContext.
//
// A command's own PersistentPreRun(E) would hide the root's, which
// applies the ETCDCTL_* variables: AddCommand wraps it so both run.
func (r *Root) AddCommand(c *cobra.Command) {
	if pre := c.PersistentPreRunE; pre != nil {
		c.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
			if err := r.preRun(cmd); err != nil {
				return err
			}
			return pre(cmd, args)
		}
	} else if pre := c.PersistentPreRun; pre != nil {
		c.PersistentPreRun = nil
		c.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
			if err := r.preRun(cmd); err != nil {
				return err
			}
			pre(cmd, args)
			return nil
		}
	}
	r.cmd.AddCommand(c)
}

// preRun applies the environment to the global flags once flags are parsed.
func (r *Root) preRun(c *cobra.Command) error {
	return r.g.applyEnv(c.Root().PersistentFlags(), r.g.env)
}

// Command returns the root cobra command.
func (r *Root) Command() *cobra.Command { return r.cmd }

// SetIO replaces stdin, stdout and stderr (tests, embedding).
func (r *Root) SetIO(stdin io.Reader, stdout, stderr io.Writer) {
	r.stdin, r.stdout, r.stderr = stdin, stdout, stderr
	r.cmd.SetIn(stdin)
	r.cmd.SetOut(stdout)
	r.cmd.SetErr(stderr)
}

// Stdout is where commands print their results.
func (r *Root) Stdout() io.Writer { return r.stdout }

// CommandContext returns a context bounded by --command-timeout.
func (r *Root) CommandContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.g.commandTimeout)
}

// Main runs cairnctl with args (without the program name) and the process
// environment, and returns the exit code.
func Main(args []string, extra ...*cobra.Command) int {
	return NewRoot(extra...).Execute(args, os.Environ())
}

// Execute runs the command line args with the environment env
// ("KEY=value" strings) and returns the exit code.
func (r *Root) Execute(args, env []string) int {
	r.g.env = env
	r.cmd.SetArgs(args)
	r.cmd.PersistentPreRunE = func(c *cobra.Command, _ []string) error { return r.preRun(c) }
	err := r.cmd.Execute()
	if err == nil {
		return ExitSuccess
	}
	code := ExitError
	var ee *CodeError
	if errors.As(err, &ee) {
		code = ee.Code
	}
	if errors.Is(err, errSilent) {
		return code
	}
	msg := err.Error()
	fmt.Fprintf(r.stderr, "Error: %s\n", msg)
	if strings.HasPrefix(msg, "unknown command") {
		fmt.Fprintf(r.stderr, "Run '%s --help' for usage.\n", r.cmd.CommandPath())
	}
	if h := hint(err, r.g.endpoints); h != "" {
		fmt.Fprintln(r.stderr, h)
	}
	return code
}

// applyEnv sets every global flag not given on the command line from its
// ETCDCTL_* variable (ETCDCTL_DIAL_TIMEOUT for --dial-timeout). A variable
// and a flag for the same setting is an error, as in etcdctl.
// ETCDCTL_API is accepted and ignored: cairnctl speaks API v3 only.
func (g *globalFlags) applyEnv(fs *pflag.FlagSet, env []string) error {
	vals := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, "ETCDCTL_") {
			vals[k] = v
		}
	}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil {
			return
		}
		key := "ETCDCTL_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := vals[key]
		if !ok || v == "" {
			return
		}
		if f.Changed {
			err = exitf(ExitError, "conflicting environment variable %q is shadowed by corresponding command-line flag (either unset environment variable or disable flag)", key)
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = exitf(ExitBadArgs, "invalid value %q for %s: %v", v, key, serr)
		}
	})
	if err != nil {
		return err
	}
	return g.validate()
}
