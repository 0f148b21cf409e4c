package config

import (
	"flag"
	"io"
)

// kind tells how a flag's value is written, for the config file (a bare
// number is nanoseconds for a duration, a list may be a YAML sequence) and
// for comparing an unsupported flag's value with etcd's default.
type kind int

const (
	kindString kind = iota
	kindBool
	kindNumber
	kindDuration
	kindList
	kindGates
)

// flagSet is the parse of one source: a Go FlagSet bound to a Config, plus
// what the flags that do not fill Config fields recorded.
type flagSet struct {
	fs *flag.FlagSet
	c  *Config

	configFile string
	version    bool

	gates     gateList
	gateFlags map[string]bool // gate -> value, from --experimental-* bools
	raw       map[string]*string

	kinds map[string]kind
}

// aliases maps an etcd 3.5/3.6 experimental flag to the flag cairn supports
// under etcd 3.7's name.
var aliases = map[string]string{
	"experimental-compaction-batch-limit":         "compaction-batch-limit",
	"experimental-snapshot-catchup-entries":       "snapshot-catchup-entries",
	"experimental-warning-apply-duration":         "warning-apply-duration",
	"experimental-watch-progress-notify-interval": "watch-progress-notify-interval",
	"experimental-max-learners":                   "max-learners",
	"experimental-corrupt-check-time":             "corrupt-check-time",
}

// gateFlags maps an etcd 3.6 experimental bool to the feature gate that
// replaced it.
var gateFlags = map[string]string{
	"experimental-initial-corrupt-check":             "InitialCorruptCheck",
	"experimental-compact-hash-check-enabled":        "CompactHashCheck",
	"experimental-enable-lease-checkpoint":           "LeaseCheckpoint",
	"experimental-enable-lease-checkpoint-persist":   "LeaseCheckpointPersist",
	"experimental-txn-mode-write-with-shared-buffer": "TxnModeWriteWithSharedBuffer",
	"experimental-stop-grpc-service-on-defrag":       "StopGRPCServiceOnDefrag",
}

type ignoredFlag struct {
	kind   kind
	reason string
}

// ignored are etcd flags that cairn accepts and ignores with a warning,
// because what they tune does not exist in cairn or because etcd itself
// ignores them.
var ignored = map[string]ignoredFlag{
	"max-snapshots":               {kindNumber, "cairn's storage engine keeps no snapshot files to rotate"},
	"max-wals":                    {kindNumber, "cairn's storage engine manages its own log files"},
	"backend-bbolt-freelist-type": {kindString, "cairn does not keep its data in bbolt"},
	"experimental-backend-bbolt-freelist-type": {kindString, "cairn does not keep its data in bbolt"},
	"backend-batch-interval":                   {kindDuration, "cairn commits each applied batch at once"},
	"backend-batch-limit":                      {kindNumber, "cairn commits each applied batch at once"},
	"v2-deprecation":                           {kindString, "etcd ignores it too; there is no v2 store"},
	// etcd's own list of flags it no longer supports and ignores. They
	// take no value.
	"cluster-active-size":     {kindBool, "etcd no longer supports it"},
	"cluster-remove-delay":    {kindBool, "etcd no longer supports it"},
	"cluster-sync-interval":   {kindBool, "etcd no longer supports it"},
	"config":                  {kindBool, "etcd no longer supports it (the flag is --config-file)"},
	"force":                   {kindBool, "etcd no longer supports it"},
	"max-result-buffer":       {kindBool, "etcd no longer supports it"},
	"max-retry-attempts":      {kindBool, "etcd no longer supports it"},
	"peer-heartbeat-interval": {kindBool, "etcd no longer supports it"},
	"peer-election-timeout":   {kindBool, "etcd no longer supports it"},
	"retry-interval":          {kindBool, "etcd no longer supports it"},
	"snapshot":                {kindBool, "etcd no longer supports it"},
	"v":                       {kindBool, "etcd no longer supports it"},
	"vv":                      {kindBool, "etcd no longer supports it"},
}

type unsupportedFlag struct {
	kind kind
	def  string // etcd's default, which cairn accepts
}

