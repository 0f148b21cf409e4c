package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/membership"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage"
)

// Corruption checks compare the key-value hash of members at one
// revision (HashKV: every record up to the revision, compacted ones
// excluded). Members that applied the same entries have the same hash, so
// a difference means one of them holds wrong data.
//
//   - At start (feature gate InitialCorruptCheck, or etcd's
//     --experimental-initial-corrupt-check), before serving, a member asks
//     every peer for the hash at its own revision and refuses to start if
//     one differs.
//   - Every --corrupt-check-time, the leader asks every member for the
//     hash at the leader's revision and raises the CORRUPT alarm for a
//     member that differs, which stops writes cluster-wide until an
//     operator looks.
//
// A peer that is unreachable, behind the revision, or has compacted past
// it is skipped: it has nothing to compare.

// hashKVPath is where the peer listener answers hash requests.
const hashKVPath = "/members/hashkv"

// peerHash is a member's answer on hashKVPath.
type peerHash struct {
	MemberID        uint64 `json:"member_id"`
	Revision        int64  `json:"revision"` // the member's current revision
	Hash            uint32 `json:"hash"`
	HashRevision    int64  `json:"hash_revision"`
	CompactRevision int64  `json:"compact_revision"`
}

// errHashUnavailable marks a peer that cannot hash the revision asked for
// (behind it, or compacted past it).
var errHashUnavailable = errors.New("hash unavailable at that revision")

// serveHashKV answers a peer's request for this member's hash at a
// revision (?revision=N, 0 for the current one).
func (s *Server) serveHashKV(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if cid := r.Header.Get(clusterIDHeader); cid != "" && cid != fmt.Sprintf("%x", s.id.ClusterID) {
		http.Error(w, "cluster ID mismatch", http.StatusPreconditionFailed)
		return
	}
	rev, err := strconv.ParseInt(r.URL.Query().Get("revision"), 10, 64)
	if err != nil || rev < 0 {
		http.Error(w, "bad revision", http.StatusBadRequest)
		return
	}
	h, cur, compactRev, err := s.kv.HashKV(rev)
	switch {
	case errors.Is(err, mvcc.ErrCompacted), errors.Is(err, mvcc.ErrFutureRev):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if rev == 0 {
		rev = cur
	}
	w.Header().Set(clusterIDHeader, fmt.Sprintf("%x", s.id.ClusterID))
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(&peerHash{MemberID: s.id.MemberID, Revision: cur, Hash: h, HashRevision: rev, CompactRevision: compactRev})
}

// peerHTTPClient is an HTTP client for the peer listeners of other
// members, with the peer TLS settings.
func (s *Server) peerHTTPClient(timeout time.Duration) (*http.Client, error) {
	client := &http.Client{Timeout: timeout}
	ptls, err := s.peerTLS()
	if err != nil {
		return nil, err
	}
	if ptls != nil {
		client.Transport = &http.Transport{TLSClientConfig: ptls.peer, ForceAttemptHTTP2: true}
	}
	return client, nil
}

// fetchPeerHash asks member m for its hash at rev, trying each peer URL.
func (s *Server) fetchPeerHash(ctx context.Context, client *http.Client, m *membership.Member, rev int64) (*peerHash, error) {
	var lastErr error
	for _, u := range m.PeerURLs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(u, "/")+hashKVPath+"?revision="+strconv.FormatInt(rev, 10), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set(clusterIDHeader, fmt.Sprintf("%x", s.id.ClusterID))
		resp, err := client.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if err != nil {
			lastErr = err
			continue
		}
		switch resp.StatusCode {
		case http.StatusOK:
			var ph peerHash
			if err := json.Unmarshal(body, &ph); err != nil {
				return nil, fmt.Errorf("peer %s: bad hash answer: %v", u, err)
			}
			return &ph, nil
		case http.StatusConflict:
			return nil, fmt.Errorf("%w: %s", errHashUnavailable, bytes.TrimSpace(body))
		default:
			lastErr = fmt.Errorf("peer %s answered %s: %s", u, resp.Status, bytes.TrimSpace(body))
		}
	}
	return nil, lastErr
}

// hashMismatch compares this member's hash at rev with every other
// member's and returns the members that differ. Peers that cannot answer
// are logged and skipped.
func (s *Server) hashMismatch(ctx context.Context, rev int64) ([]uint64, error) {
	mine, _, myCompact, err := s.kv.HashKV(rev)
	if err != nil {
		return nil, err
	}
	client, err := s.peerHTTPClient(5 * time.Second)
	if err != nil {
		return nil, err
	}
	var bad []uint64
	for _, m := range s.members.Members() {
		if m.ID == s.id.MemberID {
			continue
		}
		ph, err := s.fetchPeerHash(ctx, client, m, rev)
		if err != nil {
			s.lg.Warn("cannot compare hash with peer", zap.String("remote-peer-id", fmt.Sprintf("%x", m.ID)),
				zap.Int64("revision", rev), zap.Error(err))
			continue
		}
		if ph.CompactRevision != myCompact {
			// A compaction between the two hashes: nothing to compare.
			continue
		}
		if ph.Hash != mine {
			s.lg.Error("found data inconsistency with peer", zap.String("remote-peer-id", fmt.Sprintf("%x", m.ID)),
				zap.Int64("revision", rev), zap.Uint32("local-hash", mine), zap.Uint32("remote-hash", ph.Hash),
				zap.Int64("compact-revision", myCompact))
			bad = append(bad, m.ID)
		}
	}
	return bad, nil
}

// checkInitialHashKV is the start-up check: this member's data against
// every peer's at this member's revision.
func (s *Server) checkInitialHashKV(ctx context.Context) error {
	if len(s.members.Members()) < 2 {
		return nil
	}
	rev := s.kv.Rev()
	s.lg.Info("starting initial corruption check", zap.Int64("revision", rev))
	bad, err := s.hashMismatch(ctx, rev)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %x found data inconsistency with peers", storage.ErrCorrupt, s.id.MemberID)
	}
	s.lg.Info("initial corruption check passed; no corruption", zap.Int64("revision", rev))
	return nil
}

// corruptCheckLoop is the periodic check, run by the leader.
func (s *Server) corruptCheckLoop(period time.Duration) {
	s.every(period, func() {
		if !s.isLeader() || s.corruptAlarmed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), period)
		defer cancel()
		bad, err := s.hashMismatch(ctx, s.kv.Rev())
		if err != nil {
			s.lg.Warn("corruption check failed", zap.Error(err))
			return
		}
		for _, id := range bad {
			_, err := s.prop.Propose(ctx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{
				Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_CORRUPT,
			}})
			if err != nil {
				s.lg.Warn("failed to raise CORRUPT alarm", zap.String("member-id", fmt.Sprintf("%x", id)), zap.Error(err))
			}
		}
	})
}

// corruptAlarmed reports whether a CORRUPT alarm is raised: the cluster
// already refuses writes, and an operator is needed.
func (s *Server) corruptAlarmed() bool {
	for _, a := range s.applier.Alarms() {
		if a.Alarm == pb.AlarmType_CORRUPT {
			return true
		}
	}
	return false
}
