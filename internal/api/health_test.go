package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// fakeHealth is a HealthSource in a fixed state. It records the deadline the
// reads were given.
type fakeHealth struct {
	leader       bool
	learner      bool
	alarms       []pb.AlarmType
	linearizable error
	serializable error
	reads        []string
	readDeadline bool
}

func (f *fakeHealth) HasLeader() bool { return f.leader }
func (f *fakeHealth) IsLearner() bool { return f.learner }
func (f *fakeHealth) Alarms() []*pb.AlarmMember {
	var as []*pb.AlarmMember
	for _, a := range f.alarms {
		as = append(as, &pb.AlarmMember{MemberID: 1, Alarm: a})
	}
	return as
}
func (f *fakeHealth) LinearizableReadCheck(ctx context.Context) error {
	f.reads = append(f.reads, "linearizable")
	_, f.readDeadline = ctx.Deadline()
	return f.linearizable
}
func (f *fakeHealth) SerializableReadCheck(ctx context.Context) error {
	f.reads = append(f.reads, "serializable")
	_, f.readDeadline = ctx.Deadline()
	return f.serializable
}

func healthy() *fakeHealth { return &fakeHealth{leader: true} }

func get(t *testing.T, h http.Handler, method, target string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Code, string(body), rec.Result().Header
}

func newHealthMux(t *testing.T, src HealthSource, reg prometheus.Registerer) *http.ServeMux {
	t.Helper()
	h, err := NewHealth(src, HealthOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Install(mux)
	return mux
}

func TestHealthEndpoint(t *testing.T) {
	errRead := errors.New("etcdserver: request timed out")
	for _, tc := range []struct {
		name      string
		src       *fakeHealth
		target    string
		wantCode  int
		wantBody  string
		wantReads []string
	}{
		{"healthy", healthy(), "/health",
			200, `{"health":"true","reason":""}`, []string{"linearizable"}},
		{"no leader", &fakeHealth{}, "/health",
			503, `{"health":"false","reason":"RAFT NO LEADER"}` + "\n", nil},
		{"no leader, serializable", &fakeHealth{}, "/health?serializable=true",
			200, `{"health":"true","reason":""}`, []string{"serializable"}},
		{"serializable read fails", &fakeHealth{serializable: errRead}, "/health?serializable=true",
			503, `{"health":"false","reason":"RANGE ERROR:etcdserver: request timed out"}` + "\n", []string{"serializable"}},
		{"linearizable read fails", &fakeHealth{leader: true, linearizable: errRead}, "/health",
			503, `{"health":"false","reason":"RANGE ERROR:etcdserver: request timed out"}` + "\n", []string{"linearizable"}},
		{"serializable=false is linearizable", healthy(), "/health?serializable=false",
			200, `{"health":"true","reason":""}`, []string{"linearizable"}},
		{"nospace", &fakeHealth{leader: true, alarms: []pb.AlarmType{pb.AlarmType_NOSPACE}}, "/health",
			503, `{"health":"false","reason":"ALARM NOSPACE"}` + "\n", nil},
		{"corrupt", &fakeHealth{leader: true, alarms: []pb.AlarmType{pb.AlarmType_CORRUPT}}, "/health",
			503, `{"health":"false","reason":"ALARM CORRUPT"}` + "\n", nil},
		{"unknown alarm", &fakeHealth{leader: true, alarms: []pb.AlarmType{pb.AlarmType(7)}}, "/health",
			503, `{"health":"false","reason":"ALARM UNKNOWN"}` + "\n", nil},
		// Excluding NOSPACE skips only the alarm: leader and read are still checked.
		{"nospace excluded", &fakeHealth{leader: true, alarms: []pb.AlarmType{pb.AlarmType_NOSPACE}}, "/health?exclude=NOSPACE",
			200, `{"health":"true","reason":""}`, []string{"linearizable"}},
		{"nospace excluded, no leader", &fakeHealth{alarms: []pb.AlarmType{pb.AlarmType_NOSPACE}}, "/health?exclude=NOSPACE",
			503, `{"health":"false","reason":"RAFT NO LEADER"}` + "\n", nil},
		{"nospace excluded, corrupt not", &fakeHealth{leader: true, alarms: []pb.AlarmType{pb.AlarmType_NOSPACE, pb.AlarmType_CORRUPT}}, "/health?exclude=NOSPACE",
			503, `{"health":"false","reason":"ALARM CORRUPT"}` + "\n", nil},
		{"both excluded", &fakeHealth{leader: true, alarms: []pb.AlarmType{pb.AlarmType_NOSPACE, pb.AlarmType_CORRUPT}}, "/health?exclude=NOSPACE&exclude=CORRUPT",
			200, `{"health":"true","reason":""}`, []string{"linearizable"}},
		{"exclude of a missing alarm is harmless", healthy(), "/health?exclude=CORRUPT&exclude=",
			200, `{"health":"true","reason":""}`, []string{"linearizable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := get(t, newHealthMux(t, tc.src, nil), "GET", tc.target)
			if code != tc.wantCode || body != tc.wantBody {
				t.Errorf("GET %s = %d %q, want %d %q", tc.target, code, body, tc.wantCode, tc.wantBody)
			}
			if code == 503 && hdr.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Errorf("503 Content-Type = %q", hdr.Get("Content-Type"))
			}
			if strings.Join(tc.src.reads, ",") != strings.Join(tc.wantReads, ",") {
				t.Errorf("reads = %v, want %v", tc.src.reads, tc.wantReads)
			}
			if len(tc.src.reads) > 0 && !tc.src.readDeadline {
				t.Errorf("/health read ran without a deadline")
			}
		})
	}
}

