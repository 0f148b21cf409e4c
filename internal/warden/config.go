package warden

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"
)

// Restart policies.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// Health check kinds.
const (
	HealthNone    = "none"
	HealthTCP     = "tcp"
	HealthHTTP    = "http"
	HealthCommand = "command"
)

// Defaults applied by Parse to fields left out of a service.
const (
	DefaultKeyPrefix        = "/services/"
	DefaultHealthInterval   = time.Second
	DefaultHealthTimeout    = time.Second
	DefaultFailureThreshold = 3
	DefaultStartPeriod      = 10 * time.Second
	DefaultBackoffInitial   = 100 * time.Millisecond
	DefaultBackoffMax       = 30 * time.Second
	DefaultBackoffMult      = 2.0
	DefaultBackoffReset     = 30 * time.Second
	DefaultMaxRestarts      = 5
	DefaultRestartWindow    = 60 * time.Second
	DefaultStopSignal       = "SIGTERM"
	DefaultStopGrace        = 10 * time.Second
)

// Config is a parsed, defaulted and validated configuration file.
type Config struct {
	Services []*Service
}

// Service is one supervised process. Durations and the stop signal are
// resolved by Parse; the JSON tags are the file's field names.
type Service struct {
	Name    string            `json:"name"`
	Key     string            `json:"key,omitempty"`
	Command string            `json:"command,omitempty"`
	Args    []string          `json:"args,omitempty"`
	Shell   string            `json:"shell,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Dir     string            `json:"dir,omitempty"`
	Address string            `json:"address,omitempty"`
	Health  Health            `json:"health"`
	Restart string            `json:"restart,omitempty"`
	Backoff Backoff           `json:"backoff"`
	// MaxRestarts restarts within RestartWindow are allowed; one more
	// failure marks the service failed. 0 means no limit.
	MaxRestarts   *int      `json:"max_restarts,omitempty"`
	RestartWindow Duration  `json:"restart_window"`
	Placement     Placement `json:"placement"`
	StopSignal    string    `json:"stop_signal,omitempty"`
	StopGrace     Duration  `json:"stop_grace"`

	// Resolved by Parse.
	Signal syscall.Signal `json:"-"`
}

// Health describes the service's health check.
type Health struct {
	Type    string   `json:"type,omitempty"`
	Target  string   `json:"target,omitempty"`  // tcp: host:port, http: URL; default from address
	Command []string `json:"command,omitempty"` // command: argv, healthy on exit 0
	Send    string   `json:"send,omitempty"`    // tcp: written after connecting
	Expect  string   `json:"expect,omitempty"`  // tcp: the reply must start with this
	// Interval between checks, Timeout of one check, FailureThreshold
	// consecutive failures make the service unhealthy; failures within
	// StartPeriod of a start do not count until the first success.
	Interval         Duration `json:"interval"`
	Timeout          Duration `json:"timeout"`
	FailureThreshold int      `json:"failure_threshold,omitempty"`
	StartPeriod      Duration `json:"start_period"`
}

// Backoff is the delay between restarts: Initial, multiplied by Multiplier
// after each restart up to Max, back to Initial once the service ran
// healthy for ResetAfter.
type Backoff struct {
	Initial    Duration `json:"initial"`
	Max        Duration `json:"max"`
	Multiplier float64  `json:"multiplier,omitempty"`
	ResetAfter Duration `json:"reset_after"`
}

// Placement says which warden runs a service: this one (Group empty, the
// file says "host"), or the elected one of the wardens in Group.
type Placement struct {
	Group string
	raw   json.RawMessage
}

// UnmarshalJSON keeps the raw value; Parse checks it.
func (p *Placement) UnmarshalJSON(b []byte) error {
	p.raw = append(json.RawMessage(nil), b...)
	return nil
}

// MarshalJSON writes "host" or {"group": NAME}.
func (p Placement) MarshalJSON() ([]byte, error) {
	if p.Group == "" {
		return []byte(`"host"`), nil
	}
	return json.Marshal(map[string]string{"group": p.Group})
}

// Duration is a duration written as a Go duration string ("1.5s") or a
// number of seconds. The raw value is kept until Parse checks it.
type Duration struct {
	D   time.Duration
	raw json.RawMessage
	set bool
}

// UnmarshalJSON keeps the raw value; Parse checks it.
func (d *Duration) UnmarshalJSON(b []byte) error {
	d.raw = append(json.RawMessage(nil), b...)
	d.set = !bytes.Equal(b, []byte("null"))
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.D.String()) }

func (d *Duration) resolve(def time.Duration) error {
	if !d.set {
		d.D = def
		return nil
	}
	var s string
	if err := json.Unmarshal(d.raw, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want e.g. \"500ms\", \"2s\")", s)
		}
		d.D = v
		return nil
	}
	var f float64
	if err := json.Unmarshal(d.raw, &f); err == nil {
		d.D = time.Duration(f * float64(time.Second))
		return nil
	}
	return fmt.Errorf("invalid duration %s (want a string like \"2s\" or a number of seconds)", d.raw)
}

// ConfigError lists every problem found in a configuration file.
type ConfigError struct {
	File   string
	Errors []string
}

func (e *ConfigError) Error() string {
	prefix := "config"
	if e.File != "" {
		prefix = e.File
	}
	if len(e.Errors) == 1 {
		return prefix + ": " + e.Errors[0]
	}
	return fmt.Sprintf("%s: %d errors:\n  %s", prefix, len(e.Errors), strings.Join(e.Errors, "\n  "))
}

// LoadFile reads and parses a configuration file.
func LoadFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := Parse(b)
	var ce *ConfigError
	if errors.As(err, &ce) {
		ce.File = path
	}
	return cfg, err
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Parse reads a YAML or JSON configuration, fills in defaults and validates
// the whole file. The error, a *ConfigError, lists every problem, each
// naming the service and the field.
//
// Two shapes are accepted: {"services": [SERVICE, ...]} and the shorthand
// {"GROUP": {"NAME": {"key": KEY, "PROGRAM": "PROGRAM ARGS..."}}}.
func Parse(data []byte) (*Config, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, &ConfigError{Errors: []string{fmt.Sprintf("not valid YAML or JSON: %v", err)}}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil || top == nil {
		return nil, &ConfigError{Errors: []string{"the file must hold an object with a \"services\" list (or the shorthand {GROUP: {NAME: {...}}})"}}
	}
	ce := &ConfigError{}
	var raws []rawService
	if s, ok := top["services"]; ok {
		for k := range top {
			if k != "services" {
				ce.Errors = append(ce.Errors, fmt.Sprintf("unknown top-level field %q", k))
			}
		}
		var list []json.RawMessage
		if err := json.Unmarshal(s, &list); err != nil {
			ce.Errors = append(ce.Errors, "services: must be a list of services")
		}
		for i, r := range list {
			raws = append(raws, rawService{index: i, raw: r})
		}
	} else {
		raws = parseShorthand(top, ce)
	}
	cfg := &Config{}
	for _, r := range raws {
		if s := decodeService(r, ce); s != nil {
			cfg.Services = append(cfg.Services, s)
		}
	}
	if len(raws) == 0 && len(ce.Errors) == 0 {
		ce.Errors = append(ce.Errors, "no services")
	}
	checkUnique(cfg.Services, ce)
	if len(ce.Errors) > 0 {
		return nil, ce
	}
	return cfg, nil
}

type rawService struct {
	index int
	raw   json.RawMessage
	short *Service // already built from the shorthand
}

func (r rawService) label(name string) string {
	if name != "" {
		return fmt.Sprintf("service %q", name)
	}
	return fmt.Sprintf("services[%d]", r.index)
}

// parseShorthand turns {GROUP: {NAME: {"key": K, PROGRAM: LINE}}} into
// services. The group name is only a namespace in the file.
func parseShorthand(top map[string]json.RawMessage, ce *ConfigError) []rawService {
	groups := make([]string, 0, len(top))
	for g := range top {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	var out []rawService
	for _, g := range groups {
		var svcs map[string]map[string]json.RawMessage
		if err := json.Unmarshal(top[g], &svcs); err != nil {
			ce.Errors = append(ce.Errors, fmt.Sprintf("%q: want {NAME: {\"key\": KEY, PROGRAM: COMMAND LINE}} (or use a \"services\" list)", g))
			continue
		}
		names := make([]string, 0, len(svcs))
		for n := range svcs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			s := &Service{Name: n}
			label := fmt.Sprintf("service %q", n)
			var progs []string
			for f, v := range svcs[n] {
				if f == "key" {
					if err := json.Unmarshal(v, &s.Key); err != nil {
						ce.Errors = append(ce.Errors, label+": key: must be a string")
					}
					continue
				}
				progs = append(progs, f)
			}
			if len(progs) != 1 {
				sort.Strings(progs)
				ce.Errors = append(ce.Errors, fmt.Sprintf("%s: shorthand wants exactly one PROGRAM: \"COMMAND LINE\" field besides key, found %d %q", label, len(progs), progs))
				continue
			}
			var line string
			if err := json.Unmarshal(svcs[n][progs[0]], &line); err != nil {
				ce.Errors = append(ce.Errors, fmt.Sprintf("%s: %s: must be a command line string", label, progs[0]))
				continue
			}
			applyCommandLine(s, progs[0], line)
			out = append(out, rawService{index: len(out), short: s})
		}
	}
	return out
}

// applyCommandLine sets the command of a shorthand service. A line with
// shell syntax runs under /bin/sh -c; otherwise it is split into words and
// run directly (prefixed with the program if it does not start with it).
// A "--port N" argument gives the address 127.0.0.1:N and a TCP check.
func applyCommandLine(s *Service, prog, line string) {
	words, ok := splitWords(line)
	if !ok || len(words) == 0 {
		s.Shell = line
	} else {
		if filepath.Base(words[0]) != prog {
			words = append([]string{prog}, words...)
		}
		s.Command, s.Args = words[0], words[1:]
	}
	for i, w := range words {
		port := ""
		if w == "--port" && i+1 < len(words) {
			port = words[i+1]
		} else if strings.HasPrefix(w, "--port=") {
			port = strings.TrimPrefix(w, "--port=")
		}
		if _, err := strconv.Atoi(port); err == nil {
			s.Address = "127.0.0.1:" + port
			s.Health.Type = HealthTCP
		}
	}
}

// splitWords splits a command line into words with sh's quoting rules for
// '…', "…" and backslash. It reports false when the line uses other shell
// syntax (pipes, redirections, variables, ...).
func splitWords(line string) ([]string, bool) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if strings.IndexByte("$`", line[i]) >= 0 {
					return nil, false
				}
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, false
			}
			inWord = true
		case c == '\\':
			if i+1 < len(line) {
				i++
				cur.WriteByte(line[i])
				inWord = true
			}
		case strings.IndexByte("|&;<>()$`*?[#~=!{}\n", c) >= 0 && !(inWord && (c == '=' || c == '~' || c == '#')):
			return nil, false
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, true
}