// unsupported are the etcd 3.7 flags (and etcd 3.6 experimental spellings)
// that cairn does not implement yet. Any value other than etcd's default is
// an error.
var unsupported = map[string]unsupportedFlag{
	// Member.
	"listen-client-http-urls":       {kindList, ""},
	"memory-mlock":                  {kindBool, "false"},
	"socket-reuse-port":             {kindBool, "false"},
	"socket-reuse-address":          {kindBool, "false"},
	"raft-read-timeout":             {kindDuration, "5s"},
	"raft-write-timeout":            {kindDuration, "5s"},
	"initial-election-tick-advance": {kindBool, "true"},
	// Clustering and discovery.
	"pre-vote":                           {kindBool, "true"},
	"discovery-token":                    {kindString, ""},
	"discovery-endpoints":                {kindList, ""},
	"discovery-dial-timeout":             {kindDuration, "2s"},
	"discovery-request-timeout":          {kindDuration, "5s"},
	"discovery-keepalive-time":           {kindDuration, "2s"},
	"discovery-keepalive-timeout":        {kindDuration, "6s"},
	"discovery-insecure-transport":       {kindBool, "true"},
	"discovery-insecure-skip-tls-verify": {kindBool, "false"},
	"discovery-cert":                     {kindString, ""},
	"discovery-key":                      {kindString, ""},
	"discovery-cacert":                   {kindString, ""},
	"discovery-user":                     {kindString, ""},
	"discovery-password":                 {kindString, ""},
	"discovery-fallback":                 {kindString, "exit"},
	"discovery-srv":                      {kindString, ""},
	"discovery-srv-name":                 {kindString, ""},
	// Security.
	"client-cert-file":                  {kindString, ""},
	"client-key-file":                   {kindString, ""},
	"client-crl-file":                   {kindString, ""},
	"client-cert-allowed-hostname":      {kindList, ""},
	"peer-client-cert-file":             {kindString, ""},
	"peer-client-key-file":              {kindString, ""},
	"peer-cert-allowed-cn":              {kindList, ""},
	"peer-cert-allowed-hostname":        {kindList, ""},
	"self-signed-cert-validity":         {kindNumber, "1"},
	"peer-crl-file":                     {kindString, ""},
	"cors":                              {kindList, "*"},
	"host-whitelist":                    {kindList, "*"},
	"peer-skip-client-san-verification": {kindBool, "false"},
	// Auth: cairn issues simple tokens with etcd's default cost and TTL.
	"auth-token":     {kindString, "simple"},
	"bcrypt-cost":    {kindNumber, "10"},
	"auth-token-ttl": {kindNumber, "300"},
	// Profiling, logging, tracing.
	"enable-log-rotation":               {kindBool, "false"},
	"log-rotation-config-json":          {kindString, `{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}`},
	"warning-unary-request-duration":    {kindDuration, "300ms"},
	"enable-distributed-tracing":        {kindBool, "false"},
	"distributed-tracing-address":       {kindString, "localhost:4317"},
	"distributed-tracing-service-name":  {kindString, "etcd"},
	"distributed-tracing-instance-id":   {kindString, ""},
	"distributed-tracing-sampling-rate": {kindNumber, "0"},
	// Features.
	"compact-hash-check-time":              {kindDuration, "1m"},
	"compaction-sleep-interval":            {kindDuration, "0s"},
	"downgrade-check-time":                 {kindDuration, "5s"},
	"bootstrap-defrag-threshold-megabytes": {kindNumber, "0"},
	// Unsafe.
	"force-new-cluster": {kindBool, "false"},
	"unsafe-no-fsync":   {kindBool, "false"},
	// etcd 3.5/3.6 experimental spellings of the above.
	"experimental-compact-hash-check-time":              {kindDuration, "1m"},
	"experimental-compaction-sleep-interval":            {kindDuration, "0s"},
	"experimental-downgrade-check-time":                 {kindDuration, "5s"},
	"experimental-bootstrap-defrag-threshold-megabytes": {kindNumber, "0"},
	"experimental-memory-mlock":                         {kindBool, "false"},
	"experimental-peer-skip-client-san-verification":    {kindBool, "false"},
	"experimental-warning-unary-request-duration":       {kindDuration, "0s"},
	"experimental-enable-distributed-tracing":           {kindBool, "false"},
	"experimental-distributed-tracing-address":          {kindString, "localhost:4317"},
	"experimental-distributed-tracing-service-name":     {kindString, "etcd"},
	"experimental-distributed-tracing-instance-id":      {kindString, ""},
	"experimental-distributed-tracing-sampling-rate":    {kindNumber, "0"},
}

