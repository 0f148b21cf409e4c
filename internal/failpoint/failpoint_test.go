package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// arm sets spec for one test and disarms everything when it ends.
func arm(t *testing.T, spec string) {
	t.Helper()
	if err := Set(spec); err != nil {
		t.Fatalf("Set(%q): %v", spec, err)
	}
	t.Cleanup(func() { _ = Set("") })
}

// fake replaces exit and sleep, recording their calls.
func fake(t *testing.T) (exits *[]int, sleeps *[]time.Duration) {
	t.Helper()
	var e []int
	var s []time.Duration
	oldExit, oldSleep := exit, sleep
	exit = func(code int) { e = append(e, code) }
	sleep = func(d time.Duration) { s = append(s, d) }
	t.Cleanup(func() { exit, sleep = oldExit, oldSleep })
	return &e, &s
}

func TestUnsetIsDisabled(t *testing.T) {
	arm(t, "")
	if enabled.Load() {
		t.Fatal("enabled with an empty spec")
	}
	exits, _ := fake(t)
	Hit("raft-before-save")
	if len(*exits) != 0 || Hits("raft-before-save") != 0 {
		t.Fatalf("unarmed point acted: exits %v", *exits)
	}
}

func TestParseErrors(t *testing.T) {
	for _, spec := range []string{
		"raft-before-save",            // no action
		"no-such-point=exit",          // unknown point
		"raft-before-save=explode",    // unknown action
		"raft-before-save=0*exit",     // count below 1
		"raft-before-save=x*exit",     // count not a number
		"raft-before-save=sleep(3)",   // no unit
		"raft-before-save=sleep(-1s)", // negative
		"raft-before-save=sleep(1s",   // unclosed
	} {
		if err := Set(spec); err == nil {
			t.Errorf("Set(%q) = nil, want an error", spec)
		}
	}
	_ = Set("")
}

func TestExitOnNthHit(t *testing.T) {
	exits, _ := fake(t)
	arm(t, "apply-before-commit=3*exit; raft-after-save=off")
	for i := 1; i <= 2; i++ {
		Hit("apply-before-commit")
		if len(*exits) != 0 {
			t.Fatalf("exit after %d hits, want none before the 3rd", i)
		}
	}
	Hit("raft-after-save")
	Hit("apply-after-commit") // not armed
	if len(*exits) != 0 {
		t.Fatalf("other points exited: %v", *exits)
	}
	Hit("apply-before-commit")
	if len(*exits) != 1 || (*exits)[0] != ExitCode {
		t.Fatalf("exits %v after the 3rd hit, want [%d]", *exits, ExitCode)
	}
	if got := Hits("apply-before-commit"); got != 3 {
		t.Fatalf("Hits = %d, want 3", got)
	}
}

func TestPanic(t *testing.T) {
	arm(t, "compact-before-physical=panic")
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "compact-before-physical") {
			t.Fatalf("recovered %v, want a panic naming the point", r)
		}
	}()
	Hit("compact-before-physical")
	t.Fatal("Hit returned, want a panic")
}

func TestSleepFromNthHitOn(t *testing.T) {
	_, sleeps := fake(t)
	arm(t, "snapshot-before-send=2*sleep(150ms)")
	for i := 0; i < 4; i++ {
		Hit("snapshot-before-send")
	}
	if len(*sleeps) != 3 || (*sleeps)[0] != 150*time.Millisecond {
		t.Fatalf("sleeps %v, want three of 150ms (hits 2, 3 and 4)", *sleeps)
	}
}

func TestSetReplaces(t *testing.T) {
	exits, _ := fake(t)
	arm(t, "raft-before-save=exit")
	arm(t, "raft-after-save=exit")
	Hit("raft-before-save")
	if len(*exits) != 0 {
		t.Fatal("a point from an earlier Set is still armed")
	}
}

// TestExitFromEnvironment runs this test binary as a child with
// CAIRN_FAILPOINTS set: init arms the point and the real os.Exit ends the
// child with ExitCode before it prints anything after the hit.
func TestExitFromEnvironment(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "1" {
		Hit("raft-before-save")
		os.Stdout.WriteString("survived\n")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestExitFromEnvironment$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", EnvVar+"=raft-before-save=exit")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitCode {
		t.Fatalf("child: err %v, want exit status %d\n%s", err, ExitCode, out)
	}
	if strings.Contains(string(out), "survived") || !strings.Contains(string(out), "failpoint raft-before-save: exit") {
		t.Fatalf("child output:\n%s", out)
	}
}

func TestBadEnvironmentRefusesToStart(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "2" {
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBadEnvironmentRefusesToStart$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=2", EnvVar+"=nope=exit")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "unknown failpoint") {
		t.Fatalf("child: err %v, want exit status 2 naming the unknown point\n%s", err, out)
	}
}

func BenchmarkHitDisabled(b *testing.B) {
	_ = Set("")
	for i := 0; i < b.N; i++ {
		Hit("raft-before-save")
	}
}

func TestMemberName(t *testing.T) {
	t.Setenv("ETCD_NAME", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--data-dir=x", "--name=m1"}, "m1"},
		{[]string{"--name", "m2", "--data-dir=x"}, "m2"},
		{[]string{"-name=m3"}, "m3"},
		{nil, "default"},
	} {
		if got := memberName(c.args); got != c.want {
			t.Errorf("memberName(%q) = %q, want %q", c.args, got, c.want)
		}
	}
	t.Setenv("ETCD_NAME", "fromenv")
	if got := memberName(nil); got != "fromenv" {
		t.Errorf("memberName with ETCD_NAME = %q", got)
	}
}

// TestArmFromFile arms and disarms through a polled file.
func TestArmFromFile(t *testing.T) {
	exits, _ := fake(t)
	t.Cleanup(func() { _ = Set("") })
	path := t.TempDir() + "/fp"
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); watchFile(path, time.Millisecond, stop) }()
	defer func() { close(stop); <-done }()

	waitArmed := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for enabled.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("armed = %v after 10s, want %v", !want, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if err := os.WriteFile(path, []byte("raft-after-save=2*exit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitArmed(true)
	Hit("raft-after-save")
	Hit("raft-after-save")
	if len(*exits) != 1 {
		t.Fatalf("exits %v after two hits of 2*exit", *exits)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitArmed(false)
}
