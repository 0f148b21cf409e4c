// Package config holds cairn's server configuration: etcd's flag names, the
// ETCD_* environment variables and etcd's YAML config file, with etcd's
// defaults and meanings.
//
// # Sources and precedence
//
// Parse reads, in this order:
//
//  1. the command line (Go flag syntax, as etcd: -flag, --flag, --flag=value,
//     --flag value; a bool is --flag or --flag=false). -h/--help and
//     --version stop here with ErrHelp / ErrVersion.
//  2. --config-file PATH, or ETCD_CONFIG_FILE when the flag is absent. When a
//     config file is in use, as in etcd, every other command-line flag and
//     every ETCD_* variable is ignored (a warning names them), and the file
//     alone fills the Config on top of the defaults.
//  3. otherwise the ETCD_<FLAG_NAME> environment variables, for the flags not
//     given on the command line. As in etcd, a flag given both on the command
//     line and as an ETCD_* variable is an error (etcd refuses to start with
//     "conflicting environment variable is shadowed by corresponding
//     command-line flag"); an ETCD_* variable that names no etcd flag is only
//     a warning.
//  4. the defaults (etcd's, except that cairn listens and advertises on
//     127.0.0.1 rather than localhost, and keeps its data in <name>.cairn).
//
// # What happens to each etcd flag
//
//   - Supported flags fill the Config fields below.
//   - etcd 3.5/3.6 "--experimental-*" spellings of supported settings are
//     accepted with a deprecation warning; giving both spellings is an error.
//     Experimental bools that became feature gates set the gate.
//   - Flags whose meaning does not apply to cairn's storage (--max-wals,
//     --backend-bbolt-freelist-type, ...) and etcd's own ignored flags are
//     accepted and ignored with a warning.
//   - Every other etcd flag (CRLs and allowed CN/hostname checks, discovery,
//     auth tokens other than simple,
//     pprof, tracing, unsafe flags, ...) is unsupported: giving it a value
//     other than etcd's default is an error that names it. Its default value
//     (e.g. --client-cert-auth=false, "cert-file:" empty in a config file) is
//     accepted, since it asks for nothing cairn lacks.
//   - Anything else is an unknown flag: the error is Go flag's, as in etcd
//     ("flag provided but not defined: -X"). Unknown keys in a config file are
//     a warning (etcd ignores them silently).
//
// Parse ends with Validate; a Config returned without error is valid. Notes
// for the operator (ignored flags, deprecated spellings, odd values) are in
// Config.Warnings, for main to log once the logger is built.
package config

import (
	"math"
	"net/url"
	"time"
)

// Defaults, from etcd 3.7 unless noted.
const (
	DefaultName                    = "default"
	DefaultListenClientURL         = "http://127.0.0.1:2379" // etcd: http://localhost:2379
	DefaultListenPeerURL           = "http://127.0.0.1:2380" // etcd: http://localhost:2380
	DefaultAdvertiseClientURL      = DefaultListenClientURL
	DefaultInitialAdvertisePeerURL = DefaultListenPeerURL
	DefaultInitialClusterToken     = "etcd-cluster"
	DefaultSnapshotCount           = 10000
	DefaultSnapshotCatchUp         = 5000
	DefaultHeartbeatMs             = 100
	DefaultElectionMs              = 1000
	// MaxElectionMs is the largest --election-timeout etcd accepts.
	MaxElectionMs            = 50000
	DefaultQuotaBackendBytes = 2 * 1024 * 1024 * 1024 // 2 GiB
	// MaxQuotaBackendBytes is the --quota-backend-bytes above which cairn
	// warns (etcd's bbolt backend suggests at most 8 GiB).
	MaxQuotaBackendBytes   = 100 * 1024 * 1024 * 1024
	DefaultMaxRequestBytes = 1.5 * 1024 * 1024
	// RecommendedMaxRequestBytes is the --max-request-bytes above which
	// cairn warns, as etcd does.
	RecommendedMaxRequestBytes     = 10 * 1024 * 1024
	DefaultMaxTxnOps               = 128
	DefaultMaxLearners             = 1
	DefaultMaxConcurrentStreams    = math.MaxUint32
	DefaultLeaseCheckpointPeriod   = 5 * time.Second // cairn checkpoints often so a kill -9 costs a lease at most this much
	DefaultGRPCKeepAliveMinTime    = 5 * time.Second
	DefaultGRPCKeepAliveInterval   = 2 * time.Hour
	DefaultGRPCKeepAliveTimeout    = 20 * time.Second
	DefaultCompactionBatchLimit    = 1000
	DefaultWarningApplyDuration    = 100 * time.Millisecond
	DefaultWatchProgressNotify     = 10 * time.Minute
	DefaultMaxWatchRequestPerSec   = 0
	DefaultAutoCompactionMode      = CompactionModePeriodic
	DefaultAutoCompactionRetention = "0"
	DefaultLogger                  = "zap"
	DefaultLogLevel                = "info"
	DefaultLogFormat               = LogFormatJSON
	DefaultLogOutput               = "default"
	DefaultMetrics                 = "basic"
)

