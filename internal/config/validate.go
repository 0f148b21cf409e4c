package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
)

// ErrUnsetAdvertiseClientURLs is etcd's error for --listen-client-urls given
// without --advertise-client-urls.
var ErrUnsetAdvertiseClientURLs = errors.New("--advertise-client-urls is required when --listen-client-urls is set explicitly")

// Validate checks the Config with etcd's rules, and etcd's messages where
// etcd has one. It changes nothing; Parse calls it last.
func (c *Config) Validate() error {
	if strings.TrimSpace(c.Name) == "" {
		return errors.New("--name must not be empty")
	}
	if err := checkListenURLs("--listen-peer-urls", c.ListenPeerURLs); err != nil {
		return err
	}
	if err := checkListenURLs("--listen-client-urls", c.ListenClientURLs); err != nil {
		return err
	}
	if err := checkListenURLs("--listen-metrics-urls", c.ListenMetricsURLs); err != nil {
		return err
	}
	if err := checkHostURLs(c.InitialAdvertisePeerURLs); err != nil {
		return fmt.Errorf(`--initial-advertise-peer-urls %q must be "host:port" (%w)`, urlsString(c.InitialAdvertisePeerURLs), err)
	}
	if err := checkHostURLs(c.AdvertiseClientURLs); err != nil {
		return fmt.Errorf(`--advertise-client-urls %q must be in the format "host:port", "unix:/path/to/socket" or "unixs:/path/to/socket" (%w)`, urlsString(c.AdvertiseClientURLs), err)
	}

	if err := c.checkTLS(); err != nil {
		return err
	}

	if c.InitialClusterState != ClusterStateNew && c.InitialClusterState != ClusterStateExisting {
		return fmt.Errorf("unexpected clusterState %q", c.InitialClusterState)
	}
	if err := c.checkInitialCluster(); err != nil {
		return err
	}

	hb, el := c.HeartbeatInterval.Milliseconds(), c.ElectionTimeout.Milliseconds()
	if hb <= 0 {
		return fmt.Errorf("--heartbeat-interval must be >0 (set to %dms)", hb)
	}
	if el <= 0 {
		return fmt.Errorf("--election-timeout must be >0 (set to %dms)", el)
	}
	if 5*hb > el {
		return fmt.Errorf("--election-timeout[%vms] should be at least as 5 times as --heartbeat-interval[%vms]", el, hb)
	}
	if el > MaxElectionMs {
		return fmt.Errorf("--election-timeout[%vms] is too long, and should be set less than %vms", el, MaxElectionMs)
	}

	if len(c.ListenClientURLs) > 0 && len(c.AdvertiseClientURLs) == 0 {
		return ErrUnsetAdvertiseClientURLs
	}

	switch c.AutoCompactionMode {
	case CompactionModePeriodic, CompactionModeRevision:
	case "":
		return errors.New("undefined auto-compaction-mode")
	default:
		return fmt.Errorf("unknown auto-compaction-mode %q", c.AutoCompactionMode)
	}
	if _, _, _, err := c.AutoCompaction(); err != nil {
		return err
	}

	if c.SnapshotCount == 0 {
		return errors.New("--snapshot-count must be >0")
	}
	if c.SnapshotCatchUpEntries == 0 {
		return errors.New("--snapshot-catchup-entries must be >0")
	}
	if c.MaxRequestBytes == 0 {
		return errors.New("--max-request-bytes must be >0")
	}
	if c.MaxLearners < 0 {
		return fmt.Errorf("--max-learners must be >=0 (set to %d)", c.MaxLearners)
	}
	if c.CompactionBatchLimit < 0 {
		return fmt.Errorf("--compaction-batch-limit must be >=0 (set to %d)", c.CompactionBatchLimit)
	}
	if c.CorruptCheckTime < 0 {
		return fmt.Errorf("--corrupt-check-time must be >=0 (set to %v)", c.CorruptCheckTime)
	}
	if c.LeaseCheckpointInterval < 0 {
		return fmt.Errorf("--lease-checkpoint-interval must be >=0 (set to %v)", c.LeaseCheckpointInterval)
	}
	if c.WatchProgressNotifyInterval < 0 {
		return fmt.Errorf("--watch-progress-notify-interval must be >=0 (set to %v)", c.WatchProgressNotifyInterval)
	}

	if c.FeatureGates["LeaseCheckpointPersist"] && !c.FeatureGates["LeaseCheckpoint"] {
		return errors.New("enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint")
	}
	for g := range c.FeatureGates {
		if _, ok := knownGates[g]; !ok {
			return fmt.Errorf("unrecognized feature gate: %s", g)
		}
	}

	return c.checkLogging()
}

