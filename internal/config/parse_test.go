package config

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func urls(t *testing.T, ss ...string) []url.URL {
	t.Helper()
	out := make([]url.URL, len(ss))
	for i, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = *u
	}
	return out
}

func mustParse(t *testing.T, args, env []string) *Config {
	t.Helper()
	c, err := Parse(args, env)
	if err != nil {
		t.Fatalf("Parse(%q, %q): %v", args, env, err)
	}
	return c
}

func hasWarning(c *Config, sub string) bool {
	for _, w := range c.Warnings {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, nil, nil)
	if len(c.Warnings) != 0 {
		t.Errorf("warnings with no flags: %q", c.Warnings)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("Parse(nil, nil) differs from Default():\n%+v\n%+v", c, Default())
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate: %v", err)
	}
	want := Config{
		Name:                        "default",
		ListenClientURLs:            urls(t, "http://127.0.0.1:2379"),
		AdvertiseClientURLs:         urls(t, "http://127.0.0.1:2379"),
		ListenPeerURLs:              urls(t, "http://127.0.0.1:2380"),
		InitialAdvertisePeerURLs:    urls(t, "http://127.0.0.1:2380"),
		InitialCluster:              "default=http://127.0.0.1:2380",
		InitialClusterToken:         "etcd-cluster",
		InitialClusterState:         "new",
		SnapshotCount:               10000,
		SnapshotCatchUpEntries:      5000,
		HeartbeatInterval:           100 * time.Millisecond,
		ElectionTimeout:             time.Second,
		MaxRequestBytes:             1572864,
		MaxTxnOps:                   128,
		MaxLearners:                 1,
		StrictReconfigCheck:         true,
		AutoCompactionMode:          "periodic",
		AutoCompactionRetention:     "0",
		CompactionBatchLimit:        1000,
		LeaseCheckpointInterval:     5 * time.Second,
		WatchProgressNotifyInterval: 10 * time.Minute,
		GRPCKeepAliveMinTime:        5 * time.Second,
		GRPCKeepAliveInterval:       2 * time.Hour,
		GRPCKeepAliveTimeout:        20 * time.Second,
		EnableGRPCGateway:           true,
		MaxConcurrentStreams:        1<<32 - 1,
		Logger:                      "zap",
		LogLevel:                    "info",
		LogOutputs:                  []string{"default"},
		LogFormat:                   "json",
		WarningApplyDuration:        100 * time.Millisecond,
		Metrics:                     "basic",
		TLSMinVersion:               "TLS1.2",
		FeatureGates: map[string]bool{
			"CompactHashCheck": false, "FastLeaseKeepAlive": true, "InitialCorruptCheck": false,
			"LeaseCheckpoint": false, "LeaseCheckpointPersist": false, "PriorityRequest": false,
			"SetMemberLocalAddr": false, "StopGRPCServiceOnDefrag": false, "TxnModeWriteWithSharedBuffer": true,
		},
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *c, want)
	}
	if got := c.MemberDataDir(); got != "default.cairn" {
		t.Errorf("MemberDataDir = %q", got)
	}
	if got := c.QuotaBytes(); got != 2<<30 {
		t.Errorf("QuotaBytes = %d", got)
	}
}

