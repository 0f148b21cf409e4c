package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Writes through any member are read back, linearizably, from every member;
// every member holds the same history.
func TestClusterWritesAnyMember(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	for i, m := range c.Members {
		m.Ctl(t, "put", fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	for _, m := range c.Members {
		m.ExpectCtl(t, "k0\nv0\nk1\nv1\nk2\nv2\n", "get", "k", "--prefix")
	}
	out := c.Members[0].Ctl(t, "member", "list")
	if n := strings.Count(out, "started"); n != 3 {
		t.Fatalf("member list shows %d started members:\n%s", n, out)
	}
	c.WaitHashKVEqual()
}

// Killing the leader under write load: a new leader takes over, writes go
// on, no acknowledged write is lost, and the old leader catches up when it
// is back.
func TestClusterKillLeader(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	cli := c.Client()
	var mu sync.Mutex
	acked := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("w%d-%05d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := cli.Put(ctx, k, "v")
				cancel()
				if err == nil {
					mu.Lock()
					acked[k] = true
					mu.Unlock()
				}
			}
		}(w)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, 30*time.Second, "writes before the crash", func() bool { return count() >= 100 })
	old := c.Leader()
	old.Kill()
	before := count()
	waitFor(t, 60*time.Second, "writes after the crash", func() bool { return count() >= before+100 })
	if l := c.Leader(); l == old {
		t.Fatal("the killed member is still the leader")
	}
	close(stop)
	wg.Wait()
	old.Restart()
	c.WaitHashKVEqual()
	for _, m := range c.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := m.Client().Get(ctx, "w", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSerializable())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, kv := range resp.Kvs {
			have[string(kv.Key)] = true
		}
		mu.Lock()
		for k := range acked {
			if !have[k] {
				t.Errorf("member %s lost acknowledged write %s", m.Name(), k)
			}
		}
		mu.Unlock()
	}
}

// A learner added to a cluster whose log was truncated catches up from a
// snapshot, is refused promotion until it has, then votes; HashKV agrees.
func TestClusterLearnerBySnapshot(t *testing.T) {
	t.Parallel()
	flags := []string{"--snapshot-count=20"}
	if Kind() == KindCairn {
		flags = append(flags, "--snapshot-catchup-entries=5")
	}
	c := StartCluster(t, 3, flags...)
	cli := c.Client()
	for i := 0; i < 200; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := cli.Put(ctx, fmt.Sprintf("pre%03d", i), "v"); err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
	}
	j := c.NewJoiner("m3")
	var add *clientv3.MemberAddResponse
	// etcd refuses a member add until its peers have been connected for a
	// while ("unhealthy cluster"); retry that.
	waitFor(t, 30*time.Second, "the learner to be added", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		add, err = cli.MemberAddAsLearner(ctx, []string{j.PeerURL})
		if err != nil && !strings.Contains(err.Error(), "unhealthy cluster") {
			t.Fatal(err)
		}
		return err == nil
	})
	j.cfg.Learner = true
	c.StartJoining(j)
	// A learner serves serializable reads only.
	if _, stderr, err := j.Etcdctl("get", "pre000"); err == nil || !strings.Contains(stderr, "not supported for learner") {
		t.Fatalf("linearizable get on a learner: err %v, stderr %s", err, stderr)
	}
	waitFor(t, 60*time.Second, "the learner to be promoted", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cli.MemberPromote(ctx, add.Member.ID)
		if err != nil && !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) && !strings.Contains(err.Error(), "in sync with leader") {
			t.Logf("promote: %v", err)
		}
		return err == nil
	})
	c.WaitHashKVEqual()
	j.ExpectCtl(t, "pre199\nv\n", "get", "pre199")
}

// cairn refuses the member add that would leave the cluster without a
// quorum of started members (etcd accepts it and then blocks writes).
func TestClusterQuorumTrapRefused(t *testing.T) {
	if Kind() != KindCairn {
		t.Skip("etcd accepts this add (its documented trap)")
	}
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	_, stderr, err := m.Etcdctl("member", "add", "never", "--peer-urls=http://127.0.0.1:1")
	if err == nil || !strings.Contains(stderr, "not enough started members") || !strings.Contains(stderr, "--learner") {
		t.Fatalf("member add of a voter that never starts: err %v, stderr:\n%s", err, stderr)
	}
	// Writes still work.
	m.Ctl(t, "put", "k", "v")
	// A learner may be added, and removed again.
	out := m.Ctl(t, "member", "add", "later", "--learner", "--peer-urls=http://127.0.0.1:1")
	if !strings.Contains(out, "added to cluster") {
		t.Fatalf("learner add: %s", out)
	}
	m.Ctl(t, "put", "k2", "v")
}

