package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// postJSON POSTs body and returns the status and the decoded JSON answer.
func postJSON(t *testing.T, ctx context.Context, u, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "POST", u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("POST %s: %d %q is not JSON: %v", u, resp.StatusCode, raw, err)
	}
	return resp.StatusCode, m
}

// path digs into decoded JSON: path(m, "kvs", 0, "value").
func path(v any, steps ...any) any {
	for _, s := range steps {
		switch k := s.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func testGateway(t *testing.T, e *refEtcd) {
	g, err := NewGateway(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	srv := httptest.NewServer(NewHTTPHandler(HTTPConfig{Gateway: g}))
	defer srv.Close()
	ours, theirs := srv.URL, "http://"+e.addr
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()

	code, put := postJSON(t, ctx, ours+"/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`)
	if code != 200 {
		t.Fatalf("put: %d %v", code, put)
	}
	if rev, ok := path(put, "header", "revision").(string); !ok || rev == "" {
		t.Errorf("put header.revision = %#v, want an int64 as a JSON string", path(put, "header", "revision"))
	}

	// A range reads the put, and answers exactly as etcd's own gateway does
	// (proto field names, base64 bytes, int64 strings, zero values left out).
	code, got := postJSON(t, ctx, ours+"/v3/kv/range", `{"key":"Zm9v"}`)
	_, want := postJSON(t, ctx, theirs+"/v3/kv/range", `{"key":"Zm9v"}`)
	if code != 200 || path(got, "kvs", 0, "value") != "YmFy" || path(got, "kvs", 0, "create_revision") == nil {
		t.Fatalf("range: %d %v", code, got)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("range answers differ:\ncairn %v\netcd  %v", got, want)
	}
	if _, beta := postJSON(t, ctx, ours+"/v3beta/kv/range", `{"key":"Zm9v"}`); !reflect.DeepEqual(beta, want) {
		t.Errorf("/v3beta/kv/range = %v", beta)
	}

	// Errors keep their gRPC code (as HTTP status) and message.
	code, gotErr := postJSON(t, ctx, ours+"/v3/kv/range", `{}`)
	wantCode, wantErr := postJSON(t, ctx, theirs+"/v3/kv/range", `{}`)
	if code != wantCode || gotErr["message"] != wantErr["message"] || gotErr["code"] != wantErr["code"] {
		t.Errorf("range without key: cairn %d %v, etcd %d %v", code, gotErr, wantCode, wantErr)
	}

	// Lease grant: the proto name "TTL", IDs as strings.
	code, lease := postJSON(t, ctx, ours+"/v3/lease/grant", `{"TTL":60}`)
	if code != 200 || path(lease, "TTL") != "60" || path(lease, "ID") == nil {
		t.Fatalf("lease grant: %d %v", code, lease)
	}

	// The lock service through the gateway.
	code, lk := postJSON(t, ctx, ours+"/v3/lock/lock", fmt.Sprintf(`{"name":%q,"lease":%q}`, b64("gwlock"), lease["ID"]))
	if code != 200 || !strings.HasPrefix(decodeB64(t, path(lk, "key")), "gwlock/") {
		t.Fatalf("lock: %d %v", code, lk)
	}
	if code, ul := postJSON(t, ctx, ours+"/v3/lock/unlock", fmt.Sprintf(`{"key":%q}`, path(lk, "key"))); code != 200 {
		t.Fatalf("unlock: %d %v", code, ul)
	}

	// Watch streams one JSON object per message.
	req, _ := http.NewRequestWithContext(ctx, "POST", ours+"/v3/watch", strings.NewReader(fmt.Sprintf(`{"create_request":{"key":%q}}`, b64("w"))))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var created map[string]any
	if err := dec.Decode(&created); err != nil || path(created, "result", "created") != true {
		t.Fatalf("watch create: %v %v", created, err)
	}
	if _, err := e.client.Put(ctx, "w", "x"); err != nil {
		t.Fatal(err)
	}
	var event map[string]any
	if err := dec.Decode(&event); err != nil || path(event, "result", "events", 0, "kv", "value") != b64("x") {
		t.Fatalf("watch event: %v %v", event, err)
	}
}

func decodeB64(t *testing.T, v any) string {
	t.Helper()
	s, _ := v.(string)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("%#v is not base64: %v", v, err)
	}
	return string(b)
}

// testClientPort wires everything as the server will: one ClientServer on
// one port with the Lock and Election services (over a client of the
// reference etcd) and the HTTP handler whose gateway dials that same port.
func testClientPort(t *testing.T, e *refEtcd) {
	l := listenLocal(t)
	addr := l.Addr().String()
	gs := grpc.NewServer()
	v3lockpb.RegisterLockServer(gs, NewLockServer(e.client))
	v3electionpb.RegisterElectionServer(gs, NewElectionServer(e.client))
	u := url.URL{Scheme: "http", Host: addr}
	g, err := NewGateway(GatewayTarget(u))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	health, err := NewHealth(healthy(), HealthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := NewClientServer(gs, NewHTTPHandler(HTTPConfig{Gateway: g, Health: health}), ClientServerOptions{})
	errc := serveAsync(t, s, l)

	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	base := "http://" + addr

	// HTTP -> gateway -> gRPC on the same port -> election service -> etcd.
	lease := grant(t, e, 60)
	code, c := postJSON(t, ctx, base+"/v3/election/campaign",
		fmt.Sprintf(`{"name":%q,"lease":"%d","value":%q}`, b64("port"), lease, b64("v1")))
	if code != 200 || decodeB64(t, path(c, "leader", "key")) != fmt.Sprintf("port/%x", lease) {
		t.Fatalf("campaign: %d %v", code, c)
	}
	code, ld := postJSON(t, ctx, base+"/v3/election/leader", fmt.Sprintf(`{"name":%q}`, b64("port")))
	if code != 200 || path(ld, "kv", "value") != b64("v1") {
		t.Fatalf("leader: %d %v", code, ld)
	}
	// etcd's error for an empty election, through the gateway: gRPC Unknown is HTTP 500.
	code, nl := postJSON(t, ctx, base+"/v3/election/leader", fmt.Sprintf(`{"name":%q}`, b64("nobody")))
	if code != 500 || nl["message"] != "election: no leader" {
		t.Errorf("leader of an empty election: %d %v", code, nl)
	}

	// gRPC on the same port.
	lc := v3lockpb.NewLockClient(dialLocal(t, addr))
	lk, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("portlock"), Lease: int64(lease)})
	if err != nil || string(lk.Key) != fmt.Sprintf("portlock/%x", lease) {
		t.Fatalf("lock over gRPC: %v %v", lk, err)
	}

	for method, want := range map[string]int{"GET": 200, "POST": 405} {
		req, _ := http.NewRequestWithContext(ctx, method, base+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s /health: %d, want %d", method, resp.StatusCode, want)
		}
	}

	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := waitErr(t, errc); err != nil {
		t.Errorf("Serve: %v", err)
	}
}