// checkListenURLs applies etcd's rule for addresses to bind (an IP or
// "localhost", not a host name).
func checkListenURLs(flagName string, urls []url.URL) error {
	for _, u := range urls {
		if u.Scheme == "unix" || u.Scheme == "unixs" {
			continue
		}
		host, _, err := net.SplitHostPort(u.Host)
		if err != nil {
			return err
		}
		if host != "localhost" && net.ParseIP(host) == nil {
			return fmt.Errorf("expected IP in URL for binding (%s)", u.String())
		}
	}
	return nil
}

// checkHostURLs is etcd's check of advertised URLs: a TCP URL names a host.
func checkHostURLs(urls []url.URL) error {
	for _, u := range urls {
		if u.Scheme == "unix" || u.Scheme == "unixs" {
			continue
		}
		host, _, err := net.SplitHostPort(u.Host)
		if err != nil {
			return err
		}
		if host == "" {
			return fmt.Errorf("unexpected empty host (%s)", u.String())
		}
	}
	return nil
}

// InitialClusterFromName is the --initial-cluster of a one-member cluster:
// "<name>=<url>" for each of --initial-advertise-peer-urls.
func (c *Config) InitialClusterFromName() string {
	name := c.Name
	if name == "" {
		name = DefaultName
	}
	parts := make([]string, 0, len(c.InitialAdvertisePeerURLs))
	for _, u := range c.InitialAdvertisePeerURLs {
		parts = append(parts, name+"="+u.String())
	}
	return strings.Join(parts, ",")
}

// InitialClusterMembers parses --initial-cluster into each member's peer
// URLs, sorted, as etcd reads it ("a=http://h1:2380,a=http://h2:2380,b=...";
// a name may repeat to give a member several URLs).
func (c *Config) InitialClusterMembers() (map[string][]url.URL, error) {
	byName := map[string][]string{}
	for _, item := range strings.Split(c.InitialCluster, ",") {
		if item == "" {
			continue
		}
		name, u, _ := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		byName[name] = append(byName[name], u)
	}
	out := make(map[string][]url.URL, len(byName))
	for name, items := range byName {
		urls, err := ParseURLs(items)
		if err != nil {
			return nil, err
		}
		out[name] = urls
	}
	return out, nil
}

