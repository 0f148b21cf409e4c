package warden

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// ProcSpec is what a Starter needs to start one process.
type ProcSpec struct {
	Path string   // program (looked up in PATH)
	Args []string // arguments, without the program
	Env  []string // extra KEY=VALUE, added to the warden's environment
	Dir  string
}

// specOf returns the process of a service: its command and args, or
// /bin/sh -c SHELL.
func specOf(s *Service) ProcSpec {
	spec := ProcSpec{Path: s.Command, Args: s.Args, Dir: s.Dir}
	if s.Shell != "" {
		spec.Path, spec.Args = "/bin/sh", []string{"-c", s.Shell}
	}
	for k, v := range s.Env {
		spec.Env = append(spec.Env, k+"="+v)
	}
	return spec
}

// Starter starts processes. The supervisor uses ExecStarter; tests may
// give a fake.
type Starter interface {
	// Start starts the process or returns why it could not.
	Start(spec ProcSpec) (Proc, error)
}

// Proc is one started process (with its process group).
type Proc interface {
	Pid() int
	// Done is closed when the process has exited; ExitStatus is then
	// valid.
	Done() <-chan struct{}
	// ExitStatus describes how the process ended ("exit status 1",
	// "signal: killed") and reports whether it exited with status 0.
	ExitStatus() (string, bool)
	// Signal sends sig to the process group.
	Signal(sig syscall.Signal) error
}

// ExecStarter starts real processes, each the leader of its own process
// group, killed (SIGKILL) by the kernel when the warden dies. Their
// standard output and error are the warden's.
type ExecStarter struct{}

// Start implements Starter.
func (ExecStarter) Start(spec ProcSpec) (Proc, error) {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &execProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		// Whatever the leader left behind in its group goes with it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		close(p.done)
	}()
	return p, nil
}

type execProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *execProc) Pid() int              { return p.cmd.Process.Pid }
func (p *execProc) Done() <-chan struct{} { return p.done }

func (p *execProc) ExitStatus() (string, bool) {
	if p.err == nil {
		return "exit status 0", true
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.Error(), false
	}
	return p.err.Error(), false
}

func (p *execProc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to process group %d: %w", sig, p.cmd.Process.Pid, err)
	}
	return nil
}

// stopProc stops p: sig to its group (and SIGCONT, so that a stopped
// process can act on it), then SIGKILL after grace. It returns once p has
// exited, or after grace plus killWait if even SIGKILL did not reap it.
func stopProc(p Proc, sig syscall.Signal, grace time.Duration) {
	const killWait = 5 * time.Second
	select {
	case <-p.Done():
		return
	default:
	}
	_ = p.Signal(sig)
	if sig != syscall.SIGKILL && sig != syscall.SIGCONT {
		_ = p.Signal(syscall.SIGCONT)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.Done():
		return
	case <-t.C:
	}
	_ = p.Signal(syscall.SIGKILL)
	select {
	case <-p.Done():
	case <-time.After(killWait):
	}
}
