package warden

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"syscall"
	"time"
)

// Checker runs one health check; nil means healthy. ctx carries the
// check's timeout.
type Checker func(ctx context.Context) error

// checkerFor returns the health check of s, or nil if it has none.
func checkerFor(s *Service) Checker {
	h := s.Health
	switch h.Type {
	case HealthTCP:
		return func(ctx context.Context) error { return checkTCP(ctx, h.Target, h.Send, h.Expect) }
	case HealthHTTP:
		client := &http.Client{Transport: &http.Transport{
			// A health check verifies the service answers, not who it is.
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec
			DisableKeepAlives: true,
		}}
		return func(ctx context.Context) error { return checkHTTP(ctx, client, h.Target) }
	case HealthCommand:
		return func(ctx context.Context) error { return checkCommand(ctx, h.Command, s.Dir) }
	}
	return nil
}

func checkTCP(ctx context.Context, addr, send, expect string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			return fmt.Errorf("write to %s: %w", addr, err)
		}
	}
	if expect != "" {
		buf := make([]byte, len(expect))
		if _, err := io.ReadFull(c, buf); err != nil {
			return fmt.Errorf("read from %s: %w", addr, err)
		}
		if !bytes.Equal(buf, []byte(expect)) {
			return fmt.Errorf("%s answered %q, want %q", addr, buf, expect)
		}
	}
	return nil
}

func checkHTTP(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func checkCommand(ctx context.Context, argv []string, dir string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if len(out) > 200 {
			out = out[:200]
		}
		return fmt.Errorf("%s: %v: %s", argv[0], err, bytes.TrimSpace(out))
	}
	return nil
}
