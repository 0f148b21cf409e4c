package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
)

// TLS settings, with etcd's flags and meanings:
//
//   - A side (client or peer) serves TLS on its https:// and unixs:// URLs,
//     with --cert-file/--key-file, or with a self-signed certificate
//     generated into <data-dir>/fixtures/{client,peer} by --auto-tls when no
//     certificate is given. An https:// URL without either is an error.
//   - --client-cert-auth requires a client certificate signed by
//     --trusted-ca-file; the handshake of a client without one fails.
//   - --cipher-suites, --tls-min-version and --tls-max-version apply to
//     both sides.

// DefaultTLSMinVersion is etcd's --tls-min-version.
const DefaultTLSMinVersion = "TLS1.2"

// TLSInfo is one side's TLS settings.
type TLSInfo struct {
	CertFile       string // --cert-file / --peer-cert-file
	KeyFile        string // --key-file / --peer-key-file
	ClientCertAuth bool   // --client-cert-auth / --peer-client-cert-auth
	TrustedCAFile  string // --trusted-ca-file / --peer-trusted-ca-file
	AutoTLS        bool   // --auto-tls / --peer-auto-tls
}

// HasCert reports whether a certificate is configured (auto-tls aside).
func (t TLSInfo) HasCert() bool { return t.CertFile != "" || t.KeyFile != "" }

// Enabled reports whether the side can serve TLS: a certificate is given
// or one will be generated.
func (t TLSInfo) Enabled() bool { return t.HasCert() || t.AutoTLS }

// IsTLSURL reports whether u is served with TLS (https, unixs).
func IsTLSURL(u url.URL) bool { return u.Scheme == "https" || u.Scheme == "unixs" }

// TLSVersion reads an etcd TLS version name ("TLS1.2", "TLS1.3"); "" is 0
// (Go's default).
func TLSVersion(name string) (uint16, error) {
	switch name {
	case "":
		return 0, nil
	case "TLS1.2":
		return tls.VersionTLS12, nil
	case "TLS1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unexpected TLS version %q (must be one of: TLS1.2, TLS1.3)", name)
}

// CipherSuiteIDs reads cipher suite names (Go's names, which are etcd's)
// into their IDs.
func CipherSuiteIDs(names []string) ([]uint16, error) {
	known := map[string]uint16{}
	for _, cs := range tls.CipherSuites() {
		known[cs.Name] = cs.ID
	}
	for _, cs := range tls.InsecureCipherSuites() {
		known[cs.Name] = cs.ID
	}
	var ids []uint16
	for _, n := range names {
		id, ok := known[n]
		if !ok {
			return nil, fmt.Errorf("unexpected TLS cipher suite %q", n)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// checkTLS validates the TLS settings against the URLs that use them.
func (c *Config) checkTLS() error {
	minV, err := TLSVersion(c.TLSMinVersion)
	if err != nil {
		return fmt.Errorf("--tls-min-version: %w", err)
	}
	maxV, err := TLSVersion(c.TLSMaxVersion)
	if err != nil {
		return fmt.Errorf("--tls-max-version: %w", err)
	}
	if maxV != 0 && minV > maxV {
		return fmt.Errorf("min version (%s) is greater than max version (%s)", c.TLSMinVersion, c.TLSMaxVersion)
	}
	if _, err := CipherSuiteIDs(c.CipherSuites); err != nil {
		return fmt.Errorf("--cipher-suites: %w", err)
	}
	if len(c.CipherSuites) > 0 && minV == tls.VersionTLS13 {
		return fmt.Errorf("cipher suites cannot be configured when only TLS1.3 is enabled")
	}
	sides := []struct {
		info     TLSInfo
		prefix   string
		urls     []url.URL
		urlsFlag string
	}{
		{c.ClientTLS, "--", c.ListenClientURLs, "client"},
		{c.PeerTLS, "--peer-", c.ListenPeerURLs, "peer"},
	}
	for _, s := range sides {
		if (s.info.CertFile == "") != (s.info.KeyFile == "") {
			return fmt.Errorf("%scert-file and %skey-file must be given together", s.prefix, s.prefix)
		}
		for _, u := range s.urls {
			if IsTLSURL(u) && !s.info.Enabled() {
				return fmt.Errorf("TLS key/cert (%scert-file, %skey-file) must be provided for %s url %s with HTTPS scheme", s.prefix, s.prefix, s.urlsFlag, u.String())
			}
		}
	}
	for _, u := range c.InitialAdvertisePeerURLs {
		if IsTLSURL(u) && !c.PeerTLS.Enabled() {
			return fmt.Errorf("TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url %s with HTTPS scheme", u.String())
		}
	}
	for _, u := range c.ListenMetricsURLs {
		if IsTLSURL(u) {
			return fmt.Errorf("--listen-metrics-urls %s: cairn serves metrics over http only", u.String())
		}
	}
	return nil
}

// tlsWarnings notes TLS settings that have no effect, as etcd does.
func (c *Config) tlsWarnings() []string {
	var w []string
	for _, s := range []struct {
		info         TLSInfo
		side, prefix string
		urls         []url.URL
	}{{c.ClientTLS, "client", "--", c.ListenClientURLs}, {c.PeerTLS, "peer", "--peer-", c.ListenPeerURLs}} {
		if s.info.AutoTLS && s.info.HasCert() {
			w = append(w, fmt.Sprintf("ignoring %sauto-tls since %scert-file and %skey-file are given", s.prefix, s.prefix, s.prefix))
		}
		anyTLS := false
		for _, u := range s.urls {
			anyTLS = anyTLS || IsTLSURL(u)
		}
		if s.info.Enabled() && !anyTLS {
			w = append(w, fmt.Sprintf("%s TLS settings are given but no --listen-%s-urls URL is https or unixs; they have no effect", s.side, s.side))
		}
	}
	return w
}

// CAPool reads the PEM certificates in file into a pool of roots to trust.
func CAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificates found in %s", file)
	}
	return pool, nil
}

// ClientCerts fills a client's cfg from etcd's client flags: the CA bundle
// to trust (--cacert) and the certificate with its key (--cert, --key),
// each optional; a certificate needs its key.
func ClientCerts(cfg *tls.Config, cacert, cert, key string) error {
	if (cert == "") != (key == "") {
		return errors.New("--cert and --key must be given together")
	}
	if cacert != "" {
		pool, err := CAPool(cacert)
		if err != nil {
			return fmt.Errorf("--cacert: %w", err)
		}
		cfg.RootCAs = pool
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return fmt.Errorf("--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return nil
}
