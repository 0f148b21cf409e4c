package api

// The HTTP/1.1 side of the client port, as etcd serves it:
//
//	/health /livez /readyz   health.go
//	/version                 {"etcdserver":..,"etcdcluster":..,"storage":..}
//	/metrics                 Prometheus text format
//	/debug/vars              expvar JSON
//	/v3/...                  the JSON gateway (gateway.go); /v3beta/... is rewritten to /v3/
//	anything else            404
//
// Every response passes through etcd's access controller: on plaintext
// connections the Host header must be in --host-whitelist (421 Misdirected
// Request otherwise, against DNS rebinding), CORS headers follow --cors, and
// OPTIONS requests are answered 200 with no body.

import (
	"encoding/json"
	"expvar"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/version"
)

// VersionSource reports the versions the cluster has agreed on. An empty
// string means not decided yet; /version then says "not_decided" for the
// cluster and "unknown" for storage, as etcd does.
type VersionSource interface {
	ClusterVersion() string
	StorageVersion() string
}

// HTTPConfig says what NewHTTPHandler serves. Zero fields leave the path out
// or use the default named on the field.
type HTTPConfig struct {
	// Health serves /health, /livez and /readyz; nil leaves them out.
	Health *Health
	// Versions feeds /version; nil reports internal/version's constants.
	Versions VersionSource
	// Gatherer feeds /metrics; nil means prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Gateway serves /v3/ (see NewGateway); nil when --enable-grpc-gateway
	// is false.
	Gateway http.Handler
	// Extra handlers by path (e.g. /debug/pprof/ with --enable-pprof).
	Extra map[string]http.Handler
	// CORS lists allowed origins (--cors); empty or "*" allows every origin.
	CORS []string
	// HostWhitelist lists the Host names accepted on plaintext connections
	// (--host-whitelist); empty or "*" accepts every host.
	HostWhitelist []string
	// Logger; nil discards.
	Logger *zap.Logger
}

// NewHTTPHandler returns the client port's HTTP handler.
func NewHTTPHandler(cfg HTTPConfig) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	mux := http.NewServeMux()
	for p, h := range cfg.Extra {
		mux.Handle(p, h)
	}
	if cfg.Gateway != nil {
		mux.Handle("/v3/", cfg.Gateway)
	}
	mux.Handle("/version", NewVersionHandler(cfg.Versions))
	mux.Handle("/metrics", NewPrometheusHandler(cfg.Gatherer))
	mux.HandleFunc("/debug/vars", func(w http.ResponseWriter, r *http.Request) {
		if allowGET(w, r) {
			expvar.Handler().ServeHTTP(w, r)
		}
	})
	if cfg.Health != nil {
		cfg.Health.Install(mux)
	}
	return &accessController{
		lg:    cfg.Logger,
		cors:  toSet(cfg.CORS),
		hosts: toSet(cfg.HostWhitelist),
		next:  mux,
	}
}

// NewMetricsHandler returns the handler for --listen-metrics-urls: /metrics
// and, when h is not nil, /health, /livez and /readyz.
func NewMetricsHandler(g prometheus.Gatherer, h *Health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", NewPrometheusHandler(g))
	if h != nil {
		h.Install(mux)
	}
	return mux
}

// NewPrometheusHandler serves g in the Prometheus exposition format; nil
// means prometheus.DefaultGatherer.
func NewPrometheusHandler(g prometheus.Gatherer) http.Handler {
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// versionsBody is /version's JSON, field for field etcd's version.Versions.
type versionsBody struct {
	Server  string `json:"etcdserver"`
	Cluster string `json:"etcdcluster"`
	Storage string `json:"storage"`
}

// NewVersionHandler serves /version. With a nil src it reports
// version.EtcdVersion and version.EtcdCluster for cluster and storage.
func NewVersionHandler(src VersionSource) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowGET(w, r) {
			return
		}
		v := versionsBody{Server: version.EtcdVersion, Cluster: version.EtcdCluster, Storage: version.EtcdCluster}
		if src != nil {
			v.Cluster, v.Storage = src.ClusterVersion(), src.StorageVersion()
			if v.Cluster == "" {
				v.Cluster = "not_decided"
			}
			if v.Storage == "" {
				v.Storage = "unknown"
			}
		}
		b, err := json.Marshal(v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
}

// accessController is etcd's wrapper around the client mux.
type accessController struct {
	lg    *zap.Logger
	cors  map[string]bool // empty or "*" allows all
	hosts map[string]bool // empty or "*" allows all
	next  http.Handler
}

func (ac *accessController) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v3beta/") {
		r.URL.Path = "/v3/" + strings.TrimPrefix(r.URL.Path, "/v3beta/")
		r.URL.RawPath = ""
	}
	if r.TLS == nil {
		host := hostname(r.Host)
		if !allowed(ac.hosts, host) {
			ac.lg.Warn("rejecting HTTP request to prevent DNS rebinding attacks", zap.String("host", host))
			http.Error(w, dnsRebindingMessage(host), http.StatusMisdirectedRequest)
			return
		}
	}
	if allowed(ac.cors, "*") {
		addCORSHeaders(w, "*")
	} else if origin := r.Header.Get("Origin"); allowed(ac.cors, origin) {
		addCORSHeaders(w, origin)
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusOK)
		return
	}
	ac.next.ServeHTTP(w, r)
}

func addCORSHeaders(w http.ResponseWriter, origin string) {
	w.Header().Add("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE")
	w.Header().Add("Access-Control-Allow-Origin", origin)
	w.Header().Add("Access-Control-Allow-Headers", "accept, content-type, authorization")
}

// allowed is etcd's rule for --cors and --host-whitelist: an empty list or
// "*" allows everything.
func allowed(set map[string]bool, v string) bool {
	return len(set) == 0 || set["*"] || set[v]
}

func toSet(list []string) map[string]bool {
	set := make(map[string]bool, len(list))
	for _, v := range list {
		set[v] = true
	}
	return set
}

// hostname strips the port from a Host header, if there is one.
func hostname(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return h
}

func dnsRebindingMessage(host string) string {
	return fmt.Sprintf("Host %q is not accepted on a plaintext connection (protection against DNS rebinding, CVE-2018-5702).\n"+
		"Use TLS, or add the name with --host-whitelist.\n", host)
}
