package warden

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseGood(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		check func(t *testing.T, c *Config)
	}{
		{"defaults", `
services:
  - name: db1
    command: /usr/bin/redis-server
    args: ["--port", "20000"]
    address: 127.0.0.1:20000
`, func(t *testing.T, c *Config) {
			s := c.Services[0]
			eq(t, "key", s.Key, "/services/db1")
			eq(t, "health.type", s.Health.Type, HealthTCP)
			eq(t, "health.target", s.Health.Target, "127.0.0.1:20000")
			eq(t, "health.interval", s.Health.Interval.D, DefaultHealthInterval)
			eq(t, "health.timeout", s.Health.Timeout.D, DefaultHealthTimeout)
			eq(t, "health.failure_threshold", s.Health.FailureThreshold, DefaultFailureThreshold)
			eq(t, "health.start_period", s.Health.StartPeriod.D, DefaultStartPeriod)
			eq(t, "restart", s.Restart, RestartAlways)
			eq(t, "backoff.initial", s.Backoff.Initial.D, DefaultBackoffInitial)
			eq(t, "backoff.max", s.Backoff.Max.D, DefaultBackoffMax)
			eq(t, "backoff.multiplier", s.Backoff.Multiplier, DefaultBackoffMult)
			eq(t, "backoff.reset_after", s.Backoff.ResetAfter.D, DefaultBackoffReset)
			eq(t, "max_restarts", *s.MaxRestarts, DefaultMaxRestarts)
			eq(t, "restart_window", s.RestartWindow.D, DefaultRestartWindow)
			eq(t, "placement.group", s.Placement.Group, "")
			eq(t, "stop_signal", s.Signal, syscall.SIGTERM)
			eq(t, "stop_grace", s.StopGrace.D, DefaultStopGrace)
		}},
		{"everything", `
services:
  - name: web
    key: /svc/web
    shell: "exec ./web --listen :8080"
    env: {MODE: prod}
    dir: /tmp
    address: 127.0.0.1:8080
    health: {type: http, interval: 500ms, timeout: 0.25, failure_threshold: 2, start_period: 0s}
    restart: on-failure
    backoff: {initial: 1s, max: 10s, multiplier: 1.5, reset_after: 20}
    max_restarts: 0
    restart_window: 2m
    placement: {group: edge}
    stop_signal: INT
    stop_grace: 3s
`, func(t *testing.T, c *Config) {
			s := c.Services[0]
			eq(t, "key", s.Key, "/svc/web")
			eq(t, "health.target", s.Health.Target, "http://127.0.0.1:8080/")
			eq(t, "health.interval", s.Health.Interval.D, 500*time.Millisecond)
			eq(t, "health.timeout", s.Health.Timeout.D, 250*time.Millisecond)
			eq(t, "health.start_period", s.Health.StartPeriod.D, time.Duration(0))
			eq(t, "backoff.reset_after", s.Backoff.ResetAfter.D, 20*time.Second)
			eq(t, "max_restarts", *s.MaxRestarts, 0)
			eq(t, "placement.group", s.Placement.Group, "edge")
			eq(t, "stop_signal", s.Signal, syscall.SIGINT)
		}},
		{"json and command check", `{"services": [{"name": "a", "command": "/bin/true", "health": {"command": ["/bin/true"]}, "placement": "host"}]}`,
			func(t *testing.T, c *Config) {
				eq(t, "health.type", c.Services[0].Health.Type, HealthCommand)
			}},
		{"no health", `services: [{name: a, command: /bin/sleep, args: ["100"]}]`, func(t *testing.T, c *Config) {
			eq(t, "health.type", c.Services[0].Health.Type, HealthNone)
		}},
		{"shorthand", `{"etcd": {"replSet1": {"key": "/services/db1", "mongod": "mongod --port 20000 --dbpath /data/db/replSet1 --replSet rs"},
		                        "replSet2": {"key": "/services/db2", "mongod": "--port=30000 --replSet 'r s'"},
		                        "replSet3": {"mongod": "mongod --port 40000 > /tmp/log"}}}`,
			func(t *testing.T, c *Config) {
				if len(c.Services) != 3 {
					t.Fatalf("got %d services", len(c.Services))
				}
				s := c.Services[0]
				eq(t, "name", s.Name, "replSet1")
				eq(t, "key", s.Key, "/services/db1")
				eq(t, "command", s.Command, "mongod")
				eq(t, "args", strings.Join(s.Args, "|"), "--port|20000|--dbpath|/data/db/replSet1|--replSet|rs")
				eq(t, "address", s.Address, "127.0.0.1:20000")
				eq(t, "health.type", s.Health.Type, HealthTCP)
				s = c.Services[1]
				eq(t, "command", s.Command, "mongod")
				eq(t, "args", strings.Join(s.Args, "|"), "--port=30000|--replSet|r s")
				eq(t, "address", s.Address, "127.0.0.1:30000")
				s = c.Services[2]
				eq(t, "key", s.Key, "/services/replSet3")
				eq(t, "shell", s.Shell, "mongod --port 40000 > /tmp/log")
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func eq[T comparable](t *testing.T, field string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", field, got, want)
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string // each must appear in the error
	}{
		{"not yaml", "services: [", []string{"not valid YAML or JSON"}},
		{"not an object", "- a", []string{"must hold an object"}},
		{"empty", "services: []", []string{"no services"}},
		{"interval", `services: [{name: db1, command: x, address: "127.0.0.1:1", health: {interval: 0s}}]`,
			[]string{`service "db1": health.interval: must be > 0`}},
		{"several at once", `
services:
  - name: db1
    command: x
    health: {type: tcp, timeout: -1s, failure_threshold: -2}
    restart: sometimes
  - name: db2
    shell: "x"
    args: [a]
    backoff: {initial: 2s, max: 1s, multiplier: 0.5}
    stop_signal: SIGNOPE
    stop_grace: soon
`, []string{
			`service "db1": health.target: required for a tcp check`,
			`service "db1": health.timeout: must be > 0`,
			`service "db1": health.failure_threshold: must be >= 1`,
			`service "db1": restart: must be always, on-failure or never, not "sometimes"`,
			`service "db2": args: not allowed with shell`,
			`service "db2": backoff.max: must be >= backoff.initial`,
			`service "db2": backoff.multiplier: must be >= 1`,
			`service "db2": stop_signal: unknown signal "SIGNOPE"`,
			`service "db2": stop_grace: invalid duration "soon"`,
			"9 errors",
		}},
		{"no command", `services: [{name: a}]`, []string{`service "a": command: one of command or shell is required`}},
		{"both", `services: [{name: a, command: x, shell: z}]`, []string{`service "a": shell: give command`}},
		{"no name", `services: [{command: x}]`, []string{`services[0]: name: required`}},
		{"bad name", `services: [{name: "a b", command: x}]`, []string{`service "a b": name: must be`}},
		{"unknown field", `services: [{name: a, command: x, colour: red}]`, []string{`service "a": unknown field "colour"`}},
		{"wrong type", `services: [{name: a, command: x, args: "one"}]`, []string{`service "a": args: wrong type`}},
		{"unknown top", `{services: [{name: a, command: x}], extra: 1}`, []string{`unknown top-level field "extra"`}},
		{"duplicates", `services: [{name: a, command: x}, {name: a, command: w, key: /k}, {name: b, command: z, key: /k}]`,
			[]string{`service "a": name: used by another service`, `service "b": key: /k is also the key of service "a"`}},
		{"key", `services: [{name: a, command: x, key: services/a}]`, []string{`service "a": key: must start with /`}},
		{"address", `services: [{name: a, command: x, address: "nope"}]`, []string{`service "a": address: want host:port`}},
		{"http target", `services: [{name: a, command: x, health: {type: http, target: "ftp://x"}}]`, []string{`service "a": health.target: want an http`}},
		{"health type", `services: [{name: a, command: x, health: {type: ping}}]`, []string{`service "a": health.type: must be tcp, http, command or none`}},
		{"command check", `services: [{name: a, command: x, health: {type: command}}]`, []string{`service "a": health.command: required`}},
		{"placement", `services: [{name: a, command: x, placement: anywhere}, {name: b, command: x, placement: {group: ""}}, {name: c, command: x, placement: {zone: z}}]`,
			[]string{`service "a": placement: must be "host" or {group: NAME}`, `service "b": placement.group: must be a non-empty name`, `service "c": placement: unknown field "zone"`}},
		{"max restarts", `services: [{name: a, command: x, max_restarts: -1, restart_window: 0}]`,
			[]string{`service "a": max_restarts: must be >= 0`, `service "a": restart_window: must be > 0`}},
		{"shorthand two programs", `{"etcd": {"r1": {"key": "/k", "mongod": "mongod", "redis": "redis-server"}}}`,
			[]string{`service "r1": shorthand wants exactly one PROGRAM`}},
		{"shorthand not a line", `{"etcd": {"r1": {"mongod": 5}}}`, []string{`service "r1": mongod: must be a command line string`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.file))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want string // words joined by |, or "SHELL"
	}{
		{"a b  c", "a|b|c"},
		{`a 'b c' "d \"e\"" f\ g`, `a|b c|d "e"|f g`},
		{"--port=1 x", "--port=1|x"},
		{"a | b", "SHELL"},
		{"a $HOME", "SHELL"},
		{"a 'open", "SHELL"},
		{`a "$x"`, "SHELL"},
	}
	for _, tt := range tests {
		w, ok := splitWords(tt.in)
		got := strings.Join(w, "|")
		if !ok {
			got = "SHELL"
		}
		if got != tt.want {
			t.Errorf("splitWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
