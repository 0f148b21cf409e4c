// Command cairnctl is the command-line client for cairn, a drop-in for
// etcdctl v3: the same commands, flags, ETCDCTL_* variables, exit codes and
// output formats. The work is done by package internal/ctl.
package main

import (
	"os"

	"github.com/cairn-kv/cairn/internal/ctl"
)

func main() {
	os.Exit(ctl.Main(os.Args[1:]))
}
