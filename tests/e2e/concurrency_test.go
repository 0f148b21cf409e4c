package e2e

import (
	"errors"
	"os"
	"regexp"
	"strconv"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// keysUnder returns the keys under prefix, oldest creation first.
func keysUnder(t testing.TB, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	r, err := cli.Get(tctx(t), prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range r.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

func TestLockEtcdctl(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	requireEtcdctl(t)
	cli := m.Client()

	t.Run("run-command", func(t *testing.T) {
		// The command runs holding the lock, with the lock's key and
		// revision in its environment.
		out := m.Ctl(t, "lock", "mylock", "--", "sh", "-c", `echo "$ETCD_LOCK_KEY $ETCD_LOCK_REV"; echo hello`)
		g := regexp.MustCompile(`^(mylock/[0-9a-f]+) (\d+)\nhello\n$`).FindStringSubmatch(out)
		if g == nil {
			t.Fatalf("lock -- cmd: stdout %q", out)
		}
		rev, _ := strconv.ParseInt(g[2], 10, 64)
		// The key existed at ETCD_LOCK_REV and is gone now, and so is
		// the session's lease.
		r, err := cli.Get(tctx(t), g[1], clientv3.WithRev(rev))
		if err != nil || len(r.Kvs) != 1 || r.Kvs[0].CreateRevision != rev {
			t.Errorf("lock key %s at revision %d: %+v %v", g[1], rev, r, err)
		}
		// (etcdctl 3.4 leaves the session's lease to expire.)
		if keys := keysUnder(t, cli, "mylock/"); len(keys) != 0 {
			t.Errorf("lock keys left after the command: %v", keys)
		}
		// The command's failure is etcdctl's.
		m.ExpectCtlError(t, "exit status 3", "lock", "mylock", "--", "sh", "-c", "exit 3")
	})

	t.Run("contenders", func(t *testing.T) {
		a := m.StartCtl(t, "lock", "c")
		// The holder prints its key and an empty line (an empty value).
		aOut := a.WaitStdout("lock key", func(s string) bool { return regexp.MustCompile(`\n\n$`).MatchString(s) })
		if !regexp.MustCompile(`^c/[0-9a-f]+\n\n$`).MatchString(aOut) {
			t.Fatalf("lock holder printed %q, want its key", aOut)
		}

		// A client library contender cannot take it either.
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(30))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := concurrency.NewMutex(s, "c").TryLock(tctx(t)); !errors.Is(err, concurrency.ErrLocked) {
			t.Errorf("TryLock on a held lock: %v, want %v", err, concurrency.ErrLocked)
		}

		b := m.StartCtl(t, "lock", "c", "--", "echo", "b has it")
		waitFor(t, waitTimeout, "the second contender's key", func() bool {
			if b.Exited() {
				t.Fatalf("second contender exited while waiting: %v\nstderr:\n%s", b.Wait(), b.Stderr())
			}
			return len(keysUnder(t, cli, "c/")) == 2
		})
		keys := keysUnder(t, cli, "c/")
		if keys[0]+"\n\n" != aOut {
			t.Errorf("oldest lock key %q, holder printed %q", keys[0], aOut)
		}
		// b's key is queued behind a's: b cannot have run.
		if b.Exited() || b.Stdout() != "" {
			t.Fatalf("second contender ran while the lock was held: exited %v, stdout %q", b.Exited(), b.Stdout())
		}

		a.Signal(os.Interrupt) // releases the lock
		b.WaitStdoutIs("b has it\n")
		if err := b.Wait(); err != nil {
			t.Errorf("second contender: %v\n%s", err, b.Stderr())
		}
		_ = a.Wait()
		waitFor(t, waitTimeout, "lock keys to be gone", func() bool { return len(keysUnder(t, cli, "c/")) == 0 })
	})
}

func TestElectEtcdctl(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	requireEtcdctl(t)
	cli := m.Client()
	leaderRE := regexp.MustCompile(`^(el/[0-9a-f]+)\np1\n$`)

	e1 := m.StartCtl(t, "elect", "el", "p1")
	out := e1.WaitStdout("leadership", func(s string) bool {
		return len(s) > 0 && s[len(s)-1] == '\n' && regexp.MustCompile(`\n.*\n`).MatchString(s)
	})
	g := leaderRE.FindStringSubmatch(out)
	if g == nil {
		t.Fatalf("first campaigner printed %q, want its key and p1", out)
	}
	k1 := g[1]

	// The listener prints the current leader, then every new one.
	l := m.StartCtl(t, "elect", "-l", "el")
	l.WaitStdoutIs(k1 + "\np1\n")

	// The client library sees the same leader.
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(30))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := concurrency.NewElection(s, "el").Leader(tctx(t))
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Key) != k1 || string(r.Kvs[0].Value) != "p1" {
		t.Fatalf("election leader via clientv3: %+v %v", r, err)
	}

	e2 := m.StartCtl(t, "elect", "el", "p2")
	waitFor(t, waitTimeout, "the second campaigner's key", func() bool {
		if e2.Exited() {
			t.Fatalf("second campaigner exited while waiting: %v\nstderr:\n%s", e2.Wait(), e2.Stderr())
		}
		return len(keysUnder(t, cli, "el/")) == 2
	})
	k2 := keysUnder(t, cli, "el/")[1]
	if e2.Stdout() != "" {
		t.Fatalf("second campaigner elected while the first leads: %q", e2.Stdout())
	}

	e1.Signal(os.Interrupt) // resigns
	e2.WaitStdoutIs(k2 + "\np2\n")
	l.WaitStdoutIs(k1 + "\np1\n" + k2 + "\np2\n")
	_ = e1.Wait()
	e2.Signal(os.Interrupt)
	_ = e2.Wait()
}
