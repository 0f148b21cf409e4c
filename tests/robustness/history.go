package robustness

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Op is one recorded client operation: what was asked, what came back,
// and when (nanoseconds since the history's start, monotonic).
type Op struct {
	Client int
	Req    Request
	Resp   Response
	Call   int64
	Return int64
	Member string // the endpoint the client was pinned to, for reports
}

func (o Op) String() string {
	return fmt.Sprintf("client %d [%d, %d] %s -> %s", o.Client, o.Call, o.Return, o.Req, o.Resp)
}

// History collects operations from concurrent clients.
type History struct {
	start time.Time

	mu  sync.Mutex
	ops []Op
}

// NewHistory starts an empty history; times count from now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the current time on the history's clock.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Add records an operation.
func (h *History) Add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Ops returns a copy of every recorded operation.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// never is the return time of an operation whose outcome is unknown.
const never = math.MaxInt64
