// Package failpoint is cairn's crash points: named places in the server
// where a test can make the process panic, exit without flushing anything
// (as a kill would), or stall.
//
// # Use
//
// The code marks a point with one call:
//
//	failpoint.Hit("raft-before-save")
//
// and a test arms it through the environment of the server process:
//
//	CAIRN_FAILPOINTS="raft-before-save=exit"
//	CAIRN_FAILPOINTS="apply-after-commit=3*panic;compact-before-physical=sleep(200ms)"
//
// The value is a list of name=action terms separated by ';'. An action is
//
//	panic       panic with a message naming the point
//	exit        write one line to stderr, then os.Exit(ExitCode) at once:
//	            no deferred call runs and nothing buffered in the process
//	            (pebble's WAL buffer included) reaches the kernel
//	sleep(D)    sleep for the Go duration D, then go on
//	off         do nothing
//
// prefixed by an optional count "N*": the first N-1 hits of the point do
// nothing and the action runs from the Nth hit on ("3*exit" exits on the
// third hit). A count lets a restarted member get through its start-up
// before the point fires.
//
// # Arming a running process
//
// CAIRN_FAILPOINTS_FILE names a file that the process reads every 20ms;
// whenever its contents change they replace the armed points (with fresh
// hit counts), and an empty or missing file disarms all. "{name}" in the
// path is replaced by the member's --name (or ETCD_NAME), so one value can
// be given to every member of a cluster and each member armed on its own.
// A spec the process cannot parse is reported on stderr and ignored.
//
// # Cost
//
// With CAIRN_FAILPOINTS unset and no armed file, Hit is one atomic load
// and a return.
//
// # Points
//
// Points lists every name the server marks; Set refuses others, so a typo
// in a test fails instead of silently arming nothing.
package failpoint

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// EnvVar is the environment variable read at start-up.
const EnvVar = "CAIRN_FAILPOINTS"

// FileEnvVar names the file polled for specs (see the package doc).
const FileEnvVar = "CAIRN_FAILPOINTS_FILE"

// pollInterval is how often the file of FileEnvVar is read.
const pollInterval = 20 * time.Millisecond

// ExitCode is the status of a process stopped by an exit action.
const ExitCode = 86

// Points is every crash point the server marks, with where it is.
var Points = map[string]string{
	"raft-before-save":        "raftnode: before a Ready's entries and hard state are persisted",
	"raft-after-save":         "raftnode: after they are persisted, before messages are sent",
	"apply-before-commit":     "apply: before the batch of applied state and applied index commits",
	"apply-after-commit":      "apply: after that batch commits, before watchers are notified",
	"snapshot-before-send":    "transport: before a snapshot is streamed to a follower",
	"snapshot-after-receive":  "transport: after a snapshot is received and stored, before raft sees it",
	"snapshot-before-install": "server: before a received snapshot replaces the state machine",
	"snapshot-after-install":  "server: after a received snapshot replaced the state machine",
	"compact-before-physical": "server: before the records of a compaction are removed",
	"compact-after-physical":  "server: after the records of a compaction are removed",
}

type kind int

const (
	actOff kind = iota
	actPanic
	actExit
	actSleep
)

type action struct {
	kind  kind
	after int64 // the action runs from this hit on (1-based)
	sleep time.Duration
	hits  atomic.Int64
}

var (
	enabled atomic.Bool
	mu      sync.RWMutex
	armed   map[string]*action
	// exit and sleep are os.Exit and time.Sleep; tests replace them.
	exit  = os.Exit
	sleep = time.Sleep
)

func init() {
	if spec := os.Getenv(EnvVar); spec != "" {
		if err := Set(spec); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", EnvVar, err)
			os.Exit(2)
		}
	}
	if path := os.Getenv(FileEnvVar); path != "" {
		go watchFile(strings.ReplaceAll(path, "{name}", memberName(os.Args[1:])), pollInterval, nil)
	}
}

// memberName is the value of --name in args, else ETCD_NAME, else
// etcd's default "default".
func memberName(args []string) string {
	name := os.Getenv("ETCD_NAME")
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--name="), strings.HasPrefix(a, "-name="):
			name = a[strings.Index(a, "=")+1:]
		case (a == "--name" || a == "-name") && i+1 < len(args):
			name = args[i+1]
		}
	}
	if name == "" {
		name = "default"
	}
	return name
}

// watchFile applies the contents of path whenever they change, until stop
// is closed (never, for the server).
func watchFile(path string, every time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := ""
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			b = nil
		}
		if spec := strings.TrimSpace(string(b)); spec != last {
			last = spec
			if err := Set(spec); err != nil {
				fmt.Fprintf(os.Stderr, "%s %s: %v\n", FileEnvVar, path, err)
			} else {
				fmt.Fprintf(os.Stderr, "failpoints armed from %s: %q\n", path, spec)
			}
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// Hit runs the action armed for the point name, if any.
func Hit(name string) {
	if !enabled.Load() {
		return
	}
	hit(name)
}

func hit(name string) {
	mu.RLock()
	a := armed[name]
	mu.RUnlock()
	if a == nil {
		return
	}
	if n := a.hits.Add(1); n < a.after {
		return
	}
	switch a.kind {
	case actPanic:
		panic("failpoint " + name + ": panic")
	case actExit:
		fmt.Fprintf(os.Stderr, "failpoint %s: exit %d\n", name, ExitCode)
		exit(ExitCode)
	case actSleep:
		sleep(a.sleep)
	}
}

// Set arms the points in spec (the CAIRN_FAILPOINTS syntax), replacing
// every point armed before. An empty spec disarms all.
func Set(spec string) error {
	m := map[string]*action{}
	for _, term := range strings.Split(spec, ";") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		name, act, ok := strings.Cut(term, "=")
		name = strings.TrimSpace(name)
		if !ok {
			return fmt.Errorf("%q: want name=action", term)
		}
		if _, known := Points[name]; !known {
			return fmt.Errorf("unknown failpoint %q (known: %s)", name, strings.Join(Names(), ", "))
		}
		a, err := parseAction(strings.TrimSpace(act))
		if err != nil {
			return fmt.Errorf("failpoint %s: %w", name, err)
		}
		m[name] = a
	}
	mu.Lock()
	armed = m
	enabled.Store(len(m) > 0)
	mu.Unlock()
	return nil
}

func parseAction(s string) (*action, error) {
	a := &action{after: 1}
	if n, rest, ok := strings.Cut(s, "*"); ok {
		v, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("count %q: want a positive integer", n)
		}
		a.after, s = v, strings.TrimSpace(rest)
	}
	switch {
	case s == "off":
		a.kind = actOff
	case s == "panic":
		a.kind = actPanic
	case s == "exit":
		a.kind = actExit
	case strings.HasPrefix(s, "sleep(") && strings.HasSuffix(s, ")"):
		d, err := time.ParseDuration(s[len("sleep(") : len(s)-1])
		if err != nil || d < 0 {
			return nil, fmt.Errorf("sleep duration in %q: want a Go duration such as 100ms", s)
		}
		a.kind, a.sleep = actSleep, d
	default:
		return nil, fmt.Errorf("action %q: want off, panic, exit or sleep(D), optionally after N*", s)
	}
	return a, nil
}

// Names lists the known points, sorted.
func Names() []string {
	names := make([]string, 0, len(Points))
	for n := range Points {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Hits reports how often the armed point name was reached (0 if unarmed).
func Hits(name string) int64 {
	mu.RLock()
	defer mu.RUnlock()
	if a := armed[name]; a != nil {
		return a.hits.Load()
	}
	return 0
}