func decodeService(r rawService, ce *ConfigError) *Service {
	s := r.short
	if s == nil {
		var probe struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(r.raw, &probe)
		s = &Service{}
		dec := json.NewDecoder(bytes.NewReader(r.raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(s); err != nil {
			ce.Errors = append(ce.Errors, fmt.Sprintf("%s: %s", r.label(probe.Name), jsonProblem(err)))
			return nil
		}
	}
	before := len(ce.Errors)
	add := func(field, format string, a ...any) {
		ce.Errors = append(ce.Errors, fmt.Sprintf("%s: %s: %s", r.label(s.Name), field, fmt.Sprintf(format, a...)))
	}
	validate(s, add)
	if len(ce.Errors) > before {
		return nil
	}
	return s
}

// jsonProblem words a decoding error without Go type names.
func jsonProblem(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("%s: wrong type (%s given)", ute.Field, ute.Value)
	}
	msg := err.Error()
	if i := strings.Index(msg, "unknown field "); i >= 0 {
		return msg[i:]
	}
	return strings.TrimPrefix(msg, "json: ")
}

func validate(s *Service, add func(field, format string, a ...any)) {
	if s.Name == "" {
		add("name", "required")
	} else if !nameRE.MatchString(s.Name) {
		add("name", "must be letters, digits, '_', '.', '-'")
	}
	if s.Key == "" {
		s.Key = DefaultKeyPrefix + s.Name
	} else if !strings.HasPrefix(s.Key, "/") {
		add("key", "must start with /")
	}
	switch {
	case s.Command == "" && s.Shell == "":
		add("command", "one of command or shell is required")
	case s.Command != "" && s.Shell != "":
		add("shell", "give command (and args) or shell, not both")
	case s.Shell != "" && len(s.Args) > 0:
		add("args", "not allowed with shell")
	}
	if s.Address != "" {
		if _, _, err := net.SplitHostPort(s.Address); err != nil {
			add("address", "want host:port: %v", err)
		}
	}
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			add("env", "bad variable name %q", k)
		}
	}
	validateHealth(s, add)
	switch s.Restart {
	case "":
		s.Restart = RestartAlways
	case RestartAlways, RestartOnFailure, RestartNever:
	default:
		add("restart", "must be always, on-failure or never, not %q", s.Restart)
	}
	b := &s.Backoff
	dur(add, "backoff.initial", &b.Initial, DefaultBackoffInitial, true)
	dur(add, "backoff.max", &b.Max, DefaultBackoffMax, true)
	dur(add, "backoff.reset_after", &b.ResetAfter, DefaultBackoffReset, false)
	if b.Multiplier == 0 {
		b.Multiplier = DefaultBackoffMult
	} else if b.Multiplier < 1 {
		add("backoff.multiplier", "must be >= 1")
	}
	if b.Initial.D > 0 && b.Max.D > 0 && b.Max.D < b.Initial.D {
		add("backoff.max", "must be >= backoff.initial (%v)", b.Initial.D)
	}
	if s.MaxRestarts == nil {
		n := DefaultMaxRestarts
		s.MaxRestarts = &n
	} else if *s.MaxRestarts < 0 {
		add("max_restarts", "must be >= 0 (0: no limit)")
	}
	dur(add, "restart_window", &s.RestartWindow, DefaultRestartWindow, true)
	if s.Placement.raw != nil && !bytes.Equal(s.Placement.raw, []byte("null")) {
		var str string
		var obj map[string]string
		switch {
		case json.Unmarshal(s.Placement.raw, &str) == nil:
			if str != "host" {
				add("placement", "must be \"host\" or {group: NAME}, not %q", str)
			}
		case json.Unmarshal(s.Placement.raw, &obj) == nil:
			for k, v := range obj {
				switch {
				case k == "group" && nameRE.MatchString(v):
					s.Placement.Group = v
				case k == "group":
					add("placement.group", "must be a non-empty name of letters, digits, '_', '.', '-'")
				default:
					add("placement", "unknown field %q (want group)", k)
				}
			}
			if len(obj) == 0 {
				add("placement.group", "required in a placement object")
			}
		default:
			add("placement", "must be \"host\" or {group: NAME}")
		}
	}
	if s.StopSignal == "" {
		s.StopSignal = DefaultStopSignal
	}
	if sig, ok := signalByName(s.StopSignal); ok {
		s.Signal = sig
	} else {
		add("stop_signal", "unknown signal %q", s.StopSignal)
	}
	dur(add, "stop_grace", &s.StopGrace, DefaultStopGrace, false)
}

