// Package config holds cairn's server configuration: etcd's flag names, the
// ETCD_* environment variables and etcd's YAML config file, with etcd's
// defaults and meanings.
//
// Order of precedence, as in etcd: a --config-file replaces flags and
// environment entirely; otherwise a flag given on the command line wins over
// its ETCD_* variable, which wins over the default. An unknown flag, an
// unknown ETCD_* variable naming a flag-like setting, or an etcd flag that
// cairn does not support is an error that names it.
package config

import (
	"net/url"
	"time"
)

// Defaults, from etcd 3.7.
const (
	DefaultName                  = "default"
	DefaultListenClientURL       = "http://127.0.0.1:2379"
	DefaultListenPeerURL         = "http://127.0.0.1:2380"
	DefaultInitialClusterToken   = "etcd-cluster"
	DefaultSnapshotCount         = 10000
	DefaultSnapshotCatchUp       = 5000
	DefaultHeartbeatMs           = 100
	DefaultElectionMs            = 1000
	DefaultQuotaBackendBytes     = 2 * 1024 * 1024 * 1024 // 2 GiB
	MaxQuotaBackendBytes         = 100 * 1024 * 1024 * 1024
	DefaultMaxRequestBytes       = 1.5 * 1024 * 1024
	DefaultMaxTxnOps             = 128
	DefaultMaxLearners           = 1
	DefaultLeaseCheckpointPeriod = 5 * time.Minute
	DefaultGRPCKeepAliveMinTime  = 5 * time.Second
	DefaultGRPCKeepAliveInterval = 2 * time.Hour
	DefaultGRPCKeepAliveTimeout  = 20 * time.Second
	DefaultCompactionBatchLimit  = 1000
	DefaultWarningApplyDuration  = 100 * time.Millisecond
	DefaultMaxWatchRequestPerSec = 0
)

// Config is everything the server needs to start. It is filled by Parse
// (flags, env, config file) and checked by Validate; nothing else sets it.
type Config struct {
	// Member.
	Name    string // --name
	DataDir string // --data-dir; "" means "<name>.cairn" in the working dir
	WalDir  string // --wal-dir; "" means inside the data dir

	ListenClientURLs    []url.URL // --listen-client-urls
	AdvertiseClientURLs []url.URL // --advertise-client-urls
	ListenPeerURLs      []url.URL // --listen-peer-urls
	ListenMetricsURLs   []url.URL // --listen-metrics-urls (extra /metrics and /health listeners)

	// Cluster bootstrap.
	InitialAdvertisePeerURLs []url.URL // --initial-advertise-peer-urls
	InitialCluster           string    // --initial-cluster; "" means "<name>=<initial-advertise-peer-urls>"
	InitialClusterToken      string    // --initial-cluster-token
	InitialClusterState      string    // --initial-cluster-state: new | existing

	// Raft and storage.
	SnapshotCount          uint64        // --snapshot-count
	SnapshotCatchUpEntries uint64        // --snapshot-catchup-entries (experimental in etcd)
	HeartbeatInterval      time.Duration // --heartbeat-interval (ms on the command line)
	ElectionTimeout        time.Duration // --election-timeout (ms on the command line)
	QuotaBackendBytes      int64         // --quota-backend-bytes; 0 means the default
	MaxRequestBytes        uint          // --max-request-bytes
	MaxTxnOps              uint          // --max-txn-ops
	MaxLearners            int           // --max-learners
	StrictReconfigCheck    bool          // --strict-reconfig-check

	AutoCompactionMode      string // --auto-compaction-mode: periodic | revision
	AutoCompactionRetention string // --auto-compaction-retention ("0" disables; "1h", "5m", or a number)
	CompactionBatchLimit    int    // --compaction-batch-limit

	LeaseCheckpointInterval time.Duration // --lease-checkpoint-interval (how often remaining TTLs go through Raft)

	// gRPC.
	GRPCKeepAliveMinTime  time.Duration // --grpc-keepalive-min-time
	GRPCKeepAliveInterval time.Duration // --grpc-keepalive-interval
	GRPCKeepAliveTimeout  time.Duration // --grpc-keepalive-timeout
	EnableGRPCGateway     bool          // --enable-grpc-gateway
	MaxConcurrentStreams  uint32        // --max-concurrent-streams

	// Logging.
	Logger     string   // --logger (only "zap")
	LogLevel   string   // --log-level: debug | info | warn | error | panic | fatal
	LogOutputs []string // --log-outputs: stderr | stdout | default | file paths
	LogFormat  string   // --log-format: json | console

	WarningApplyDuration time.Duration // --warning-apply-duration

	// Metrics.
	Metrics string // --metrics: basic | extensive

	// ConfigFile is the --config-file that filled this Config, if any.
	ConfigFile string
}

// MemberDataDir is the directory holding this member's data.
func (c *Config) MemberDataDir() string {
	if c.DataDir != "" {
		return c.DataDir
	}
	return c.Name + ".cairn"
}