func TestFlagForms(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(*Config) bool
	}{
		{"double dash equals", []string{"--name=infra0"}, func(c *Config) bool { return c.Name == "infra0" }},
		{"double dash space", []string{"--name", "infra0"}, func(c *Config) bool { return c.Name == "infra0" }},
		{"single dash space", []string{"-name", "infra0"}, func(c *Config) bool { return c.Name == "infra0" }},
		{"single dash equals", []string{"-name=infra0"}, func(c *Config) bool { return c.Name == "infra0" }},
		{"bool false", []string{"--strict-reconfig-check=false"}, func(c *Config) bool { return !c.StrictReconfigCheck }},
		{"bool bare", []string{"--enable-grpc-gateway=false", "--enable-grpc-gateway"}, func(c *Config) bool { return c.EnableGRPCGateway }},
		{"bool 0", []string{"-enable-grpc-gateway=0"}, func(c *Config) bool { return !c.EnableGRPCGateway }},
		{"data dirs", []string{"--data-dir", "/d", "--wal-dir=/w"}, func(c *Config) bool {
			return c.DataDir == "/d" && c.WalDir == "/w" && c.MemberDataDir() == "/d"
		}},
		{"milliseconds", []string{"--heartbeat-interval", "50", "--election-timeout=500"}, func(c *Config) bool {
			return c.HeartbeatInterval == 50*time.Millisecond && c.ElectionTimeout == 500*time.Millisecond
		}},
		{"numbers", []string{"--snapshot-count=123", "--snapshot-catchup-entries=7", "--quota-backend-bytes=-1",
			"--max-request-bytes=1024", "--max-txn-ops=3", "--max-learners=0", "--max-concurrent-streams=9",
			"--compaction-batch-limit=10"}, func(c *Config) bool {
			return c.SnapshotCount == 123 && c.SnapshotCatchUpEntries == 7 && c.QuotaBackendBytes == -1 && c.QuotaBytes() == 0 &&
				c.MaxRequestBytes == 1024 && c.MaxTxnOps == 3 && c.MaxLearners == 0 && c.MaxConcurrentStreams == 9 &&
				c.CompactionBatchLimit == 10
		}},
		{"durations", []string{"--grpc-keepalive-min-time=1s", "--grpc-keepalive-interval", "0", "--grpc-keepalive-timeout=3m",
			"--lease-checkpoint-interval=1m", "--watch-progress-notify-interval=30s", "--warning-apply-duration=1s"}, func(c *Config) bool {
			return c.GRPCKeepAliveMinTime == time.Second && c.GRPCKeepAliveInterval == 0 && c.GRPCKeepAliveTimeout == 3*time.Minute &&
				c.LeaseCheckpointInterval == time.Minute && c.WatchProgressNotifyInterval == 30*time.Second &&
				c.WarningApplyDuration == time.Second
		}},
		{"client urls sorted and unique", []string{"--listen-client-urls=http://127.0.0.2:2379,http://127.0.0.1:2379,http://127.0.0.2:2379",
			"--advertise-client-urls", "http://10.0.0.1:2379"}, func(c *Config) bool {
			return urlsString(c.ListenClientURLs) == "http://127.0.0.1:2379,http://127.0.0.2:2379" &&
				urlsString(c.AdvertiseClientURLs) == "http://10.0.0.1:2379"
		}},
		{"metrics urls", []string{"--listen-metrics-urls=http://0.0.0.0:2381", "--metrics=extensive"}, func(c *Config) bool {
			return urlsString(c.ListenMetricsURLs) == "http://0.0.0.0:2381" && c.Metrics == "extensive"
		}},
		{"logging", []string{"--log-outputs=stdout,/tmp/x.log,stdout", "--log-level=debug", "--log-format=console", "--logger=zap"}, func(c *Config) bool {
			return reflect.DeepEqual(c.LogOutputs, []string{"stdout", "/tmp/x.log"}) && c.LogLevel == "debug" && c.LogFormat == "console"
		}},
		{"cluster", []string{"--initial-cluster-token=tok", "--initial-cluster-state=existing"}, func(c *Config) bool {
			return c.InitialClusterToken == "tok" && c.InitialClusterState == "existing"
		}},
		{"compaction", []string{"--auto-compaction-mode=revision", "--auto-compaction-retention=1000"}, func(c *Config) bool {
			return c.AutoCompactionMode == "revision" && c.AutoCompactionRetention == "1000"
		}},
		{"terminator", []string{"--name=a", "--"}, func(c *Config) bool { return c.Name == "a" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.args, nil)
			if !tt.check(c) {
				t.Errorf("Parse(%q) = %+v", tt.args, c)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     []string
		check   func(*Config) bool
		warning string
		err     string
	}{
		{name: "applies", env: []string{"PATH=/bin", "ETCD_NAME=infra1", "ETCD_SNAPSHOT_COUNT=5", "ETCD_STRICT_RECONFIG_CHECK=false",
			"ETCD_HEARTBEAT_INTERVAL=10", "ETCD_ELECTION_TIMEOUT=100", "ETCD_LOG_OUTPUTS=stdout"},
			check: func(c *Config) bool {
				return c.Name == "infra1" && c.SnapshotCount == 5 && !c.StrictReconfigCheck &&
					c.HeartbeatInterval == 10*time.Millisecond && c.ElectionTimeout == 100*time.Millisecond &&
					reflect.DeepEqual(c.LogOutputs, []string{"stdout"}) && c.InitialCluster == "infra1=http://127.0.0.1:2380"
			}},
		{name: "env and other flag", args: []string{"--data-dir=/d"}, env: []string{"ETCD_NAME=infra1"},
			check: func(c *Config) bool { return c.Name == "infra1" && c.DataDir == "/d" }},
		{name: "empty is unused", env: []string{"ETCD_NAME="},
			check: func(c *Config) bool { return c.Name == "default" }},
		{name: "first of repeated wins", env: []string{"ETCD_NAME=a", "ETCD_NAME=b"},
			check: func(c *Config) bool { return c.Name == "a" }},
		{name: "unknown is a warning", env: []string{"ETCD_FOO_BAR=1"},
			check: func(c *Config) bool { return true }, warning: "unrecognized environment variable ETCD_FOO_BAR"},
		{name: "lower case is not a flag", env: []string{"ETCD_name=x"},
			check: func(c *Config) bool { return c.Name == "default" }, warning: "unrecognized environment variable ETCD_name"},
		{name: "ETCD_VERSION is special", env: []string{"ETCD_VERSION=3.5.0"},
			check: func(c *Config) bool { return true }, warning: "cannot set special environment variable ETCD_VERSION"},
		{name: "bad value", env: []string{"ETCD_SNAPSHOT_COUNT=many"},
			err: `invalid value "many" for ETCD_SNAPSHOT_COUNT: parse error`},
		{name: "flag and env conflict", args: []string{"--name=a"}, env: []string{"ETCD_NAME=b"},
			err: "conflicting environment variable ETCD_NAME is shadowed by corresponding command-line flag --name"},
		{name: "conflict even when empty", args: []string{"--name=a"}, env: []string{"ETCD_NAME="},
			err: "conflicting environment variable ETCD_NAME is shadowed"},
		{name: "unsupported via env", env: []string{"ETCD_CLIENT_CRL_FILE=/etc/crl.pem"},
			err: "unsupported environment variable ETCD_CLIENT_CRL_FILE (flag --client-crl-file): cairn does not implement it yet"},
		{name: "unsupported via env at etcd default", env: []string{"ETCD_CLIENT_CERT_AUTH=false", "ETCD_AUTH_TOKEN=simple"},
			check: func(c *Config) bool { return true }},
		{name: "listen without advertise via env", env: []string{"ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379"},
			err: "--advertise-client-urls is required when --listen-client-urls is set explicitly"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args, tt.env)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("config = %+v", c)
			}
			if tt.warning != "" && !hasWarning(c, tt.warning) {
				t.Errorf("warnings %q lack %q", c.Warnings, tt.warning)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		err  string
	}{
		{"unknown flag", []string{"--foo=1"}, "flag provided but not defined: -foo"},
		{"unknown single dash", []string{"-bar"}, "flag provided but not defined: -bar"},
		{"removed etcd flag", []string{"--proxy=on"}, "flag provided but not defined: -proxy"},
		{"positional", []string{"--name=a", "extra"}, `"extra" is not a valid flag`},
		{"missing argument", []string{"--name"}, "flag needs an argument: -name"},
		{"bad bool", []string{"--strict-reconfig-check=maybe"}, `invalid boolean value "maybe" for -strict-reconfig-check`},
		{"bad number", []string{"--max-txn-ops=-1"}, `invalid value "-1" for flag -max-txn-ops: parse error`},
		{"bad duration", []string{"--grpc-keepalive-timeout=10"}, `invalid value "10" for flag -grpc-keepalive-timeout: parse error`},
		{"bad cluster state", []string{"--initial-cluster-state=old"}, `invalid value "old" for flag -initial-cluster-state: valid values are ["new" "existing"]`},

		{"unsupported TLS", []string{"--client-crl-file=/c.pem"}, "unsupported flag --client-crl-file: cairn does not implement it yet"},
		{"unsupported bool", []string{"--peer-skip-client-san-verification"}, "unsupported flag --peer-skip-client-san-verification: cairn does not implement it yet"},
		{"unsupported discovery", []string{"--discovery-endpoints=http://d:2379"}, "unsupported flag --discovery-endpoints"},
		{"unsupported jwt", []string{"--auth-token=jwt,pub-key=a"}, "unsupported flag --auth-token"},
		{"unsupported unsafe", []string{"--force-new-cluster"}, "unsupported flag --force-new-cluster"},
		{"unsupported experimental", []string{"--experimental-compact-hash-check-time=2m"}, "unsupported flag --experimental-compact-hash-check-time"},
		{"unsupported pre-vote off", []string{"--pre-vote=false"}, "unsupported flag --pre-vote"},

		{"bad scheme", []string{"--listen-peer-urls=ftp://127.0.0.1:2380"}, "URL scheme must be http, https, unix, or unixs: ftp://127.0.0.1:2380"},
		{"no port", []string{"--initial-advertise-peer-urls=http://10.0.0.1"}, `URL address does not have the form "host:port": http://10.0.0.1`},
		{"path", []string{"--advertise-client-urls=http://10.0.0.1:2379/v3"}, "URL must not contain a path: http://10.0.0.1:2379/v3"},
		{"no scheme", []string{"--listen-metrics-urls=127.0.0.1:2381"}, "127.0.0.1:2381"},
		{"host name to bind", []string{"--listen-peer-urls=http://example.com:2380"}, "expected IP in URL for binding (http://example.com:2380)"},
		{"TLS listener", []string{"--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379"},
			"TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"},
		{"advertise without listen", []string{"--listen-client-urls=http://0.0.0.0:2379"}, "--advertise-client-urls is required when --listen-client-urls is set explicitly"},
		{"empty name", []string{"--name="}, "--name must not be empty"},

		{"heartbeat zero", []string{"--heartbeat-interval=0"}, "--heartbeat-interval must be >0 (set to 0ms)"},
		{"election zero", []string{"--election-timeout=0"}, "--election-timeout must be >0 (set to 0ms)"},
		{"election below 5 heartbeats", []string{"--heartbeat-interval=300", "--election-timeout=1000"},
			"--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"},
		{"election too long", []string{"--election-timeout=50001"}, "--election-timeout[50001ms] is too long, and should be set less than 50000ms"},

		{"compaction mode", []string{"--auto-compaction-mode=daily"}, `unknown auto-compaction-mode "daily"`},
		{"compaction mode empty", []string{"--auto-compaction-mode="}, "undefined auto-compaction-mode"},
		{"compaction retention", []string{"--auto-compaction-retention=soon"}, "error parsing CompactionRetention"},
		{"logger", []string{"--logger=capnslog"}, "--logger=capnslog is removed in v3.5"},
		{"log level", []string{"--log-level=loud"}, "--log-level"},
		{"log format", []string{"--log-format=xml"}, "unknown log format: xml, supported values json, console"},
		{"log outputs", []string{"--log-outputs=default,/tmp/x"}, `multi logoutput for "default" is not supported yet`},
		{"journald", []string{"--log-outputs=systemd/journal"}, "journald"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.args, nil)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Parse(%q) err = %v, want %q", tt.args, err, tt.err)
			}
		})
	}
}