func validateHealth(s *Service, add func(field, format string, a ...any)) {
	h := &s.Health
	if h.Type == "" {
		switch {
		case len(h.Command) > 0:
			h.Type = HealthCommand
		case strings.HasPrefix(h.Target, "http://") || strings.HasPrefix(h.Target, "https://"):
			h.Type = HealthHTTP
		case h.Target != "" || s.Address != "":
			h.Type = HealthTCP
		default:
			h.Type = HealthNone
		}
	}
	switch h.Type {
	case HealthNone:
	case HealthTCP:
		if h.Target == "" {
			h.Target = s.Address
		}
		if h.Target == "" {
			add("health.target", "required for a tcp check when the service has no address")
		} else if _, _, err := net.SplitHostPort(h.Target); err != nil {
			add("health.target", "want host:port: %v", err)
		}
	case HealthHTTP:
		if h.Target == "" && s.Address != "" {
			h.Target = "http://" + s.Address + "/"
		}
		if h.Target == "" {
			add("health.target", "required for an http check when the service has no address")
		} else if u, err := url.Parse(h.Target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("health.target", "want an http:// or https:// URL, not %q", h.Target)
		}
	case HealthCommand:
		if len(h.Command) == 0 || h.Command[0] == "" {
			add("health.command", "required for a command check")
		}
	default:
		add("health.type", "must be tcp, http, command or none, not %q", h.Type)
	}
	if h.Type != HealthTCP && (h.Send != "" || h.Expect != "") {
		add("health.send", "send and expect are for tcp checks only")
	}
	if h.Type != HealthCommand && len(h.Command) > 0 {
		add("health.command", "only for a command check (type is %s)", h.Type)
	}
	dur(add, "health.interval", &h.Interval, DefaultHealthInterval, true)
	dur(add, "health.timeout", &h.Timeout, DefaultHealthTimeout, true)
	dur(add, "health.start_period", &h.StartPeriod, DefaultStartPeriod, false)
	if h.FailureThreshold == 0 {
		h.FailureThreshold = DefaultFailureThreshold
	} else if h.FailureThreshold < 0 {
		add("health.failure_threshold", "must be >= 1")
	}
}

