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

// Fault scenarios on real clusters: partitions through the PeerNet, kills,
// membership changes and leader moves, each under a client writing
// throughout; afterwards every acknowledged write is on every running
// member and their HashKV agree.

// The leader is cut off from both followers: it refuses writes and
// linearizable reads, the followers elect a new leader and keep writing;
// after the heal the old leader follows the new one and catches up.
func TestFaultPartitionLeader(t *testing.T) {
	t.Parallel()
	fc := StartFaultCluster(t, 3)
	old := fc.Leader()
	rest := Others(fc.Members, old)
	maj := ClientOf(t, rest...)
	w := StartWriter(t, maj, "w/")
	w.WaitAcked(t, 20)

	fc.Isolate(old)
	// From the cut on, read K linearizably on the old leader, which may
	// still believe it leads for a while. Once the majority has
	// acknowledged K, a read that starts later and answers without K is
	// a stale read.
	const key = "after-partition"
	r := startReader(old, key)
	var ackedAt time.Time
	waitFor(t, 60*time.Second, "the majority to acknowledge "+key, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := maj.Put(ctx, key, "x")
		if err == nil {
			ackedAt = time.Now()
		}
		return err == nil
	})
	lead := WaitLeaderAmong(t, rest...)
	w.WaitMore(t, 50)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, minorityErr := old.Client().Put(ctx, "minority-write", "x")
	cancel()
	if minorityErr == nil {
		t.Error("the isolated old leader acknowledged a write")
	} else {
		t.Logf("write on the minority: %v", minorityErr)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	resp, err := old.Client().Get(ctx, key, clientv3.WithSerializable())
	cancel()
	if err == nil {
		t.Logf("serializable read on the minority answered (%d kvs, as of revision %d)", len(resp.Kvs), resp.Header.Revision)
	} else {
		t.Logf("serializable read on the minority: %v", err)
	}
	r.waitAfter(t, ackedAt, 3)
	r.check(t, ackedAt)
	w.WaitMore(t, 20)
	t.Logf("peer links while %s is isolated:\n%s", old.Name(), fc.Net.LinkStats())

	fc.Heal()
	waitFor(t, 60*time.Second, "the old leader to follow the new one", func() bool {
		st, err := StatusOf(old)
		return err == nil && st.Leader == lead.MemberID
	})
	if l := fc.Leader(); l == old {
		t.Errorf("the old leader %s took the leadership back", old.Name())
	}
	// The old leader serves linearizable reads again.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	resp, err = old.Client().Get(ctx, key)
	cancel()
	if err != nil || len(resp.Kvs) != 1 {
		t.Errorf("linearizable read on the healed old leader: %v, %v", resp, err)
	}
	w.WaitMore(t, 20)
	w.Stop()
	t.Log(w.Summary())
	fc.WaitHashKVEqual()
	w.CheckOn(t, fc.Members...)
	// A write refused for want of a leader was never proposed.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	resp, err = lead.Client().Get(ctx, "minority-write")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 && errors.Is(minorityErr, rpctypes.ErrNoLeader) {
		t.Errorf("the write refused with %q on the minority was applied after the heal", minorityErr)
	}
}

// reader reads one key linearizably from one member, over and over, from
// one goroutine, at most readerMax times, and records each attempt.
type reader struct {
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	reads []readAttempt
}

type readAttempt struct {
	start, end time.Time
	err        error
	found      bool
	rev        int64
}

const readerMax = 2000

func startReader(m *Member, key string) *reader {
	r := &reader{stop: make(chan struct{}), done: make(chan struct{})}
	cli := m.NewClient()
	go func() {
		defer close(r.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < readerMax; i++ {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			a := readAttempt{start: time.Now()}
			// Short, so that several reads fall into the moment
			// when the old leader may still believe it leads.
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			resp, err := cli.Get(ctx, key)
			cancel()
			a.end, a.err = time.Now(), err
			if err == nil {
				a.found, a.rev = len(resp.Kvs) > 0, resp.Header.Revision
			}
			r.mu.Lock()
			r.reads = append(r.reads, a)
			r.mu.Unlock()
		}
	}()
	return r
}

// waitAfter waits until n reads that started after at have ended, then
// stops the reader.
func (r *reader) waitAfter(t testing.TB, at time.Time, n int) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d reads on the minority after the majority's write", n), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		k := 0
		for _, a := range r.reads {
			if a.start.After(at) {
				k++
			}
		}
		return k >= n
	})
	close(r.stop)
	<-r.done
}

