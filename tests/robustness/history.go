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

	mu     sync.Mutex
	ops    []Op
	grants []Grant
}

// Grant is a lease a client was granted, and when it asked.
type Grant struct {
	Client int
	Lease  int64
	Call   int64
}

// AddGrant records a lease grant.
func (h *History) AddGrant(client int, lease int64, call int64) {
	h.mu.Lock()
	h.grants = append(h.grants, Grant{Client: client, Lease: lease, Call: call})
	h.mu.Unlock()
}

// Expiries are the operations that model the expiry of every recorded
// grant: a revoke by nobody in particular, with an unknown outcome, that
// may take effect any time after the grant was asked for.
func (h *History) Expiries() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ops []Op
	for i, g := range h.grants {
		ops = append(ops, Op{Client: 1000 + i, Req: Request{Kind: OpLeaseRevoke, Lease: g.Lease},
			Resp: Response{Unknown: true, Err: "lease may expire"}, Call: g.Call, Return: never})
	}
	return ops
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
