package config

import (
	"errors"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sentinel results of Parse that are not failures: main prints Usage() or
// the version and exits 0.
var (
	ErrHelp    = errors.New("help requested")
	ErrVersion = errors.New("version requested")
)

const envPrefix = "ETCD_"

// EnvName is the environment variable for a flag: ETCD_ and the flag name in
// upper snake case (data-dir -> ETCD_DATA_DIR).
func EnvName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// origin says where a flag's value came from, for messages.
type origin int

const (
	fromFlag origin = iota
	fromEnv
	fromFile
)

func (o origin) name(flagName string) string {
	switch o {
	case fromEnv:
		return EnvName(flagName) + " (--" + flagName + ")"
	case fromFile:
		return fmt.Sprintf("config file key %q", flagName)
	}
	return "--" + flagName
}

// Parse builds the Config from the command-line arguments (without the
// program name) and the environment (as os.Environ gives it), reading
// --config-file if one is named. See the package documentation for the
// order of the sources. It returns ErrHelp for -h/--help and ErrVersion for
// --version; any other error names the flag, variable or key at fault.
// The returned Config has passed Validate.
func Parse(args []string, environ []string) (*Config, error) {
	cmd := newFlagSet(defaults())
	if err := cmd.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, ErrHelp
		}
		return nil, err
	}
	if cmd.fs.NArg() != 0 {
		return nil, fmt.Errorf("%q is not a valid flag", cmd.fs.Arg(0))
	}
	if cmd.version {
		return nil, ErrVersion
	}

	env := envEntries(environ)
	path := cmd.configFile
	if path == "" {
		path = env.get(EnvName("config-file"))
	}
	if path != "" {
		return parseFile(path, cmd, env)
	}

	origins := map[string]origin{}
	cmd.fs.Visit(func(f *flag.Flag) { origins[f.Name] = fromFlag })
	var warnings []string
	for _, e := range env.list {
		w, err := applyEnv(cmd, origins, e.key, e.value)
		if err != nil {
			return nil, err
		}
		if w != "" {
			warnings = append(warnings, w)
		}
	}
	return finish(cmd, origins, warnings)
}

type envEntry struct{ key, value string }

type envList struct{ list []envEntry }

// envEntries keeps the ETCD_* entries of environ. As the C library does,
// the first of repeated names wins.
func envEntries(environ []string) envList {
	var l envList
	seen := map[string]bool{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, envPrefix) || seen[k] {
			continue
		}
		seen[k] = true
		l.list = append(l.list, envEntry{k, v})
	}
	return l
}

func (l envList) get(key string) string {
	for _, e := range l.list {
		if e.key == key {
			return e.value
		}
	}
	return ""
}

// applyEnv applies one ETCD_* variable, as etcd's flags package does: a
// variable for a flag also given on the command line is an error; one that
// names no flag is a warning; an empty one is not used.
func applyEnv(s *flagSet, origins map[string]origin, key, value string) (warning string, err error) {
	name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(key, envPrefix), "_", "-"))
	switch name {
	case "config-file":
		return "", nil // read before the others
	case "version":
		return fmt.Sprintf("cannot set special environment variable %s; ignoring it", key), nil
	}
	f := s.fs.Lookup(name)
	if f == nil || EnvName(name) != key {
		return fmt.Sprintf("unrecognized environment variable %s; ignoring it", key), nil
	}
	if o, ok := origins[name]; ok && o == fromFlag {
		return "", fmt.Errorf("conflicting environment variable %s is shadowed by corresponding command-line flag --%s (either unset environment variable or disable flag)", key, name)
	}
	if value == "" {
		return "", nil
	}
	if err := s.fs.Set(name, value); err != nil {
		return "", fmt.Errorf("invalid value %q for %s: %v", value, key, err)
	}
	origins[name] = fromEnv
	return "", nil
}

