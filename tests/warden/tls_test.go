package warden

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/internal/testca"
	"github.com/cairn-kv/cairn/pkg/discovery"
	"github.com/cairn-kv/cairn/tests/e2e"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestTLS: the warden reaches a member that serves clients on https only
// and requires client certificates, with --cacert, --cert and --key.
func TestTLS(t *testing.T) {
	t.Parallel()
	ca := testca.New(t, "warden-test-ca")
	srvCert, srvKey := ca.Issue(t, "server")
	cliCert, cliKey := ca.Issue(t, "client")
	client, peer := freeAddr(t), freeAddr(t)
	bin := serverBinary
	if e2e.Kind() == e2e.KindEtcd {
		bin = "/usr/bin/etcd"
	}
	srv := exec.Command(bin, "--name=m0", "--data-dir="+filepath.Join(t.TempDir(), "m0.data"),
		"--listen-client-urls=https://"+client, "--advertise-client-urls=https://"+client,
		"--listen-peer-urls=http://"+peer, "--initial-advertise-peer-urls=http://"+peer,
		"--initial-cluster=m0=http://"+peer,
		"--cert-file="+srvCert, "--key-file="+srvKey, "--trusted-ca-file="+ca.File, "--client-cert-auth")
	logPath := filepath.Join(t.TempDir(), "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	srv.Stdout, srv.Stderr = logf, logf
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = srv.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(waitTimeout):
			_ = srv.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("server output:\n%s", b)
		}
	})

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + client}, DialTimeout: 5 * time.Second,
		TLS: ca.ClientTLS(t, cliCert, cliKey), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	waitFor(t, "the TLS member to serve", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Get(ctx, "probe")
		return err == nil
	})

	cfg := "services:\n  - name: sleeper\n    command: /bin/sleep\n    args: [\"600\"]\n"
	startWarden(t, "w1", cfg, []string{"https://" + client}, "--lease-ttl", "3s",
		"--cacert", ca.File, "--cert", cliCert, "--key", cliKey)
	r := waitRecord(t, cli, "/services/sleeper", "sleeper registered over TLS", func(r discovery.Record) bool { return r.Status == discovery.StatusRunning })
	if r.Health != discovery.HealthNone || !alive(r.PID) {
		t.Errorf("record %+v", r)
	}

	// Without a client certificate the member refuses the warden; it
	// supervises anyway and says why it cannot register.
	w2 := startWarden(t, "w2", "services:\n  - name: other\n    command: /bin/sleep\n    args: [\"600\"]\n",
		[]string{"https://" + client}, "--lease-ttl", "3s", "--cacert", ca.File)
	waitFor(t, "w2 to report that it cannot reach cairn", func() bool {
		return containsMsg(w2.log(), "cannot get a lease from cairn; supervising locally and retrying")
	})
	waitFor(t, "w2's service to run anyway", func() bool { return len(processesWith("/bin/sleep", "600")) >= 2 })
	if _, _, ok := record(t, cli, "/services/other"); ok {
		t.Errorf("w2 registered without a client certificate")
	}
}
