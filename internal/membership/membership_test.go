package membership

import (
	"fmt"
	"testing"
)

// etcd's well-known IDs: a default member ("default" at
// http://localhost:2380, token "etcd-cluster") is 8e9e05c52164694d in
// cluster cdf818194e3a8c32. cairn derives the same IDs from the same input.
func TestIDsMatchEtcd(t *testing.T) {
	ms, err := ParseInitialCluster("default=http://localhost:2380", "etcd-cluster")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%x", ms[0].ID); got != "8e9e05c52164694d" {
		t.Fatalf("member ID %s, want etcd's 8e9e05c52164694d", got)
	}
	if got := fmt.Sprintf("%x", ComputeClusterID([]uint64{ms[0].ID})); got != "cdf818194e3a8c32" {
		t.Fatalf("cluster ID %s, want etcd's cdf818194e3a8c32", got)
	}
}

func TestParseInitialCluster(t *testing.T) {
	ms, err := ParseInitialCluster("a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,a=http://10.0.1.1:2380", "tok")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Name != "a" || len(ms[0].PeerURLs) != 2 || ms[1].Name != "b" {
		t.Fatalf("parsed %+v %+v", ms[0], ms[1])
	}
	// The ID depends on the token and on the URL set, not its order.
	x, _ := ParseInitialCluster("a=http://10.0.1.1:2380,a=http://10.0.0.1:2380", "tok")
	if x[0].ID != ms[0].ID {
		t.Fatal("member ID depends on URL order")
	}
	y, _ := ParseInitialCluster("a=http://10.0.1.1:2380,a=http://10.0.0.1:2380", "other")
	if y[0].ID == ms[0].ID {
		t.Fatal("member ID ignores the cluster token")
	}
	for _, bad := range []string{"a", "=http://x:1", "a="} {
		if _, err := ParseInitialCluster(bad, "t"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
