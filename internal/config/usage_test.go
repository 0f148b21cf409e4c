package config

import (
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	u := Usage()
	for _, o := range options {
		if o.group == "" {
			if !strings.Contains(u, "--"+o.name) {
				t.Errorf("usage lacks --%s", o.name)
			}
			continue
		}
		if !strings.Contains(u, "\n  --"+o.name+" '") {
			t.Errorf("usage lacks --%s with its default", o.name)
		}
	}
	for name := range unsupported {
		if strings.Contains(u, "--"+name+" ") || strings.Contains(u, "--"+name+"\n") {
			t.Errorf("usage lists unsupported --%s", name)
		}
	}
	for _, want := range []string{
		"--heartbeat-interval '100'",
		"--listen-client-urls 'http://127.0.0.1:2379'",
		"--initial-cluster 'default=http://127.0.0.1:2380'",
		"--grpc-keepalive-interval '2h'",
		"--watch-progress-notify-interval '10m'",
		"--data-dir '${name}.cairn'",
		"LeaseCheckpointPersist=true|false (ALPHA - default=false)",
		"--experimental-compaction-batch-limit",
		"\nMember:\n", "\nClustering:\n", "\nLogging:\n", "\nProfiling and Monitoring:\n", "\nFeatures:\n",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}
