package e2e

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/transport/proxy"
)

// # Peer network with faults
//
// A FaultCluster is a Cluster whose members talk to each other through a
// PeerNet. Every member listens on its real peer port (Member.PeerURL) but
// advertises, in --initial-advertise-peer-urls and --initial-cluster, the
// address of its front in the PeerNet:
//
//	sender ──dials──> front of receiver ──> link proxy (sender→receiver) ──> receiver's peer port
//
// One proxy per member is not enough for a partition: a proxy in front of
// a member only sees the connections dialed to that member. cairn sends
// its messages for a peer on a stream it dials to that peer, so the
// receiver's proxy holds the traffic towards it, while the member's own
// messages leave on connections it dials to the others, through their
// proxies (etcd 3.4 is worse: a member also receives on streams it dialed,
// so black-holing its proxy would cut only half of each direction). Cutting
// a member's outgoing connections at the other members' proxies would also
// cut the links among those others. So each front routes a connection, by
// the sender named in its first HTTP request (X-Cairn-From for cairn,
// X-Server-From for etcd; peers speak HTTP/1.1 over http://), to a
// proxy.Proxy of its own for that ordered pair of members. Isolating a
// member black-holes every link from it and every link to it, which is
// symmetric whatever side dialed; the links among the others are not
// touched. Connections that name no sender (a joiner's GET /members, etcd's
// version probes) share an anonymous link per receiver, cut when the
// receiver is isolated.

// PeerNet is the fronts and link proxies of one cluster's peer traffic.
type PeerNet struct {
	t testing.TB

	mu       sync.Mutex
	fronts   map[string]*front // receiver name -> front
	links    map[linkKey]*proxy.Proxy
	isolated map[string]uint64 // isolated member name -> its member ID
	degraded map[string]degradation
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

// linkKey is one direction of a peer link: connections dialed by the
// member with ID from (0: sender not named) to the member called to.
type linkKey struct {
	from uint64
	to   string
}

type front struct {
	name   string
	target string // receiver's real peer listener, host:port
	ln     net.Listener
}

// NewPeerNet returns an empty peer network, closed when the test ends
// (after the members, whose cleanups are registered later, have stopped).
func NewPeerNet(t testing.TB) *PeerNet {
	n := &PeerNet{
		t:        t,
		fronts:   map[string]*front{},
		links:    map[linkKey]*proxy.Proxy{},
		isolated: map[string]uint64{},
		degraded: map[string]degradation{},
		conns:    map[net.Conn]struct{}{},
	}
	t.Cleanup(n.Close)
	return n
}

// AddFront listens on a free loopback port for connections to the member
// called name, whose peer listener is target (host:port), and returns the
// URL to advertise for it.
func (n *PeerNet) AddFront(name, target string) string {
	n.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		n.t.Fatal(err)
	}
	f := &front{name: name, target: target, ln: ln}
	n.mu.Lock()
	n.fronts[name] = f
	n.wg.Add(1)
	n.mu.Unlock()
	go n.accept(f)
	return "http://" + ln.Addr().String()
}

// Isolate black-holes every link from the member with this ID and every
// link to the member with this name, existing connections included, until
// Heal.
func (n *PeerNet) Isolate(name string, id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[name] = id
	n.applyLocked()
}

// degradation is a slow or lossy member: every link from or to it.
type degradation struct {
	id    uint64
	delay time.Duration
	drop  float64
}

// Degrade makes every link from the member with this ID and every link to
// the member with this name slow (each chunk held for delay) and lossy
// (each chunk's connection cut with probability drop), until Heal.
func (n *PeerNet) Degrade(name string, id uint64, delay time.Duration, drop float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.degraded[name] = degradation{id: id, delay: delay, drop: drop}
	n.applyLocked()
}

// Heal ends every isolation and degradation. Connections that lost data
// stay silent (see package proxy) until the members replace them.
func (n *PeerNet) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated = map[string]uint64{}
	n.degraded = map[string]degradation{}
	n.applyLocked()
}

// degradationLocked is the fault of link k when it is degraded.
func (n *PeerNet) degradationLocked(k linkKey) (degradation, bool) {
	if d, ok := n.degraded[k.to]; ok {
		return d, true
	}
	for _, d := range n.degraded {
		if d.id != 0 && d.id == k.from {
			return d, true
		}
	}
	return degradation{}, false
}