// check fails the test for a read that started after the write
// acknowledged at ackedAt and answered without it, and for any read that
// the isolated member answered after that write.
func (r *reader) check(t testing.TB, ackedAt time.Time) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	answered := 0
	for _, a := range r.reads {
		if a.err != nil {
			continue
		}
		answered++
		if a.start.After(ackedAt) {
			if !a.found {
				t.Errorf("stale read: a linearizable read on the minority started %v after the majority acknowledged the write, answered at revision %d without it", a.start.Sub(ackedAt), a.rev)
			} else {
				t.Errorf("the isolated member answered a linearizable read with the majority's write (revision %d): it is not isolated", a.rev)
			}
		}
	}
	var lastErr error
	if len(r.reads) > 0 {
		lastErr = r.reads[len(r.reads)-1].err
	}
	t.Logf("linearizable reads on the minority: %d attempts, %d answered; last error: %v", len(r.reads), answered, lastErr)
}

// A follower cut off while the log is compacted behind it catches up
// after the heal, by a snapshot (cairn logs installing it).
func TestFaultPartitionFollowerSnapshot(t *testing.T) {
	t.Parallel()
	flags := []string{"--snapshot-count=20"}
	if Kind() == KindCairn {
		flags = append(flags, "--snapshot-catchup-entries=5")
	}
	fc := StartFaultCluster(t, 3, flags...)
	lead := fc.Leader()
	var f *Member
	for _, m := range fc.Members {
		if m != lead {
			f = m
			break
		}
	}
	rest := Others(fc.Members, f)
	w := StartWriter(t, ClientOf(t, rest...), "w/")
	w.WaitAcked(t, 20)

	fc.Isolate(f)
	w.WaitMore(t, 200)
	mark := len(f.Log())
	fc.Heal()
	w.WaitMore(t, 20)
	w.Stop()
	t.Log(w.Summary())
	fc.WaitHashKVEqual()
	w.CheckOn(t, fc.Members...)
	if Kind() == KindCairn {
		if !strings.Contains(f.Log()[mark:], "installed snapshot from leader") {
			t.Errorf("follower %s caught up without logging %q", f.Name(), "installed snapshot from leader")
		}
	}
}

// A killed follower catches up after its restart; then every member is
// killed at once and the restarted cluster still holds every
// acknowledged write.
func TestFaultKillFollowerThenAll(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	lead := c.Leader()
	f := Others(c.Members, lead)[0]
	w := StartWriter(t, ClientOf(t, Others(c.Members, f)...), "w/")
	w.WaitAcked(t, 20)

	f.Kill()
	w.WaitMore(t, 100)
	f.Restart()
	w.WaitMore(t, 20)
	w.Stop()
	t.Log(w.Summary())
	c.WaitHashKVEqual()
	w.CheckOn(t, c.Members...)

	// Kill every member while writes are in flight.
	w2 := StartWriter(t, ClientOf(t, c.Members...), "w2/")
	w2.WaitAcked(t, 20)
	for _, m := range c.Members {
		m.Kill()
	}
	w2.Stop()
	t.Log(w2.Summary())
	StartAll(t, c.Members, "")
	c.Leader()
	hash := c.WaitHashKVEqual()
	w.CheckOn(t, c.Members...)
	w2.CheckOn(t, c.Members...)
	// The restarted cluster takes writes.
	w3 := StartWriter(t, ClientOf(t, c.Members...), "w3/")
	w3.WaitAcked(t, 20)
	w3.Stop()
	if c.WaitHashKVEqual() == hash {
		t.Error("HashKV unchanged by writes after the restart")
	}
	w3.CheckOn(t, c.Members...)
}

