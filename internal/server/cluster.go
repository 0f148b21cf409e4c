package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/membership"
	"github.com/cairn-kv/cairn/internal/raftnode"
	"github.com/cairn-kv/cairn/internal/transport"
	"github.com/cairn-kv/cairn/internal/version"
)

// Peers: the transport carries Raft messages between members; the peer
// listener serves it under /raft/ and, for members joining with
// --initial-cluster-state existing, the member list at /members.

// errRemoved stops a member that the cluster removed.
var errRemoved = errors.New("the member has been permanently removed from the cluster")

// clusterIDHeader carries the cluster ID on /members, as etcd's peer API.
const clusterIDHeader = "X-Etcd-Cluster-ID"

// peerHandler hands what the transport receives to the Raft node. The
// transport starts before the node; until the node is set, messages are
// refused (the sender retries) and reports dropped.
type peerHandler struct {
	node *atomic.Pointer[raftnode.Node]
}

var errNodeStarting = errors.New("raft node is starting")

func (h peerHandler) Process(ctx context.Context, m *raftpb.Message) error {
	n := h.node.Load()
	if n == nil {
		return errNodeStarting
	}
	return n.Step(ctx, m)
}

func (h peerHandler) ReportUnreachable(id uint64) {
	if n := h.node.Load(); n != nil {
		n.ReportUnreachable(id)
	}
}

func (h peerHandler) ReportSnapshot(id uint64, failed bool) {
	if n := h.node.Load(); n != nil {
		n.ReportSnapshot(id, failed)
	}
}

// newTransport builds the peer transport for this member.
func (s *Server) newTransport() (*transport.Transport, error) {
	ptls, err := s.peerTLS()
	if err != nil {
		return nil, err
	}
	var clientTLS *tls.Config
	if ptls != nil {
		clientTLS = ptls.peer
	}
	return transport.New(transport.Config{
		TLS:            clientTLS,
		ClusterID:      s.id.ClusterID,
		ID:             s.id.MemberID,
		Handler:        peerHandler{&s.raft},
		SnapshotSource: s.snapshotSource,
		SnapshotSink:   s.snapshotSink,
		OnRefused: func(peer uint64, err error) {
			if errors.Is(err, transport.ErrMemberRemoved) {
				s.fatal(errRemoved)
			}
		},
		Logger:     s.lg,
		Registerer: s.metrics.reg,
	})
}

// syncPeers makes the transport's peers the other members of the member
// set, after a membership change, and notes whether this member is a
// learner. A member missing from a non-empty set was removed and stops.
func (s *Server) syncPeers() {
	self := s.members.Member(s.id.MemberID)
	s.learner.Store(self != nil && self.IsLearner)
	ms := s.members.Members()
	if len(ms) == 0 {
		return
	}
	want := map[uint64]*membership.Member{}
	for _, m := range ms {
		if m.ID != s.id.MemberID {
			want[m.ID] = m
		}
	}
	if self == nil && s.wasMember.Load() {
		s.fatal(errRemoved)
		return
	}
	if self != nil {
		s.wasMember.Store(true)
	}
	have := map[uint64]bool{}
	for _, id := range s.tr.Peers() {
		have[id] = true
		m, ok := want[id]
		if !ok {
			s.tr.RemovePeer(id)
			s.lg.Info("removed remote peer", zap.String("remote-peer-id", fmt.Sprintf("%x", id)))
			continue
		}
		if st, ok := s.tr.Status(id); ok && !containsURL(m.PeerURLs, st.URL) {
			if err := s.tr.UpdatePeer(id, m.PeerURLs); err != nil {
				s.lg.Warn("failed to update remote peer", zap.Error(err))
			}
		}
	}
	for id, m := range want {
		if have[id] {
			continue
		}
		if err := s.tr.AddPeer(id, m.PeerURLs); err != nil && !errors.Is(err, transport.ErrPeerExists) {
			s.lg.Warn("failed to add remote peer", zap.String("remote-peer-id", fmt.Sprintf("%x", id)), zap.Error(err))
			continue
		}
		s.lg.Info("added remote peer", zap.String("remote-peer-id", fmt.Sprintf("%x", id)), zap.Strings("remote-peer-urls", m.PeerURLs))
	}
}

