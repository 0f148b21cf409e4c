// Command cairnctl is the command-line client for cairn, a drop-in for
// etcdctl v3: the same commands, flags, ETCDCTL_* variables, exit codes and
// output formats. The work is done by package internal/ctl; the services
// command (the registry that cairn-warden keeps) comes from
// internal/warden/servicescmd.
package main

import (
	"os"

	"github.com/cairn-kv/cairn/internal/ctl"
	"github.com/cairn-kv/cairn/internal/warden/servicescmd"
)

func main() {
	r := ctl.NewRoot()
	r.AddCommand(servicescmd.NewCommand(r.Client, r.Stdout()))
	os.Exit(r.Execute(os.Args[1:], os.Environ()))
}
