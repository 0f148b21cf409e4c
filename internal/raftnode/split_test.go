package raftnode

import (
	"slices"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func TestSplitLeaderMessages(t *testing.T) {
	// A leader sends appends, heartbeats and snapshots before it
	// persists; answers that promise its disk's contents wait.
	msg := func(ty raftpb.MessageType, to uint64) *raftpb.Message {
		return &raftpb.Message{Type: ty.Enum(), To: proto.Uint64(to)}
	}
	in := []*raftpb.Message{
		msg(raftpb.MsgApp, 2),
		msg(raftpb.MsgVoteResp, 3),
		msg(raftpb.MsgHeartbeat, 3),
		msg(raftpb.MsgAppResp, 2),
		msg(raftpb.MsgSnap, 4),
		msg(raftpb.MsgPreVoteResp, 5),
	}
	early, late := splitLeaderMessages(append([]*raftpb.Message(nil), in...))
	kinds := func(ms []*raftpb.Message) (out []raftpb.MessageType) {
		for _, m := range ms {
			out = append(out, m.GetType())
		}
		return out
	}
	wantEarly := []raftpb.MessageType{raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgSnap}
	wantLate := []raftpb.MessageType{raftpb.MsgVoteResp, raftpb.MsgAppResp, raftpb.MsgPreVoteResp}
	if got := kinds(early); !slices.Equal(got, wantEarly) {
		t.Fatalf("early %v, want %v", got, wantEarly)
	}
	if got := kinds(late); !slices.Equal(got, wantLate) {
		t.Fatalf("late %v, want %v", got, wantLate)
	}
}
