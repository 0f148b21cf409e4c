package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// etcdctl -w json prints the server's response as JSON (protobuf field
// names, zero values omitted, []byte as base64). The header's cluster_id,
// member_id and raft_term are not deterministic across runs, so ExpectJSON
// checks them against the member and drops them before comparing the rest
// exactly. Revisions in a fresh member are deterministic and stay in.

// ExpectCtlJSON runs etcdctl with -w json appended and checks its output
// against want (see ExpectJSON).
func (m *Member) ExpectCtlJSON(t testing.TB, want string, args ...string) {
	t.Helper()
	m.ExpectCtlJSONIn(t, "", want, args...)
}

// ExpectCtlJSONIn is ExpectCtlJSON with stdin.
func (m *Member) ExpectCtlJSONIn(t testing.TB, stdin, want string, args ...string) {
	t.Helper()
	out := m.CtlIn(t, stdin, append(args, "-w", "json")...)
	m.ExpectJSON(t, out, want)
}

// ExpectJSON compares one JSON document printed by etcdctl with want. In
// out, a top-level "header" (or "Header", as watch prints it) must carry
// this member's cluster_id and member_id and a raft_term >= 1; those three
// are removed, and a header left empty is removed too. The remainder must
// equal want, compared as JSON values (key order and spacing ignored, number
// text exact). want is written without the removed fields.
func (m *Member) ExpectJSON(t testing.TB, out, want string) {
	t.Helper()
	got := m.normalizeJSON(t, out)
	w := canonicalJSON(t, want)
	if got != w {
		t.Errorf("json output differs\n got %s\nwant %s\n raw %s", got, w, strings.TrimSpace(out))
	}
}

// normalizeJSON checks and strips the header ids of one etcdctl JSON
// document and returns it in canonical form.
func (m *Member) normalizeJSON(t testing.TB, out string) string {
	t.Helper()
	if !strings.HasSuffix(out, "\n") || strings.Count(strings.TrimSuffix(out, "\n"), "\n") != 0 {
		t.Errorf("etcdctl json output is not one line ending in a newline: %q", out)
	}
	v := decodeJSON(t, out)
	obj, ok := v.(map[string]any)
	if !ok {
		return encodeJSON(t, v)
	}
	m.stripHeader(t, obj)
	return encodeJSON(t, obj)
}

// stripHeader checks and removes the ids in obj's header, if it has one.
// A flat header (lease commands print the header fields at top level) is
// handled the same way.
func (m *Member) stripHeader(t testing.TB, obj map[string]any) {
	t.Helper()
	for _, name := range []string{"header", "Header"} {
		h, ok := obj[name].(map[string]any)
		if !ok {
			continue
		}
		m.checkIDs(t, h)
		if len(h) == 0 {
			delete(obj, name)
		}
	}
	if _, ok := obj["cluster_id"]; ok {
		m.checkIDs(t, obj)
	}
}

func (m *Member) checkIDs(t testing.TB, h map[string]any) {
	t.Helper()
	if got := jsonUint(t, h["cluster_id"]); got != m.ClusterID {
		t.Errorf("header cluster_id %d, want %d", got, m.ClusterID)
	}
	if got := jsonUint(t, h["member_id"]); got != m.MemberID {
		t.Errorf("header member_id %d, want %d", got, m.MemberID)
	}
	if got := jsonUint(t, h["raft_term"]); got < 1 {
		t.Errorf("header raft_term %d, want >= 1", got)
	}
	delete(h, "cluster_id")
	delete(h, "member_id")
	delete(h, "raft_term")
}

func jsonUint(t testing.TB, v any) uint64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Errorf("want a JSON number, got %v (%T)", v, v)
		return 0
	}
	u, err := strconv.ParseUint(n.String(), 10, 64)
	if err != nil {
		t.Errorf("want an unsigned integer, got %s", n)
	}
	return u
}

func decodeJSON(t testing.TB, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("bad json %q: %v", s, err)
	}
	if dec.More() {
		t.Fatalf("more than one json value in %q", s)
	}
	return v
}

func encodeJSON(t testing.TB, v any) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(b.String())
}

func canonicalJSON(t testing.TB, s string) string {
	t.Helper()
	return encodeJSON(t, decodeJSON(t, s))
}

// b64 is how etcdctl's JSON shows bytes.
func b64(s string) string {
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// ctlHeader is a response header as etcdctl -w json prints it.
type ctlHeader struct {
	ClusterID uint64 `json:"cluster_id"`
	MemberID  uint64 `json:"member_id"`
	Revision  int64  `json:"revision"`
	RaftTerm  uint64 `json:"raft_term"`
}

// ctlKV is a mvccpb.KeyValue as etcdctl -w json prints it.
type ctlKV struct {
	Key            []byte `json:"key"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
	Value          []byte `json:"value"`
	Lease          int64  `json:"lease"`
}

// ctlRange is a RangeResponse as etcdctl get -w json prints it.
type ctlRange struct {
	Header ctlHeader `json:"header"`
	Kvs    []ctlKV   `json:"kvs"`
	More   bool      `json:"more"`
	Count  int64     `json:"count"`
}

// CtlJSON runs etcdctl with -w json appended and decodes its output into v.
func (m *Member) CtlJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	out := m.Ctl(t, append(args, "-w", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("etcdctl %s -w json: %v\n%s", strings.Join(args, " "), err, out)
	}
}
