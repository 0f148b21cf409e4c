package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Cluster is several members of one cluster on loopback.
type Cluster struct {
	t       testing.TB
	Members []*Member
	token   string
	flags   []string
}

// StartCluster starts n members of a new cluster at once (each needs the
// others for a quorum) and waits until every one serves linearizable reads.
func StartCluster(t testing.TB, n int, flags ...string) *Cluster {
	t.Helper()
	return StartPreparedCluster(t, n, nil, flags...)
}

// Prepared is what StartPreparedCluster tells prepare about one member
// before it starts.
type Prepared struct {
	Name, DataDir, PeerURL, InitialCluster, Token string
}

// StartPreparedCluster is StartCluster, except that prepare (when not
// nil) runs for each member once its ports, data dir and the cluster's
// flags are chosen and before any member starts: to write the data dirs of
// a cluster restored from a snapshot, say.
func StartPreparedCluster(t testing.TB, n int, prepare func(Prepared), flags ...string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, token: "e2e-cluster-" + strings.ReplaceAll(t.Name(), "/", "-"), flags: flags}
	var ic []string
	for i := 0; i < n; i++ {
		m := c.newMember(fmt.Sprintf("m%d", i))
		ic = append(ic, m.cfg.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.cfg.InitialCluster = strings.Join(ic, ",")
		if prepare != nil {
			prepare(Prepared{Name: m.cfg.Name, DataDir: m.dataDir, PeerURL: m.PeerURL, InitialCluster: m.cfg.InitialCluster, Token: c.token})
		}
	}
	errs := make(chan error, n)
	for _, m := range c.Members {
		go func(m *Member) { errs <- m.start() }(m)
	}
	for range c.Members {
		if err := <-errs; err != nil {
			t.Fatalf("starting cluster: %v", err)
		}
	}
	return c
}

func (c *Cluster) newMember(name string) *Member {
	cfg := MemberConfig{Name: name, Kind: Kind(), Flags: c.flags, ClusterToken: c.token}
	m := &Member{t: c.t, cfg: cfg, log: newNotifyBuffer(), fresh: true}
	m.bin = cairnBinary
	if cfg.Kind == KindEtcd {
		m.bin = etcdBinary
	}
	m.dataDir = filepath.Join(c.t.TempDir(), name+".data")
	m.pickPorts()
	c.t.Cleanup(m.cleanup)
	return m
}

// Endpoints lists every member's client address.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientAddr())
	}
	return eps
}

// Client returns a client over every member (closed at test end).
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// Leader waits until the running members agree on a leader and returns it.
func (c *Cluster) Leader() *Member {
	c.t.Helper()
	var found *Member
	waitFor(c.t, 30*time.Second, "an agreed leader", func() bool {
		var lead uint64
		for _, m := range c.Members {
			if !m.Running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := m.Client().Status(ctx, m.ClientURL)
			cancel()
			if err != nil || st.Leader == 0 || (lead != 0 && st.Leader != lead) {
				return false
			}
			lead = st.Leader
		}
		for _, m := range c.Members {
			if m.MemberID == lead && m.Running() {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// WaitHashKVEqual waits until every running member reports the same
// HashKV at the same revision, and returns it.
func (c *Cluster) WaitHashKVEqual() uint32 {
	c.t.Helper()
	var hash uint32
	waitFor(c.t, 30*time.Second, "equal HashKV on every member", func() bool {
		var rev int64
		first := true
		for _, m := range c.Members {
			if !m.Running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			r, err := m.Client().HashKV(ctx, m.ClientURL, 0)
			cancel()
			if err != nil {
				return false
			}
			if first {
				hash, rev, first = r.Hash, r.Header.Revision, false
			} else if r.Hash != hash || r.Header.Revision != rev {
				return false
			}
		}
		return true
	})
	return hash
}

// StartJoining starts a new member with --initial-cluster-state existing,
// after the caller added it with member add (peerURL is the one given).
func (c *Cluster) StartJoining(m *Member) {
	c.t.Helper()
	var ic []string
	for _, o := range c.Members {
		ic = append(ic, o.cfg.Name+"="+o.PeerURL)
	}
	ic = append(ic, m.cfg.Name+"="+m.PeerURL)
	m.cfg.InitialCluster = strings.Join(ic, ",")
	m.cfg.ClusterState = "existing"
	if err := m.start(); err != nil {
		c.t.Fatalf("starting joining member %s: %v", m.cfg.Name, err)
	}
	c.Members = append(c.Members, m)
}

// NewJoiner prepares (does not start) a member that will join the cluster.
func (c *Cluster) NewJoiner(name string) *Member { return c.newMember(name) }
