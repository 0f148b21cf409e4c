package api

import (
	"context"
	"fmt"
	"testing"

	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
)

type campaignResult struct {
	resp *v3electionpb.CampaignResponse
	err  error
}

func testElection(t *testing.T, e *refEtcd) {
	ours := v3electionpb.NewElectionClient(serveServices(t, e))
	theirs := v3electionpb.NewElectionClient(dialLocal(t, e.addr))
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	name := []byte("el")

	// Nobody has campaigned yet.
	_, oerr := ours.Leader(ctx, &v3electionpb.LeaderRequest{Name: name})
	_, terr := theirs.Leader(ctx, &v3electionpb.LeaderRequest{Name: name})
	sameError(t, "leader of an empty election", oerr, terr)

	obs, err := ours.Observe(ctx, &v3electionpb.LeaderRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	observed := func(want string) {
		t.Helper()
		r, err := obs.Recv()
		if err != nil {
			t.Fatalf("observe: %v", err)
		}
		if string(r.Kv.Value) != want {
			t.Fatalf("observed %q, want %q", r.Kv.Value, want)
		}
	}
	leaderIs := func(want string) {
		t.Helper()
		r, err := ours.Leader(ctx, &v3electionpb.LeaderRequest{Name: name})
		if err != nil || string(r.Kv.Value) != want {
			t.Fatalf("leader = %v, %v; want %q", r, err, want)
		}
	}

	la, lb := grant(t, e, 60), grant(t, e, 60)
	a, err := ours.Campaign(ctx, &v3electionpb.CampaignRequest{Name: name, Lease: int64(la), Value: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("el/%x", la); string(a.Leader.Name) != "el" || string(a.Leader.Key) != want ||
		a.Leader.Lease != int64(la) || a.Leader.Rev != a.Header.Revision {
		t.Errorf("campaign leader key = %v, want name el, key %s, lease %x, rev %d", a.Leader, want, la, a.Header.Revision)
	}
	observed("a")
	leaderIs("a")

	// B waits while A leads.
	bc := make(chan campaignResult, 1)
	go func() {
		r, err := ours.Campaign(ctx, &v3electionpb.CampaignRequest{Name: name, Lease: int64(lb), Value: []byte("b")})
		bc <- campaignResult{r, err}
	}()
	waitKeys(t, e, "el/", 2)
	select {
	case r := <-bc:
		t.Fatalf("second candidate elected while the first leads: %v %v", r.resp, r.err)
	default:
	}

	p, err := ours.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: a.Leader, Value: []byte("a2")})
	if err != nil {
		t.Fatal(err)
	}
	if p.Header.Revision <= a.Header.Revision {
		t.Errorf("proclaim at rev %d, campaign at %d", p.Header.Revision, a.Header.Revision)
	}
	observed("a2")
	leaderIs("a2")

	if _, err := ours.Resign(ctx, &v3electionpb.ResignRequest{Leader: a.Leader}); err != nil {
		t.Fatal(err)
	}
	var b campaignResult
	select {
	case b = <-bc:
	case <-ctx.Done():
		t.Fatal("second candidate never elected")
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	observed("b")
	leaderIs("b")

	// A resigned: proclaiming with its old key fails, in cairn as in etcd.
	stale := &v3electionpb.ProclaimRequest{Leader: a.Leader, Value: []byte("x")}
	_, oerr = ours.Proclaim(ctx, stale)
	_, terr = theirs.Proclaim(ctx, stale)
	sameError(t, "proclaim by a resigned leader", oerr, terr)
	leaderIs("b")

	// Requests without a leader key.
	_, oerr = ours.Proclaim(ctx, &v3electionpb.ProclaimRequest{Value: []byte("x")})
	_, terr = theirs.Proclaim(ctx, &v3electionpb.ProclaimRequest{Value: []byte("x")})
	sameError(t, "proclaim without leader", oerr, terr)
	_, oerr = ours.Resign(ctx, &v3electionpb.ResignRequest{})
	_, terr = theirs.Resign(ctx, &v3electionpb.ResignRequest{})
	sameError(t, "resign without leader", oerr, terr)

	// Resigning a stale key changes nothing and is not an error (etcd's rule).
	if _, err := ours.Resign(ctx, &v3electionpb.ResignRequest{Leader: a.Leader}); err != nil {
		t.Errorf("resign with a stale key: %v", err)
	}
	leaderIs("b")

	// The leader's lease ending ends its leadership.
	if _, err := e.client.Revoke(ctx, lb); err != nil {
		t.Fatal(err)
	}
	waitKeys(t, e, "el/", 0)
	_, oerr = ours.Leader(ctx, &v3electionpb.LeaderRequest{Name: name})
	_, terr = theirs.Leader(ctx, &v3electionpb.LeaderRequest{Name: name})
	sameError(t, "leader after the lease ended", oerr, terr)

	// A new leader is observed on the same stream.
	lc := grant(t, e, 60)
	if _, err := ours.Campaign(ctx, &v3electionpb.CampaignRequest{Name: name, Lease: int64(lc), Value: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	observed("c")
}