// blockedLocked reports whether the link k is cut.
func (n *PeerNet) blockedLocked(k linkKey) bool {
	if _, ok := n.isolated[k.to]; ok {
		return true
	}
	for _, id := range n.isolated {
		if id != 0 && id == k.from {
			return true
		}
	}
	return false
}

func (n *PeerNet) applyLocked() {
	for k, p := range n.links {
		n.applyLinkLocked(k, p)
	}
}

func (n *PeerNet) applyLinkLocked(k linkKey, p *proxy.Proxy) {
	if n.blockedLocked(k) {
		p.Blackhole()
		return
	}
	p.Heal()
	if d, ok := n.degradationLocked(k); ok {
		p.Delay(d.delay)
		p.DropFraction(d.drop)
	}
}

// LinkStats describes every link proxy that carried a connection, for a
// failing test's log.
func (n *PeerNet) LinkStats() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var lines []string
	for k, p := range n.links {
		s := p.Stats()
		lines = append(lines, fmt.Sprintf("%x -> %s: blocked %v, accepted %d, forwarded %d B, discarded %d B",
			k.from, k.to, n.blockedLocked(k), s.Accepted, s.Forwarded, s.Discarded))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// link returns the proxy for k, creating it (with the current faults
// applied before it forwards anything) on first use.
func (n *PeerNet) link(k linkKey, target string) (*proxy.Proxy, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, net.ErrClosed
	}
	if p, ok := n.links[k]; ok {
		return p, nil
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%x>%s", k.from, k.to)
	p, err := proxy.New(target, h.Sum64())
	if err != nil {
		return nil, err
	}
	n.applyLinkLocked(k, p)
	n.links[k] = p
	return p, nil
}

func (n *PeerNet) track(c net.Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		c.Close()
		return false
	}
	n.conns[c] = struct{}{}
	return true
}

func (n *PeerNet) untrack(c net.Conn) {
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
	c.Close()
}

func (n *PeerNet) accept(f *front) {
	defer n.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !n.track(c) {
			continue
		}
		n.mu.Lock()
		n.wg.Add(1)
		n.mu.Unlock()
		go func() {
			defer n.wg.Done()
			defer n.untrack(c)
			n.route(f, c)
		}()
	}
}

// maxHeader bounds what a front reads to find the sender.
const maxHeader = 64 << 10

// route reads the head of the first request on c, picks the link of its
// sender, and splices c to that link's proxy.
func (n *PeerNet) route(f *front, c net.Conn) {
	head := readHead(c)
	p, err := n.link(linkKey{from: senderID(head), to: f.name}, f.target)
	if err != nil {
		return
	}
	up, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		return
	}
	if !n.track(up) {
		return
	}
	defer n.untrack(up)
	if _, err := up.Write(head); err != nil {
		return
	}
	splice(c, up)
}

// readHead reads from c until the end of the first HTTP request head,
// maxHeader bytes, EOF, or a deadline; it returns what it read.
func readHead(c net.Conn) []byte {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var head []byte
	buf := make([]byte, 4096)
	for len(head) < maxHeader && !bytes.Contains(head, []byte("\r\n\r\n")) {
		k, err := c.Read(buf)
		head = append(head, buf[:k]...)
		if err != nil {
			break
		}
	}
	return head
}

// senderID is the member ID a peer request head names (hex, as cairn and
// etcd write it), or 0.
func senderID(head []byte) uint64 {
	end := bytes.Index(head, []byte("\r\n\r\n"))
	if end < 0 {
		return 0
	}
	for _, line := range strings.Split(string(head[:end]), "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if strings.EqualFold(k, "X-Cairn-From") || strings.EqualFold(k, "X-Server-From") {
			if id, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil {
				return id
			}
		}
	}
	return 0
}

// splice copies both ways between a and b, passing a half-close on, until
// both directions end or one fails.
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	half := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		if _, err := io.Copy(dst, src); err != nil {
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
	go half(a, b)
	go half(b, a)
	<-done
	<-done
}

// Close stops the fronts, closes every connection and link proxy and waits
// for the network's goroutines.
func (n *PeerNet) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	for _, f := range n.fronts {
		f.ln.Close()
	}
	for c := range n.conns {
		c.Close()
	}
	links := n.links
	n.mu.Unlock()
	for _, p := range links {
		p.Close()
	}
	n.wg.Wait()
}

// FaultCluster is a Cluster whose peer traffic runs through a PeerNet.
type FaultCluster struct {
	*Cluster
	Net *PeerNet
	// Advertised is each member's advertised peer URL (its front), by name.
	Advertised map[string]string
}

