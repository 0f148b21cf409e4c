package ctl_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/tests/e2e"
)

// TestCluster runs the membership and per-endpoint commands against a
// 3-member cluster, through both tools, then fails over.
func TestCluster(t *testing.T) {
	c := e2e.StartCluster(t, 3)
	leader := c.Leader()
	c.WaitHashKVEqual()
	one := ep(leader.ClientURL)
	all := ep(c.Members[0].ClientURL, c.Members[1].ClientURL, c.Members[2].ClientURL)

	for _, w := range []string{"simple", "json", "fields", "table"} {
		same(t, nil, one, "-w", w, "member", "list")
		same(t, nil, one, "-w", w, "endpoint", "status", "--cluster")
		same(t, nil, all, "-w", w, "endpoint", "status")
		same(t, nil, one, "-w", w, "endpoint", "hashkv", "--cluster")
	}
	same(t, nil, one, "--hex", "-w", "json", "member", "list")

	took := regexp.MustCompile(`took = [0-9.]+[µnm]?s|"took":"[^"]*"|"Took" : [0-9.]+[µnm]?s`)
	norm := func(s string) string { return took.ReplaceAllString(s, "TOOK") }
	for _, w := range []string{"simple", "json", "fields"} {
		want := etcdctl.run(t, one, "-w", w, "endpoint", "health", "--cluster")
		got := cairnctl.run(t, one, "-w", w, "endpoint", "health", "--cluster")
		want.stdout += norm(want.stderr)
		got.stdout += norm(got.stderr)
		// etcdctl 3.4 checks the endpoints in parallel and prints in
		// completion order; compare the sets of results.
		want.stdout, got.stdout = sortResults(want.stdout), sortResults(got.stdout)
		compare(t, []string{"endpoint", "health", "--cluster", "-w", w}, want, got, norm)
	}

	same(t, nil, one, "defrag", "--cluster")
	same(t, nil, all, "defrag")

	// member add (learner), update, promote (refused: not started, not in
	// sync), remove: the new member's id is the server's choice.
	// etcdctl prints ids with %16x: a leading zero becomes a space.
	idRE := regexp.MustCompile(`Member +([0-9a-f]+) added`)
	var removals []string
	for i, tl := range []tool{etcdctl, cairnctl} {
		name := fmt.Sprintf("new%d", i)
		peer := fmt.Sprintf("http://127.0.0.1:%d", 1+i)
		// etcd refuses reconfiguration until its members have been up a
		// few seconds ("unhealthy cluster"): retry while it says so.
		var out string
		waitFor(t, "member add to be accepted", func() bool {
			r := tl.run(t, one, "member", "add", name, "--learner", "--peer-urls="+peer)
			if r.code != 0 && strings.Contains(r.stderr, "unhealthy cluster") {
				return false
			}
			if r.code != 0 {
				t.Fatalf("%s member add: exit %d\n%s", tl.name, r.code, r.stderr)
			}
			out = r.stdout
			return true
		})
		sub := idRE.FindStringSubmatch(out)
		if sub == nil {
			t.Fatalf("%s member add: %q", tl.name, out)
		}
		id := sub[1]
		n, _ := strconv.ParseUint(id, 16, 64)
		want := fmt.Sprintf("Member %16x added to cluster %16x\n", n, c.Members[0].ClusterID)
		if !strings.HasPrefix(out, want) || !strings.Contains(out, "ETCD_NAME=\""+name+"\"\n") ||
			!strings.Contains(out, "ETCD_INITIAL_ADVERTISE_PEER_URLS=\""+peer+"\"\n") ||
			!strings.Contains(out, name+"="+peer) || !strings.HasSuffix(out, "ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n") {
			t.Errorf("%s member add:\n%s", tl.name, out)
		}
		same(t, nil, one, "member", "list")
		same(t, nil, one, "member", "list", "-w", "json")
		same(t, nil, one, "member", "update", id, "--peer-urls="+peer+"0")
		same(t, nil, one, "-w", "fields", "member", "update", id, "--peer-urls="+peer+"1")
		same(t, nil, one, "member", "promote", id)
		removals = append(removals, tl.must(t, one, "member", "remove", id))
		same(t, nil, one, "member", "remove", id)
		removals[i] = strings.Replace(strings.Replace(removals[i], id, "ID", 1), "Member  ID", "Member ID", 1)
	}
	if removals[0] != removals[1] {
		t.Errorf("member remove: cairnctl %q, etcdctl %q", removals[1], removals[0])
	}

	// member add in json and fields: the new member's id, name and peer URL
	// are each run's own; the rest (header, the other members) must agree.
	for _, w := range []string{"json"} {
		var outs []string
		for i, tl := range []tool{etcdctl, cairnctl} {
			name := fmt.Sprintf("%s%d", w, i)
			peer := fmt.Sprintf("http://127.0.0.1:%d", 10+i)
			var out string
			waitFor(t, "member add to be accepted", func() bool {
				r := tl.run(t, one, "-w", w, "member", "add", name, "--learner", "--peer-urls="+peer)
				if r.code != 0 && strings.Contains(r.stderr, "unhealthy cluster") {
					return false
				}
				if r.code != 0 {
					t.Fatalf("%s member add -w %s: exit %d\n%s", tl.name, w, r.code, r.stderr)
				}
				out = r.stdout
				return true
			})
			id := regexp.MustCompile(`"ID":(\d+)|"Member.ID" : (\d+)`).FindStringSubmatch(out)
			if id == nil {
				t.Fatalf("%s member add -w %s: no id in %q", tl.name, w, out)
			}
			dec := id[1] + id[2]
			n, _ := strconv.ParseUint(dec, 10, 64)
			tl.must(t, one, "member", "remove", strconv.FormatUint(n, 16))
			outs = append(outs, sortMembers(strings.NewReplacer(dec, "NEWID", name, "NEW", peer, "NEWPEER").Replace(out)))
		}
		if outs[0] != outs[1] {
			t.Errorf("member add -w %s:\n etcdctl: %q\ncairnctl: %q", w, outs[0], outs[1])
		}
	}

	// move-leader: to a follower, through the tools in turn.
	for _, tl := range []tool{etcdctl, cairnctl} {
		from := c.Leader()
		var to *e2e.Member
		for _, m := range c.Members {
			if m != from {
				to = m
				break
			}
		}
		out := tl.must(t, all, "move-leader", strconv.FormatUint(to.MemberID, 16))
		want := fmt.Sprintf("Leadership transferred from %s to %s\n", strconv.FormatUint(from.MemberID, 16), strconv.FormatUint(to.MemberID, 16))
		if out != want {
			t.Errorf("%s move-leader: %q, want %q", tl.name, out, want)
		}
		waitFor(t, "the new leader", func() bool { return c.Leader() == to })
	}
	// Without the leader among the endpoints, both refuse.
	var followers []string
	for _, m := range c.Members {
		if m != c.Leader() {
			followers = append(followers, m.ClientURL)
		}
	}
	same(t, nil, ep(followers...), "move-leader", strconv.FormatUint(c.Members[0].MemberID, 16))

	// Failover: with the first endpoint's member dead, commands go to the
	// next endpoints.
	c.Members[0].Kill()
	c.Leader() // if it led, wait for the election: failover is the client's job, elections the server's
	for _, tl := range []tool{etcdctl, cairnctl} {
		tl.must(t, all, "put", "failover-"+tl.name, "ok")
		if got := tl.must(t, all, "get", "failover-"+tl.name, "--print-value-only"); got != "ok\n" {
			t.Errorf("%s get after failover: %q", tl.name, got)
		}
	}
	// Per-endpoint commands report the dead one and fail.
	for _, args := range [][]string{
		{"endpoint", "status", "--command-timeout=2s"},
		{"endpoint", "hashkv", "--command-timeout=2s"},
		{"defrag", "--command-timeout=2s"},
	} {
		want := etcdctl.run(t, append([]string{all}, args...)...)
		got := cairnctl.run(t, append([]string{all}, args...)...)
		compare(t, args, want, got, nil)
		if !strings.Contains(got.stderr, c.Members[0].ClientURL) {
			t.Errorf("%q: the dead endpoint is not named:\n%s", args, got.stderr)
		}
	}
	// endpoint health names the dead one and fails the command.
	r := cairnctl.run(t, all, "endpoint", "health", "--command-timeout=2s")
	if r.code != 1 || !strings.Contains(r.stderr, c.Members[0].ClientURL+" is unhealthy") || r.errLine() != "Error: unhealthy cluster" {
		t.Errorf("endpoint health with a dead member: exit %d\n%s", r.code, r.stderr)
	}
}

