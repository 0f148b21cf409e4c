package ctl

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0 B", 9: "9 B", 10: "10 B", 999: "999 B", 1000: "1.0 kB", 24576: "25 kB",
		8_100_000: "8.1 MB", 123_456_789: "124 MB", 2_147_483_648: "2.1 GB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	p := &printer{w: &b, format: "table"}
	p.table([]string{"ID", "Status", "db size"}, [][]string{{"2e1259d415f2a040", "started", ""}, {"1", "x", "25 kB"}})
	want := `+------------------+---------+---------+
|        ID        | STATUS  | DB SIZE |
+------------------+---------+---------+
| 2e1259d415f2a040 | started |         |
|                1 |       x |   25 kB |
+------------------+---------+---------+
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestHexBytes(t *testing.T) {
	if got := hexBytes([]byte("a\x00\xff")); got != `\x61\x00\xff` {
		t.Errorf("hexBytes = %q", got)
	}
}

func TestArgify(t *testing.T) {
	for in, want := range map[string][]string{
		`put k v`:                         {"put", "k", "v"},
		`put k "a b\n"`:                   {"put", "k", "a b\n"},
		`put 'single quoted' x --lease=1`: {"put", "single quoted", "x", "--lease=1"},
		`  get   k  `:                     {"get", "k"},
	} {
		got, err := argify(in)
		if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("argify(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseCompare(t *testing.T) {
	for _, ok := range []string{`mod("k") > "0"`, `m("k") = "3"`, `val("k") != "x y"`, `value("k") < "z"`,
		`ver("k") = "1"`, `version("k") > "0"`, `c("k") = "0"`, `create("k") < "9"`, `lease("k") = "694d5"`} {
		if _, err := parseCompare(ok); err != nil {
			t.Errorf("parseCompare(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{`mod "k" > "0"`, `mod("k") >> "0"`, `nope("k") = "1"`, `mod("k") > "x"`, `mod("k")`, `lease("k") = "zz"`} {
		if _, err := parseCompare(bad); err == nil {
			t.Errorf("parseCompare(%q) accepted", bad)
		}
	}
}

func TestParseRequest(t *testing.T) {
	for _, ok := range []string{`put k v`, `put k "v w" --prev-kv`, `get k --prefix --limit=3`, `del k --from-key`, `get a b`} {
		if _, err := parseRequest(ok); err != nil {
			t.Errorf("parseRequest(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{`put`, `nope k v`, `get k --bogus`, `put k`, `del a b c`} {
		if _, err := parseRequest(bad); err == nil {
			t.Errorf("parseRequest(%q) accepted", bad)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	r := NewRoot()
	fs := r.cmd.PersistentFlags()
	if err := r.g.applyEnv(fs, []string{"ETCDCTL_ENDPOINTS=a:1,b:2", "ETCDCTL_DIAL_TIMEOUT=7s", "ETCDCTL_API=3", "ETCDCTL_HEX=true"}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.g.endpoints, ",") != "a:1,b:2" || r.g.dialTimeout != 7*time.Second || !r.g.hex {
		t.Errorf("env not applied: %+v", r.g)
	}
	r = NewRoot()
	fs = r.cmd.PersistentFlags()
	if err := fs.Parse([]string{"--endpoints=x:1"}); err != nil {
		t.Fatal(err)
	}
	if err := r.g.applyEnv(fs, []string{"ETCDCTL_ENDPOINTS=a:1"}); err == nil || !strings.Contains(err.Error(), "conflicting environment variable") {
		t.Errorf("conflict not reported: %v", err)
	}
	r = NewRoot()
	if err := r.g.applyEnv(r.cmd.PersistentFlags(), []string{"ETCDCTL_WRITE_OUT=yaml"}); err == nil {
		t.Errorf("bad -w from env accepted")
	}
}

// writeCert writes a self-signed certificate and its key, returns paths.
func writeCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestTLSConfig(t *testing.T) {
	cert, key := writeCert(t, t.TempDir())
	g := globalFlags{insecureTransport: true}
	if c, err := g.tlsConfig([]string{"127.0.0.1:2379"}); c != nil || err != nil {
		t.Errorf("plain endpoint: %v, %v", c, err)
	}
	if c, err := g.tlsConfig([]string{"https://127.0.0.1:2379"}); c == nil || err != nil {
		t.Errorf("https endpoint: no TLS (%v)", err)
	}
	g = globalFlags{insecureTransport: true, cacert: cert, cert: cert, key: key, insecureSkipVerify: true}
	c, err := g.tlsConfig([]string{"127.0.0.1:2379"})
	if err != nil || c == nil || c.RootCAs == nil || len(c.Certificates) != 1 || !c.InsecureSkipVerify {
		t.Errorf("cert flags: %+v, %v", c, err)
	}
	if _, err := (&globalFlags{cert: cert}).tlsConfig(nil); err == nil {
		t.Errorf("--cert without --key accepted")
	}
	if _, err := (&globalFlags{cacert: key}).tlsConfig(nil); err == nil {
		t.Errorf("a key file as --cacert accepted")
	}
	if c, err := (&globalFlags{insecureTransport: false}).tlsConfig([]string{"x:1"}); c == nil || err != nil {
		t.Errorf("--insecure-transport=false: no TLS (%v)", err)
	}
}

// TestAddCommand checks the extension hook: an added command sees the
// ETCDCTL_* variables even with its own PersistentPreRunE, is listed in
// the help, and picks its exit code with a *CodeError.
func TestAddCommand(t *testing.T) {
	var r *Root
	var format string
	preRan := false
	svc := &cobra.Command{
		Use:               "services",
		Short:             "Lists the services the warden keeps",
		PersistentPreRunE: func(*cobra.Command, []string) error { preRan = true; return nil },
		RunE: func(_ *cobra.Command, args []string) error {
			format = r.g.writeOut
			if len(args) > 0 {
				return &CodeError{Code: ExitBadArgs, Err: errors.New("services takes no arguments")}
			}
			return nil
		},
	}
	r = NewRoot(svc)
	var out, errOut bytes.Buffer
	r.SetIO(strings.NewReader(""), &out, &errOut)
	if code := r.Execute([]string{"services"}, []string{"ETCDCTL_WRITE_OUT=json"}); code != 0 || !preRan || format != "json" {
		t.Errorf("services: exit %d, pre-run %v, format %q; stderr %s", code, preRan, format, errOut.String())
	}
	if code := r.Execute([]string{"services", "x"}, nil); code != ExitBadArgs || !strings.Contains(errOut.String(), "Error: services takes no arguments") {
		t.Errorf("services x: exit %d, stderr %q", code, errOut.String())
	}
	out.Reset()
	if code := r.Execute([]string{"--help"}, nil); code != 0 || !strings.Contains(out.String(), "\tservices ") {
		t.Errorf("help lacks services:\n%s", out.String())
	}
}