func TestAcceptedAtEtcdDefault(t *testing.T) {
	args := []string{"--client-cert-auth=false", "--peer-auto-tls=false", "--auth-token=simple", "--enable-pprof=false",
		"--cors=*", "--host-whitelist=", "--tls-min-version=TLS1.2", "--pre-vote", "--initial-election-tick-advance=true",
		"--raft-read-timeout=5s", "--discovery-insecure-transport", "--discovery-fallback=exit", "--bcrypt-cost=10",
		"--unsafe-no-fsync=false", "--force-new-cluster=0", "--compact-hash-check-time=60s"}
	c := mustParse(t, args, nil)
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %q", c.Warnings)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"--name=a", "-h"}} {
		if _, err := Parse(args, nil); !errors.Is(err, ErrHelp) {
			t.Errorf("Parse(%q) = %v, want ErrHelp", args, err)
		}
	}
	for _, args := range [][]string{{"--version"}, {"-version"}, {"--version", "--config-file=/nonexistent"}} {
		if _, err := Parse(args, nil); !errors.Is(err, ErrVersion) {
			t.Errorf("Parse(%q) = %v, want ErrVersion", args, err)
		}
	}
	if _, err := Parse([]string{"--version=false"}, nil); err != nil {
		t.Errorf("--version=false: %v", err)
	}
}

