package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/membership"
)

// Membership changes. Each is one Raft configuration entry, proposed on
// the leader after cairn's safety checks and answered once applied.
//
// The strict reconfiguration check (on by default, --strict-reconfig-check)
// refuses a change that would leave the cluster without a quorum of
// started members: adding a voting member that has not started yet can
// block every write until it does (etcd's well-known trap), so cairn
// refuses it and says to add a learner first.

// learnerReadyPercent is how close to the leader's log a learner must be
// before it may be promoted, as in etcd.
const learnerReadyPercent = 0.9

// AddMember adds a member with the given peer URLs.
func (s *Server) AddMember(ctx context.Context, peerURLs []string, learner bool) (*membership.Member, []*membership.Member, error) {
	if err := validPeerURLs(peerURLs); err != nil {
		return nil, nil, err
	}
	for _, m := range s.members.Members() {
		for _, have := range m.PeerURLs {
			for _, want := range peerURLs {
				if have == want {
					return nil, nil, rpctypes.ErrGRPCPeerURLExist
				}
			}
		}
	}
	if !s.isLeader() {
		return s.forwardAdd(ctx, peerURLs, learner)
	}
	if learner {
		n := 0
		for _, m := range s.members.Members() {
			if m.IsLearner {
				n++
			}
		}
		if n >= s.cfg.MaxLearners {
			return nil, nil, rpctypes.ErrGRPCTooManyLearners
		}
	} else if s.cfg.StrictReconfigCheck {
		voters, started := s.voterCounts(0)
		quorum := (voters+1)/2 + 1
		if started < quorum {
			return nil, nil, status.Errorf(codes.FailedPrecondition,
				"etcdserver: re-configuration failed due to not enough started members: with the new member the cluster has %d voting members and needs %d started ones for quorum, but only %d started, so every write would wait until the new member starts; add it with --learner, start it, then promote it (or start it within the election timeout and pass --strict-reconfig-check=false)",
				voters+1, quorum, started)
		}
	}
	m := &membership.Member{
		ID:        membership.NewMemberID(peerURLs, s.cfg.InitialClusterToken, time.Now()),
		PeerURLs:  peerURLs,
		IsLearner: learner,
	}
	if s.members.Member(m.ID) != nil {
		return nil, nil, rpctypes.ErrGRPCMemberExist
	}
	ctxData, _ := json.Marshal(m)
	t := raftpb.ConfChangeAddNode
	if learner {
		t = raftpb.ConfChangeAddLearnerNode
	}
	if err := s.proposeConfChange(ctx, t, m.ID, ctxData); err != nil {
		return nil, nil, err
	}
	return m, s.members.Members(), nil
}

