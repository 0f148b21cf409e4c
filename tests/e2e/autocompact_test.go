package e2e

import (
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestAutoCompaction runs a member with periodic auto-compaction every
// second and waits (with a deadline) until old revisions are compacted
// without anyone asking. (The revision mode checks only every five minutes
// in etcd, too slow for this suite.)
func TestAutoCompaction(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{Flags: []string{"--auto-compaction-mode=periodic", "--auto-compaction-retention=1s"}})
	cli := m.Client()
	mustPut(t, cli, "k", "1") // rev 2
	mustPut(t, cli, "k", "2") // rev 3
	waitFor(t, waitTimeout, "revision 2 to be compacted", func() bool {
		_, err := cli.Get(tctx(t), "k", clientv3.WithRev(2))
		return errors.Is(err, rpctypes.ErrCompacted)
	})
	// The latest state is untouched.
	if r, err := cli.Get(tctx(t), "k"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "2" || r.Header.Revision != 3 {
		t.Errorf("after auto-compaction: %+v %v", r, err)
	}
}
