package server

// TLS for the client and peer ports, with etcd's flags and meanings (see
// internal/config/tls.go):
//
//   - The server side presents --cert-file (--peer-cert-file), or a
//     self-signed certificate generated into <data-dir>/fixtures/client
//     (fixtures/peer) by --auto-tls (--peer-auto-tls) and reused on restart.
//   - --client-cert-auth (--peer-client-cert-auth) requires a client
//     certificate that verifies against --trusted-ca-file
//     (--peer-trusted-ca-file); the handshake of anyone else fails.
//   - The client side, used by this member to dial its peers and its own
//     client port (the gateway, the Lock and Election services), presents
//     the same certificate, as etcd does, and trusts the CA file; with
//     auto-tls it skips verification, as etcd does.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/config"
)

// tlsSide is one side's TLS configurations.
type tlsSide struct {
	server *tls.Config // for this member's listeners
	// peer dials the servers of this side (other members), verifying
	// their certificates and host names; nil fields mean plaintext.
	peer *tls.Config
	// self dials this member's own listener: the chain is verified
	// against the trusted CA but not the host name, since the listen
	// address (0.0.0.0, a unix socket) need not be in the certificate.
	self *tls.Config
}

// clientTLS builds the client side's configurations, or nil when no
// client TLS is configured.
func (s *Server) clientTLS() (*tlsSide, error) {
	return buildTLS(s.lg, s.cfg, s.cfg.ClientTLS, "client", append(append([]url.URL(nil), s.cfg.ListenClientURLs...), s.cfg.AdvertiseClientURLs...))
}

// peerTLS builds the peer side's configurations, or nil when no peer TLS
// is configured.
func (s *Server) peerTLS() (*tlsSide, error) {
	return buildTLS(s.lg, s.cfg, s.cfg.PeerTLS, "peer", append(append([]url.URL(nil), s.cfg.ListenPeerURLs...), s.cfg.InitialAdvertisePeerURLs...))
}

func buildTLS(lg *zap.Logger, cfg *config.Config, info config.TLSInfo, side string, urls []url.URL) (*tlsSide, error) {
	if !info.Enabled() {
		return nil, nil
	}
	if lg == nil {
		lg = zap.NewNop()
	}
	certFile, keyFile := info.CertFile, info.KeyFile
	selfSigned := false
	if !info.HasCert() {
		dir := filepath.Join(cfg.MemberDataDir(), "fixtures", side)
		var err error
		certFile, keyFile, err = selfCert(dir, urls)
		if err != nil {
			return nil, fmt.Errorf("cannot generate the self-signed %s certificate: %w", side, err)
		}
		selfSigned = true
		lg.Info("using a self-signed certificate", zap.String("side", side), zap.String("cert-file", certFile))
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s TLS: %w", side, err)
	}
	var pool *x509.CertPool
	if info.TrustedCAFile != "" {
		if pool, err = config.CAPool(info.TrustedCAFile); err != nil {
			return nil, fmt.Errorf("%s TLS: %w", side, err)
		}
	}
	minV, err := config.TLSVersion(cfg.TLSMinVersion)
	if err != nil {
		return nil, err
	}
	maxV, err := config.TLSVersion(cfg.TLSMaxVersion)
	if err != nil {
		return nil, err
	}
	suites, err := config.CipherSuiteIDs(cfg.CipherSuites)
	if err != nil {
		return nil, err
	}
	base := tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   minV,
		MaxVersion:   maxV,
		CipherSuites: suites,
	}
	if base.MinVersion == 0 {
		base.MinVersion = tls.VersionTLS12
	}

	srv := base.Clone()
	if info.ClientCertAuth {
		srv.ClientCAs = pool
		srv.ClientAuth = tls.RequireAndVerifyClientCert
		if pool == nil && selfSigned {
			// Self-signed certificates share no CA to verify against.
			srv.ClientAuth = tls.RequireAnyClientCert
			lg.Warn("client certificate auth with an auto-generated certificate and no trusted CA: any client certificate is accepted", zap.String("side", side))
		}
	}

	peer := base.Clone()
	peer.RootCAs = pool
	if selfSigned && pool == nil {
		peer.InsecureSkipVerify = true
	}

	self := base.Clone()
	self.InsecureSkipVerify = true
	if !(selfSigned && pool == nil) {
		self.VerifyPeerCertificate = verifyChain(pool)
	}
	return &tlsSide{server: srv, peer: peer, self: self}, nil
}

// verifyChain checks the server's chain against roots (the system's when
// nil), without a host name.
func verifyChain(roots *x509.CertPool) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("no server certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, b := range raw {
			c, err := x509.ParseCertificate(b)
			if err != nil {
				return err
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
}

// selfCert returns cert.pem and key.pem in dir, generating a self-signed
// certificate for the hosts of urls first unless both exist (as etcd's
// auto-tls does, so a restarted member keeps its certificate).
func selfCert(dir string, urls []url.URL) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if fileExists(certFile) && fileExists(keyFile) {
		return certFile, keyFile, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"cairn"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0), // etcd's --self-signed-cert-validity default: 1 year
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	seen := map[string]bool{}
	for _, u := range urls {
		host := u.Hostname()
		if u.Scheme == "unix" || u.Scheme == "unixs" {
			host = "localhost"
		}
		if host == "" || seen[host] {
			continue
		}
		seen[host] = true
		if ip := net.ParseIP(host); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if err := writeFileSync(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", err
	}
	if err := writeFileSync(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func writeFileSync(path string, b []byte, mode os.FileMode) error {
	return writeFileDurably(path, mode, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// writeFileDurably writes path through a temporary file that is fsynced
// and renamed into place, so a crash leaves the old file or the whole new
// one, never a part.
func writeFileDurably(path string, mode os.FileMode, fill func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after the rename
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
