package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-kv/cairn/internal/version"
)

type fixedVersions struct{ cluster, storage string }

func (v fixedVersions) ClusterVersion() string { return v.cluster }
func (v fixedVersions) StorageVersion() string { return v.storage }

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  VersionSource
		want string
	}{
		{"constants", nil,
			`{"etcdserver":"` + version.EtcdVersion + `","etcdcluster":"` + version.EtcdCluster + `","storage":"` + version.EtcdCluster + `"}`},
		{"decided", fixedVersions{"3.6.0", "3.6.0"},
			`{"etcdserver":"` + version.EtcdVersion + `","etcdcluster":"3.6.0","storage":"3.6.0"}`},
		{"undecided", fixedVersions{},
			`{"etcdserver":"` + version.EtcdVersion + `","etcdcluster":"not_decided","storage":"unknown"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHTTPHandler(HTTPConfig{Versions: tc.src})
			code, body, hdr := get(t, h, "GET", "/version")
			if code != 200 || body != tc.want || hdr.Get("Content-Type") != "application/json" {
				t.Errorf("GET /version = %d %q %q, want 200 %q application/json", code, body, hdr.Get("Content-Type"), tc.want)
			}
		})
	}
	if code, _, hdr := get(t, NewHTTPHandler(HTTPConfig{}), "PUT", "/version"); code != 405 || hdr.Get("Allow") != "GET" {
		t.Errorf("PUT /version = %d Allow=%q", code, hdr.Get("Allow"))
	}
}

func TestHTTPHandlerRoutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "etcd_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	health, err := NewHealth(healthy(), HealthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gateway := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("gateway " + r.URL.Path))
	})
	h := NewHTTPHandler(HTTPConfig{
		Health:   health,
		Gatherer: reg,
		Gateway:  gateway,
		Extra:    map[string]http.Handler{"/debug/extra": http.NotFoundHandler()},
	})
	for _, tc := range []struct {
		target   string
		wantCode int
		wantBody string // prefix
	}{
		{"/health", 200, `{"health":"true","reason":""}`},
		{"/livez", 200, "ok\n"},
		{"/readyz", 200, "ok\n"},
		{"/metrics", 200, "# HELP etcd_test_total test\n# TYPE etcd_test_total counter\netcd_test_total 3\n"},
		{"/v3/kv/range", 200, "gateway /v3/kv/range"},
		{"/v3beta/kv/range", 200, "gateway /v3/kv/range"},
		{"/debug/vars", 200, "{\n"},
		{"/debug/extra", 404, ""},
		{"/nope", 404, "404 page not found\n"},
	} {
		code, body, _ := get(t, h, "GET", tc.target)
		if code != tc.wantCode || !strings.HasPrefix(body, tc.wantBody) {
			t.Errorf("GET %s = %d %q, want %d %q...", tc.target, code, body, tc.wantCode, tc.wantBody)
		}
	}

	// Without a gateway /v3/ is not served.
	if code, _, _ := get(t, NewHTTPHandler(HTTPConfig{}), "POST", "/v3/kv/range"); code != 404 {
		t.Errorf("POST /v3/kv/range without gateway = %d, want 404", code)
	}
}

func TestMetricsHandler(t *testing.T) {
	health, err := NewHealth(&fakeHealth{}, HealthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := NewMetricsHandler(prometheus.NewRegistry(), health)
	if code, body, _ := get(t, h, "GET", "/health"); code != 503 || !strings.Contains(body, "RAFT NO LEADER") {
		t.Errorf("GET /health = %d %q", code, body)
	}
	if code, _, _ := get(t, h, "GET", "/metrics"); code != 200 {
		t.Errorf("GET /metrics = %d", code)
	}
	if code, _, _ := get(t, h, "GET", "/version"); code != 404 {
		t.Errorf("GET /version on the metrics port = %d, want 404", code)
	}
}

func TestAccessController(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	serve := func(cfg HTTPConfig, method, host, origin string) *httptest.ResponseRecorder {
		cfg.Extra = map[string]http.Handler{"/x": ok}
		req := httptest.NewRequest(method, "http://"+host+"/x", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		rec := httptest.NewRecorder()
		NewHTTPHandler(cfg).ServeHTTP(rec, req)
		return rec
	}

	// Defaults: every host, every origin ("*").
	rec := serve(HTTPConfig{}, "GET", "evil.example:2379", "http://a.example")
	if rec.Code != 200 || rec.Header().Get("Access-Control-Allow-Origin") != "*" ||
		rec.Header().Get("Access-Control-Allow-Methods") != "POST, GET, OPTIONS, PUT, DELETE" ||
		rec.Header().Get("Access-Control-Allow-Headers") != "accept, content-type, authorization" {
		t.Errorf("default: %d %v", rec.Code, rec.Header())
	}

	// Host whitelist: port ignored, unknown hosts get 421.
	wl := HTTPConfig{HostWhitelist: []string{"127.0.0.1", "localhost"}}
	if rec := serve(wl, "GET", "localhost:2379", ""); rec.Code != 200 {
		t.Errorf("whitelisted host: %d", rec.Code)
	}
	if rec := serve(wl, "GET", "evil.example:2379", ""); rec.Code != http.StatusMisdirectedRequest || !strings.Contains(rec.Body.String(), `"evil.example"`) {
		t.Errorf("unlisted host: %d %q", rec.Code, rec.Body.String())
	}

	// CORS list: only listed origins are echoed.
	cors := HTTPConfig{CORS: []string{"http://a.example"}}
	if rec := serve(cors, "GET", "h", "http://a.example"); rec.Header().Get("Access-Control-Allow-Origin") != "http://a.example" {
		t.Errorf("listed origin: %v", rec.Header())
	}
	if rec := serve(cors, "GET", "h", "http://b.example"); rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("unlisted origin: %v", rec.Header())
	}

	// OPTIONS is answered by the controller itself.
	if rec := serve(HTTPConfig{}, "OPTIONS", "h", ""); rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("OPTIONS: %d %q", rec.Code, rec.Body.String())
	}
}
