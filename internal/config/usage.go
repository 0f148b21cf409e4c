package config

import (
	"fmt"
	"sort"
	"strings"
)

// Usage is the text of `cairn --help`, in the shape of `etcd --help`: the
// invocations, then every flag cairn implements, grouped, with its default
// and what it does.
func Usage() string {
	var b strings.Builder
	b.WriteString(`Usage:

  cairn [flags]
    Start a cairn server, an etcd-compatible key-value store member.

  cairn --version
    Show the version of cairn and of the etcd API it serves.

  cairn -h | --help
    Show this help.

  cairn --config-file PATH
    Read the configuration from a YAML (or JSON) file in etcd's format, whose
    keys are the flag names below. When a config file is given, the other
    command-line flags and the ETCD_* environment variables are ignored.
    Durations in the file are integer nanoseconds as in etcd (600000000000
    for 10m); cairn also reads strings such as "10m".

Every flag can also be set with an environment variable named ETCD_ and the
flag name in upper case with underscores (ETCD_DATA_DIR for --data-dir).
A flag given both on the command line and in the environment is an error.
`)
	s := newFlagSet(defaults())
	groups := []string{groupMember, groupCluster, groupSecurity, groupMonitoring, groupLogging, groupFeatures}
	for _, g := range groups {
		fmt.Fprintf(&b, "\n%s:\n", g)
		for _, o := range options {
			if o.group != g {
				continue
			}
			def := o.def
			if def == "" {
				def = s.fs.Lookup(o.name).DefValue
			}
			if o.kind == kindDuration {
				def = shortDuration(def)
			}
			fmt.Fprintf(&b, "  --%s '%s'\n    %s\n", o.name, def, o.usage)
			if o.kind == kindGates {
				for _, line := range gateHelp() {
					fmt.Fprintf(&b, "      %s\n", line)
				}
			}
		}
	}

	b.WriteString("\nDeprecated etcd 3.5/3.6 names, accepted with a warning:\n")
	var lines []string
	for alias, target := range aliases {
		lines = append(lines, fmt.Sprintf("  --%s\n    Same as --%s.\n", alias, target))
	}
	for name, gate := range gateFlags {
		lines = append(lines, fmt.Sprintf("  --%s\n    Sets feature gate %s (--feature-gates=%s=true|false).\n", name, gate, gate))
	}
	sort.Strings(lines)
	for _, l := range lines {
		b.WriteString(l)
	}

	b.WriteString(`
Other etcd flags (TLS CRLs and allowed CN/hostname, discovery, pprof,
tracing, unsafe flags, ...) are not implemented yet: cairn accepts them only with etcd's default value and
refuses any other value with an error naming the flag.
`)
	return b.String()
}

// shortDuration drops the zero minutes and seconds that time.Duration's
// String writes after a larger unit: "2h0m0s" is "2h", "10m0s" is "10m".
func shortDuration(s string) string {
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
