package snapshot

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The records cairn encodes by hand must be the bytes etcd's own message
// types produce, and must decode what they produce.

func TestLeaseEncodingMatchesEtcd(t *testing.T) {
	for _, l := range []Lease{
		{ID: 1, TTL: 5},
		{ID: 0x694d7a4c1c5a1202, TTL: 7200, RemainingTTL: 5000},
		{ID: -7, TTL: 0, RemainingTTL: 1},
	} {
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&leasepb.Lease{ID: l.ID, TTL: l.TTL, RemainingTTL: l.RemainingTTL})
		must(t, err)
		if got := l.marshal(); !bytes.Equal(got, want) {
			t.Errorf("lease %+v: cairn encodes %x, etcd %x", l, got, want)
		}
		back, err := unmarshalLease(want)
		if err != nil || back != l {
			t.Errorf("lease %x decodes to %+v %v, want %+v", want, back, err, l)
		}
	}
}

func TestAlarmEncodingMatchesEtcd(t *testing.T) {
	for _, a := range []Alarm{
		{MemberID: 0x8e9e05c52164694d, Alarm: etcdserverpb.AlarmType_NOSPACE},
		{MemberID: 1, Alarm: etcdserverpb.AlarmType_CORRUPT},
	} {
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&etcdserverpb.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm})
		must(t, err)
		if got := a.marshal(); !bytes.Equal(got, want) {
			t.Errorf("alarm %+v: cairn encodes %x, etcd %x", a, got, want)
		}
		back, err := unmarshalAlarm(want)
		if err != nil || back != a {
			t.Errorf("alarm %x decodes to %+v %v, want %+v", want, back, err, a)
		}
	}
}

func TestConfStateJSON(t *testing.T) {
	auto := true
	for _, cs := range []*raftpb.ConfState{
		{Voters: []uint64{1, 2, 3}},
		{Voters: []uint64{1}, Learners: []uint64{4}, VotersOutgoing: []uint64{1, 2}, LearnersNext: []uint64{2}, AutoLeave: &auto},
	} {
		b, err := marshalConfState(cs)
		must(t, err)
		// etcd 3.7 decodes cairn's JSON into its ConfState...
		var etcd raftpb.ConfState
		must(t, json.Unmarshal(b, &etcd))
		if !sameConfState(&etcd, cs) {
			t.Errorf("%s decodes in etcd to %v, want %v", b, &etcd, cs)
		}
		// ...and cairn decodes etcd's.
		eb, err := json.Marshal(cs)
		must(t, err)
		back, err := unmarshalConfState(eb)
		must(t, err)
		if !sameConfState(back, cs) {
			t.Errorf("etcd's %s decodes to %v, want %v", eb, back, cs)
		}
	}
	// etcd 3.5 writes auto_leave even when false.
	back, err := unmarshalConfState([]byte(`{"voters":[7],"auto_leave":false}`))
	must(t, err)
	if !sameConfState(back, &raftpb.ConfState{Voters: []uint64{7}}) {
		t.Errorf("etcd 3.5 confState decodes to %v", back)
	}
}

// TestMemberJSON: the member record as etcd 3.4 wrote it in a real snapshot.
func TestMemberJSON(t *testing.T) {
	const etcd34 = `{"id":13096326275259636134,"peerURLs":["http://127.0.0.1:41227"],"name":"n1","clientURLs":["http://127.0.0.1:56467"]}`
	m := memberJSON{ID: 13096326275259636134, PeerURLs: []string{"http://127.0.0.1:41227"}, Name: "n1", ClientURLs: []string{"http://127.0.0.1:56467"}}
	b, err := json.Marshal(m)
	must(t, err)
	if string(b) != etcd34 {
		t.Errorf("cairn writes %s, etcd %s", b, etcd34)
	}
	if got := string(memberKey(m.ID)); got != "b5bf7f5c2b7719a6" {
		t.Errorf("member key %s, etcd's is b5bf7f5c2b7719a6", got)
	}
}

// sameConfState compares configurations; an absent auto_leave is false.
func sameConfState(a, b *raftpb.ConfState) bool {
	return slices.Equal(a.GetVoters(), b.GetVoters()) && slices.Equal(a.GetLearners(), b.GetLearners()) &&
		slices.Equal(a.GetVotersOutgoing(), b.GetVotersOutgoing()) && slices.Equal(a.GetLearnersNext(), b.GetLearnersNext()) &&
		a.GetAutoLeave() == b.GetAutoLeave()
}
