package ctl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/config"
)

// globalFlags are etcdctl's persistent flags, with etcdctl's defaults.
type globalFlags struct {
	endpoints        []string
	dialTimeout      time.Duration
	commandTimeout   time.Duration
	keepAliveTime    time.Duration
	keepAliveTimeout time.Duration

	insecureTransport  bool
	insecureSkipVerify bool
	insecureDiscovery  bool
	cacert, cert, key  string

	user, password string

	writeOut string
	hex      bool
	debug    bool

	discoverySrv     string
	discoverySrvName string

	env []string
}

func (g *globalFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&g.endpoints, "endpoints", []string{"127.0.0.1:2379"}, "gRPC endpoints")
	fs.BoolVar(&g.debug, "debug", false, "enable client-side debug logging")
	fs.StringVarP(&g.writeOut, "write-out", "w", "simple", "set the output format (fields, json, protobuf, simple, table)")
	fs.BoolVar(&g.hex, "hex", false, "print byte strings as hex encoded strings")
	fs.DurationVar(&g.dialTimeout, "dial-timeout", 2*time.Second, "dial timeout for client connections")
	fs.DurationVar(&g.commandTimeout, "command-timeout", 5*time.Second, "timeout for short running command (excluding dial timeout)")
	fs.DurationVar(&g.keepAliveTime, "keepalive-time", 2*time.Second, "keepalive time for client connections")
	fs.DurationVar(&g.keepAliveTimeout, "keepalive-timeout", 6*time.Second, "keepalive timeout for client connections")
	fs.BoolVar(&g.insecureTransport, "insecure-transport", true, "disable transport security for client connections")
	fs.BoolVar(&g.insecureDiscovery, "insecure-discovery", true, "accept insecure SRV records describing cluster endpoints")
	fs.BoolVar(&g.insecureSkipVerify, "insecure-skip-tls-verify", false, "skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)")
	fs.StringVar(&g.cert, "cert", "", "identify secure client using this TLS certificate file")
	fs.StringVar(&g.key, "key", "", "identify secure client using this TLS key file")
	fs.StringVar(&g.cacert, "cacert", "", "verify certificates of TLS-enabled secure servers using this CA bundle")
	fs.StringVar(&g.user, "user", "", "username[:password] for authentication (prompt if password is not supplied)")
	fs.StringVar(&g.password, "password", "", "password for authentication (if this option is used, --user option shouldn't include password)")
	fs.StringVarP(&g.discoverySrv, "discovery-srv", "d", "", "domain name to query for SRV records describing cluster endpoints")
	fs.StringVar(&g.discoverySrvName, "discovery-srv-name", "", "service name to query when using DNS discovery")
}

// validate checks the global flags that need no server.
func (g *globalFlags) validate() error {
	switch g.writeOut {
	case "simple", "json", "fields", "table", "protobuf":
	default:
		return exitf(ExitBadFeature, "unsupported output format")
	}
	return nil
}

// Client builds a client from the global flags. The caller closes it.
// It does not wait for a connection: the first request does, bounded by its
// context, and the balancer moves on to the next endpoint when one fails.
func (r *Root) Client() (*clientv3.Client, error) {
	cfg, err := r.g.clientConfig(r)
	if err != nil {
		return nil, err
	}
	c, err := clientv3.New(*cfg)
	if err != nil {
		return nil, exitErr(ExitBadConnection, err)
	}
	return c, nil
}

func (g *globalFlags) clientConfig(r *Root) (*clientv3.Config, error) {
	if g.discoverySrv != "" {
		return nil, exitf(ExitBadFeature, "--discovery-srv is not supported by cairnctl; list the members with --endpoints instead")
	}
	eps := make([]string, 0, len(g.endpoints))
	for _, e := range g.endpoints {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return nil, exitf(ExitBadArgs, "no endpoints: give at least one with --endpoints")
	}
	cfg := &clientv3.Config{
		Endpoints:            eps,
		DialTimeout:          g.dialTimeout,
		DialKeepAliveTime:    g.keepAliveTime,
		DialKeepAliveTimeout: g.keepAliveTimeout,
		Logger:               zap.NewNop(),
	}
	if g.debug {
		lg, err := zap.NewDevelopment()
		if err == nil {
			cfg.Logger = lg
		}
	}
	tlsCfg, err := g.tlsConfig(eps)
	if err != nil {
		return nil, exitErr(ExitBadArgs, err)
	}
	cfg.TLS = tlsCfg

	switch {
	case g.user != "" && g.password != "":
		// As etcdctl: with --password, --user is the whole name.
		cfg.Username, cfg.Password = g.user, g.password
	case g.user != "":
		name, pass, hasPass := strings.Cut(g.user, ":")
		if !hasPass {
			p, err := readPassword(r, "Password: ")
			if err != nil {
				return nil, exitf(ExitBadArgs, "reading the password for user %q: %v", name, err)
			}
			pass = p
		}
		cfg.Username, cfg.Password = name, pass
	case g.password != "":
		return nil, exitf(ExitBadArgs, "--password needs --user=name")
	}
	return cfg, nil
}

// tlsConfig returns nil for plain connections. etcdctl uses TLS when a
// certificate flag is given, when --insecure-transport=false, or when an
// endpoint says https.
func (g *globalFlags) tlsConfig(eps []string) (*tls.Config, error) {
	secureURL := false
	for _, e := range eps {
		if strings.HasPrefix(e, "https://") || strings.HasPrefix(e, "unixs://") {
			secureURL = true
		}
	}
	if g.cert == "" && g.key == "" && g.cacert == "" && g.insecureTransport && !secureURL {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if err := config.ClientCerts(cfg, g.cacert, g.cert, g.key); err != nil {
		return nil, err
	}
	cfg.InsecureSkipVerify = g.insecureSkipVerify
	return cfg, nil
}

// readPassword prompts on the terminal (without echo) or reads a line
// from stdin when it is not a terminal.
func readPassword(r *Root, prompt string) (string, error) {
	if f, ok := r.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(r.stderr, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(r.stderr)
		return string(b), err
	}
	var line []byte
	buf := make([]byte, 1)
	for {
		n, err := r.stdin.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			line = append(line, buf[0])
		}
		if err != nil {
			if len(line) > 0 {
				break
			}
			return "", err
		}
	}
	return strings.TrimSuffix(string(line), "\r"), nil
}

// hint says what to try after a failure, or "".
func hint(err error, endpoints []string) string {
	if errors.Is(err, context.DeadlineExceeded) || status.Code(errors.Unwrap(err)) == codes.DeadlineExceeded ||
		status.Code(err) == codes.Unavailable || strings.Contains(err.Error(), "context deadline exceeded") {
		h := fmt.Sprintf("hint: no answer in time from %s; check --endpoints, that the server is running, and raise --dial-timeout/--command-timeout for slow links", strings.Join(endpoints, ","))
		for _, e := range endpoints {
			if strings.HasPrefix(e, "https://") {
				h += "; for https endpoints also check --cacert (or --insecure-skip-tls-verify for a self-signed test server), --cert and --key"
				break
			}
		}
		return h
	}
	if errors.Is(err, rpctypes.ErrUserEmpty) || errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrAuthFailed) {
		return "hint: authentication is enabled; give --user=name[:password]"
	}
	return ""
}
