package ctl

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
)

// progress reports a long operation on w (stderr). On a terminal it
// rewrites one status line in place, at most ten times a second; otherwise
// it prints plain lines, at most one every few seconds, so logs stay short.
type progress struct {
	w        io.Writer
	tty      bool
	last     time.Time
	interval time.Duration
	shown    bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, interval: 5 * time.Second}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty, p.interval = true, 100*time.Millisecond
	}
	return p
}

// step shows msg (always the first time, then throttled).
func (p *progress) step(msg string) {
	now := time.Now()
	if p.shown && now.Sub(p.last) < p.interval {
		return
	}
	p.last, p.shown = now, true
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", msg)
		return
	}
	fmt.Fprintln(p.w, msg)
}

// done ends the status line on a terminal.
func (p *progress) done() {
	if p.tty && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.shown = false
}

// bytesDone formats a byte count and, when known, a total.
func bytesDone(done, total int64) string {
	if total > 0 {
		return fmt.Sprintf("%s of %s (%.0f%%)", humanBytes(uint64(done)), humanBytes(uint64(total)), 100*float64(done)/float64(total))
	}
	return humanBytes(uint64(done))
}
