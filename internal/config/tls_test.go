package config

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTLSFlags(t *testing.T) {
	c := mustParse(t, []string{
		"--listen-client-urls=https://127.0.0.1:2379,unixs://sock", "--advertise-client-urls=https://127.0.0.1:2379",
		"--cert-file=/c.pem", "--key-file=/k.pem", "--client-cert-auth", "--trusted-ca-file=/ca.pem",
		"--listen-peer-urls=https://127.0.0.1:2380", "--initial-advertise-peer-urls=https://127.0.0.1:2380",
		"--peer-auto-tls", "--peer-client-cert-auth=false",
		"--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"--tls-max-version=TLS1.3",
	}, nil)
	if c.ClientTLS != (TLSInfo{CertFile: "/c.pem", KeyFile: "/k.pem", ClientCertAuth: true, TrustedCAFile: "/ca.pem"}) {
		t.Errorf("client TLS = %+v", c.ClientTLS)
	}
	if c.PeerTLS != (TLSInfo{AutoTLS: true}) {
		t.Errorf("peer TLS = %+v", c.PeerTLS)
	}
	if len(c.CipherSuites) != 2 || c.TLSMinVersion != "TLS1.2" || c.TLSMaxVersion != "TLS1.3" {
		t.Errorf("suites %q min %q max %q", c.CipherSuites, c.TLSMinVersion, c.TLSMaxVersion)
	}
	ids, err := CipherSuiteIDs(c.CipherSuites)
	if err != nil || len(ids) != 2 {
		t.Errorf("CipherSuiteIDs = %v, %v", ids, err)
	}

	env := mustParse(t, nil, []string{"ETCD_PEER_AUTO_TLS=true", "ETCD_LISTEN_PEER_URLS=https://127.0.0.1:2380", "ETCD_INITIAL_ADVERTISE_PEER_URLS=https://127.0.0.1:2380"})
	if !env.PeerTLS.AutoTLS {
		t.Errorf("ETCD_PEER_AUTO_TLS not read")
	}
}

func TestTLSFlagErrors(t *testing.T) {
	https := []string{"--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379"}
	tests := []struct {
		name string
		args []string
		err  string
	}{
		{"https without cert", https, "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"},
		{"unixs without cert", []string{"--listen-client-urls=unixs://s", "--advertise-client-urls=unixs://s"}, "must be provided for client url unixs://s"},
		{"peer https without cert", []string{"--listen-peer-urls=https://127.0.0.1:2380"}, "(--peer-cert-file, --peer-key-file) must be provided for peer url https://127.0.0.1:2380"},
		{"advertised peer https", []string{"--initial-advertise-peer-urls=https://127.0.0.1:2380"}, "must be provided for peer url https://127.0.0.1:2380"},
		{"cert without key", append([]string{"--cert-file=/c.pem"}, https...), "--cert-file and --key-file must be given together"},
		{"bad min", []string{"--tls-min-version=TLS1.1"}, `--tls-min-version: unexpected TLS version "TLS1.1"`},
		{"bad max", []string{"--tls-max-version=tls13"}, `--tls-max-version: unexpected TLS version "tls13"`},
		{"min above max", []string{"--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"}, "min version (TLS1.3) is greater than max version (TLS1.2)"},
		{"bad suite", []string{"--cipher-suites=TLS_FOO"}, `--cipher-suites: unexpected TLS cipher suite "TLS_FOO"`},
		{"suites with TLS1.3 only", []string{"--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "--tls-min-version=TLS1.3"}, "cipher suites cannot be configured when only TLS1.3 is enabled"},
		{"metrics https", []string{"--listen-metrics-urls=https://127.0.0.1:2381"}, "serves metrics over http only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.args, nil)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Parse(%q) err = %v, want %q", tt.args, err, tt.err)
			}
		})
	}
}

func TestTLSWarnings(t *testing.T) {
	c := mustParse(t, []string{"--cert-file=/c.pem", "--key-file=/k.pem", "--auto-tls"}, nil)
	w := strings.Join(c.Warnings, "\n")
	for _, want := range []string{"ignoring --auto-tls since --cert-file and --key-file are given", "no --listen-client-urls URL is https"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings %q lack %q", c.Warnings, want)
		}
	}
}

func TestClientCerts(t *testing.T) {
	dir := t.TempDir()
	var cfg tls.Config
	if err := ClientCerts(&cfg, "", "/c.pem", ""); err == nil || !strings.Contains(err.Error(), "--cert and --key must be given together") {
		t.Fatalf("cert without key: %v", err)
	}
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ClientCerts(&cfg, notPEM, "", ""); err == nil || !strings.Contains(err.Error(), "--cacert: no PEM certificates found in "+notPEM) {
		t.Fatalf("CA file without certificates: %v", err)
	}
	if err := ClientCerts(&cfg, filepath.Join(dir, "missing.pem"), "", ""); err == nil || !strings.Contains(err.Error(), "--cacert:") {
		t.Fatalf("missing CA file: %v", err)
	}
	if err := ClientCerts(&cfg, "", "", ""); err != nil || cfg.RootCAs != nil || cfg.Certificates != nil {
		t.Fatalf("no files: %v, roots %v, certificates %d", err, cfg.RootCAs, len(cfg.Certificates))
	}
}
