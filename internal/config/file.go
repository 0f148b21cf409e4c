package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// The config file is etcd's: a YAML (or JSON) map whose keys are the flag
// names. Values are read the way etcd reads them, and a little more
// leniently:
//
//   - URL lists are comma-separated strings; log-outputs and other lists may
//     also be YAML sequences.
//   - heartbeat-interval and election-timeout are milliseconds.
//   - Other durations are integer nanoseconds, as etcd writes them
//     (600000000000 for 10m); cairn also reads "10m".
//   - A null value (a key with nothing after the colon) keeps the default.
//   - feature-gates is "Name=true,Name=false", or a map of Name: bool.
//   - client-transport-security and peer-transport-security hold TLS
//     settings, as in etcd: cert-file, key-file, client-cert-auth,
//     trusted-ca-file and auto-tls are read; the others are accepted only
//     empty or at their default.
//
// Keys that are no etcd flag are ignored with a warning, as etcd ignores
// them.

// fileOnly are config-file keys that are not flags.
var fileOnly = map[string]bool{
	"client-transport-security": true,
	"peer-transport-security":   true,
}

func parseFile(path string, cmd *flagSet, env envList) (*Config, error) {
	var warnings []string
	var given []string
	cmd.fs.Visit(func(f *flag.Flag) {
		if f.Name != "config-file" {
			given = append(given, "--"+f.Name)
		}
	})
	if len(given) > 0 {
		warnings = append(warnings, fmt.Sprintf("config file %s is in use; ignoring command-line flags %s", path, strings.Join(given, " ")))
	}
	var envGiven []string
	for _, e := range env.list {
		if e.key != EnvName("config-file") {
			envGiven = append(envGiven, e.key)
		}
	}
	if len(envGiven) > 0 {
		warnings = append(warnings, fmt.Sprintf("config file %s is in use; ignoring environment variables %s", path, strings.Join(envGiven, " ")))
	}

	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := newFlagSet(defaults())
	origins, fileWarnings, err := loadFile(s, b)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	s.c.ConfigFile = path
	return finish(s, origins, append(warnings, fileWarnings...))
}

// loadFile applies the YAML or JSON document b to s.
func loadFile(s *flagSet, b []byte) (map[string]origin, []string, error) {
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, nil, err
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("not a map of settings: %v", err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	origins := map[string]origin{}
	var warnings []string
	for _, key := range keys {
		val := doc[key]
		if fileOnly[key] {
			info := &s.c.ClientTLS
			if key == "peer-transport-security" {
				info = &s.c.PeerTLS
			}
			if err := applyTransportSecurity(info, key, val); err != nil {
				return nil, nil, err
			}
			continue
		}
		f := s.fs.Lookup(key)
		if f == nil || key == "config-file" || key == "version" {
			warnings = append(warnings, fmt.Sprintf("unknown config file key %q; ignoring it", key))
			continue
		}
		if val == nil {
			continue
		}
		str, err := fileValue(s.kinds[key], val)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid value for %q: %v", key, err)
		}
		if err := s.fs.Set(key, str); err != nil {
			return nil, nil, fmt.Errorf("invalid value %q for %q: %v", str, key, err)
		}
		origins[key] = fromFile
	}
	return origins, warnings, nil
}

// fileValue writes a decoded YAML value as the string the flag parses.
func fileValue(k kind, v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return fmt.Sprint(x), nil
	case json.Number:
		if k == kindDuration {
			return x.String() + "ns", nil
		}
		return x.String(), nil
	case []any:
		if k != kindList && k != kindString {
			return "", fmt.Errorf("a list is not allowed here")
		}
		parts := make([]string, 0, len(x))
		for _, item := range x {
			p, err := fileValue(kindString, item)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		if k != kindGates {
			return "", fmt.Errorf("a map is not allowed here")
		}
		names := make([]string, 0, len(x))
		for n := range x {
			names = append(names, n)
		}
		sort.Strings(names)
		parts := make([]string, 0, len(x))
		for _, n := range names {
			p, err := fileValue(kindBool, x[n])
			if err != nil {
				return "", err
			}
			parts = append(parts, n+"="+p)
		}
		return strings.Join(parts, ","), nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("unexpected value %v", v)
}

// transportSecurity are the keys of etcd's client-transport-security and
// peer-transport-security maps, with etcd's defaults.
var transportSecurity = map[string]unsupportedFlag{
	"cert-file":                    {kindString, ""},
	"key-file":                     {kindString, ""},
	"client-cert-file":             {kindString, ""},
	"client-key-file":              {kindString, ""},
	"client-cert-auth":             {kindBool, "false"},
	"trusted-ca-file":              {kindString, ""},
	"auto-tls":                     {kindBool, "false"},
	"allowed-cn":                   {kindList, ""},
	"allowed-hostname":             {kindList, ""},
	"skip-client-san-verification": {kindBool, "false"},
}

// applyTransportSecurity reads a TLS section into info. Keys cairn does not
// implement are accepted only empty or at etcd's default.
func applyTransportSecurity(info *TLSInfo, section string, v any) error {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("invalid %s", section)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		spec, known := transportSecurity[k]
		str, err := fileValue(kindList, m[k])
		if err != nil {
			return fmt.Errorf("invalid value for %s.%s: %v", section, k, err)
		}
		if !known && str == "" {
			continue
		}
		if m[k] == nil {
			continue
		}
		switch k {
		case "cert-file":
			info.CertFile = str
			continue
		case "key-file":
			info.KeyFile = str
			continue
		case "trusted-ca-file":
			info.TrustedCAFile = str
			continue
		case "client-cert-auth", "auto-tls":
			b, err := strconv.ParseBool(str)
			if err != nil {
				return fmt.Errorf("invalid value for %s.%s: %v", section, k, err)
			}
			if k == "auto-tls" {
				info.AutoTLS = b
			} else {
				info.ClientCertAuth = b
			}
			continue
		}
		if !known || !isDefault(spec.kind, str, spec.def) {
			return fmt.Errorf("unsupported config file key %q: cairn does not implement it yet", section+"."+k)
		}
	}
	return nil
}