// Lease requests that only the leader can answer work from any member:
// grant, keep-alive and time-to-live sent to a follower.
func TestClusterLeaseThroughFollower(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	lead := c.Leader()
	var f *Member
	for _, m := range c.Members {
		if m != lead {
			f = m
			break
		}
	}
	cli := f.NewClient()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "leased", "v", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	ka, err := cli.KeepAliveOnce(ctx, g.ID)
	if err != nil {
		t.Fatalf("keep-alive through a follower: %v", err)
	}
	if ka.TTL != 30 {
		t.Fatalf("keep-alive TTL %d, want 30", ka.TTL)
	}
	ttl, err := cli.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 30 || ttl.TTL <= 0 || ttl.TTL > 30 || len(ttl.Keys) != 1 {
		t.Fatalf("time-to-live through a follower: %+v", ttl)
	}
	if out := f.Ctl(t, "lease", "keep-alive", "--once", fmt.Sprintf("%x", g.ID)); !strings.Contains(out, "keepalived with TTL(30)") {
		t.Fatalf("etcdctl keep-alive through a follower: %q", out)
	}
	if _, err := cli.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	lead.ExpectCtl(t, "", "get", "leased")
}

// With --auto-promote-learners the leader promotes a learner by itself
// once it has caught up.
func TestClusterAutoPromoteLearner(t *testing.T) {
	if Kind() != KindCairn {
		t.Skip("cairn's own flag")
	}
	t.Parallel()
	c := StartCluster(t, 3, "--auto-promote-learners")
	cli := c.Client()
	for i := 0; i < 50; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cli.Put(ctx, fmt.Sprintf("k%02d", i), "v")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	j := c.NewJoiner("m3")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	add, err := cli.MemberAddAsLearner(ctx, []string{j.PeerURL})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	j.cfg.Learner = true
	c.StartJoining(j)
	waitFor(t, 60*time.Second, "the learner to be promoted by the leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cli.MemberList(ctx)
		if err != nil {
			return false
		}
		for _, m := range resp.Members {
			if m.ID == add.Member.ID {
				return !m.IsLearner
			}
		}
		return false
	})
	c.WaitHashKVEqual()
}

// With one of three members down, removing another started voter would
// leave no quorum: refused. A member add through a follower answers with
// a member list that holds the new member.
func TestClusterReconfigChecks(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	lead := c.Leader()
	var followers []*Member
	for _, m := range c.Members {
		if m != lead {
			followers = append(followers, m)
		}
	}
	cli := followers[0].NewClient()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var add *clientv3.MemberAddResponse
	waitFor(t, 30*time.Second, "a learner add through a follower", func() bool {
		var err error
		add, err = cli.MemberAddAsLearner(ctx, []string{"http://127.0.0.1:1"})
		if err != nil && !strings.Contains(err.Error(), "unhealthy cluster") {
			t.Fatal(err)
		}
		return err == nil
	})
	found := false
	for _, m := range add.Members {
		found = found || m.ID == add.Member.ID
	}
	if !found {
		t.Fatalf("member add answered a member list without the new member: %v", add.Members)
	}
	if _, err := cli.MemberRemove(ctx, add.Member.ID); err != nil {
		t.Fatal(err)
	}
	followers[1].Kill()
	if Kind() == KindCairn {
		// The leader's view decides "started": wait until it saw the
		// peer's stream end.
		waitFor(t, 30*time.Second, "the leader to see the killed peer go", func() bool {
			return strings.Contains(lead.Log(), "peer became inactive")
		})
	}
	_, err := lead.Client().MemberRemove(ctx, followers[0].MemberID)
	if err == nil {
		t.Fatal("a remove that leaves no quorum of started members was accepted")
	}
	if !strings.Contains(err.Error(), "not enough started members") && !strings.Contains(err.Error(), "unhealthy cluster") {
		t.Fatalf("remove refused for another reason: %v", err)
	}
	lead.Ctl(t, "put", "still", "writable")
}

// A keep-alive stream held by a follower keeps its lease alive through the
// leader's death: the follower forwards each renewal to whichever member
// leads, and a renewal sent towards the dead leader does not stall the
// stream.
func TestClusterKeepAliveSurvivesLeaderDeath(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	lead := c.Leader()
	var f, other *Member
	for _, m := range c.Members {
		if m == lead {
			continue
		}
		if f == nil {
			f = m
		} else {
			other = m
		}
	}
	cli := f.NewClient() // this follower only
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ttl = 4
	g, err := cli.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	kc, err := cli.KeepAlive(kctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range kc {
		}
	}()
	lead.Kill()
	c.Leader() // the survivors elect a new leader
	// The lease must stay alive for several TTLs; a stalled keep-alive
	// stream would let it expire within one.
	check := other.NewClient()
	deadline := time.Now().Add(3 * ttl * time.Second)
	for time.Now().Before(deadline) {
		qctx, qcancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := check.TimeToLive(qctx, g.ID)
		qcancel()
		if err == nil && resp.TTL == -1 {
			t.Fatalf("lease %x expired after the leader's death although its keep-alive stream on %s is open", g.ID, f.Name())
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