func TestHealthMethodNotAllowed(t *testing.T) {
	mux := newHealthMux(t, healthy(), nil)
	for _, p := range []string{"/health", "/livez", "/readyz", "/readyz/linearizable_read"} {
		code, body, hdr := get(t, mux, "POST", p)
		if code != 405 || body != "Method Not Allowed\n" || hdr.Get("Allow") != "GET" {
			t.Errorf("POST %s = %d %q Allow=%q", p, code, body, hdr.Get("Allow"))
		}
	}
}

func TestLivezReadyz(t *testing.T) {
	errRead := errors.New("etcdserver: leader changed")
	for _, tc := range []struct {
		name     string
		src      *fakeHealth
		target   string
		wantCode int
		wantBody string
	}{
		{"livez", healthy(), "/livez", 200, "ok\n"},
		{"livez verbose", healthy(), "/livez?verbose", 200, "[+]serializable_read ok\nok\n"},
		{"livez without leader", &fakeHealth{}, "/livez", 200, "ok\n"},
		{"livez read fails", &fakeHealth{serializable: errRead}, "/livez", 503,
			"[-]serializable_read failed: etcdserver: leader changed\n\n"},
		{"livez excluded", &fakeHealth{serializable: errRead}, "/livez?exclude=serializable_read&verbose", 200, "ok\n"},
		{"readyz", healthy(), "/readyz", 200, "ok\n"},
		{"readyz verbose", healthy(), "/readyz?verbose=true", 200,
			"[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"},
		{"readyz corrupt and learner", &fakeHealth{learner: true, alarms: []pb.AlarmType{pb.AlarmType_NOSPACE, pb.AlarmType_CORRUPT}}, "/readyz", 503,
			"[-]data_corruption failed: alarm activated: CORRUPT\n[+]serializable_read ok\n[+]linearizable_read ok\n[-]non_learner failed: not supported for learner\n\n"},
		{"readyz nospace is ready", &fakeHealth{alarms: []pb.AlarmType{pb.AlarmType_NOSPACE}}, "/readyz", 200, "ok\n"},
		{"readyz linearizable fails", &fakeHealth{linearizable: errRead}, "/readyz", 503,
			"[+]data_corruption ok\n[+]serializable_read ok\n[-]linearizable_read failed: etcdserver: leader changed\n[+]non_learner ok\n\n"},
		{"readyz exclude, unknown exclude ignored", &fakeHealth{linearizable: errRead}, "/readyz?exclude=linearizable_read&exclude=no_such_check&verbose", 200,
			"[+]data_corruption ok\n[+]serializable_read ok\n[+]non_learner ok\nok\n"},
		{"one check", &fakeHealth{linearizable: errRead}, "/readyz/serializable_read?verbose", 200, "[+]serializable_read ok\nok\n"},
		{"one failing check", &fakeHealth{linearizable: errRead}, "/readyz/linearizable_read", 503,
			"[-]linearizable_read failed: etcdserver: leader changed\n\n"},
		{"livez subpath", healthy(), "/livez/serializable_read", 200, "ok\n"},
		{"unknown subpath", healthy(), "/readyz/nope", 404, "404 page not found\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := get(t, newHealthMux(t, tc.src, nil), "GET", tc.target)
			if code != tc.wantCode || body != tc.wantBody {
				t.Errorf("GET %s = %d %q, want %d %q", tc.target, code, body, tc.wantCode, tc.wantBody)
			}
			if code == 200 && (hdr.Get("Content-Type") != "text/plain; charset=utf-8" || hdr.Get("X-Content-Type-Options") != "nosniff") {
				t.Errorf("headers = %v", hdr)
			}
		})
	}
}

func TestHealthMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := healthy()
	mux := newHealthMux(t, src, reg)
	get(t, mux, "GET", "/health")
	src.leader = false
	get(t, mux, "GET", "/health")
	get(t, mux, "GET", "/health")
	src.linearizable = errors.New("x")
	get(t, mux, "GET", "/readyz")

	_, metrics, _ := get(t, NewPrometheusHandler(reg), "GET", "/metrics")
	for _, line := range []string{
		"etcd_server_health_failures 2",
		"etcd_server_health_success 1",
		`etcd_server_healthcheck{name="data_corruption",type="readyz"} 1`,
		`etcd_server_healthcheck{name="linearizable_read",type="readyz"} 0`,
		`etcd_server_healthcheck{name="non_learner",type="readyz"} 1`,
		`etcd_server_healthcheck{name="serializable_read",type="readyz"} 1`,
		`etcd_server_healthchecks_total{name="data_corruption",status="success",type="readyz"} 1`,
		`etcd_server_healthchecks_total{name="linearizable_read",status="error",type="readyz"} 1`,
		`etcd_server_healthchecks_total{name="non_learner",status="success",type="readyz"} 1`,
		`etcd_server_healthchecks_total{name="serializable_read",status="success",type="readyz"} 1`,
	} {
		if !strings.Contains(metrics, "\n"+line+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", line, metrics)
		}
	}

	// A second Health on the same registry is a registration error.
	if _, err := NewHealth(src, HealthOptions{Registerer: reg}); err == nil {
		t.Error("registering health metrics twice succeeded")
	}
}
