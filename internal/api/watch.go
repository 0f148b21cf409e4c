package api

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/watch"
)

// Watch service defaults and bounds, as in etcd.
const (
	// DefaultWatchProgressNotifyInterval is etcd's
	// --experimental-watch-progress-notify-interval default.
	DefaultWatchProgressNotifyInterval = 10 * time.Minute
	// MinWatchProgressNotifyInterval: shorter intervals are raised to it.
	MinWatchProgressNotifyInterval = 100 * time.Millisecond
	// watchGRPCOverhead is added to MaxRequestBytes for the fragmenting
	// threshold, as etcd does.
	watchGRPCOverhead = 512 * 1024
	// defaultWatchMaxRequestBytes is etcd's --max-request-bytes default.
	defaultWatchMaxRequestBytes = 1536 * 1024
)

// WatchOptions configures the Watch service.
type WatchOptions struct {
	// MaxRequestBytes is --max-request-bytes (default 1.5 MiB). A response
	// for a watcher that asked for fragment is split into fragments of at
	// most MaxRequestBytes plus 512 KiB of gRPC overhead, as etcd does.
	MaxRequestBytes uint
	// ProgressNotifyInterval is the period of progress notifications for
	// watchers with progress_notify (default 10 minutes, at least 100ms).
	// Each stream adds up to a tenth of it as jitter.
	ProgressNotifyInterval time.Duration

	// newTicker replaces the progress ticker in tests.
	newTicker func(time.Duration) (<-chan time.Time, func())
}

type watchServer struct {
	pb.UnimplementedWatchServer
	hub      *watch.Hub
	header   func() *pb.ResponseHeader
	maxBytes int
	interval time.Duration
	ticker   func(time.Duration) (<-chan time.Time, func())
}

// NewWatchServer returns the Watch service over hub. header supplies the
// cluster id, member id and raft term of every response; the revision comes
// from the hub.
//
// One Watch call is one watch.Stream. A goroutine reads the client's
// requests (create, cancel, progress) and applies them to the stream; the
// handler's goroutine sends the stream's responses in order and runs the
// progress ticker. The call ends when the client goes away or a send fails;
// a client that only half-closes keeps receiving, as with etcd.
func NewWatchServer(hub *watch.Hub, header func() *pb.ResponseHeader, opts WatchOptions) pb.WatchServer {
	s := &watchServer{hub: hub, header: header, ticker: opts.newTicker}
	maxReq := opts.MaxRequestBytes
	if maxReq == 0 {
		maxReq = defaultWatchMaxRequestBytes
	}
	s.maxBytes = int(maxReq) + watchGRPCOverhead
	s.interval = opts.ProgressNotifyInterval
	if s.interval <= 0 {
		s.interval = DefaultWatchProgressNotifyInterval
	}
	s.interval = max(s.interval, MinWatchProgressNotifyInterval)
	if s.ticker == nil {
		s.ticker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	return s
}

// Watch serves one bidirectional watch stream.
func (s *watchServer) Watch(stream pb.Watch_WatchServer) error {
	ws := s.hub.NewStream()
	defer ws.Close()
	ctx := stream.Context()

	// The receiver ends by itself once this handler has returned: gRPC
	// then fails its Recv, and errc has room for its last word.
	errc := make(chan error, 1)
	go func() { errc <- receiveWatchRequests(stream, ws) }()

	interval := s.interval + rand.N(s.interval/10+1)
	tick, stop := s.ticker(interval)
	defer stop()

	for {
		select {
		case <-ws.Ready():
			for _, r := range ws.Pop() {
				if err := s.send(stream, r); err != nil {
					return err
				}
			}
		case <-tick:
			ws.ProgressTick()
		case err := <-errc:
			if err == nil {
				// Half-closed by the client: keep serving until it
				// goes away.
				errc = nil
				continue
			}
			return watchStreamError(err)
		case <-ctx.Done():
			return watchStreamError(ctx.Err())
		}
	}
}

func watchStreamError(err error) error {
	if errors.Is(err, context.Canceled) {
		return rpctypes.ErrGRPCWatchCanceled
	}
	return err
}

// receiveWatchRequests applies the client's requests to ws until the client
// half-closes (nil) or the stream fails. Refusals and cancel confirmations
// are queued on ws by the hub, in order with everything else.
func receiveWatchRequests(stream pb.Watch_WatchServer, ws *watch.Stream) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch u := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if c := u.CreateRequest; c != nil {
				_, _ = ws.Watch(watchRequest(c)) // a refusal is answered on the stream
			}
		case *pb.WatchRequest_CancelRequest:
			if c := u.CancelRequest; c != nil {
				_ = ws.Cancel(c.WatchId) // etcd answers an unknown id with silence
			}
		case *pb.WatchRequest_ProgressRequest:
			if u.ProgressRequest != nil {
				ws.RequestProgress()
			}
		default:
			// etcd ignores request kinds it does not know.
		}
	}
}

