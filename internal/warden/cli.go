package warden

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-kv/cairn/internal/config"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

type cliFlags struct {
	config      string
	endpoints   []string
	name        string
	groups      []string
	leaseTTL    time.Duration
	metricsURLs []string
	cacert      string
	cert        string
	key         string
	insecureTLS bool
	user        string
	password    string
	dialTimeout time.Duration
	logLevel    string
	checkOnly   bool
}

// NewCommand is the cairn-warden command line.
func NewCommand() *cobra.Command {
	f := &cliFlags{}
	cmd := &cobra.Command{
		Use:   "cairn-warden --config FILE [--endpoints ...] [--name NAME] [--group G]...",
		Short: "Keep processes running, registered in cairn, and restart them quickly when they die",
		Long: `cairn-warden starts the services of its configuration file, registers each
under its key in cairn (attached to the warden's lease) while it runs and is
healthy, and restarts it with backoff when it exits or fails its health check.
A service placed in a group runs on exactly one warden of the group, chosen by
an election in cairn, and moves to another warden when its warden dies.
SIGTERM or SIGINT stops the services, deletes their keys and exits.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return run(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "the services file (YAML or JSON)")
	fl.StringSliceVar(&f.endpoints, "endpoints", []string{"127.0.0.1:2379"}, "cairn (or etcd) client endpoints")
	fl.StringVar(&f.name, "name", "", "this warden's name in records and elections (default: the host name)")
	fl.StringSliceVar(&f.groups, "group", nil, "a group this warden belongs to (repeat or comma-separate)")
	fl.DurationVar(&f.leaseTTL, "lease-ttl", 10*time.Second, "TTL of the warden's lease: how long after the warden dies its keys go and another warden takes its group services over")
	fl.StringSliceVar(&f.metricsURLs, "listen-metrics-urls", nil, "serve Prometheus /metrics on these URLs (http://host:port)")
	fl.StringVar(&f.cacert, "cacert", "", "verify cairn's certificate with this CA bundle")
	fl.StringVar(&f.cert, "cert", "", "client certificate for cairn")
	fl.StringVar(&f.key, "key", "", "client key for cairn")
	fl.BoolVar(&f.insecureTLS, "insecure-skip-tls-verify", false, "do not verify cairn's certificate")
	fl.StringVar(&f.user, "user", "", "cairn user name[:password]")
	fl.StringVar(&f.password, "password", "", "cairn password (instead of user:password)")
	fl.DurationVar(&f.dialTimeout, "dial-timeout", 5*time.Second, "timeout of each connection attempt to cairn")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.BoolVar(&f.checkOnly, "check-config", false, "validate the config file and exit")
	return cmd
}

func run(cmd *cobra.Command, f *cliFlags) error {
	if f.config == "" {
		return errors.New("--config is required")
	}
	cfg, err := LoadFile(f.config)
	if err != nil {
		return err
	}
	if f.checkOnly {
		fmt.Fprintf(cmd.OutOrStdout(), "%s: %d services, OK\n", f.config, len(cfg.Services))
		return nil
	}
	if f.leaseTTL < 2*time.Second {
		return fmt.Errorf("--lease-ttl: must be >= 2s, not %v", f.leaseTTL)
	}
	lg, err := buildLogger(f.logLevel)
	if err != nil {
		return err
	}
	defer lg.Sync() //nolint:errcheck
	tlsCfg, err := clientTLS(f)
	if err != nil {
		return err
	}
	ccfg := clientv3.Config{
		Endpoints:   f.endpoints,
		DialTimeout: f.dialTimeout,
		TLS:         tlsCfg,
		Logger:      lg.Named("client").WithOptions(zap.IncreaseLevel(zapcore.ErrorLevel)),
		// Pings find a silently dead endpoint so the client moves to
		// another one; not more often than the servers' default
		// --grpc-keepalive-min-time (5s), which would close the
		// connection (and the lease keep-alive stream with it).
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
	}
	if f.user != "" {
		ccfg.Username, ccfg.Password = f.user, f.password
		if u, p, ok := strings.Cut(f.user, ":"); ok {
			ccfg.Username, ccfg.Password = u, p
		}
	}
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return fmt.Errorf("cairn client: %w", err)
	}
	defer cli.Close()
	w, err := New(cfg, Options{Name: f.name, Groups: GroupsFlag(f.groups), LeaseTTL: f.leaseTTL, Client: cli, Logger: lg})
	if err != nil {
		return err
	}
	for _, u := range f.metricsURLs {
		if err := serveMetrics(u, w.Metrics(), lg); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return w.Run(ctx)
}

func buildLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	zc := zap.Config{
		Level:            zap.NewAtomicLevelAt(lvl),
		Encoding:         "json",
		EncoderConfig:    config.EncoderConfig(),
		OutputPaths:      []string{"stderr"},
		ErrorOutputPaths: []string{"stderr"},
	}
	return zc.Build()
}

func clientTLS(f *cliFlags) (*tls.Config, error) {
	if f.cacert == "" && f.cert == "" && f.key == "" && !f.insecureTLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.insecureTLS} //nolint:gosec
	if err := config.ClientCerts(tc, f.cacert, f.cert, f.key); err != nil {
		return nil, err
	}
	return tc, nil
}

func serveMetrics(raw string, m *Metrics, lg *zap.Logger) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("--listen-metrics-urls: want http://host:port, not %q", raw)
	}
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		return fmt.Errorf("--listen-metrics-urls: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	lg.Info("serving metrics", zap.String("url", "http://"+l.Addr().String()+"/metrics"))
	return nil
}