// RemoveMember removes a member.
//
// A follower hands membership changes to the leader before any check: its
// own view may not have applied a change the leader already made (a
// member just added through it).
func (s *Server) RemoveMember(ctx context.Context, id uint64) ([]*membership.Member, error) {
	if !s.isLeader() {
		return s.forwardRemove(ctx, id)
	}
	m := s.members.Member(id)
	if m == nil {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	if s.cfg.StrictReconfigCheck && !m.IsLearner {
		voters, started := s.voterCounts(id) // both without the member removed
		quorum := voters/2 + 1
		if started < quorum {
			return nil, rpctypes.ErrGRPCMemberNotEnoughStarted
		}
	}
	return s.change(ctx, raftpb.ConfChangeRemoveNode, id, nil)
}

// UpdateMember changes a member's peer URLs.
func (s *Server) UpdateMember(ctx context.Context, id uint64, peerURLs []string) ([]*membership.Member, error) {
	if err := validPeerURLs(peerURLs); err != nil {
		return nil, err
	}
	if !s.isLeader() {
		return s.forwardUpdate(ctx, id, peerURLs)
	}
	m := s.members.Member(id)
	if m == nil {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	for _, o := range s.members.Members() {
		if o.ID == id {
			continue
		}
		for _, have := range o.PeerURLs {
			for _, want := range peerURLs {
				if have == want {
					return nil, rpctypes.ErrGRPCPeerURLExist
				}
			}
		}
	}
	m.PeerURLs = peerURLs
	ctxData, _ := json.Marshal(m)
	return s.change(ctx, raftpb.ConfChangeUpdateNode, id, ctxData)
}

// PromoteMember makes a learner a voting member once it has caught up.
func (s *Server) PromoteMember(ctx context.Context, id uint64) ([]*membership.Member, error) {
	if !s.isLeader() {
		return s.forwardPromote(ctx, id)
	}
	m := s.members.Member(id)
	if m == nil {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	if !m.IsLearner {
		return nil, rpctypes.ErrGRPCMemberNotLearner
	}
	st := s.node.Status()
	leader, ok1 := st.Progress[s.id.MemberID]
	pr, ok2 := st.Progress[id]
	if !ok1 || !ok2 || float64(pr.Match) < float64(leader.Match)*learnerReadyPercent {
		return nil, rpctypes.ErrGRPCLearnerNotReady
	}
	ctxData, _ := json.Marshal(m)
	return s.change(ctx, raftpb.ConfChangeAddNode, id, ctxData)
}

// voterCounts counts the voting members and, among them, the started
// ones (the leader's view: members it heard from recently), leaving out
// the member except.
func (s *Server) voterCounts(except uint64) (voters, started int) {
	st := s.node.Status()
	for _, m := range s.members.Members() {
		if m.IsLearner || m.ID == except {
			continue
		}
		voters++
		if m.ID == s.id.MemberID {
			started++
			continue
		}
		// Started: Raft heard from it recently and its stream is up
		// (the stream notices a dead peer at once, Raft only after an
		// election timeout).
		pr, ok := st.Progress[m.ID]
		ps, up := s.tr.Status(m.ID)
		if ok && pr.RecentActive && up && ps.Active {
			started++
		}
	}
	return voters, started
}

// change proposes a membership change and returns the member set after it.
func (s *Server) change(ctx context.Context, t raftpb.ConfChangeType, id uint64, data []byte) ([]*membership.Member, error) {
	if err := s.proposeConfChange(ctx, t, id, data); err != nil {
		return nil, err
	}
	return s.members.Members(), nil
}

func (s *Server) proposeConfChange(ctx context.Context, t raftpb.ConfChangeType, id uint64, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.requestTimeout())
	defer cancel()
	cc := &raftpb.ConfChange{Type: t.Enum(), NodeId: &id, Context: data}
	if err := s.prop.ProposeConfChange(ctx, cc); err != nil {
		return err
	}
	return nil
}

func validPeerURLs(urls []string) error {
	if len(urls) == 0 {
		return rpctypes.ErrGRPCMemberBadURLs
	}
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https" && p.Scheme != "unix" && p.Scheme != "unixs") || p.Host == "" {
			return rpctypes.ErrGRPCMemberBadURLs
		}
	}
	return nil
}

// autoPromoteLoop promotes learners that have caught up, on the leader,
// when --auto-promote-learners is set.
func (s *Server) autoPromoteLoop() {
	s.every(500*time.Millisecond, func() {
		if !s.isLeader() {
			return
		}
		for _, m := range s.members.Members() {
			if !m.IsLearner {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
			_, err := s.PromoteMember(ctx, m.ID)
			cancel()
			switch {
			case err == nil:
				s.lg.Info("promoted learner that caught up", zap.String("member-id", fmt.Sprintf("%x", m.ID)))
			case errors.Is(err, rpctypes.ErrGRPCLearnerNotReady):
			default:
				s.lg.Warn("failed to promote learner", zap.String("member-id", fmt.Sprintf("%x", m.ID)), zap.Error(err))
			}
		}
	})
}