// finish turns what the flags recorded into the final Config: it rejects
// unsupported settings, notes ignored and deprecated ones, resolves feature
// gates, fills derived defaults, and validates.
func finish(s *flagSet, origins map[string]origin, warnings []string) (*Config, error) {
	c := s.c
	names := make([]string, 0, len(origins))
	for n := range origins {
		names = append(names, n)
	}
	sort.Strings(names)

	for _, n := range names {
		u, ok := unsupported[n]
		if !ok {
			continue
		}
		if !isDefault(u.kind, *s.raw[n], u.def) {
			return nil, fmt.Errorf("unsupported %s: cairn does not implement it yet", origins[n].flagWord(n))
		}
	}
	for _, n := range names {
		if ig, ok := ignored[n]; ok {
			warnings = append(warnings, fmt.Sprintf("%s has no effect in cairn (%s); ignoring it", origins[n].name(n), ig.reason))
		}
	}
	for _, n := range names {
		target, ok := aliases[n]
		if !ok {
			continue
		}
		if _, both := origins[target]; both {
			return nil, fmt.Errorf("cannot specify both %s and %s; use --%s", origins[n].name(n), origins[target].name(target), target)
		}
		warnings = append(warnings, fmt.Sprintf("%s is a deprecated etcd 3.6 name; use --%s instead", origins[n].name(n), target))
	}
	flagOf := map[string]string{}
	for _, n := range names {
		if gate, ok := gateFlags[n]; ok {
			flagOf[gate] = n
			warnings = append(warnings, fmt.Sprintf("%s is a deprecated etcd 3.6 name; use --feature-gates=%s=%t instead", origins[n].name(n), gate, s.gateFlags[gate]))
		}
	}
	gates, err := resolveGates(s.gates.set, s.gateFlags, flagOf)
	if err != nil {
		return nil, err
	}
	c.FeatureGates = gates

	// As etcd: setting --listen-client-urls without --advertise-client-urls
	// drops the default advertised URL, and Validate then asks for one. A
	// config file keeps the default.
	_, lcurls := origins["listen-client-urls"]
	_, acurls := origins["advertise-client-urls"]
	if lcurls && !acurls && origins["listen-client-urls"] != fromFile {
		c.AdvertiseClientURLs = nil
	}
	if _, ok := origins["initial-cluster"]; !ok || strings.TrimSpace(c.InitialCluster) == "" {
		c.InitialCluster = c.InitialClusterFromName()
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = DefaultSnapshotCount
		warnings = append(warnings, fmt.Sprintf("--snapshot-count is 0; using the default %d", DefaultSnapshotCount))
	}
	if c.SnapshotCatchUpEntries == 0 {
		c.SnapshotCatchUpEntries = DefaultSnapshotCatchUp
		warnings = append(warnings, fmt.Sprintf("--snapshot-catchup-entries is 0; using the default %d", DefaultSnapshotCatchUp))
	}
	if len(c.LogOutputs) == 0 {
		c.LogOutputs = []string{DefaultLogOutput}
	}
	if c.QuotaBackendBytes > MaxQuotaBackendBytes {
		warnings = append(warnings, fmt.Sprintf("quota exceeds the maximum value: --quota-backend-bytes %d is above the suggested maximum %d", c.QuotaBackendBytes, int64(MaxQuotaBackendBytes)))
	}
	if c.MaxRequestBytes > RecommendedMaxRequestBytes {
		warnings = append(warnings, fmt.Sprintf("exceeded recommended request limit: --max-request-bytes %d is above the recommended %d", c.MaxRequestBytes, RecommendedMaxRequestBytes))
	}
	if c.Metrics != "basic" && c.Metrics != "extensive" {
		warnings = append(warnings, fmt.Sprintf("--metrics %q is neither 'basic' nor 'extensive'; exporting basic metrics", c.Metrics))
		c.Metrics = DefaultMetrics
	}
	if c.FeatureGates["LeaseCheckpoint"] && !c.FeatureGates["LeaseCheckpointPersist"] {
		warnings = append(warnings, "feature gate LeaseCheckpoint is on without LeaseCheckpointPersist; cairn persists lease checkpoints regardless")
	}

	warnings = append(warnings, c.tlsWarnings()...)
	c.Warnings = warnings
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// flagWord names a setting in an "unsupported ..." error.
func (o origin) flagWord(flagName string) string {
	switch o {
	case fromEnv:
		return "environment variable " + EnvName(flagName) + " (flag --" + flagName + ")"
	case fromFile:
		return fmt.Sprintf("config file key %q", flagName)
	}
	return "flag --" + flagName
}

// isDefault reports whether raw, given for an unsupported flag, asks for
// nothing more than etcd's default def: it is empty, or equal to def once
// both are read as the flag's kind.
func isDefault(k kind, raw, def string) bool {
	raw = strings.TrimSpace(raw)
	if raw == "" || raw == def {
		return true
	}
	switch k {
	case kindBool:
		a, err1 := strconv.ParseBool(raw)
		b, err2 := strconv.ParseBool(def)
		return err1 == nil && err2 == nil && a == b
	case kindDuration:
		a, err1 := time.ParseDuration(raw)
		b, err2 := time.ParseDuration(def)
		return err1 == nil && err2 == nil && a == b
	case kindNumber:
		a, err1 := strconv.ParseFloat(raw, 64)
		b, err2 := strconv.ParseFloat(def, 64)
		return err1 == nil && err2 == nil && a == b
	}
	return strings.EqualFold(raw, def)
}