func containsURL(urls []string, u string) bool {
	for _, x := range urls {
		if x == u {
			return true
		}
	}
	return u == ""
}

// snapshotSource writes the current state as an etcd-format snapshot file
// for a follower too far behind for the log.
func (s *Server) snapshotSource(m *raftpb.Message) (io.ReadCloser, int64, error) {
	tmp := filepath.Join(s.cfg.MemberDataDir(), "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, 0, err
	}
	f, err := os.CreateTemp(tmp, "send-*.snap.db")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name()) // gone once closed
	n, err := s.writeSnapshot(context.Background(), f)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	s.lg.Info("sending snapshot to peer", zap.String("remote-peer-id", fmt.Sprintf("%x", m.GetTo())),
		zap.Uint64("snapshot-index", m.GetSnapshot().GetMetadata().GetIndex()), zap.Int64("size", n))
	return f, n, nil
}

// snapshotSink stores a snapshot received from the leader durably, where
// installSnapshot will find it.
func (s *Server) snapshotSink(ctx context.Context, m *raftpb.Message, data io.Reader, size int64) error {
	if err := os.MkdirAll(s.snapDir(), 0o700); err != nil {
		return err
	}
	final := s.snapFile(m.GetSnapshot().GetMetadata().GetIndex())
	if err := writeFileDurably(final, 0o600, func(w io.Writer) error {
		_, err := io.Copy(w, data)
		return err
	}); err != nil {
		return err
	}
	s.lg.Info("received snapshot from leader", zap.String("path", final), zap.Int64("size", size))
	return nil
}

// peerMux serves the peer listener.
func (s *Server) peerMux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(transport.PathPrefix, s.tr.Handler())
	mux.HandleFunc("/members", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(clusterIDHeader, fmt.Sprintf("%x", s.id.ClusterID))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.members.Members())
	})
	mux.HandleFunc(hashKVPath, s.serveHashKV)
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"etcdserver":%q,"etcdcluster":%q}`, version.EtcdVersion, version.EtcdCluster)
	})
	return mux
}

// joinExisting learns the cluster this new member was added to from the
// peers named in --initial-cluster, and finds its own ID by its peer URLs.
func (s *Server) joinExisting(ms []*membership.Member) ([]*membership.Member, error) {
	var mine []string
	for _, u := range s.cfg.InitialAdvertisePeerURLs {
		mine = append(mine, u.String())
	}
	client, err := s.peerHTTPClient(5 * time.Second)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		for _, m := range ms {
			if m.Name == s.cfg.Name {
				continue
			}
			for _, u := range m.PeerURLs {
				resp, err := client.Get(strings.TrimRight(u, "/") + "/members")
				if err != nil {
					lastErr = err
					continue
				}
				var got []*membership.Member
				err = json.NewDecoder(resp.Body).Decode(&got)
				cid, perr := strconv.ParseUint(resp.Header.Get(clusterIDHeader), 16, 64)
				resp.Body.Close()
				if err != nil || perr != nil || resp.StatusCode != http.StatusOK {
					lastErr = fmt.Errorf("peer %s answered %s", u, resp.Status)
					continue
				}
				for _, g := range got {
					if sameURLs(g.PeerURLs, mine) {
						s.id = identity{ClusterID: cid, MemberID: g.ID, Name: s.cfg.Name}
						return got, nil
					}
				}
				return nil, fmt.Errorf("member %q with peer URLs %v is not in the cluster's member list; add it first with 'etcdctl member add %s --peer-urls=%s'",
					s.cfg.Name, mine, s.cfg.Name, strings.Join(mine, ","))
			}
		}
		time.Sleep(time.Second)
	}
	return nil, fmt.Errorf("cannot reach any member of the existing cluster to join it: %v", lastErr)
}

func sameURLs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}