// StartFaultCluster starts n members of a new cluster whose peer traffic
// goes through a PeerNet, and waits until each serves linearizable reads.
func StartFaultCluster(t testing.TB, n int, flags ...string) *FaultCluster {
	t.Helper()
	fc := &FaultCluster{
		Cluster:    &Cluster{t: t, token: "e2e-fault-" + strings.ReplaceAll(t.Name(), "/", "-"), flags: flags},
		Net:        NewPeerNet(t),
		Advertised: map[string]string{},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("peer links:\n%s", fc.Net.LinkStats())
		}
	})
	var ic []string
	for i := 0; i < n; i++ {
		m := fc.newMember(fmt.Sprintf("m%d", i))
		adv := fc.Net.AddFront(m.cfg.Name, strings.TrimPrefix(m.PeerURL, "http://"))
		fc.Advertised[m.cfg.Name] = adv
		// The flag parsers of cairn and etcd let a repeated flag win over
		// the harness's --initial-advertise-peer-urls=PeerURL.
		m.cfg.Flags = append(append([]string(nil), flags...), "--initial-advertise-peer-urls="+adv)
		ic = append(ic, m.cfg.Name+"="+adv)
		fc.Members = append(fc.Members, m)
	}
	// Close the network before the members stop (cleanups run last
	// first): a member then stops with its peers refusing connections, as
	// in a plain cluster. Otherwise a keep-alive connection that a
	// partition made silent can hang etcd 3.4's stop for good: its
	// monitorVersions waits, on a client without a timeout, for a GET
	// /version answer, and HardStop waits for monitorVersions (seen in a
	// goroutine dump after SIGTERM).
	t.Cleanup(fc.Net.Close)
	StartAll(t, fc.Members, strings.Join(ic, ","))
	return fc
}

// StartAll starts the members at once (each needs the others for a
// quorum) and waits until each serves linearizable reads. A non-empty
// initialCluster is set on every member first.
func StartAll(t testing.TB, ms []*Member, initialCluster string) {
	t.Helper()
	errs := make(chan error, len(ms))
	for _, m := range ms {
		if initialCluster != "" {
			m.cfg.InitialCluster = initialCluster
		}
		go func(m *Member) {
			if err := m.start(); err != nil {
				errs <- fmt.Errorf("member %s: %w", m.cfg.Name, err)
				return
			}
			errs <- nil
		}(m)
	}
	var failed []string
	for range ms {
		if err := <-errs; err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		t.Fatalf("starting members: %s", strings.Join(failed, "; "))
	}
}

// Isolate cuts m off from every other member, both ways.
func (fc *FaultCluster) Isolate(m *Member) { fc.Net.Isolate(m.cfg.Name, m.MemberID) }

// Heal ends every partition and degradation.
func (fc *FaultCluster) Heal() { fc.Net.Heal() }

// Degrade makes every peer link of m slow and lossy until Heal (see
// PeerNet.Degrade).
func (fc *FaultCluster) Degrade(m *Member, delay time.Duration, drop float64) {
	fc.Net.Degrade(m.cfg.Name, m.MemberID, delay, drop)
}

// Others returns the members other than m.
func Others(ms []*Member, m *Member) []*Member {
	var o []*Member
	for _, x := range ms {
		if x != m {
			o = append(o, x)
		}
	}
	return o
}

// StatusOf returns m's Status, asked of m alone, with a short deadline.
func StatusOf(m *Member) (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return m.Client().Status(ctx, m.ClientURL)
}