// dur resolves d (default def) and checks it is > 0 (positive) or >= 0.
func dur(add func(field, format string, a ...any), field string, d *Duration, def time.Duration, positive bool) {
	if err := d.resolve(def); err != nil {
		add(field, "%v", err)
		return
	}
	if positive && d.D <= 0 {
		add(field, "must be > 0")
	} else if d.D < 0 {
		add(field, "must be >= 0")
	}
}

func checkUnique(svcs []*Service, ce *ConfigError) {
	names := map[string]bool{}
	keys := map[string]string{}
	for _, s := range svcs {
		if names[s.Name] {
			ce.Errors = append(ce.Errors, fmt.Sprintf("service %q: name: used by another service", s.Name))
		}
		names[s.Name] = true
		if other, ok := keys[s.Key]; ok {
			ce.Errors = append(ce.Errors, fmt.Sprintf("service %q: key: %s is also the key of service %q", s.Name, s.Key, other))
		} else {
			keys[s.Key] = s.Name
		}
	}
}

var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "KILL": syscall.SIGKILL,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM, "STOP": syscall.SIGSTOP,
	"CONT": syscall.SIGCONT, "WINCH": syscall.SIGWINCH, "PWR": syscall.SIGPWR,
}

// signalByName accepts "SIGTERM", "TERM", "term" or a number.
func signalByName(name string) (syscall.Signal, bool) {
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), true
	}
	sig, ok := signals[strings.TrimPrefix(strings.ToUpper(name), "SIG")]
	return sig, ok
}