// Enumerated values.
const (
	ClusterStateNew      = "new"
	ClusterStateExisting = "existing"

	CompactionModePeriodic = "periodic"
	CompactionModeRevision = "revision"

	LogFormatJSON    = "json"
	LogFormatConsole = "console"
)

// Config is everything the server needs to start. It is filled by Parse
// (flags, env, config file) and checked by Validate; nothing else sets it.
// Default returns one with every default applied.
type Config struct {
	// Member.
	Name    string // --name
	DataDir string // --data-dir; "" means "<name>.cairn" in the working dir
	WalDir  string // --wal-dir; "" means inside the data dir

	ListenClientURLs    []url.URL // --listen-client-urls (sorted, unique, as etcd)
	AdvertiseClientURLs []url.URL // --advertise-client-urls
	ListenPeerURLs      []url.URL // --listen-peer-urls
	ListenMetricsURLs   []url.URL // --listen-metrics-urls (extra /metrics and /health listeners)

	// Cluster bootstrap.
	InitialAdvertisePeerURLs []url.URL // --initial-advertise-peer-urls
	InitialCluster           string    // --initial-cluster; Parse fills "<name>=<initial-advertise-peer-urls>" when not given
	InitialClusterToken      string    // --initial-cluster-token
	InitialClusterState      string    // --initial-cluster-state: new | existing

	// Raft and storage.
	SnapshotCount          uint64        // --snapshot-count
	SnapshotCatchUpEntries uint64        // --snapshot-catchup-entries (experimental in etcd)
	HeartbeatInterval      time.Duration // --heartbeat-interval (ms on the command line)
	ElectionTimeout        time.Duration // --election-timeout (ms on the command line)
	QuotaBackendBytes      int64         // --quota-backend-bytes; 0 means the default, negative disables
	MaxRequestBytes        uint          // --max-request-bytes
	MaxTxnOps              uint          // --max-txn-ops
	MaxLearners            int           // --max-learners
	StrictReconfigCheck    bool          // --strict-reconfig-check
	AutoPromoteLearners    bool          // --auto-promote-learners (cairn's own)

	AutoCompactionMode      string // --auto-compaction-mode: periodic | revision
	AutoCompactionRetention string // --auto-compaction-retention ("0" disables; "1h", "5m", or a number); see AutoCompaction
	CompactionBatchLimit    int    // --compaction-batch-limit

	CorruptCheckTime        time.Duration // --corrupt-check-time: period of the leader's hash comparison, 0 = off
	LeaseCheckpointInterval time.Duration // --lease-checkpoint-interval (cairn's own: how often remaining TTLs go through Raft)

	// Watch.
	WatchProgressNotifyInterval time.Duration // --watch-progress-notify-interval

	// gRPC.
	GRPCKeepAliveMinTime  time.Duration // --grpc-keepalive-min-time
	GRPCKeepAliveInterval time.Duration // --grpc-keepalive-interval
	GRPCKeepAliveTimeout  time.Duration // --grpc-keepalive-timeout
	EnableGRPCGateway     bool          // --enable-grpc-gateway
	EnablePprof           bool          // --enable-pprof: /debug/pprof/ on the client URLs
	MaxConcurrentStreams  uint32        // --max-concurrent-streams

	// Logging.
	Logger     string   // --logger (only "zap")
	LogLevel   string   // --log-level: debug | info | warn | error | panic | fatal
	LogOutputs []string // --log-outputs: stderr | stdout | default | file paths
	LogFormat  string   // --log-format: json | console

	WarningApplyDuration time.Duration // --warning-apply-duration

	// Metrics.
	Metrics string // --metrics: basic | extensive

	// Security (TLS), etcd's flags and meanings; see tls.go.
	ClientTLS     TLSInfo  // --cert-file, --key-file, --client-cert-auth, --trusted-ca-file, --auto-tls
	PeerTLS       TLSInfo  // --peer-cert-file, --peer-key-file, --peer-client-cert-auth, --peer-trusted-ca-file, --peer-auto-tls
	CipherSuites  []string // --cipher-suites: Go's names (tls.CipherSuiteName); empty is Go's default list
	TLSMinVersion string   // --tls-min-version: TLS1.2 | TLS1.3
	TLSMaxVersion string   // --tls-max-version: "" (no limit) | TLS1.2 | TLS1.3

	// FeatureGates holds every etcd 3.7 server feature gate (see
	// KnownFeatureGates) with its value: etcd's default unless --feature-gates
	// or an --experimental-* flag set it.
	FeatureGates map[string]bool

	// ConfigFile is the --config-file that filled this Config, if any.
	ConfigFile string

	// Warnings are notes for the operator found while parsing: ignored or
	// deprecated flags, unknown ETCD_* variables or config keys, values
	// outside etcd's recommendations. main logs them at warn level.
	Warnings []string
}