func watchRequest(c *pb.WatchCreateRequest) watch.WatchRequest {
	r := watch.WatchRequest{
		ID:             c.WatchId,
		Key:            c.Key,
		RangeEnd:       c.RangeEnd,
		StartRevision:  c.StartRevision,
		PrevKV:         c.PrevKv,
		ProgressNotify: c.ProgressNotify,
		Fragment:       c.Fragment,
	}
	for _, f := range c.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			r.NoPut = true
		case pb.WatchCreateRequest_NODELETE:
			r.NoDelete = true
		}
	}
	return r
}

// send writes one hub response, split into fragments if its watcher asked
// for that and it is too large.
func (s *watchServer) send(stream pb.Watch_WatchServer, r *watch.Response) error {
	src := s.header()
	wr := &pb.WatchResponse{
		Header: &pb.ResponseHeader{
			ClusterId: src.GetClusterId(),
			MemberId:  src.GetMemberId(),
			RaftTerm:  src.GetRaftTerm(),
			Revision:  r.Revision,
		},
		WatchId:         r.WatchID,
		Created:         r.Created,
		Canceled:        r.Canceled,
		CompactRevision: r.CompactRevision,
		CancelReason:    r.CancelReason,
		Events:          r.Events,
	}
	if !r.Fragment {
		return stream.Send(wr)
	}
	return sendWatchFragments(wr, s.maxBytes, stream.Send)
}

// sendWatchFragments sends wr whole if it is under limit bytes or has fewer
// than two events; otherwise as a run of responses with Fragment set on all
// but the last, each holding as many events as fit under limit (at least
// one). This is etcd's split, so clients reassemble it the same way.
func sendWatchFragments(wr *pb.WatchResponse, limit int, send func(*pb.WatchResponse) error) error {
	if proto.Size(wr) < limit || len(wr.Events) < 2 {
		return send(wr)
	}
	rest := wr.Events
	for len(rest) > 0 {
		// A new message each time: gRPC may still hold the previous one.
		part := &pb.WatchResponse{
			Header:          wr.Header,
			WatchId:         wr.WatchId,
			Created:         wr.Created,
			Canceled:        wr.Canceled,
			CompactRevision: wr.CompactRevision,
			CancelReason:    wr.CancelReason,
			Fragment:        true,
		}
		// The size grows by each event's encoding: the same test as
		// etcd's proto.Size of the whole fragment, without re-encoding.
		size := proto.Size(part)
		n := 0
		for n < len(rest) {
			size += watchEventFieldSize(rest[n])
			if n > 0 && size >= limit {
				break
			}
			n++
		}
		part.Events = rest[:n:n]
		rest = rest[n:]
		if len(rest) == 0 {
			part.Fragment = false
		}
		if err := send(part); err != nil {
			return err
		}
	}
	return nil
}

// watchEventFieldSize is what one event adds to an encoded WatchResponse.
func watchEventFieldSize(ev *mvccpb.Event) int {
	return protowire.SizeTag(watchEventsField) + protowire.SizeBytes(proto.Size(ev))
}

// watchEventsField is the field number of WatchResponse.events.
const watchEventsField = 11
