package e2e

import (
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// txnOps commits a txn of n puts.
func txnOps(t testing.TB, cli *clientv3.Client, n int) error {
	t.Helper()
	var ops []clientv3.Op
	for i := range n {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("k%d", i), "v"))
	}
	_, err := cli.Txn(tctx(t)).Then(ops...).Commit()
	return err
}

// TestConfigFromEnv starts a member configured only through ETCD_*
// environment variables, as etcd allows.
func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{FlagsAsEnv: true, Flags: []string{"--max-txn-ops=2"}})
	cli := m.Client()
	if err := txnOps(t, cli, 2); err != nil {
		t.Errorf("2 ops with ETCD_MAX_TXN_OPS=2: %v", err)
	}
	expectRPCError(t, txnOps(t, cli, 3), rpctypes.ErrTooManyOps, codes.InvalidArgument)
	st, err := cli.Status(tctx(t), m.ClientURL)
	if err != nil || st.Leader != m.MemberID {
		t.Errorf("status of an env-configured member: %+v %v", st, err)
	}
}

// TestConfigFlagAndEnvConflict: etcd refuses to start when a setting is
// given both as a flag and as its ETCD_* variable (3.4 and 3.5+ alike: a
// fatal "conflicting environment variable ... is shadowed by corresponding
// command-line flag"), rather than letting one win silently.
func TestConfigFlagAndEnvConflict(t *testing.T) {
	t.Parallel()
	ExpectStartFailure(t, MemberConfig{Flags: []string{"--max-txn-ops=3"}, Env: []string{"ETCD_MAX_TXN_OPS=1"}},
		"ETCD_MAX_TXN_OPS", "shadowed by corresponding command-line flag")
}

// TestConfigUnknownFlag: an unknown flag stops the server before it serves
// and the error names the flag.
func TestConfigUnknownFlag(t *testing.T) {
	t.Parallel()
	ExpectStartFailure(t, MemberConfig{Flags: []string{"--no-such-flag-e2e=1"}}, "no-such-flag-e2e")
}