// sortMembers orders the "members" of a JSON response: the server lists
// them by id, and the new member's id is each run's own.
func sortMembers(s string) string {
	s = strings.ReplaceAll(s, "NEWID", "0")
	var v map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber() // 64-bit ids stay exact
	if err := dec.Decode(&v); err != nil {
		return s
	}
	ms, _ := v["members"].([]any)
	key := func(m any) string { b, _ := json.Marshal(m); return string(b) }
	sort.Slice(ms, func(i, j int) bool { return key(ms[i]) < key(ms[j]) })
	b, _ := json.Marshal(v)
	return string(b)
}

// sortResults puts per-endpoint results in a fixed order: lines (simple),
// blank-line separated blocks (fields) or array elements (json).
func sortResults(s string) string {
	if strings.HasPrefix(s, "[") {
		var v []map[string]any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return s
		}
		sort.Slice(v, func(i, j int) bool { return fmt.Sprint(v[i]["endpoint"]) < fmt.Sprint(v[j]["endpoint"]) })
		b, _ := json.Marshal(v)
		return string(b) + "\n"
	}
	sep := "\n"
	if strings.Contains(s, "\n\n") {
		sep = "\n\n"
	}
	parts := strings.Split(strings.TrimSuffix(s, sep), sep)
	sort.Strings(parts)
	return strings.Join(parts, sep) + sep
}