func TestIgnoredAndDeprecated(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(*Config) bool
		warning string
		err     string
	}{
		{name: "max-wals", args: []string{"--max-wals=10"}, warning: "--max-wals has no effect in cairn"},
		{name: "bbolt freelist", args: []string{"--backend-bbolt-freelist-type", "array"}, warning: "--backend-bbolt-freelist-type has no effect"},
		{name: "etcd ignored bool", args: []string{"-v"}, warning: "--v has no effect"},
		{name: "compaction batch limit", args: []string{"--experimental-compaction-batch-limit=7"},
			check: func(c *Config) bool { return c.CompactionBatchLimit == 7 }, warning: "use --compaction-batch-limit instead"},
		{name: "snapshot catchup", args: []string{"--experimental-snapshot-catchup-entries", "99"},
			check: func(c *Config) bool { return c.SnapshotCatchUpEntries == 99 }, warning: "--experimental-snapshot-catchup-entries is a deprecated"},
		{name: "watch progress", args: []string{"--experimental-watch-progress-notify-interval=1m"},
			check: func(c *Config) bool { return c.WatchProgressNotifyInterval == time.Minute }},
		{name: "warning apply", args: []string{"--experimental-warning-apply-duration=1s"},
			check: func(c *Config) bool { return c.WarningApplyDuration == time.Second }},
		{name: "lease checkpoint gates", args: []string{"--experimental-enable-lease-checkpoint", "--experimental-enable-lease-checkpoint-persist"},
			check: func(c *Config) bool {
				return c.FeatureEnabled("LeaseCheckpoint") && c.FeatureEnabled("LeaseCheckpointPersist")
			}, warning: "use --feature-gates=LeaseCheckpoint=true instead"},
		{name: "corrupt check time", args: []string{"--corrupt-check-time=3m"},
			check: func(c *Config) bool { return c.CorruptCheckTime == 3*time.Minute }},
		{name: "corrupt check time, experimental spelling", args: []string{"--experimental-corrupt-check-time=30s"},
			check: func(c *Config) bool { return c.CorruptCheckTime == 30*time.Second }},
		{name: "corrupt check gate", args: []string{"--experimental-initial-corrupt-check=true"},
			check: func(c *Config) bool { return c.FeatureGates["InitialCorruptCheck"] }},
		{name: "gate off", args: []string{"--experimental-txn-mode-write-with-shared-buffer=false"},
			check: func(c *Config) bool { return !c.FeatureGates["TxnModeWriteWithSharedBuffer"] }},
		{name: "both spellings", args: []string{"--experimental-compaction-batch-limit=7", "--compaction-batch-limit=8"},
			err: "cannot specify both --experimental-compaction-batch-limit and --compaction-batch-limit; use --compaction-batch-limit"},
		{name: "snapshot-count zero", args: []string{"--snapshot-count=0"},
			check: func(c *Config) bool { return c.SnapshotCount == DefaultSnapshotCount }, warning: "--snapshot-count is 0"},
		{name: "quota above max", args: []string{"--quota-backend-bytes=200000000000"}, warning: "quota exceeds the maximum value"},
		{name: "request limit", args: []string{"--max-request-bytes=20000000"}, warning: "exceeded recommended request limit"},
		{name: "odd metrics", args: []string{"--metrics=full"},
			check: func(c *Config) bool { return c.Metrics == "basic" }, warning: `--metrics "full"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args, nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil && !tt.check(c) {
				t.Errorf("config = %+v", c)
			}
			if tt.warning != "" && !hasWarning(c, tt.warning) {
				t.Errorf("warnings %q lack %q", c.Warnings, tt.warning)
			}
		})
	}
}

func TestFeatureGates(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want map[string]bool // gates that must have these values
		err  string
	}{
		{name: "list", args: []string{"--feature-gates=LeaseCheckpoint=true,LeaseCheckpointPersist=true,FastLeaseKeepAlive=false"},
			want: map[string]bool{"LeaseCheckpoint": true, "LeaseCheckpointPersist": true, "FastLeaseKeepAlive": false, "TxnModeWriteWithSharedBuffer": true}},
		{name: "spaces and empty items", args: []string{"--feature-gates", " CompactHashCheck = true ,, PriorityRequest=1"},
			want: map[string]bool{"CompactHashCheck": true, "PriorityRequest": true}},
		{name: "repeated flag adds", args: []string{"--feature-gates=CompactHashCheck=true", "--feature-gates=SetMemberLocalAddr=true"},
			want: map[string]bool{"CompactHashCheck": true, "SetMemberLocalAddr": true}},
		{name: "AllAlpha", args: []string{"--feature-gates=AllAlpha=true,PriorityRequest=false"},
			want: map[string]bool{"CompactHashCheck": true, "LeaseCheckpoint": true, "PriorityRequest": false, "FastLeaseKeepAlive": true}},
		{name: "AllBeta off", args: []string{"--feature-gates=AllBeta=false"},
			want: map[string]bool{"FastLeaseKeepAlive": false, "TxnModeWriteWithSharedBuffer": false, "CompactHashCheck": false}},
		{name: "unknown", args: []string{"--feature-gates=Teleport=true"}, err: "unrecognized feature gate: Teleport"},
		{name: "missing value", args: []string{"--feature-gates=LeaseCheckpoint"}, err: "missing bool value for LeaseCheckpoint"},
		{name: "bad value", args: []string{"--feature-gates=LeaseCheckpoint=yes"}, err: "invalid value of LeaseCheckpoint=yes"},
		{name: "persist needs checkpoint", args: []string{"--feature-gates=LeaseCheckpointPersist=true"},
			err: "enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint"},
		{name: "experimental and gate", args: []string{"--experimental-enable-lease-checkpoint", "--feature-gates=LeaseCheckpoint=true"},
			err: "cannot specify both flags: --experimental-enable-lease-checkpoint=true and --feature-gates=LeaseCheckpoint=true at the same time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args, nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for g, v := range tt.want {
				if c.FeatureGates[g] != v || c.FeatureEnabled(g) != v {
					t.Errorf("gate %s = %v, want %v", g, c.FeatureGates[g], v)
				}
			}
			if len(c.FeatureGates) != len(KnownFeatureGates()) {
				t.Errorf("FeatureGates has %d gates, want %d", len(c.FeatureGates), len(KnownFeatureGates()))
			}
		})
	}
}

func TestAutoCompaction(t *testing.T) {
	tests := []struct {
		mode, retention string
		period          time.Duration
		revs            int64
		err             string
	}{
		{mode: "periodic", retention: "0"},
		{mode: "periodic", retention: ""},
		{mode: "periodic", retention: "1", period: time.Hour},
		{mode: "periodic", retention: "72", period: 72 * time.Hour},
		{mode: "periodic", retention: "30m", period: 30 * time.Minute},
		{mode: "periodic", retention: "1h30m", period: 90 * time.Minute},
		{mode: "periodic", retention: "-1", err: "must not be negative"},
		{mode: "periodic", retention: "-5m", err: "must not be negative"},
		{mode: "periodic", retention: "1x", err: "error parsing CompactionRetention"},
		{mode: "revision", retention: "0"},
		{mode: "revision", retention: "1000", revs: 1000},
		{mode: "revision", retention: "1h", err: "must be a number of revisions"},
		{mode: "revision", retention: "-3", err: "must be a number of revisions"},
		{mode: "", retention: "5", err: "--auto-compaction-mode is undefined"},
		{mode: "hourly", retention: "5", err: `unknown auto-compaction-mode "hourly"`},
	}
	for _, tt := range tests {
		c := Default()
		c.AutoCompactionMode, c.AutoCompactionRetention = tt.mode, tt.retention
		mode, period, revs, err := c.AutoCompaction()
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s %q: err = %v, want %q", tt.mode, tt.retention, err, tt.err)
			}
			continue
		}
		if err != nil || mode != tt.mode || period != tt.period || revs != tt.revs {
			t.Errorf("%s %q = %q %v %d %v, want %v %d", tt.mode, tt.retention, mode, period, revs, err, tt.period, tt.revs)
		}
	}
}

func TestInitialCluster(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
		err  string
	}{
		{name: "default", want: "default=http://127.0.0.1:2380"},
		{name: "from name", args: []string{"--name=infra0"}, want: "infra0=http://127.0.0.1:2380"},
		{name: "from name and peer urls", args: []string{"--name=infra0", "--listen-peer-urls=http://10.0.1.10:2380",
			"--initial-advertise-peer-urls=http://10.0.1.10:2380,http://10.0.2.10:2380"},
			want: "infra0=http://10.0.1.10:2380,infra0=http://10.0.2.10:2380"},
		{name: "explicit", args: []string{"--name=infra1", "--initial-advertise-peer-urls=http://10.0.1.11:2380",
			"--initial-cluster=infra0=http://10.0.1.10:2380,infra1=http://10.0.1.11:2380,infra2=http://10.0.1.12:2380"},
			want: "infra0=http://10.0.1.10:2380,infra1=http://10.0.1.11:2380,infra2=http://10.0.1.12:2380"},
		{name: "empty means derived", args: []string{"--name=x", "--initial-cluster="}, want: "x=http://127.0.0.1:2380"},
		{name: "name missing", args: []string{"--name=infra3", "--initial-cluster=infra0=http://10.0.1.10:2380"},
			err: `couldn't find local name "infra3" in the initial cluster configuration`},
		{name: "cluster url not advertised", args: []string{"--name=infra0", "--initial-cluster=infra0=http://10.0.1.10:2380"},
			err: "--initial-cluster has infra0=http://10.0.1.10:2380 but missing from --initial-advertise-peer-urls=http://127.0.0.1:2380"},
		{name: "advertised url not in cluster", args: []string{"--name=infra0",
			"--initial-advertise-peer-urls=http://127.0.0.1:2380,http://127.0.0.2:2380", "--initial-cluster=infra0=http://127.0.0.1:2380"},
			err: "--initial-advertise-peer-urls has http://127.0.0.2:2380 but missing from --initial-cluster=infra0=http://127.0.0.1:2380,infra0=http://127.0.0.2:2380"},
		{name: "existing skips the url match", args: []string{"--name=infra0", "--initial-cluster-state=existing",
			"--initial-cluster=infra0=http://10.0.1.10:2380"}, want: "infra0=http://10.0.1.10:2380"},
		{name: "duplicate url", args: []string{"--initial-cluster=default=http://127.0.0.1:2380,b=http://127.0.0.1:2380"},
			err: "has duplicate url"},
		{name: "bad url", args: []string{"--initial-cluster=default=127.0.0.1:2380"}, err: "--initial-cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args, nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.InitialCluster != tt.want {
				t.Errorf("InitialCluster = %q, want %q", c.InitialCluster, tt.want)
			}
		})
	}

	c := Default()
	c.InitialCluster = "a=http://10.0.0.2:2380,b=http://10.0.0.3:2380,a=http://10.0.0.1:2380"
	m, err := c.InitialClusterMembers()
	if err != nil {
		t.Fatal(err)
	}
	if urlsString(m["a"]) != "http://10.0.0.1:2380,http://10.0.0.2:2380" || urlsString(m["b"]) != "http://10.0.0.3:2380" || len(m) != 2 {
		t.Errorf("InitialClusterMembers = %v", m)
	}
}

