package main

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestWatcherMatches(t *testing.T) {
	for _, c := range []struct {
		key, end string
		in, out  []string
	}{
		{key: "a", in: []string{"a"}, out: []string{"", "a0", "b"}},
		{key: "a", end: "c", in: []string{"a", "a0", "b", "bzz"}, out: []string{"", "0", "c", "c0"}},
		{key: "a", end: "\x00", in: []string{"a", "b", "zzz"}, out: []string{"", "0", "\x00"}},
		{key: "\x00", end: "\x00", in: []string{"\x00", "a", "zzz"}, out: []string{""}},
	} {
		w := &watcher{key: []byte(c.key), end: []byte(c.end)}
		for _, k := range c.in {
			if !w.matches([]byte(k)) {
				t.Errorf("watch [%q, %q) misses %q", c.key, c.end, k)
			}
		}
		for _, k := range c.out {
			if w.matches([]byte(k)) {
				t.Errorf("watch [%q, %q) matches %q", c.key, c.end, k)
			}
		}
	}
}

// A txn bumps the revision once if its success branch writes (also in a
// nested txn), and answers each op with a response of the op's kind.
func TestTxnRevisionsAndShapes(t *testing.T) {
	s := newServer()
	kv := s.kv()
	get := &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a")}}}
	put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a")}}}
	del := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("a")}}}
	nested := &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{put}}}}

	resp, err := kv.Txn(t.Context(), &pb.TxnRequest{Success: []*pb.RequestOp{get}})
	if err != nil || resp.Header.Revision != 1 || !resp.Succeeded || resp.Responses[0].GetResponseRange() == nil {
		t.Fatalf("read-only txn: %v %v", resp, err)
	}
	resp, err = kv.Txn(t.Context(), &pb.TxnRequest{Success: []*pb.RequestOp{get, put, del, nested}})
	if err != nil || resp.Header.Revision != 2 {
		t.Fatalf("writing txn: %v %v", resp, err)
	}
	r := resp.Responses
	if len(r) != 4 || r[0].GetResponseRange() == nil || r[1].GetResponsePut() == nil ||
		r[2].GetResponseDeleteRange() == nil || r[3].GetResponseTxn().GetResponses()[0].GetResponsePut() == nil {
		t.Fatalf("responses do not match the ops: %v", r)
	}
	resp, err = kv.Txn(t.Context(), &pb.TxnRequest{Success: []*pb.RequestOp{nested}})
	if err != nil || resp.Header.Revision != 3 {
		t.Fatalf("nested writing txn: %v %v", resp, err)
	}
	p, err := kv.Put(t.Context(), &pb.PutRequest{Key: []byte("a")})
	if err != nil || p.Header.Revision != 4 {
		t.Fatalf("put: %v %v", p, err)
	}
	g, err := kv.Range(t.Context(), &pb.RangeRequest{Key: []byte("a")})
	if err != nil || g.Header.Revision != 4 || len(g.Kvs) != 0 {
		t.Fatalf("range: %v %v", g, err)
	}
}