// checkInitialCluster is etcd's bootstrap check of --initial-cluster: this
// member is in it, no URL is listed twice, and when bootstrapping a new
// cluster its URLs there are exactly --initial-advertise-peer-urls. (etcd
// also resolves host names to compare them; cairn compares the URLs as
// written.)
func (c *Config) checkInitialCluster() error {
	members, err := c.InitialClusterMembers()
	if err != nil {
		return fmt.Errorf("--initial-cluster %q: %w", c.InitialCluster, err)
	}
	if len(members) == 0 {
		return errors.New("initial cluster unset and no discovery URL found")
	}
	seen := map[string]bool{}
	for _, urls := range members {
		for _, u := range urls {
			if seen[u.String()] {
				return fmt.Errorf("initial cluster %s has duplicate url", membersString(members))
			}
			seen[u.String()] = true
		}
	}
	mine, ok := members[c.Name]
	if !ok {
		return fmt.Errorf("couldn't find local name %q in the initial cluster configuration", c.Name)
	}
	if c.InitialClusterState != ClusterStateNew {
		return nil
	}
	inCluster, advertised := map[string]bool{}, map[string]bool{}
	for _, u := range mine {
		inCluster[u.String()] = true
	}
	for _, u := range c.InitialAdvertisePeerURLs {
		advertised[u.String()] = true
	}
	var missing []string
	for u := range inCluster {
		if !advertised[u] {
			missing = append(missing, c.Name+"="+u)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("--initial-cluster has %s but missing from --initial-advertise-peer-urls=%s",
			strings.Join(missing, ","), urlsString(c.InitialAdvertisePeerURLs))
	}
	for u := range advertised {
		if !inCluster[u] {
			missing = append(missing, u)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("--initial-advertise-peer-urls has %s but missing from --initial-cluster=%s",
			strings.Join(missing, ","), membersString(map[string][]url.URL{c.Name: c.InitialAdvertisePeerURLs}))
	}
	return nil
}

// membersString writes members as etcd does: name=url pairs, sorted.
func membersString(m map[string][]url.URL) string {
	var pairs []string
	for name, urls := range m {
		for _, u := range urls {
			pairs = append(pairs, name+"="+u.String())
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

// AutoCompaction reads --auto-compaction-mode and --auto-compaction-retention.
// In periodic mode the retention is a duration ("90m") or a bare number of
// hours ("5" is 5h) and comes back as retentionPeriod; in revision mode it is
// a number of revisions and comes back as retentionRevs. Zero in both means
// auto-compaction is off.
func (c *Config) AutoCompaction() (mode string, retentionPeriod time.Duration, retentionRevs int64, err error) {
	mode = c.AutoCompactionMode
	ret := strings.TrimSpace(c.AutoCompactionRetention)
	if ret == "" {
		ret = "0"
	}
	switch mode {
	case CompactionModePeriodic:
		if n, err := strconv.ParseInt(ret, 10, 64); err == nil {
			if n < 0 {
				return mode, 0, 0, fmt.Errorf("--auto-compaction-retention %q must not be negative", ret)
			}
			if n > int64(maxHours) {
				return mode, 0, 0, fmt.Errorf("--auto-compaction-retention %q is too long", ret)
			}
			return mode, time.Duration(n) * time.Hour, 0, nil
		}
		d, err := time.ParseDuration(ret)
		if err != nil {
			return mode, 0, 0, fmt.Errorf("error parsing CompactionRetention: %w", err)
		}
		if d < 0 {
			return mode, 0, 0, fmt.Errorf("--auto-compaction-retention %q must not be negative", ret)
		}
		return mode, d, 0, nil
	case CompactionModeRevision:
		n, err := strconv.ParseInt(ret, 10, 64)
		if err != nil || n < 0 {
			return mode, 0, 0, fmt.Errorf("--auto-compaction-retention %q must be a number of revisions (>= 0) in revision mode", ret)
		}
		return mode, 0, n, nil
	case "":
		return mode, 0, 0, errors.New("--auto-compaction-mode is undefined")
	}
	return mode, 0, 0, fmt.Errorf("unknown auto-compaction-mode %q", mode)
}

const maxHours = (1<<63 - 1) / int64(time.Hour)

// checkLogging checks the logging flags as etcd's logger setup does.
func (c *Config) checkLogging() error {
	switch c.Logger {
	case "zap":
	case "capnslog":
		return errors.New("--logger=capnslog is removed in v3.5")
	default:
		return fmt.Errorf("unknown logger option %q", c.Logger)
	}
	if _, err := zapcore.ParseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("--log-level: %w (use debug, info, warn, error, panic or fatal)", err)
	}
	switch c.LogFormat {
	case LogFormatJSON, LogFormatConsole, "":
	default:
		return fmt.Errorf("unknown log format: %s, supported values json, console", c.LogFormat)
	}
	if len(c.LogOutputs) > 1 {
		for _, o := range c.LogOutputs {
			if o == DefaultLogOutput {
				return fmt.Errorf("multi logoutput for %q is not supported yet", DefaultLogOutput)
			}
		}
	}
	for _, o := range c.LogOutputs {
		if o == "systemd/journal" {
			return errors.New("--log-outputs systemd/journal: cairn does not implement journald logging yet; use stderr or a file")
		}
	}
	return nil
}
