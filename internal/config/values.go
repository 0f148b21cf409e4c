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
)

// The flag.Value types behind cairn's flags. Each writes straight into a
// Config field. Config file values reach the same Set methods as strings, so
// the command line, ETCD_* variables and the file share one parser.

type stringValue struct{ p *string }

func (v stringValue) Set(s string) error { *v.p = s; return nil }
func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

type boolValue struct{ p *bool }

func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("parse error")
	}
	*v.p = b
	return nil
}
func (v boolValue) String() string {
	if v.p == nil {
		return "false"
	}
	return strconv.FormatBool(*v.p)
}
func (v boolValue) IsBoolFlag() bool { return true }

// unsignedValue is an unsigned integer flag of the given bit size.
type unsignedValue[T uint | uint32 | uint64] struct{ p *T }

func (v unsignedValue[T]) Set(s string) error {
	var zero T
	bits := 64
	switch any(zero).(type) {
	case uint32:
		bits = 32
	case uint:
		bits = strconv.IntSize
	}
	n, err := strconv.ParseUint(s, 0, bits)
	if err != nil {
		return numError(err)
	}
	*v.p = T(n)
	return nil
}
func (v unsignedValue[T]) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*v.p), 10)
}

// signedValue is a signed integer flag.
type signedValue[T int | int64] struct{ p *T }

func (v signedValue[T]) Set(s string) error {
	var zero T
	bits := 64
	if _, ok := any(zero).(int); ok {
		bits = strconv.IntSize
	}
	n, err := strconv.ParseInt(s, 0, bits)
	if err != nil {
		return numError(err)
	}
	*v.p = T(n)
	return nil
}
func (v signedValue[T]) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*v.p), 10)
}

// numError shortens strconv's errors the way Go's flag package does.
func numError(err error) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		if errors.Is(ne.Err, strconv.ErrRange) {
			return errors.New("value out of range")
		}
		return errors.New("parse error")
	}
	return err
}

// durationValue is a Go duration ("5s", "2h"). In a config file a bare
// integer is nanoseconds, as etcd's file format has it.
type durationValue struct{ p *time.Duration }

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("parse error")
	}
	*v.p = d
	return nil
}
func (v durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

// millisValue is an unsigned count of milliseconds (--heartbeat-interval,
// --election-timeout) kept as a time.Duration.
type millisValue struct{ p *time.Duration }

func (v millisValue) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, strconv.IntSize)
	if err != nil {
		return numError(err)
	}
	if n > uint64(maxMillis) {
		return errors.New("value out of range")
	}
	*v.p = time.Duration(n) * time.Millisecond
	return nil
}
func (v millisValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatInt(v.p.Milliseconds(), 10)
}

const maxMillis = int64(^uint64(0)>>1) / int64(time.Millisecond)

// choiceValue is a string limited to a few values (--initial-cluster-state).
type choiceValue struct {
	p       *string
	choices []string
}

func (v choiceValue) Set(s string) error {
	for _, c := range v.choices {
		if s == c {
			*v.p = s
			return nil
		}
	}
	return fmt.Errorf("valid values are %q", v.choices)
}
func (v choiceValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

// listValue is a comma-separated list of strings. Each Set replaces the
// list. unique drops repeats, keeping the first.
type listValue struct {
	p      *[]string
	unique bool
}

func (v listValue) Set(s string) error {
	var out []string
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" || (v.unique && seen[item]) {
			continue
		}
		seen[item] = true
		out = append(out, item)
	}
	*v.p = out
	return nil
}
func (v listValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

// urlsValue is a comma-separated list of URLs, checked, deduplicated and
// sorted as etcd does. An empty value is an empty list.
type urlsValue struct{ p *[]url.URL }

func (v urlsValue) Set(s string) error {
	var items []string
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" || seen[item] {
			continue
		}
		seen[item] = true
		items = append(items, item)
	}
	if len(items) == 0 {
		*v.p = nil
		return nil
	}
	urls, err := ParseURLs(items)
	if err != nil {
		return err
	}
	*v.p = urls
	return nil
}
func (v urlsValue) String() string {
	if v.p == nil {
		return ""
	}
	return urlsString(*v.p)
}

func urlsString(us []url.URL) string {
	s := make([]string, len(us))
	for i := range us {
		s[i] = us[i].String()
	}
	return strings.Join(s, ",")
}

// ParseURLs parses member URLs with etcd's rules and error texts: the scheme
// is http, https, unix or unixs; an http(s) URL is "host:port" with no path.
// The result is sorted by its string form, as etcd sorts it.
func ParseURLs(items []string) ([]url.URL, error) {
	if len(items) == 0 {
		return nil, errors.New("no valid URLs given")
	}
	out := make([]url.URL, 0, len(items))
	for _, in := range items {
		in = strings.TrimSpace(in)
		u, err := url.Parse(in)
		if err != nil {
			return nil, err
		}
		switch u.Scheme {
		case "http", "https":
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				return nil, fmt.Errorf(`URL address does not have the form "host:port": %s`, in)
			}
			if u.Path != "" {
				return nil, fmt.Errorf("URL must not contain a path: %s", in)
			}
		case "unix", "unixs":
		default:
			return nil, fmt.Errorf("URL scheme must be http, https, unix, or unixs: %s", in)
		}
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

// ListenAddress is the network and address to listen on or dial for a member
// URL: "tcp" and host:port for http(s), "unix" and the socket path for
// unix(s). Both unix forms etcd users write are understood:
// unix://localhost:2379 (a socket named "localhost:2379" in the working
// directory, as etcd does) and unix:///run/cairn.sock (an absolute path).
func ListenAddress(u url.URL) (network, address string) {
	switch u.Scheme {
	case "unix", "unixs":
		switch {
		case u.Opaque != "": // unix:relative/path
			return "unix", u.Opaque
		case u.Host == "":
			return "unix", u.Path
		}
		return "unix", u.Host + u.Path
	}
	return "tcp", u.Host
}

// aliasValue forwards to the Value of another flag: an etcd 3.5/3.6
// "--experimental-*" spelling of a supported flag.
type aliasValue struct {
	target interface {
		Set(string) error
		String() string
	}
	isBool bool
}

func (v aliasValue) Set(s string) error { return v.target.Set(s) }
func (v aliasValue) String() string {
	if v.target == nil {
		return ""
	}
	return v.target.String()
}
func (v aliasValue) IsBoolFlag() bool { return v.isBool }

// gateFlagValue is an etcd 3.6 "--experimental-*" bool that became a feature
// gate; it records the gate's value.
type gateFlagValue struct {
	gate string
	m    map[string]bool
}

func (v gateFlagValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("parse error")
	}
	v.m[v.gate] = b
	return nil
}
func (v gateFlagValue) String() string   { return "false" }
func (v gateFlagValue) IsBoolFlag() bool { return true }

// rawValue records what was given for a flag cairn accepts but does not act
// on: ignored and unsupported flags.
type rawValue struct {
	isBool bool
	raw    *string
}

func (v rawValue) Set(s string) error { *v.raw = s; return nil }
func (v rawValue) String() string {
	if v.raw == nil {
		return ""
	}
	return *v.raw
}
func (v rawValue) IsBoolFlag() bool { return v.isBool }