// Default returns a Config with every default applied, valid as it is: one
// member named "default", clients on 127.0.0.1:2379, peers on 127.0.0.1:2380.
func Default() *Config {
	c := defaults()
	c.InitialCluster = c.InitialClusterFromName()
	return c
}

// defaults is Default without the derived initial cluster, which Parse
// fills once the name and peer URLs are known.
func defaults() *Config {
	return &Config{
		Name:                     DefaultName,
		ListenClientURLs:         []url.URL{mustURL(DefaultListenClientURL)},
		AdvertiseClientURLs:      []url.URL{mustURL(DefaultAdvertiseClientURL)},
		ListenPeerURLs:           []url.URL{mustURL(DefaultListenPeerURL)},
		InitialAdvertisePeerURLs: []url.URL{mustURL(DefaultInitialAdvertisePeerURL)},
		InitialClusterToken:      DefaultInitialClusterToken,
		InitialClusterState:      ClusterStateNew,

		SnapshotCount:          DefaultSnapshotCount,
		SnapshotCatchUpEntries: DefaultSnapshotCatchUp,
		HeartbeatInterval:      DefaultHeartbeatMs * time.Millisecond,
		ElectionTimeout:        DefaultElectionMs * time.Millisecond,
		MaxRequestBytes:        DefaultMaxRequestBytes,
		MaxTxnOps:              DefaultMaxTxnOps,
		MaxLearners:            DefaultMaxLearners,
		StrictReconfigCheck:    true,

		AutoCompactionMode:      DefaultAutoCompactionMode,
		AutoCompactionRetention: DefaultAutoCompactionRetention,
		CompactionBatchLimit:    DefaultCompactionBatchLimit,

		LeaseCheckpointInterval:     DefaultLeaseCheckpointPeriod,
		WatchProgressNotifyInterval: DefaultWatchProgressNotify,

		GRPCKeepAliveMinTime:  DefaultGRPCKeepAliveMinTime,
		GRPCKeepAliveInterval: DefaultGRPCKeepAliveInterval,
		GRPCKeepAliveTimeout:  DefaultGRPCKeepAliveTimeout,
		EnableGRPCGateway:     true,
		MaxConcurrentStreams:  DefaultMaxConcurrentStreams,

		Logger:     DefaultLogger,
		LogLevel:   DefaultLogLevel,
		LogOutputs: []string{DefaultLogOutput},
		LogFormat:  DefaultLogFormat,

		WarningApplyDuration: DefaultWarningApplyDuration,
		Metrics:              DefaultMetrics,
		TLSMinVersion:        DefaultTLSMinVersion,
		FeatureGates:         defaultFeatureGates(),
	}
}

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}

// MemberDataDir is the directory holding this member's data.
func (c *Config) MemberDataDir() string {
	if c.DataDir != "" {
		return c.DataDir
	}
	return c.Name + ".cairn"
}

// QuotaBytes is the backend quota in effect: the default when
// --quota-backend-bytes is 0, and no quota (0) when it is negative.
func (c *Config) QuotaBytes() int64 {
	switch {
	case c.QuotaBackendBytes == 0:
		return DefaultQuotaBackendBytes
	case c.QuotaBackendBytes < 0:
		return 0
	}
	return c.QuotaBackendBytes
}

// FeatureEnabled reports whether the named feature gate is on.
func (c *Config) FeatureEnabled(gate string) bool {
	if v, ok := c.FeatureGates[gate]; ok {
		return v
	}
	return featureGateDefault(gate)
}