func TestUnixURLs(t *testing.T) {
	c := mustParse(t, []string{"--listen-client-urls=unix://localhost:2379,unix:///run/cairn.sock",
		"--advertise-client-urls=unix://localhost:2379"}, nil)
	if len(c.ListenClientURLs) != 2 {
		t.Fatalf("ListenClientURLs = %v", c.ListenClientURLs)
	}
	tests := []struct{ in, network, addr string }{
		{"unix://localhost:2379", "unix", "localhost:2379"},
		{"unix:///run/cairn.sock", "unix", "/run/cairn.sock"},
		{"unixs://localhost:2379", "unix", "localhost:2379"},
		{"unix:cairn.sock", "unix", "cairn.sock"},
		{"http://127.0.0.1:2379", "tcp", "127.0.0.1:2379"},
		{"http://[::1]:2379", "tcp", "[::1]:2379"},
	}
	for _, tt := range tests {
		n, a := ListenAddress(urls(t, tt.in)[0])
		if n != tt.network || a != tt.addr {
			t.Errorf("ListenAddress(%s) = %s %s, want %s %s", tt.in, n, a, tt.network, tt.addr)
		}
	}
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileSample(t *testing.T) {
	path := filepath.Join("testdata", "etcd.conf.yml")
	for _, src := range []struct {
		name      string
		args, env []string
	}{
		{"flag", []string{"--config-file=" + path}, nil},
		{"env", nil, []string{"ETCD_CONFIG_FILE=" + path}},
	} {
		t.Run(src.name, func(t *testing.T) {
			c := mustParse(t, src.args, src.env)
			checks := []struct {
				what      string
				got, want any
			}{
				{"name", c.Name, "infra0"},
				{"data-dir", c.DataDir, "/var/lib/cairn/infra0"},
				{"wal-dir", c.WalDir, ""},
				{"snapshot-count", c.SnapshotCount, uint64(20000)},
				{"heartbeat", c.HeartbeatInterval, 150 * time.Millisecond},
				{"election", c.ElectionTimeout, 1500 * time.Millisecond},
				{"quota", c.QuotaBackendBytes, int64(8 << 30)},
				{"listen peer", urlsString(c.ListenPeerURLs), "http://10.0.1.10:2380"},
				{"listen client", urlsString(c.ListenClientURLs), "http://10.0.1.10:2379,http://127.0.0.1:2379"},
				{"advertise peer", urlsString(c.InitialAdvertisePeerURLs), "http://10.0.1.10:2380"},
				{"advertise client", urlsString(c.AdvertiseClientURLs), "http://10.0.1.10:2379"},
				{"initial cluster", c.InitialCluster, "infra0=http://10.0.1.10:2380,infra1=http://10.0.1.11:2380,infra2=http://10.0.1.12:2380"},
				{"token", c.InitialClusterToken, "etcd-cluster-1"},
				{"state", c.InitialClusterState, "new"},
				{"strict", c.StrictReconfigCheck, false},
				{"log level", c.LogLevel, "debug"},
				{"log outputs", c.LogOutputs, []string{"stderr"}},
				{"compaction mode", c.AutoCompactionMode, "periodic"},
				{"compaction retention", c.AutoCompactionRetention, "1"},
				{"max txn ops", c.MaxTxnOps, uint(256)},
				{"max request bytes", c.MaxRequestBytes, uint(2097152)},
				{"keepalive min time (ns)", c.GRPCKeepAliveMinTime, 10 * time.Second},
				{"keepalive interval (string)", c.GRPCKeepAliveInterval, time.Hour},
				{"keepalive timeout (default)", c.GRPCKeepAliveTimeout, 20 * time.Second},
				{"max learners", c.MaxLearners, 2},
				{"gate", c.FeatureGates["LeaseCheckpointPersist"], true},
				{"watch progress", c.WatchProgressNotifyInterval, 5 * time.Minute},
				{"config file", c.ConfigFile, path},
			}
			for _, ch := range checks {
				if !reflect.DeepEqual(ch.got, ch.want) {
					t.Errorf("%s = %v, want %v", ch.what, ch.got, ch.want)
				}
			}
			for _, w := range []string{`config file key "max-wals" has no effect`, `unknown config file key "discovery"`,
				`unknown config file key "proxy"`, `experimental-watch-progress-notify-interval" is a deprecated`} {
				if !hasWarning(c, w) {
					t.Errorf("warnings %q lack %q", c.Warnings, w)
				}
			}
		})
	}
}

func TestConfigFileIgnoresFlagsAndEnv(t *testing.T) {
	path := writeFile(t, "c.yml", "name: from-file\n")
	c := mustParse(t, []string{"--config-file", path, "--name=from-flag", "--snapshot-count=5"},
		[]string{"ETCD_DATA_DIR=/env", "ETCD_NAME=from-env"})
	if c.Name != "from-file" || c.DataDir != "" || c.SnapshotCount != DefaultSnapshotCount {
		t.Errorf("config = %+v", c)
	}
	if c.InitialCluster != "from-file=http://127.0.0.1:2380" {
		t.Errorf("InitialCluster = %q", c.InitialCluster)
	}
	if !hasWarning(c, "ignoring command-line flags --name --snapshot-count") || !hasWarning(c, "ignoring environment variables ETCD_DATA_DIR ETCD_NAME") {
		t.Errorf("warnings = %q", c.Warnings)
	}
	// Unknown flags are still an error: the command line is parsed first.
	if _, err := Parse([]string{"--config-file", path, "--nope"}, nil); err == nil || err.Error() != "flag provided but not defined: -nope" {
		t.Errorf("unknown flag with config file: %v", err)
	}
	// The flag wins over ETCD_CONFIG_FILE, without a conflict.
	other := writeFile(t, "o.yml", "name: other\n")
	c = mustParse(t, []string{"--config-file=" + path}, []string{"ETCD_CONFIG_FILE=" + other})
	if c.Name != "from-file" {
		t.Errorf("name = %q", c.Name)
	}
}

func TestConfigFile(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		check   func(*Config) bool
		warning string
		err     string
	}{
		{name: "json", file: `{"name": "j", "heartbeat-interval": 10, "election-timeout": 100, "log-outputs": ["stdout"], "enable-grpc-gateway": false}`,
			check: func(c *Config) bool {
				return c.Name == "j" && c.HeartbeatInterval == 10*time.Millisecond && !c.EnableGRPCGateway &&
					reflect.DeepEqual(c.LogOutputs, []string{"stdout"})
			}},
		{name: "empty file", file: "", check: func(c *Config) bool { return reflect.DeepEqual(c.Name, "default") }},
		{name: "listen client keeps default advertise", file: "listen-client-urls: http://0.0.0.0:2379\n",
			check: func(c *Config) bool { return urlsString(c.AdvertiseClientURLs) == DefaultAdvertiseClientURL }},
		{name: "feature gates as a map", file: "feature-gates:\n  CompactHashCheck: true\n  FastLeaseKeepAlive: false\n",
			check: func(c *Config) bool {
				return c.FeatureGates["CompactHashCheck"] && !c.FeatureGates["FastLeaseKeepAlive"]
			}},
		{name: "numbers as strings", file: "snapshot-count: '42'\nauto-compaction-retention: 5\n",
			check: func(c *Config) bool { return c.SnapshotCount == 42 && c.AutoCompactionRetention == "5" }},
		{name: "experimental gate", file: "experimental-initial-corrupt-check: true\n",
			check: func(c *Config) bool { return c.FeatureGates["InitialCorruptCheck"] }, warning: "experimental-initial-corrupt-check"},
		{name: "unsupported at default", file: "auto-tls: false\ncipher-suites: []\nenable-pprof: false\ntls-min-version: TLS1.2\n",
			check: func(c *Config) bool { return true }},
		{name: "unsupported", file: "enable-distributed-tracing: true\n", err: `unsupported config file key "enable-distributed-tracing": cairn does not implement it yet`},
		{name: "pprof", file: "enable-pprof: true\n", check: func(c *Config) bool { return c.EnablePprof }},
		{name: "unsupported list", file: "peer-cert-allowed-cn: [a, b]\n", err: `unsupported config file key "peer-cert-allowed-cn"`},
		{name: "tls section", file: "client-transport-security:\n  cert-file: /etc/c.pem\n  key-file: /etc/k.pem\n  client-cert-auth: true\n  trusted-ca-file: /etc/ca.pem\n",
			check: func(c *Config) bool {
				return c.ClientTLS == TLSInfo{CertFile: "/etc/c.pem", KeyFile: "/etc/k.pem", ClientCertAuth: true, TrustedCAFile: "/etc/ca.pem"}
			}, warning: "no --listen-client-urls URL is https"},
		{name: "tls section bool", file: "peer-transport-security:\n  auto-tls: true\n",
			check: func(c *Config) bool { return c.PeerTLS.AutoTLS && !c.ClientTLS.AutoTLS }},
		{name: "tls section unsupported key", file: "peer-transport-security:\n  allowed-cn: x\n",
			err: `unsupported config file key "peer-transport-security.allowed-cn"`},
		{name: "bad value", file: "snapshot-count: lots\n", err: `invalid value "lots" for "snapshot-count": parse error`},
		{name: "bad state", file: "initial-cluster-state: joined\n", err: `"initial-cluster-state"`},
		{name: "map where a value goes", file: "name:\n  a: b\n", err: `invalid value for "name"`},
		{name: "not a map", file: "- a\n- b\n", err: "not a map of settings"},
		{name: "bad yaml", file: "name: [\n", err: "config file"},
		{name: "validation", file: "heartbeat-interval: 500\n", err: "should be at least as 5 times as --heartbeat-interval[500ms]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "etcd.conf.yml", tt.file)
			c, err := Parse([]string{"--config-file=" + path}, nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("config = %+v", c)
			}
			if tt.warning != "" && !hasWarning(c, tt.warning) {
				t.Errorf("warnings %q lack %q", c.Warnings, tt.warning)
			}
		})
	}
	if _, err := Parse([]string{"--config-file=" + filepath.Join(t.TempDir(), "missing.yml")}, nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestValidateHandBuilt(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		err    string
	}{
		{"zero snapshot count", func(c *Config) { c.SnapshotCount = 0 }, "--snapshot-count must be >0"},
		{"bad state", func(c *Config) { c.InitialClusterState = "joined" }, `unexpected clusterState "joined"`},
		{"unknown gate", func(c *Config) { c.FeatureGates = map[string]bool{"Nope": true} }, "unrecognized feature gate: Nope"},
		{"no initial cluster", func(c *Config) { c.InitialCluster = "" }, "initial cluster unset"},
		{"advertise empty host", func(c *Config) { c.AdvertiseClientURLs = urlsMust("http://:2379") }, "unexpected empty host"},
		{"no advertise", func(c *Config) { c.AdvertiseClientURLs = nil }, "--advertise-client-urls is required"},
	}
	for _, tt := range tests {
		c := Default()
		tt.change(c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.err)
		}
	}
	c := Default()
	c.AdvertiseClientURLs = nil
	if err := c.Validate(); !errors.Is(err, ErrUnsetAdvertiseClientURLs) {
		t.Errorf("err = %v, want ErrUnsetAdvertiseClientURLs", err)
	}
}

func urlsMust(s string) []url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return []url.URL{*u}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"data-dir": "ETCD_DATA_DIR", "listen-client-urls": "ETCD_LISTEN_CLIENT_URLS", "name": "ETCD_NAME"} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every flag in every table is reachable, and no name is in two tables.
func TestFlagTablesDisjoint(t *testing.T) {
	seen := map[string]string{}
	add := func(name, table string) {
		if prev, ok := seen[name]; ok {
			t.Errorf("flag %q in %s and %s", name, prev, table)
		}
		seen[name] = table
	}
	for _, o := range options {
		add(o.name, "options")
	}
	for n := range aliases {
		add(n, "aliases")
	}
	for n := range gateFlags {
		add(n, "gateFlags")
	}
	for n := range ignored {
		add(n, "ignored")
	}
	for n := range unsupported {
		add(n, "unsupported")
	}
	for alias, target := range aliases {
		if seen[target] != "options" {
			t.Errorf("alias %q targets %q, which is not a supported flag", alias, target)
		}
	}
	for flagName, gate := range gateFlags {
		if _, ok := knownGates[gate]; !ok {
			t.Errorf("%q sets unknown gate %q", flagName, gate)
		}
	}
}
