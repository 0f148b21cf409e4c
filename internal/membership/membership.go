// Package membership keeps the cluster's member set: IDs derived from peer
// URLs as etcd derives them, the records stored with the state machine, and
// the changes applied from Raft configuration entries.
package membership

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/membershippb"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/internal/storage"
)

// Identity is a member's place in its cluster, stored in its data dir
// (storage.MetaCluster, as JSON) when the member is bootstrapped, joins, or
// is restored from a snapshot, and read at every start.
type Identity struct {
	ClusterID uint64 `json:"clusterID"`
	MemberID  uint64 `json:"memberID"`
	Name      string `json:"name"`
}

// Member is one member of the cluster.
type Member struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name,omitempty"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs,omitempty"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

// NewMemberID derives the ID of a member added at run time, as etcd does:
// like ComputeMemberID with the time (in seconds) after the token.
func NewMemberID(peerURLs []string, token string, now time.Time) uint64 {
	return ComputeMemberID(peerURLs, token+fmt.Sprintf("%d", now.Unix()))
}

// ComputeMemberID derives a member's ID from its peer URLs and the cluster
// token, as etcd does: the first 8 bytes of the SHA-1 of the sorted URLs
// followed by the token.
func ComputeMemberID(peerURLs []string, token string) uint64 {
	urls := append([]string(nil), peerURLs...)
	sort.Strings(urls)
	h := sha1.Sum([]byte(strings.Join(urls, "") + token))
	return binary.BigEndian.Uint64(h[:8])
}

// ComputeClusterID derives the cluster ID from its members' IDs, as etcd
// does: the first 8 bytes of the SHA-1 of the sorted IDs, 8 bytes each.
func ComputeClusterID(ids []uint64) uint64 {
	s := append([]uint64(nil), ids...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	b := make([]byte, 8*len(s))
	for i, id := range s {
		binary.BigEndian.PutUint64(b[8*i:], id)
	}
	h := sha1.Sum(b)
	return binary.BigEndian.Uint64(h[:8])
}

// ParseInitialCluster parses --initial-cluster ("n1=http://a:2380,n1=http://b:2380,n2=...").
func ParseInitialCluster(s, token string) ([]*Member, error) {
	byName := map[string]*Member{}
	var order []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" || u == "" {
			return nil, fmt.Errorf("invalid --initial-cluster entry %q: want name=peer-url", part)
		}
		m, seen := byName[name]
		if !seen {
			m = &Member{Name: name}
			byName[name] = m
			order = append(order, name)
		}
		m.PeerURLs = append(m.PeerURLs, u)
	}
	out := make([]*Member, 0, len(order))
	for _, name := range order {
		m := byName[name]
		sort.Strings(m.PeerURLs)
		m.ID = ComputeMemberID(m.PeerURLs, token)
		out = append(out, m)
	}
	return out, nil
}

// Set is the member set, kept in memory and in the store.
type Set struct {
	mu        sync.RWMutex
	clusterID uint64
	members   map[uint64]*Member
	removed   map[uint64]bool
}

// Load reads the member set from the store.
func Load(r pebble.Reader, clusterID uint64) (*Set, error) {
	s := &Set{clusterID: clusterID, members: map[uint64]*Member{}, removed: map[uint64]bool{}}
	return s, s.Reload(r)
}

// Reload re-reads the member set from the store.
func (s *Set) Reload(r pebble.Reader) error {
	members := map[uint64]*Member{}
	lo, hi := storage.MemberSpan()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		m := &Member{}
		if err := json.Unmarshal(it.Value(), m); err != nil {
			return fmt.Errorf("%w: member record: %v", storage.ErrCorrupt, err)
		}
		members[m.ID] = m
	}
	if err := it.Error(); err != nil {
		return err
	}
	s.mu.Lock()
	s.members = members
	s.mu.Unlock()
	return nil
}

// ClusterID is the cluster's ID.
func (s *Set) ClusterID() uint64 { return s.clusterID }

// Members lists the members by ID.
func (s *Set) Members() []*Member {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Member, 0, len(s.members))
	for _, m := range s.members {
		c := *m
		out = append(out, &c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Member returns one member, or nil.
func (s *Set) Member(id uint64) *Member {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if m, ok := s.members[id]; ok {
		c := *m
		return &c
	}
	return nil
}

func (s *Set) save(b *pebble.Batch, m *Member) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return b.Set(storage.MemberKey(m.ID), v, nil)
}

// ApplyConfChange records a committed membership change. The change's
// context carries the member (JSON) for additions.
func (s *Set) ApplyConfChange(b *pebble.Batch, cci raftpb.ConfChangeI) error {
	cc := cci.AsV2()
	for _, ch := range cc.GetChanges() {
		id := ch.GetNodeId()
		s.mu.Lock()
		switch ch.GetType() {
		case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
			m := &Member{}
			if len(cc.GetContext()) > 0 {
				if err := json.Unmarshal(cc.GetContext(), m); err != nil {
					s.mu.Unlock()
					return fmt.Errorf("conf change context: %w", err)
				}
			}
			if old, ok := s.members[id]; ok && m.Name == "" {
				m = old // a promotion or a re-add keeps the record
			}
			m.ID = id
			m.IsLearner = ch.GetType() == raftpb.ConfChangeAddLearnerNode
			s.members[id] = m
			if err := s.save(b, m); err != nil {
				s.mu.Unlock()
				return err
			}
		case raftpb.ConfChangeUpdateNode:
			if m, ok := s.members[id]; ok && len(cc.GetContext()) > 0 {
				var upd Member
				if err := json.Unmarshal(cc.GetContext(), &upd); err != nil {
					s.mu.Unlock()
					return fmt.Errorf("conf change context: %w", err)
				}
				m.PeerURLs = upd.PeerURLs
				if err := s.save(b, m); err != nil {
					s.mu.Unlock()
					return err
				}
			}
		case raftpb.ConfChangeRemoveNode:
			delete(s.members, id)
			s.removed[id] = true
			if err := b.Delete(storage.MemberKey(id), nil); err != nil {
				s.mu.Unlock()
				return err
			}
		}
		s.mu.Unlock()
	}
	return nil
}

// SetAttributes records a member's name and client URLs (published by
// the member after it starts).
func (s *Set) SetAttributes(b *pebble.Batch, req *membershippb.ClusterMemberAttrSetRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.members[req.Member_ID]
	if !ok {
		return nil
	}
	if req.MemberAttributes != nil {
		m.Name = req.MemberAttributes.Name
		m.ClientURLs = append([]string(nil), req.MemberAttributes.ClientUrls...)
	}
	return s.save(b, m)
}
