package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// httpDo sends a request to the member's client URL and returns the status
// and body.
func httpDo(t testing.TB, m *Member, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(tctx(t), method, m.ClientURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func decodeInto(t testing.TB, what, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%s: %v in %q", what, err, body)
	}
}

// TestHTTP checks the HTTP side of the client port: health, version,
// metrics and the JSON gateway, which share the port with gRPC.
func TestHTTP(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})

	t.Run("health", func(t *testing.T) {
		code, body := httpDo(t, m, "GET", "/health", "")
		var h struct {
			Health string `json:"health"`
		}
		decodeInto(t, "/health", body, &h)
		if code != 200 || h.Health != "true" {
			t.Errorf("/health: %d %s", code, body)
		}
		// /livez and /readyz came with etcd 3.5 (body "ok\n" in 3.7).
		if Kind() == KindEtcd {
			return
		}
		for _, p := range []string{"/livez", "/readyz"} {
			if code, body := httpDo(t, m, "GET", p, ""); code != 200 || body != "ok\n" {
				t.Errorf("%s: %d %q, want 200 \"ok\\n\"", p, code, body)
			}
		}
	})

	t.Run("version", func(t *testing.T) {
		code, body := httpDo(t, m, "GET", "/version", "")
		var v struct {
			Server  string `json:"etcdserver"`
			Cluster string `json:"etcdcluster"`
		}
		decodeInto(t, "/version", body, &v)
		if code != 200 || !regexp.MustCompile(`^3\.\d+\.\d+`).MatchString(v.Server) || !regexp.MustCompile(`^3\.\d+\.0$`).MatchString(v.Cluster) {
			t.Errorf("/version: %d %s", code, body)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		code, body := httpDo(t, m, "GET", "/metrics", "")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		// A few of etcd's metric names that dashboards and alerts use.
		for _, re := range []string{
			`(?m)^etcd_server_has_leader 1$`,
			`(?m)^etcd_server_is_leader 1$`,
			`(?m)^etcd_mvcc_db_total_size_in_bytes \d`,
			`(?m)^etcd_server_proposals_committed_total \d`,
		} {
			if !regexp.MustCompile(re).MatchString(body) {
				t.Errorf("/metrics has no line matching %s", re)
			}
		}
	})

	t.Run("gateway", func(t *testing.T) {
		// int64 fields travel as JSON strings, bytes as base64.
		code, body := httpDo(t, m, "POST", "/v3/kv/put", `{"key":"`+b64("foo")+`","value":"`+b64("bar")+`"}`)
		var put struct {
			Header struct {
				Revision string `json:"revision"`
				MemberID string `json:"member_id"`
			} `json:"header"`
		}
		decodeInto(t, "/v3/kv/put", body, &put)
		if code != 200 || put.Header.Revision != "2" || put.Header.MemberID == "" {
			t.Errorf("/v3/kv/put: %d %s", code, body)
		}
		code, body = httpDo(t, m, "POST", "/v3/kv/range", `{"key":"`+b64("foo")+`"}`)
		var rng struct {
			Kvs []struct {
				Key            string `json:"key"`
				Value          string `json:"value"`
				CreateRevision string `json:"create_revision"`
				ModRevision    string `json:"mod_revision"`
				Version        string `json:"version"`
			} `json:"kvs"`
			Count string `json:"count"`
		}
		decodeInto(t, "/v3/kv/range", body, &rng)
		if code != 200 || rng.Count != "1" || len(rng.Kvs) != 1 || rng.Kvs[0].Key != b64("foo") || rng.Kvs[0].Value != b64("bar") ||
			rng.Kvs[0].CreateRevision != "2" || rng.Kvs[0].ModRevision != "2" || rng.Kvs[0].Version != "1" {
			t.Errorf("/v3/kv/range: %d %s", code, body)
		}
		// Errors carry the gRPC code and etcd's message.
		code, body = httpDo(t, m, "POST", "/v3/kv/range", `{"key":""}`)
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		decodeInto(t, "/v3/kv/range error", body, &e)
		if code != 400 || e.Code != 3 || e.Message != msgEmptyKey {
			t.Errorf("/v3/kv/range with an empty key: %d %s", code, body)
		}
	})
}

// TestPprof: --enable-pprof serves Go's profiles on the client URL, as
// etcd does; without it the paths are not there.
func TestPprof(t *testing.T) {
	m := StartMember(t, MemberConfig{Flags: []string{"--enable-pprof"}})
	if code, body := httpDo(t, m, "GET", "/debug/pprof/cmdline", ""); code != 200 || body == "" {
		t.Errorf("GET /debug/pprof/cmdline with --enable-pprof: %d %q", code, body)
	}
	if code, body := httpDo(t, m, "GET", "/debug/pprof/heap?debug=1", ""); code != 200 || !strings.Contains(body, "heap profile") {
		t.Errorf("GET /debug/pprof/heap with --enable-pprof: %d %.100q", code, body)
	}
	plain := StartMember(t, MemberConfig{Name: "plain"})
	if code, _ := httpDo(t, plain, "GET", "/debug/pprof/cmdline", ""); code != 404 {
		t.Errorf("GET /debug/pprof/cmdline without --enable-pprof: %d, want 404", code)
	}
}