// WaitLeaderAmong waits until every member of ms reports the same leader
// and that leader is one of ms, and returns it.
func WaitLeaderAmong(t testing.TB, ms ...*Member) *Member {
	t.Helper()
	var found *Member
	waitFor(t, 60*time.Second, "a leader agreed on by "+names(ms), func() bool {
		var lead uint64
		for _, m := range ms {
			st, err := StatusOf(m)
			if err != nil || st.Leader == 0 || (lead != 0 && st.Leader != lead) {
				return false
			}
			lead = st.Leader
		}
		for _, m := range ms {
			if m.MemberID == lead {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

func names(ms []*Member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.cfg.Name)
	}
	return strings.Join(s, ",")
}

// ClientOf returns a client over the given members' endpoints, closed when
// the test ends.
func ClientOf(t testing.TB, ms ...*Member) *clientv3.Client {
	t.Helper()
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.ClientURL)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// CtlAll runs etcdctl against every given member's endpoint.
func CtlAll(ms []*Member, args ...string) (stdout, stderr string, err error) {
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.ClientURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	return runCtl(ctlCommand(ctx, strings.Join(eps, ","), args...), "")
}

// ExpectExit marks m's current process as one that will exit on its own
// (so the harness does not count it as a crash) and returns a function that
// waits for the exit and returns its error.
func ExpectExit(t testing.TB, m *Member) func() error {
	t.Helper()
	p := m.current()
	if p == nil {
		t.Fatalf("member %s is not running", m.cfg.Name)
	}
	m.mu.Lock()
	p.expected = true
	m.mu.Unlock()
	return func() error {
		t.Helper()
		select {
		case <-p.exited:
			return p.err
		case <-time.After(waitTimeout):
			t.Fatalf("member %s still running after %v", m.cfg.Name, waitTimeout)
			return nil
		}
	}
}

// Writer puts unique keys from one goroutine, at most one per tick and at
// most writerMax in all, and remembers which writes were acknowledged.
type Writer struct {
	t      testing.TB
	prefix string
	stop   chan struct{}
	done   chan struct{}

	mu     sync.Mutex
	acked  map[string]string
	failed int
	last   error
}

const (
	writerMax     = 20000
	writerTick    = 5 * time.Millisecond
	writerTimeout = 5 * time.Second
)

// StartWriter starts writing prefix-numbered keys through cli. It stops at
// Stop or when the test ends.
func StartWriter(t testing.TB, cli *clientv3.Client, prefix string) *Writer {
	w := &Writer{t: t, prefix: prefix, stop: make(chan struct{}), done: make(chan struct{}), acked: map[string]string{}}
	go w.run(cli)
	t.Cleanup(w.Stop)
	return w
}

func (w *Writer) run(cli *clientv3.Client) {
	defer close(w.done)
	tick := time.NewTicker(writerTick)
	defer tick.Stop()
	for i := 0; i < writerMax; i++ {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		k, v := fmt.Sprintf("%s%06d", w.prefix, i), fmt.Sprintf("v%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), writerTimeout)
		_, err := cli.Put(ctx, k, v)
		cancel()
		w.mu.Lock()
		if err == nil {
			w.acked[k] = v
		} else {
			w.failed++
			w.last = err
		}
		w.mu.Unlock()
	}
}

// Acked is the number of acknowledged writes so far.
func (w *Writer) Acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// WaitAcked waits until n writes are acknowledged.
func (w *Writer) WaitAcked(t testing.TB, n int) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%d acknowledged writes of %s", n, w.prefix), func() bool {
		return w.Acked() >= n
	})
}

// WaitMore waits until n more writes than now are acknowledged.
func (w *Writer) WaitMore(t testing.TB, n int) {
	t.Helper()
	w.WaitAcked(t, w.Acked()+n)
}

// Stop stops the writer and waits for its goroutine.
func (w *Writer) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// Summary says how many writes were acknowledged and failed.
func (w *Writer) Summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("%s: %d acknowledged, %d failed (last error: %v)", w.prefix, len(w.acked), w.failed, w.last)
}

// CheckOn checks, with a serializable read of each member, that every
// acknowledged write is there with its value. Call it after the members
// agree (WaitHashKVEqual).
func (w *Writer) CheckOn(t testing.TB, ms ...*Member) {
	t.Helper()
	w.mu.Lock()
	acked := make(map[string]string, len(w.acked))
	for k, v := range w.acked {
		acked[k] = v
	}
	w.mu.Unlock()
	for _, m := range ms {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := m.Client().Get(ctx, w.prefix, clientv3.WithPrefix(), clientv3.WithSerializable())
		cancel()
		if err != nil {
			t.Fatalf("reading %s* from %s: %v", w.prefix, m.cfg.Name, err)
		}
		have := make(map[string]string, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			have[string(kv.Key)] = string(kv.Value)
		}
		lost := 0
		for k, v := range acked {
			if got, ok := have[k]; !ok || got != v {
				if lost < 10 {
					t.Errorf("member %s: acknowledged write %s=%s reads as %q (present %v)", m.cfg.Name, k, v, got, ok)
				}
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("member %s lost %d of %d acknowledged writes", m.cfg.Name, lost, len(acked))
		}
	}
}

// Running returns the members whose process is alive.
func Running(ms []*Member) []*Member {
	var r []*Member
	for _, m := range ms {
		if m.Running() {
			r = append(r, m)
		}
	}
	return r
}
