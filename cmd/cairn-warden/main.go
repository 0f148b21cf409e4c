// Command cairn-warden is the auto-recovery supervisor: it keeps the
// services of its configuration running, registered in cairn, restarted
// when they die, and failed over between wardens of a group. See
// docs/warden.md and package internal/warden.
package main

import (
	"fmt"
	"os"

	"github.com/cairn-kv/cairn/internal/warden"
)

func main() {
	if err := warden.NewCommand().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "cairn-warden: %v\n", err)
		os.Exit(1)
	}
}