// The leader removes itself: the change commits, the old leader stops,
// the others elect a leader and take writes.
func TestFaultLeaderRemovesItself(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	old := c.Leader()
	rest := Others(c.Members, old)
	w := StartWriter(t, ClientOf(t, rest...), "w/")
	w.WaitAcked(t, 20)

	exited := ExpectExit(t, old)
	// etcd refuses membership changes until its peers have been connected
	// for a while ("unhealthy cluster"); retry that.
	waitFor(t, 30*time.Second, "the leader to remove itself", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := old.Client().MemberRemove(ctx, old.MemberID)
		if err != nil && !strings.Contains(err.Error(), "unhealthy cluster") {
			t.Fatalf("member remove of the leader itself: %v", err)
		}
		return err == nil
	})
	err := exited()
	t.Logf("removed leader exited: %v", err)
	if Kind() == KindCairn && !strings.Contains(old.Log(), "the member has been permanently removed from the cluster") {
		t.Errorf("removed leader %s exited without logging why", old.Name())
	}

	lead := WaitLeaderAmong(t, rest...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	ml, err := lead.Client().MemberList(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 2 {
		t.Errorf("member list after the removal has %d members, want 2", len(ml.Members))
	}
	for _, m := range ml.Members {
		if m.ID == old.MemberID {
			t.Errorf("removed member %x still listed", m.ID)
		}
	}
	w.WaitMore(t, 50)
	w.Stop()
	t.Log(w.Summary())
	c.WaitHashKVEqual()
	w.CheckOn(t, rest...)
}

// etcdctl move-leader hands the leadership to the named follower.
func TestFaultMoveLeader(t *testing.T) {
	requireEtcdctl(t)
	t.Parallel()
	c := StartCluster(t, 3)
	w := StartWriter(t, c.Client(), "w/")
	w.WaitAcked(t, 20)
	old := c.Leader()
	target := Others(c.Members, old)[1]
	out, errOut, err := CtlAll(c.Members, "move-leader", fmt.Sprintf("%x", target.MemberID))
	if err != nil {
		t.Fatalf("etcdctl move-leader: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	if want := fmt.Sprintf("Leadership transferred from %x to %x\n", old.MemberID, target.MemberID); out != want {
		t.Errorf("etcdctl move-leader printed %q, want %q", out, want)
	}
	waitFor(t, 30*time.Second, "every member to report the new leader", func() bool {
		for _, m := range c.Members {
			st, err := StatusOf(m)
			if err != nil || st.Leader != target.MemberID {
				return false
			}
		}
		return true
	})
	w.WaitMore(t, 50)
	w.Stop()
	t.Log(w.Summary())
	c.WaitHashKVEqual()
	w.CheckOn(t, c.Members...)
}

// A dead member is replaced: removed, a new one added as a learner,
// started on a fresh data dir with --initial-cluster-state existing,
// promoted once it has caught up.
func TestFaultReplaceDeadMember(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	lead := c.Leader()
	dead := Others(c.Members, lead)[0]
	rest := Others(c.Members, dead)
	cli := ClientOf(t, rest...)
	w := StartWriter(t, cli, "w/")
	w.WaitAcked(t, 20)

	dead.Kill()
	w.WaitMore(t, 20)
	waitFor(t, 30*time.Second, "the dead member to be removed", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := cli.MemberRemove(ctx, dead.MemberID)
		if err != nil && !strings.Contains(err.Error(), "unhealthy cluster") {
			t.Fatalf("member remove of the dead member: %v", err)
		}
		return err == nil
	})
	c.Members = rest

	j := c.NewJoiner("m3")
	var add *clientv3.MemberAddResponse
	waitFor(t, 30*time.Second, "the new member to be added", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		add, err = cli.MemberAddAsLearner(ctx, []string{j.PeerURL})
		if err != nil && !strings.Contains(err.Error(), "unhealthy cluster") {
			t.Fatalf("member add: %v", err)
		}
		return err == nil
	})
	j.cfg.Learner = true
	c.StartJoining(j)
	w.WaitMore(t, 20)
	waitFor(t, 60*time.Second, "the new member to be promoted", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cli.MemberPromote(ctx, add.Member.ID)
		if err != nil && !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) && !strings.Contains(err.Error(), "in sync with leader") {
			t.Logf("promote: %v", err)
		}
		return err == nil
	})
	if j.MemberID != add.Member.ID {
		t.Errorf("new member reports id %x, member add gave %x", j.MemberID, add.Member.ID)
	}
	w.WaitMore(t, 20)
	w.Stop()
	t.Log(w.Summary())
	c.Leader()
	c.WaitHashKVEqual()
	w.CheckOn(t, c.Members...)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	ml, err := j.Client().MemberList(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 3 {
		t.Errorf("member list has %d members, want 3: %v", len(ml.Members), ml.Members)
	}
	for _, m := range ml.Members {
		if m.ID == dead.MemberID {
			t.Errorf("removed member %x still listed", m.ID)
		}
		if m.IsLearner {
			t.Errorf("member %x is still a learner", m.ID)
		}
	}
}

// A 5-member cluster loses two members, the leader among them, and keeps
// taking writes; both come back and catch up.
func TestFaultFiveMembersTwoDown(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 5)
	w := StartWriter(t, ClientOf(t, c.Members...), "w/")
	w.WaitAcked(t, 20)
	lead := c.Leader()
	down := []*Member{lead, Others(c.Members, lead)[0]}
	for _, m := range down {
		m.Kill()
	}
	up := Running(c.Members)
	newLead := WaitLeaderAmong(t, up...)
	t.Logf("new leader after killing %s: %s", names(down), newLead.Name())
	w.WaitMore(t, 50)
	for _, m := range down {
		m.Restart()
	}
	w.WaitMore(t, 20)
	w.Stop()
	t.Log(w.Summary())
	c.Leader()
	c.WaitHashKVEqual()
	w.CheckOn(t, c.Members...)
}
