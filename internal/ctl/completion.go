package ctl

import (
	"github.com/spf13/cobra"
)

func (r *Root) newCompletionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "completion <shell>",
		Short: "Generate the autocompletion script for the specified shell",
	}
	for _, sh := range []struct {
		name, short string
		gen         func() error
	}{
		{"bash", "Generate the autocompletion script for bash", func() error { return r.cmd.GenBashCompletionV2(r.stdout, true) }},
		{"zsh", "Generate the autocompletion script for zsh", func() error { return r.cmd.GenZshCompletion(r.stdout) }},
		{"fish", "Generate the autocompletion script for fish", func() error { return r.cmd.GenFishCompletion(r.stdout, true) }},
		{"powershell", "Generate the autocompletion script for powershell", func() error { return r.cmd.GenPowerShellCompletionWithDesc(r.stdout) }},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:   sh.name,
			Short: sh.short,
			Args:  cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				return exitErr(ExitIO, sh.gen())
			},
		})
	}
	return cmd
}