// newFlagSet returns the flags of every kind above bound to c. Go's flag
// package does the parsing, so the syntax and the error texts are etcd's.
func newFlagSet(c *Config) *flagSet {
	s := &flagSet{
		fs:        flag.NewFlagSet("cairn", flag.ContinueOnError),
		c:         c,
		gateFlags: map[string]bool{},
		raw:       map[string]*string{},
		kinds:     map[string]kind{},
	}
	s.fs.SetOutput(io.Discard)
	s.fs.Usage = func() {}

	for _, o := range options {
		s.fs.Var(o.bind(c, s), o.name, o.usage)
		s.kinds[o.name] = o.kind
	}
	for alias, target := range aliases {
		t := s.fs.Lookup(target)
		s.fs.Var(aliasValue{target: t.Value, isBool: s.kinds[target] == kindBool}, alias, "")
		s.kinds[alias] = s.kinds[target]
	}
	for name, gate := range gateFlags {
		s.fs.Var(gateFlagValue{gate: gate, m: s.gateFlags}, name, "")
		s.kinds[name] = kindBool
	}
	for name, f := range ignored {
		s.raw[name] = new(string)
		s.fs.Var(rawValue{isBool: f.kind == kindBool, raw: s.raw[name]}, name, "")
		s.kinds[name] = f.kind
	}
	for name, f := range unsupported {
		s.raw[name] = new(string)
		s.fs.Var(rawValue{isBool: f.kind == kindBool, raw: s.raw[name]}, name, "")
		s.kinds[name] = f.kind
	}
	return s
}

// option is one supported flag. group places it in Usage; usage is its
// line of help.
type option struct {
	name  string
	group string
	kind  kind
	def   string // shown in Usage when the bound value's String is not what an operator reads
	usage string
	bind  func(c *Config, s *flagSet) flagValue
}

type flagValue interface {
	Set(string) error
	String() string
}

// Help groups, in the order of etcd's --help.
const (
	groupMember     = "Member"
	groupCluster    = "Clustering"
	groupMonitoring = "Profiling and Monitoring"
	groupLogging    = "Logging"
	groupFeatures   = "Features"
	groupSecurity   = "Security"
)

