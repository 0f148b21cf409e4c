package robustness

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/tests/e2e"
)

// StrictWALEnv makes TestCorruption fail on the known silent loss after
// a bit flip in pebble's write-ahead log.
const StrictWALEnv = "CAIRN_ROBUSTNESS_STRICT_WAL"

// TestCorruption flips bits in the pebble files of a stopped member and
// starts it again: it must refuse to start, or raise an alarm, or serve
// exactly the data it acknowledged (a read may fail); it must never
// answer with other data.
func TestCorruption(t *testing.T) {
	if e2e.Kind() != e2e.KindCairn {
		t.Skip("pebble files are cairn's")
	}
	m := e2e.StartMember(t, e2e.MemberConfig{})
	bin := binaryOf(t, m.DataDir())
	cli := m.Client()
	want := map[string]string{}
	for i := 0; i < 200; i++ {
		k, v := fmt.Sprintf("corrupt/%03d", i), fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", i%50))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cli.Put(ctx, k, v)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		want[k] = v
		if i == 149 {
			// Move what is written so far into tables (.sst); the
			// rest stays in the write-ahead log only.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := cli.Defragment(ctx, m.ClientURL)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	m.Stop()

	files := pebbleFiles(t, m.DataDir())
	if len(files) == 0 {
		t.Fatalf("no pebble files under %s", m.DataDir())
	}
	rnd := rand.New(rand.NewPCG(7, 7))
	outcomes := map[string]int{}
	for i, f := range files {
		for trial := 0; trial < 2; trial++ {
			name := fmt.Sprintf("%s#%d", f, trial)
			dir := filepath.Join(t.TempDir(), "data")
			copyDir(t, m.DataDir(), dir)
			off := flipBits(t, filepath.Join(dir, f), rnd)
			out := startCorrupted(t, bin, dir, want)
			outcomes[out]++
			t.Logf("%s: flipped bits at offset %d: %s", name, off, out)
			switch {
			case !strings.HasPrefix(out, "WRONG"):
			case strings.HasSuffix(f, ".log") && os.Getenv(StrictWALEnv) == "":
				// Known: see docs/robustness.md, Findings.
				t.Logf("KNOWN ISSUE (set %s=1 to fail on it): file %s (offset %d): %s", StrictWALEnv, f, off, out)
			default:
				t.Errorf("file %d %s (offset %d): %s", i, f, off, out)
			}
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

// binaryOf is the executable of the running server with dataDir.
func binaryOf(t *testing.T, dataDir string) string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), "--data-dir="+dataDir+"\x00") {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", d.Name(), "exe"))
		if err == nil {
			return exe
		}
	}
	t.Fatalf("no server process for %s", dataDir)
	return ""
}

// pebbleFiles lists the files of the data dir that hold data (tables,
// logs, manifests), relative to it.
func pebbleFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		base := d.Name()
		if strings.HasSuffix(base, ".sst") || strings.HasSuffix(base, ".log") || strings.HasPrefix(base, "MANIFEST-") {
			if info, err := d.Info(); err == nil && info.Size() > 0 {
				rel, _ := filepath.Rel(dir, p)
				out = append(out, rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
}

// flipBits inverts one byte in the middle part of the file and returns
// its offset.
func flipBits(t *testing.T, path string, rnd *rand.Rand) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(len(b)/4 + rnd.IntN(max(1, len(b)/2)))
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return off
}

// startCorrupted runs the server on dir and classifies what it does:
// "refused: ..." (exited), "alarm: ..." (serving with an alarm),
// "served: ..." (serving exactly the acknowledged data, reads may fail),
// or "WRONG: ..." (served other data).
func startCorrupted(t *testing.T, bin, dir string, want map[string]string) string {
	t.Helper()
	client, peer := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "--name=m0", "--data-dir="+dir,
		"--listen-client-urls=http://"+client, "--advertise-client-urls=http://"+client,
		"--listen-peer-urls=http://"+peer, "--initial-advertise-peer-urls=http://"+peer,
		"--initial-cluster=m0=http://"+peer, "--initial-cluster-state=new", "--initial-cluster-token=e2e-m0")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + client}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			exited <- err
			return "refused: " + lastLine(log.String())
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "probe", clientv3.WithSerializable())
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return "refused: not serving after 20s: " + lastLine(log.String())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if al, err := cli.AlarmList(ctx); err == nil && len(al.Alarms) > 0 {
		return fmt.Sprintf("alarm: %v", al.Alarms)
	}
	resp, err := cli.Get(ctx, "corrupt/", clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return "served: the range failed: " + err.Error()
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	var wrong []string
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			wrong = append(wrong, fmt.Sprintf("%s=%q (present %v)", k, g, ok))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			wrong = append(wrong, "unexpected key "+k)
		}
	}
	if len(wrong) > 0 {
		sort.Strings(wrong)
		return fmt.Sprintf("WRONG: %d of %d keys differ, e.g. %s", len(wrong), len(want), strings.Join(wrong[:min(3, len(wrong))], ", "))
	}
	return "served: every acknowledged key intact"
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := lines[len(lines)-1]
	if len(l) > 300 {
		l = l[:300]
	}
	return l
}

// syncBuffer is an output buffer safe for a process's two pipes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
