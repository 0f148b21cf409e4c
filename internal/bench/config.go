package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/config"
)

// Config holds the flags every workload shares (etcd's benchmark names).
type Config struct {
	Endpoints    []string
	Conns        int // gRPC connections (one clientv3.Client each)
	Clients      int // concurrent workers, spread over the connections
	DialTimeout  time.Duration
	TargetLeader bool
	CACert       string
	Cert         string
	Key          string
	InsecureTLS  bool // --insecure-skip-tls-verify
	User         string
	Password     string
	// RunTimeout bounds the whole run (0: none); requests still running
	// when it expires fail with context.DeadlineExceeded.
	RunTimeout time.Duration
	// MaxSamples bounds the latencies kept for percentiles.
	MaxSamples int
}

// Validate checks the shared flags.
func (c *Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("--endpoints: at least one endpoint is needed")
	}
	if c.Conns < 1 {
		return fmt.Errorf("--conns=%d: must be at least 1", c.Conns)
	}
	if c.Clients < 1 {
		return fmt.Errorf("--clients=%d: must be at least 1", c.Clients)
	}
	if (c.Cert == "") != (c.Key == "") {
		return errors.New("--cert and --key go together")
	}
	return nil
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	if c.CACert == "" && c.Cert == "" && !c.InsecureTLS {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: c.InsecureTLS} // #nosec G402 -- only with --insecure-skip-tls-verify
	if err := config.ClientCerts(cfg, c.CACert, c.Cert, c.Key); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) clientConfig(endpoints []string) (clientv3.Config, error) {
	tc, err := c.tlsConfig()
	if err != nil {
		return clientv3.Config{}, err
	}
	cc := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: c.DialTimeout,
		TLS:         tc,
		Logger:      zap.NewNop(),
		// Bench values and batched ops stay far below etcd's limits; the
		// client default (2 MiB) would refuse nothing we send.
	}
	if c.User != "" {
		name, pass, ok := strings.Cut(c.User, ":")
		if !ok {
			if c.Password == "" {
				return clientv3.Config{}, errors.New("--user: give name:password, or --password")
			}
			pass = c.Password
		}
		cc.Username, cc.Password = name, pass
	}
	return cc, nil
}

// Clients opens the connections: Conns clientv3 clients, each with its own
// gRPC connection. With TargetLeader they all talk to the leader only.
type Clients struct {
	conns []*clientv3.Client
}

// Dial opens the connections.
func (c *Config) Dial(ctx context.Context) (*Clients, error) {
	endpoints := c.Endpoints
	if c.TargetLeader {
		ep, err := c.findLeader(ctx)
		if err != nil {
			return nil, err
		}
		endpoints = []string{ep}
	}
	cc, err := c.clientConfig(endpoints)
	if err != nil {
		return nil, err
	}
	cs := &Clients{}
	for range c.Conns {
		cli, err := clientv3.New(cc)
		if err != nil {
			cs.Close()
			return nil, fmt.Errorf("connecting to %s: %w", strings.Join(endpoints, ","), err)
		}
		cs.conns = append(cs.conns, cli)
	}
	return cs, nil
}

// For returns the client of worker i: workers are spread round-robin over
// the connections.
func (cs *Clients) For(i int) *clientv3.Client { return cs.conns[i%len(cs.conns)] }

// Len is the number of connections.
func (cs *Clients) Len() int { return len(cs.conns) }

// Close closes every connection.
func (cs *Clients) Close() {
	for _, c := range cs.conns {
		_ = c.Close()
	}
}

// findLeader asks every endpoint for its Status and returns the one that
// is the leader.
func (c *Config) findLeader(ctx context.Context) (string, error) {
	cc, err := c.clientConfig(c.Endpoints)
	if err != nil {
		return "", err
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return "", fmt.Errorf("connecting to find the leader: %w", err)
	}
	defer cli.Close()
	var errs []error
	for _, ep := range c.Endpoints {
		sctx, cancel := context.WithTimeout(ctx, statusTimeout)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			return ep, nil
		}
	}
	return "", fmt.Errorf("--target-leader: no endpoint of %s is the leader: %w", strings.Join(c.Endpoints, ","), errors.Join(errs...))
}

// statusTimeout bounds one Status call.
const statusTimeout = 5 * time.Second