var options = []option{
	// Member.
	{name: "name", group: groupMember, kind: kindString,
		usage: "Human-readable name of this member; it must appear in --initial-cluster.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.Name} }},
	{name: "data-dir", group: groupMember, kind: kindString, def: "${name}.cairn",
		usage: "Directory holding this member's data.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.DataDir} }},
	{name: "wal-dir", group: groupMember, kind: kindString,
		usage: "Separate directory for the Raft log; empty keeps it inside --data-dir.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.WalDir} }},
	{name: "snapshot-count", group: groupMember, kind: kindNumber,
		usage: "Applied entries between two snapshots of the state machine (0 means the default).",
		bind:  func(c *Config, _ *flagSet) flagValue { return unsignedValue[uint64]{&c.SnapshotCount} }},
	{name: "heartbeat-interval", group: groupMember, kind: kindNumber,
		usage: "Milliseconds between leader heartbeats.",
		bind:  func(c *Config, _ *flagSet) flagValue { return millisValue{&c.HeartbeatInterval} }},
	{name: "election-timeout", group: groupMember, kind: kindNumber,
		usage: "Milliseconds without a heartbeat before a follower calls an election; at least 5 heartbeats, at most 50000.",
		bind:  func(c *Config, _ *flagSet) flagValue { return millisValue{&c.ElectionTimeout} }},
	{name: "listen-peer-urls", group: groupMember, kind: kindList,
		usage: "Comma-separated URLs to listen on for traffic from other members.",
		bind:  func(c *Config, _ *flagSet) flagValue { return urlsValue{&c.ListenPeerURLs} }},
	{name: "listen-client-urls", group: groupMember, kind: kindList,
		usage: "Comma-separated URLs to listen on for client gRPC and HTTP traffic. Setting it requires --advertise-client-urls.",
		bind:  func(c *Config, _ *flagSet) flagValue { return urlsValue{&c.ListenClientURLs} }},
	{name: "quota-backend-bytes", group: groupMember, kind: kindNumber,
		usage: "Size in bytes above which the store raises the NOSPACE alarm and refuses writes; 0 means the 2 GiB default, negative means no quota.",
		bind:  func(c *Config, _ *flagSet) flagValue { return signedValue[int64]{&c.QuotaBackendBytes} }},
	{name: "max-txn-ops", group: groupMember, kind: kindNumber,
		usage: "Largest number of operations in one transaction.",
		bind:  func(c *Config, _ *flagSet) flagValue { return unsignedValue[uint]{&c.MaxTxnOps} }},
	{name: "max-request-bytes", group: groupMember, kind: kindNumber,
		usage: "Largest client request, in bytes.",
		bind:  func(c *Config, _ *flagSet) flagValue { return unsignedValue[uint]{&c.MaxRequestBytes} }},
	{name: "max-concurrent-streams", group: groupMember, kind: kindNumber, def: "math.MaxUint32",
		usage: "Largest number of concurrent gRPC streams one client connection may open.",
		bind:  func(c *Config, _ *flagSet) flagValue { return unsignedValue[uint32]{&c.MaxConcurrentStreams} }},
	{name: "grpc-keepalive-min-time", group: groupMember, kind: kindDuration,
		usage: "Shortest interval a client may keep between keepalive pings; faster clients are disconnected.",
		bind:  func(c *Config, _ *flagSet) flagValue { return durationValue{&c.GRPCKeepAliveMinTime} }},
	{name: "grpc-keepalive-interval", group: groupMember, kind: kindDuration,
		usage: "How often the server pings an idle client connection (0 disables).",
		bind:  func(c *Config, _ *flagSet) flagValue { return durationValue{&c.GRPCKeepAliveInterval} }},
	{name: "grpc-keepalive-timeout", group: groupMember, kind: kindDuration,
		usage: "How long the server waits for a ping reply before closing the connection (0 disables).",
		bind:  func(c *Config, _ *flagSet) flagValue { return durationValue{&c.GRPCKeepAliveTimeout} }},
	{name: "enable-grpc-gateway", group: groupMember, kind: kindBool,
		usage: "Serve the JSON gateway (/v3/...) on the client URLs.",
		bind:  func(c *Config, _ *flagSet) flagValue { return boolValue{&c.EnableGRPCGateway} }},
	{name: "enable-pprof", group: groupMember, kind: kindBool,
		usage: "Serve Go's runtime profiling data (/debug/pprof/) on the client URLs.",
		bind:  func(c *Config, _ *flagSet) flagValue { return boolValue{&c.EnablePprof} }},
	{name: "feature-gates", group: groupMember, kind: kindGates,
		usage: "Comma-separated Name=true|false pairs setting etcd's server feature gates. Known gates:",
		bind:  func(_ *Config, s *flagSet) flagValue { return &s.gates }},

	// Clustering.
	{name: "initial-advertise-peer-urls", group: groupCluster, kind: kindList,
		usage: "Comma-separated peer URLs of this member, as the other members reach them.",
		bind:  func(c *Config, _ *flagSet) flagValue { return urlsValue{&c.InitialAdvertisePeerURLs} }},
	{name: "initial-cluster", group: groupCluster, kind: kindString, def: "default=" + DefaultInitialAdvertisePeerURL,
		usage: "Comma-separated name=peer-URL pairs of the members at bootstrap; defaults to this member alone (--name with --initial-advertise-peer-urls).",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.InitialCluster} }},
	{name: "initial-cluster-state", group: groupCluster, kind: kindString,
		usage: "'new' to bootstrap a new cluster, 'existing' to join one. Ignored once the member has data.",
		bind: func(c *Config, _ *flagSet) flagValue {
			return choiceValue{&c.InitialClusterState, []string{ClusterStateNew, ClusterStateExisting}}
		}},
	{name: "initial-cluster-token", group: groupCluster, kind: kindString,
		usage: "Token that makes this cluster's IDs unique, so that members of two clusters bootstrapped side by side never mix.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.InitialClusterToken} }},
	{name: "advertise-client-urls", group: groupCluster, kind: kindList,
		usage: "Comma-separated client URLs of this member, as clients reach them; published in the member list.",
		bind:  func(c *Config, _ *flagSet) flagValue { return urlsValue{&c.AdvertiseClientURLs} }},
	{name: "strict-reconfig-check", group: groupCluster, kind: kindBool,
		usage: "Refuse membership changes that would leave the cluster without quorum.",
		bind:  func(c *Config, _ *flagSet) flagValue { return boolValue{&c.StrictReconfigCheck} }},
	{name: "auto-promote-learners", group: groupCluster, kind: kindBool,
		usage: "cairn's own: the leader promotes a learner to a voting member once it has caught up (the check 'member promote' makes).",
		bind:  func(c *Config, _ *flagSet) flagValue { return boolValue{&c.AutoPromoteLearners} }},
	{name: "auto-compaction-retention", group: groupCluster, kind: kindString,
		usage: "History to keep when compacting automatically: a duration ('5m', '1h'; a bare number is hours) in periodic mode, a revision count in revision mode. 0 disables.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.AutoCompactionRetention} }},
	{name: "auto-compaction-mode", group: groupCluster, kind: kindString,
		usage: "How --auto-compaction-retention is read: 'periodic' or 'revision'.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.AutoCompactionMode} }},

	// Monitoring.
	{name: "metrics", group: groupMonitoring, kind: kindString,
		usage: "Detail of the exported metrics: 'basic', or 'extensive' to add gRPC latency histograms.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.Metrics} }},
	{name: "listen-metrics-urls", group: groupMonitoring, kind: kindList,
		usage: "Comma-separated extra URLs serving only /metrics and /health.",
		bind:  func(c *Config, _ *flagSet) flagValue { return urlsValue{&c.ListenMetricsURLs} }},

	// Logging.
	{name: "logger", group: groupLogging, kind: kindString,
		usage: "Logger implementation; only 'zap'.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.Logger} }},
	{name: "log-outputs", group: groupLogging, kind: kindList,
		usage: "Comma-separated log destinations: 'stderr', 'stdout', file paths; 'default' is stderr.",
		bind:  func(c *Config, _ *flagSet) flagValue { return listValue{&c.LogOutputs, true} }},
	{name: "log-level", group: groupLogging, kind: kindString,
		usage: "Lowest level logged: debug, info, warn, error, panic or fatal.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.LogLevel} }},
	{name: "log-format", group: groupLogging, kind: kindString,
		usage: "Log encoding: 'json' or 'console'.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.LogFormat} }},
	{name: "warning-apply-duration", group: groupFeatures, kind: kindDuration,
		usage: "Applying a request slower than this logs a warning.",
		bind:  func(c *Config, _ *flagSet) flagValue { return durationValue{&c.WarningApplyDuration} }},

	// Features.
	{name: "snapshot-catchup-entries", group: groupFeatures, kind: kindNumber,
		usage: "Raft entries kept after a snapshot so that a slow follower can catch up without receiving the snapshot.",
		bind:  func(c *Config, _ *flagSet) flagValue { return unsignedValue[uint64]{&c.SnapshotCatchUpEntries} }},
	{name: "compaction-batch-limit", group: groupFeatures, kind: kindNumber,
		usage: "Largest number of revisions removed in one compaction batch.",
		bind:  func(c *Config, _ *flagSet) flagValue { return signedValue[int]{&c.CompactionBatchLimit} }},
	{name: "watch-progress-notify-interval", group: groupFeatures, kind: kindDuration,
		usage: "How often watchers that asked for progress notifications receive one.",
		bind:  func(c *Config, _ *flagSet) flagValue { return durationValue{&c.WatchProgressNotifyInterval} }},
	{name: "max-learners", group: groupFeatures, kind: kindNumber,
		usage: "Largest number of learner members the cluster accepts.",
		bind:  func(c *Config, _ *flagSet) flagValue { return signedValue[int]{&c.MaxLearners} }},
	{name: "corrupt-check-time", group: groupFeatures, kind: kindDuration,
		usage: "How often the leader compares its key-value hash with every member's; a member that differs gets the CORRUPT alarm. 0 disables the check.",
		bind:  func(c *Config, _ *flagSet) flagValue { return durationValue{&c.CorruptCheckTime} }},
	{name: "lease-checkpoint-interval", group: groupFeatures, kind: kindDuration,
		usage: "How often the leader records remaining lease TTLs through Raft, so that they survive a leader change (cairn's own flag).",
		bind:  func(c *Config, _ *flagSet) flagValue { return durationValue{&c.LeaseCheckpointInterval} }},

	// Security.
	{name: "cert-file", group: groupSecurity, kind: kindString,
		usage: "Path to the client server TLS cert file.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.ClientTLS.CertFile} }},
	{name: "key-file", group: groupSecurity, kind: kindString,
		usage: "Path to the client server TLS key file.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.ClientTLS.KeyFile} }},
	{name: "client-cert-auth", group: groupSecurity, kind: kindBool,
		usage: "Enable client cert authentication: a client without a certificate signed by --trusted-ca-file is refused.",
		bind:  func(c *Config, _ *flagSet) flagValue { return boolValue{&c.ClientTLS.ClientCertAuth} }},
	{name: "trusted-ca-file", group: groupSecurity, kind: kindString,
		usage: "Path to the client server TLS trusted CA cert file.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.ClientTLS.TrustedCAFile} }},
	{name: "auto-tls", group: groupSecurity, kind: kindBool,
		usage: "Client TLS using a generated self-signed certificate (in <data-dir>/fixtures/client) when --cert-file and --key-file are not given.",
		bind:  func(c *Config, _ *flagSet) flagValue { return boolValue{&c.ClientTLS.AutoTLS} }},
	{name: "peer-cert-file", group: groupSecurity, kind: kindString,
		usage: "Path to the peer server TLS cert file; also the client certificate this member presents to its peers.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.PeerTLS.CertFile} }},
	{name: "peer-key-file", group: groupSecurity, kind: kindString,
		usage: "Path to the peer server TLS key file.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.PeerTLS.KeyFile} }},
	{name: "peer-client-cert-auth", group: groupSecurity, kind: kindBool,
		usage: "Enable peer client cert authentication: a peer without a certificate signed by --peer-trusted-ca-file is refused.",
		bind:  func(c *Config, _ *flagSet) flagValue { return boolValue{&c.PeerTLS.ClientCertAuth} }},
	{name: "peer-trusted-ca-file", group: groupSecurity, kind: kindString,
		usage: "Path to the peer server TLS trusted CA file.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.PeerTLS.TrustedCAFile} }},
	{name: "peer-auto-tls", group: groupSecurity, kind: kindBool,
		usage: "Peer TLS using a generated self-signed certificate (in <data-dir>/fixtures/peer) when --peer-cert-file and --peer-key-file are not given.",
		bind:  func(c *Config, _ *flagSet) flagValue { return boolValue{&c.PeerTLS.AutoTLS} }},
	{name: "cipher-suites", group: groupSecurity, kind: kindList,
		usage: "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go).",
		bind:  func(c *Config, _ *flagSet) flagValue { return listValue{&c.CipherSuites, true} }},
	{name: "tls-min-version", group: groupSecurity, kind: kindString,
		usage: "Minimum TLS version supported: TLS1.2 or TLS1.3.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.TLSMinVersion} }},
	{name: "tls-max-version", group: groupSecurity, kind: kindString,
		usage: "Maximum TLS version supported: TLS1.2 or TLS1.3; empty means Go's maximum.",
		bind:  func(c *Config, _ *flagSet) flagValue { return stringValue{&c.TLSMaxVersion} }},

	// Not shown in a group: they are in Usage's header.
	{name: "config-file", kind: kindString,
		usage: "Path to a YAML (or JSON) server configuration file.",
		bind:  func(_ *Config, s *flagSet) flagValue { return stringValue{&s.configFile} }},
	{name: "version", kind: kindBool,
		usage: "Print the version and exit.",
		bind:  func(_ *Config, s *flagSet) flagValue { return boolValue{&s.version} }},
}
