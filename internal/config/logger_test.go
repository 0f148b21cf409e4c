package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var etcdTimestamp = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d{4})$`)

func TestBuildLoggerJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cairn.log")
	c := mustParse(t, []string{"--log-outputs=" + path, "--log-level=warn"}, nil)
	lg, err := c.BuildLogger()
	if err != nil {
		t.Fatal(err)
	}
	lg.Info("dropped below the level")
	lg.Warn("quota exceeds the maximum value")
	if err := lg.Sync(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1 {
		t.Fatalf("log = %q, want one line", b)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("not JSON: %q: %v", lines[0], err)
	}
	if rec["level"] != "warn" || rec["msg"] != "quota exceeds the maximum value" {
		t.Errorf("record = %v", rec)
	}
	if ts, _ := rec["ts"].(string); !etcdTimestamp.MatchString(ts) {
		t.Errorf("ts = %q, want etcd's layout", rec["ts"])
	}
	if caller, _ := rec["caller"].(string); !strings.HasPrefix(caller, "config/logger_test.go:") {
		t.Errorf("caller = %q", rec["caller"])
	}
	// Field order as in etcd's lines.
	if !strings.HasPrefix(lines[0], `{"level":"warn","ts":"`) {
		t.Errorf("line = %s", lines[0])
	}
}

func TestBuildLoggerConsole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cairn.log")
	c := mustParse(t, []string{"--log-outputs=" + path, "--log-format=console"}, nil)
	lg, err := c.BuildLogger()
	if err != nil {
		t.Fatal(err)
	}
	lg.Info("hello")
	_ = lg.Sync()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Split(strings.TrimSpace(string(b)), "\t")
	if len(fields) < 4 || !etcdTimestamp.MatchString(fields[0]) || fields[1] != "info" || fields[3] != "hello" {
		t.Errorf("console line = %q", b)
	}
}

func TestBuildLoggerErrors(t *testing.T) {
	for _, change := range []func(*Config){
		func(c *Config) { c.LogLevel = "chatty" },
		func(c *Config) { c.LogFormat = "xml" },
		func(c *Config) { c.LogOutputs = []string{"default", "stdout"} },
		func(c *Config) { c.LogOutputs = []string{filepath.Join(t.TempDir(), "no", "such", "dir", "x.log")} },
	} {
		c := Default()
		change(c)
		if _, err := c.BuildLogger(); err == nil {
			t.Errorf("BuildLogger(%+v) succeeded", c)
		}
	}
	c := Default()
	c.LogOutputs = []string{"stderr", "stdout"}
	if _, err := c.BuildLogger(); err != nil {
		t.Errorf("stderr,stdout: %v", err)
	}
}
