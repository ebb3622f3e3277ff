package filesource

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testTD  = "example.org"
	otherTD = "other.org"
	testID  = "spiffe://" + testTD + "/ns/default/sa/web"
	otherID = "spiffe://" + otherTD + "/ns/default/sa/api"
)

// waitTimeout bounds every wait for the source to reach a state.
const waitTimeout = mtlstest.WaitTimeout

// certPEM and keyPEM encode an SVID as the files hold it (PKCS#8 key).
func certPEM(t *testing.T, svid *x509svid.SVID) []byte {
	t.Helper()
	c, _, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func keyPEM(t *testing.T, svid *x509svid.SVID) []byte {
	t.Helper()
	_, k, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func bundlePEM(b *x509bundle.Bundle) []byte {
	var out []byte
	for _, c := range b.X509Authorities() {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func bundleJSON(t *testing.T, b *x509bundle.Bundle) []byte {
	t.Helper()
	out, err := spiffebundle.FromX509Bundle(b).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeFile replaces path atomically: a temporary file in the same
// directory, renamed over it.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// writeInPlace rewrites path in place (truncate, then write).
func writeInPlace(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fixture is a directory with an SVID of example.org and its bundle.
type fixture struct {
	ca     *mtlstest.CA
	svid   *x509svid.SVID
	dir    string
	cert   string
	key    string
	bundle string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{ca: mtlstest.NewCA(t, testTD), dir: t.TempDir()}
	f.cert, f.key, f.bundle = filepath.Join(f.dir, "svid.pem"), filepath.Join(f.dir, "svid-key.pem"), filepath.Join(f.dir, "bundle.pem")
	f.svid = f.ca.SVID(t, testID)
	writeFile(t, f.cert, certPEM(t, f.svid))
	writeFile(t, f.key, keyPEM(t, f.svid))
	writeFile(t, f.bundle, bundlePEM(f.ca.Bundle()))
	return f
}

func (f *fixture) config() Config {
	return Config{CertFile: f.cert, KeyFile: f.key, Bundles: map[string][]string{testTD: {f.bundle}}}
}

// rotate writes a new SVID from the same CA, with write (writeFile or
// writeInPlace).
func (f *fixture) rotate(t *testing.T, write func(*testing.T, string, []byte)) *x509svid.SVID {
	t.Helper()
	svid := f.ca.SVID(t, testID)
	write(t, f.cert, certPEM(t, svid))
	write(t, f.key, keyPEM(t, svid))
	return svid
}

type logs = testutil.Logs

// newSource returns a Source that learns of changes only through file
// events (the poll interval is an hour) unless opts say otherwise.
func newSource(t *testing.T, cfg Config, l *logs, opts ...Option) *Source {
	t.Helper()
	return New(cfg, append([]Option{WithLogger(l.Logger()), WithPollInterval(time.Hour), WithBackoff(5*time.Millisecond, 50*time.Millisecond)}, opts...)...)
}

func serial(t *testing.T, s *Source) string {
	t.Helper()
	svid, err := s.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	return serialOf(svid)
}

func serialOf(svid *x509svid.SVID) string { return svid.Certificates[0].SerialNumber.Text(16) }

// handshake runs a TLS handshake between two endpoints that both present
// src's SVID and verify with its bundles.
func handshake(src mtls.Source, want spiffeid.ID) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	srv := tls.Server(c1, mtls.ServerConfig(src, nil, nil))
	cli := tls.Client(c2, mtls.ClientConfig(src, want, nil))
	errc := make(chan error, 1)
	go func() {
		err := srv.HandshakeContext(ctx)
		if err != nil {
			c1.Close()
		}
		errc <- err
	}()
	err := cli.HandshakeContext(ctx)
	if err != nil {
		c2.Close()
	}
	return errors.Join(err, <-errc)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := Config{CertFile: "svid.pem", KeyFile: "key.pem", Bundles: map[string][]string{testTD: {"bundle.pem"}}}
	tests := []struct {
		name  string
		edit  func(*Config)
		wants []string // substrings; none means valid
	}{
		{"valid", func(*Config) {}, nil},
		{"federated and several files", func(c *Config) { c.Bundles[otherTD] = []string{"a.pem", "b.json"} }, nil},
		{"trust domain as a SPIFFE ID", func(c *Config) { c.Bundles = map[string][]string{"spiffe://example.org": {"b.pem"}} }, nil},
		{"no cert", func(c *Config) { c.CertFile = "" }, []string{"identity.files.cert: required"}},
		{"no key", func(c *Config) { c.KeyFile = "" }, []string{"identity.files.key: required"}},
		{"no bundles", func(c *Config) { c.Bundles = nil }, []string{"identity.files.bundles: required"}},
		{"nothing", func(c *Config) { *c = Config{} }, []string{
			"identity.files.cert: required", "identity.files.key: required", "identity.files.bundles: required"}},
		{"bad trust domain", func(c *Config) { c.Bundles["Example.ORG"] = []string{"b.pem"} }, []string{
			`identity.files.bundles: "Example.ORG" is not a trust domain name`}},
		{"no file for a trust domain", func(c *Config) { c.Bundles[otherTD] = nil }, []string{
			`identity.files.bundles["other.org"]: required`}},
		{"empty file name", func(c *Config) { c.Bundles[otherTD] = []string{"a.pem", ""} }, []string{
			`identity.files.bundles["other.org"][1]: empty file name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := good
			cfg.Bundles = map[string][]string{testTD: {"bundle.pem"}}
			tt.edit(&cfg)
			err := cfg.Validate()
			if len(tt.wants) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, want := range tt.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate: %v, want %q", err, want)
				}
			}
			// Run returns the configuration error at once.
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if err := New(cfg).Run(ctx); err == nil || !strings.Contains(err.Error(), tt.wants[0]) || ctx.Err() != nil {
				t.Errorf("Run: %v, want at once %q", err, tt.wants[0])
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var l logs
	s := newSource(t, f.config(), &l)
	if st := s.Status(); st.Source != Name || st.Endpoint != f.cert || st.SPIFFEID != "" {
		t.Errorf("Status before Run = %+v", st)
	}
	mtlstest.Run(t, s)
	mtlstest.WaitReady(t, s)

	if got := serial(t, s); got != serialOf(f.svid) {
		t.Errorf("serial %s, want %s", got, serialOf(f.svid))
	}
	cert, err := s.Certificate()
	if err != nil || cert.Leaf.SerialNumber.Cmp(f.svid.Certificates[0].SerialNumber) != 0 {
		t.Errorf("Certificate: %v", err)
	}
	b, err := s.GetX509BundleForTrustDomain(f.ca.TrustDomain())
	if err != nil || !b.Equal(f.ca.Bundle()) {
		t.Errorf("own bundle: %v", err)
	}
	_, err = s.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString(otherTD))
	if want := `no X.509 bundle for trust domain "other.org"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("unknown trust domain: %v, want %s", err, want)
	}
	st := s.Status()
	if st.Source != Name || st.Endpoint != f.cert || st.SPIFFEID != testID || st.TrustDomain != testTD ||
		st.Serial != serialOf(f.svid) || strings.Join(st.TrustDomains, ",") != testTD || st.Rotations != 0 ||
		st.LastError != "" || st.Updated.IsZero() || !st.NotBefore.Equal(f.svid.Certificates[0].NotBefore) {
		t.Errorf("Status = %+v", st)
	}
	loaded := l.Records(t, "SVID loaded")
	if len(loaded) != 1 || loaded[0]["level"] != "INFO" || loaded[0]["spiffe_id"] != testID ||
		loaded[0]["serial"] != serialOf(f.svid) || loaded[0]["not_after"] == nil || loaded[0]["identity"] != Name {
		t.Errorf("'SVID loaded' logs = %v", loaded)
	}
	if err := handshake(s, f.svid.ID); err != nil {
		t.Errorf("handshake: %v", err)
	}
}

// Not parallel: AllocsPerRun. Handshakes call the getters; they must not
// allocate.
func TestGettersDoNotAllocate(t *testing.T) {
	ca := mtlstest.NewCA(t, testTD)
	s := New(Config{})
	if _, err := s.store.Update(ca.SVID(t, testID), []*x509bundle.Bundle{ca.Bundle()}); err != nil {
		t.Fatal(err)
	}
	td := ca.TrustDomain()
	if n := testing.AllocsPerRun(100, func() {
		_, _ = s.GetX509SVID()
		_, _ = s.Certificate()
		_, _ = s.GetX509BundleForTrustDomain(td)
	}); n != 0 {
		t.Errorf("the getters allocate %v times per call", n)
	}
}

func TestRotate(t *testing.T) {
	t.Parallel()
	for _, w := range []struct {
		name  string
		write func(*testing.T, string, []byte)
	}{
		{"atomic rename", writeFile},
		{"in-place write", writeInPlace},
	} {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			var l logs
			s := newSource(t, f.config(), &l)
			mtlstest.Run(t, s)
			mtlstest.WaitReady(t, s)
			cert1, _ := s.Certificate()

			next := f.rotate(t, w.write)
			mtlstest.WaitFor(t, "the new SVID", func() bool { return serial(t, s) == serialOf(next) })
			if cert2, _ := s.Certificate(); cert2 == cert1 || cert2.Leaf.SerialNumber.Cmp(next.Certificates[0].SerialNumber) != 0 {
				t.Error("Certificate not rotated")
			}
			if st := s.Status(); st.Rotations != 1 || st.LastError != "" {
				t.Errorf("Status after rotation = %+v", st)
			}
			rotated := l.Records(t, "SVID rotated")
			if len(rotated) != 1 || rotated[0]["serial"] != serialOf(next) || rotated[0]["previous_serial"] != serialOf(f.svid) {
				t.Errorf("'SVID rotated' logs = %v", rotated)
			}
			if err := handshake(s, next.ID); err != nil {
				t.Errorf("handshake after rotation: %v", err)
			}
		})
	}
}

// Kubernetes mounts a secret as a directory whose files are symlinks into
// "..data", itself a symlink to a timestamped directory; an update writes a
// new timestamped directory and renames a new "..data" link over the old.
func TestKubernetesSecretSwap(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	dir := t.TempDir()
	publish := func(version string, svid *x509svid.SVID) {
		t.Helper()
		v := filepath.Join(dir, version)
		if err := os.Mkdir(v, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(v, "tls.crt"), certPEM(t, svid))
		writeFile(t, filepath.Join(v, "tls.key"), keyPEM(t, svid))
		writeFile(t, filepath.Join(v, "ca.crt"), bundlePEM(ca.Bundle()))
		if err := os.Symlink(version, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	first := ca.SVID(t, testID)
	publish("..2026_01_01_00_00_00.1", first)
	for _, name := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	var l logs
	s := newSource(t, Config{
		CertFile: filepath.Join(dir, "tls.crt"),
		KeyFile:  filepath.Join(dir, "tls.key"),
		Bundles:  map[string][]string{testTD: {filepath.Join(dir, "ca.crt")}},
	}, &l)
	mtlstest.Run(t, s)
	mtlstest.WaitReady(t, s)

	second := ca.SVID(t, testID)
	publish("..2026_01_01_01_00_00.2", second)
	mtlstest.WaitFor(t, "the swapped SVID", func() bool { return serial(t, s) == serialOf(second) })
}

func TestReload(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var l logs
	s := newSource(t, f.config(), &l)
	s.watch = false // only Reload can notice a change within the hour
	s.Reload()      // before Run: served when Run starts
	mtlstest.Run(t, s)
	mtlstest.WaitReady(t, s)
	mtlstest.WaitFor(t, "the early Reload", func() bool { return len(l.Records(t, "identity files reloaded; unchanged")) == 1 })

	next := f.rotate(t, writeFile)
	s.Reload()
	mtlstest.WaitFor(t, "the reloaded SVID", func() bool { return serial(t, s) == serialOf(next) })

	// Identical content: not a rotation, not a new certificate.
	cert, _ := s.Certificate()
	writeInPlace(t, f.cert, certPEM(t, next))
	s.Reload()
	mtlstest.WaitFor(t, "the unchanged Reload", func() bool { return len(l.Records(t, "identity files reloaded; unchanged")) == 2 })
	if st := s.Status(); st.Rotations != 1 {
		t.Errorf("Rotations = %d, want 1", st.Rotations)
	}
	if c, _ := s.Certificate(); c != cert {
		t.Error("the certificate was rebuilt for identical files")
	}
	if got := len(l.Records(t, "SVID rotated")); got != 1 {
		t.Errorf("%d 'SVID rotated' logs, want 1", got)
	}
}

func TestPolling(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var l logs
	s := newSource(t, f.config(), &l, WithPollInterval(10*time.Millisecond))
	s.watch = false
	mtlstest.Run(t, s)
	mtlstest.WaitReady(t, s)
	next := f.rotate(t, writeFile)
	mtlstest.WaitFor(t, "the polled SVID", func() bool { return serial(t, s) == serialOf(next) })
	if got := len(l.Records(t, "SVID rotated")); got != 1 {
		t.Errorf("%d 'SVID rotated' logs after polling unchanged files, want 1", got)
	}
}

func TestBadUpdatesKeepThePreviousIdentity(t *testing.T) {
	t.Parallel()
	other := mtlstest.NewCA(t, otherTD)
	tests := []struct {
		name     string
		damage   func(t *testing.T, f *fixture)
		wantFile func(f *fixture) string
		wantErr  string
	}{
		{
			name:     "missing certificate file",
			damage:   func(t *testing.T, f *fixture) { os.Remove(f.cert) },
			wantFile: func(f *fixture) string { return f.cert },
			wantErr:  "no such file",
		},
		{
			name: "half-written certificate",
			damage: func(t *testing.T, f *fixture) {
				pemText := certPEM(t, f.ca.SVID(t, testID))
				writeInPlace(t, f.cert, pemText[:len(pemText)/2])
			},
			wantFile: func(f *fixture) string { return f.cert },
			wantErr:  "malformed or incomplete",
		},
		{
			name: "half-written key",
			damage: func(t *testing.T, f *fixture) {
				k := keyPEM(t, f.svid)
				writeInPlace(t, f.key, k[:len(k)-20])
			},
			wantFile: func(f *fixture) string { return f.key },
			wantErr:  "malformed or incomplete",
		},
		{
			name:     "key does not match the certificate",
			damage:   func(t *testing.T, f *fixture) { writeFile(t, f.key, keyPEM(t, f.ca.SVID(t, testID))) },
			wantFile: func(f *fixture) string { return f.key },
			wantErr:  "does not match the certificate",
		},
		{
			name:     "bundle does not parse",
			damage:   func(t *testing.T, f *fixture) { writeFile(t, f.bundle, []byte("not a bundle\n")) },
			wantFile: func(f *fixture) string { return f.bundle },
			wantErr:  `bundle of trust domain "example.org"`,
		},
		{
			name:     "JSON bundle does not parse",
			damage:   func(t *testing.T, f *fixture) { writeFile(t, f.bundle, []byte(`{"keys": [`)) },
			wantFile: func(f *fixture) string { return f.bundle },
			wantErr:  "unable to parse JWKS",
		},
		{
			name: "SVID of a trust domain without a bundle",
			damage: func(t *testing.T, f *fixture) {
				svid := other.SVID(t, otherID)
				writeFile(t, f.cert, certPEM(t, svid))
				writeFile(t, f.key, keyPEM(t, svid))
			},
			wantFile: func(f *fixture) string { return f.cert },
			wantErr:  `no bundle for the SVID's trust domain "other.org"`,
		},
		{
			name:     "certificate that is not an SVID",
			damage:   func(t *testing.T, f *fixture) { writeCertAndKey(t, f, f.ca.SVID(t, testID, mtlstest.NoURI())) },
			wantFile: func(f *fixture) string { return f.cert },
			wantErr:  "not a valid X.509-SVID",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			good := map[string][]byte{}
			for _, p := range []string{f.cert, f.key, f.bundle} {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				good[p] = b
			}
			var l logs
			s := newSource(t, f.config(), &l)
			mtlstest.Run(t, s)
			mtlstest.WaitReady(t, s)

			tt.damage(t, f)
			// Damage spanning two files may be seen half done first. Status
			// shows a failure only once it is logged, so the logs are read
			// below without waiting again.
			mtlstest.WaitFor(t, "the failure in Status", func() bool { return strings.Contains(s.Status().LastError, tt.wantErr) })
			st := s.Status()
			if !strings.Contains(st.LastError, tt.wantFile(f)) || st.LastErrorAt.IsZero() {
				t.Errorf("LastError = %q at %v, want it to name %s", st.LastError, st.LastErrorAt, tt.wantFile(f))
			}
			if got := serial(t, s); got != serialOf(f.svid) {
				t.Errorf("serial %s, want the previous %s", got, serialOf(f.svid))
			}
			if _, err := s.GetX509BundleForTrustDomain(f.ca.TrustDomain()); err != nil {
				t.Errorf("own bundle lost: %v", err)
			}
			if err := handshake(s, f.svid.ID); err != nil {
				t.Errorf("handshake with the previous identity: %v", err)
			}
			logged := false
			for _, r := range l.Records(t, "cannot load the identity files") {
				if strings.Contains(r["error"].(string), tt.wantErr) {
					logged = r["level"] == "ERROR" && r["file"] == tt.wantFile(f) && r["keeping_svid"] == testID
					break
				}
			}
			if !logged {
				t.Errorf("failure logs = %v, want ERROR naming %s and the SVID kept",
					l.Records(t, "cannot load the identity files"), tt.wantFile(f))
			}

			for p, b := range good {
				writeFile(t, p, b)
			}
			mtlstest.WaitFor(t, "the repaired files", func() bool { return s.Status().LastError == "" })
			if st := s.Status(); st.Rotations != 0 {
				t.Errorf("Rotations = %d after restoring the same files, want 0", st.Rotations)
			}
		})
	}
}

func writeCertAndKey(t *testing.T, f *fixture, svid *x509svid.SVID) {
	t.Helper()
	writeFile(t, f.cert, certPEM(t, svid))
	writeFile(t, f.key, keyPEM(t, svid))
}

func TestFirstLoadFailureRetries(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	good := certPEM(t, f.svid)
	if err := os.Remove(f.cert); err != nil {
		t.Fatal(err)
	}
	var l logs
	s := newSource(t, f.config(), &l)
	s.watch = false // the retries alone must find the file
	mtlstest.Run(t, s)
	mtlstest.WaitFor(t, "several attempts", func() bool { return len(l.Records(t, "cannot load the identity files")) >= 3 })
	select {
	case <-s.Ready():
		t.Fatal("ready without a certificate")
	default:
	}
	if st := s.Status(); !strings.Contains(st.LastError, f.cert) {
		t.Errorf("LastError = %q, want it to name %s", st.LastError, f.cert)
	}
	attempts := l.Records(t, "cannot load the identity files")
	if attempts[0]["level"] != "ERROR" || attempts[1]["level"] != "DEBUG" || attempts[2]["attempt"] != float64(3) {
		t.Errorf("attempt logs = %v, want one ERROR then DEBUG for the same failure", attempts)
	}
	if _, err := s.Certificate(); !errors.Is(err, mtls.ErrNotReady) {
		t.Errorf("Certificate: %v, want ErrNotReady", err)
	}

	writeFile(t, f.cert, good)
	mtlstest.WaitReady(t, s)
	if st := s.Status(); st.LastError != "" || st.SPIFFEID != testID {
		t.Errorf("Status = %+v", st)
	}
}

func TestFirstLoadFailureThenFileEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if err := os.Remove(f.key); err != nil {
		t.Fatal(err)
	}
	var l logs
	s := newSource(t, f.config(), &l, WithBackoff(time.Hour, time.Hour))
	mtlstest.Run(t, s)
	mtlstest.WaitFor(t, "the failure", func() bool { return s.Status().LastError != "" })
	writeFile(t, f.key, keyPEM(t, f.svid))
	mtlstest.WaitReady(t, s) // the file event, not the hour-long retry nor the poll
}

func TestTwoTrustDomainsAndJSONBundles(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := mtlstest.NewCA(t, otherTD)
	otherNext := mtlstest.NewCA(t, otherTD) // other.org's next root, in a second file
	ownJSON := filepath.Join(f.dir, "bundle.json")
	otherJSON := filepath.Join(f.dir, "other.json")
	otherPEM := filepath.Join(f.dir, "other-next.pem")
	writeFile(t, ownJSON, append([]byte("\n  "), bundleJSON(t, f.ca.Bundle())...))
	writeFile(t, otherJSON, bundleJSON(t, other.Bundle()))
	writeFile(t, otherPEM, bundlePEM(otherNext.Bundle()))
	cfg := Config{CertFile: f.cert, KeyFile: f.key, Bundles: map[string][]string{
		testTD:  {ownJSON},
		otherTD: {otherJSON, otherPEM},
	}}
	var l logs
	s := newSource(t, cfg, &l)
	mtlstest.Run(t, s)
	mtlstest.WaitReady(t, s)

	if got := strings.Join(s.Status().TrustDomains, ","); got != "example.org,other.org" {
		t.Errorf("TrustDomains = %s", got)
	}
	b, err := s.GetX509BundleForTrustDomain(other.TrustDomain())
	if err != nil || len(b.X509Authorities()) != 2 {
		t.Fatalf("other.org bundle: %v, %v; want both roots", b, err)
	}
	for _, ca := range []*mtlstest.CA{other, otherNext} {
		peer := ca.SVID(t, otherID)
		if _, _, err := x509svid.Verify(peer.Certificates, s); err != nil {
			t.Errorf("verifying a federated peer: %v", err)
		}
	}
	if err := handshake(s, f.svid.ID); err != nil {
		t.Errorf("handshake: %v", err)
	}

	// A bundle file changing rotates no SVID, but is applied.
	writeFile(t, otherPEM, bundlePEM(other.Bundle()))
	mtlstest.WaitFor(t, "the merged bundle", func() bool {
		b, err := s.GetX509BundleForTrustDomain(other.TrustDomain())
		return err == nil && len(b.X509Authorities()) == 1
	})
	if st := s.Status(); st.Rotations != 0 {
		t.Errorf("Rotations = %d for a bundle change", st.Rotations)
	}
	if got := l.Records(t, "trust bundles updated"); len(got) != 1 {
		t.Errorf("'trust bundles updated' logs = %v", got)
	}
}

func TestParseBundle(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	td := ca.TrustDomain()
	jwtOnly, err := spiffebundle.FromJWTBundle(jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{
		"k1": ca.Root().PublicKey,
	})).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	root := bundlePEM(ca.Bundle())
	tests := []struct {
		name    string
		data    []byte
		want    int
		wantErr string
	}{
		{"PEM", root, 1, ""},
		{"PEM with text around", append(append([]byte("subject=CN = root\n"), root...), "trailer\n"...), 1, ""},
		{"PEM, two roots", append(root, bundlePEM(mtlstest.NewCA(t, testTD).Bundle())...), 2, ""},
		{"JSON", bundleJSON(t, ca.Bundle()), 1, ""},
		{"JSON after spaces", append([]byte(" \n\t"), bundleJSON(t, ca.Bundle())...), 1, ""},
		{"JSON with JWT keys only", jwtOnly, 0, "without X.509 authorities"},
		{"empty", nil, 0, "no PEM data"},
		{"truncated PEM", root[:len(root)-30], 0, "1 of 1 PEM blocks are malformed or incomplete"},
		{"a key, no certificate", keyPEM(t, ca.SVID(t, testID)), 0, "no CA certificate"},
		{"garbage DER in PEM", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}), 0, "certificate 1"},
		{"broken JSON", []byte(`{"keys":`), 0, "unable to parse JWKS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			certs, err := parseBundle(td, tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(certs) != tt.want {
				t.Fatalf("got %d certificates, err %v; want %d", len(certs), err, tt.want)
			}
		})
	}
}

func TestParseSVIDKeyFormats(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	svid := ca.SVID(t, testID)
	cert := certPEM(t, svid)
	ecKey := svid.PrivateKey.(*ecdsa.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert, rsaKey := rsaSVID(t)
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	tests := []struct {
		name     string
		cert     []byte
		key      []byte
		wantErr  string
		wantFile string
	}{
		{"PKCS#8", cert, keyPEM(t, svid), "", ""},
		{"SEC1 EC", cert, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), "", ""},
		{"SEC1 EC after EC PARAMETERS (openssl ecparam)", cert,
			append(ecParams, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...), "", ""},
		{"PKCS#1 RSA", rsaCert, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), "", ""},
		{"certificate and key in one file", cert, append(append([]byte{}, cert...), keyPEM(t, svid)...), "", ""},
		{"encrypted key", cert, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("x")}), "encrypted", "key.pem"},
		{"no key", cert, cert, "no private key PEM block", "key.pem"},
		{"broken SEC1 key", cert, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("x")}), "EC PRIVATE KEY", "key.pem"},
		{"no certificate", keyPEM(t, svid), keyPEM(t, svid), "no CERTIFICATE PEM block", "cert.pem"},
		{"not PEM", []byte("hello"), keyPEM(t, svid), "no PEM data", "cert.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseSVID("cert.pem", tt.cert, "key.pem", tt.key)
			if tt.wantErr != "" {
				var fe *fileError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &fe) || fe.file != tt.wantFile {
					t.Fatalf("err = %v, want %q on %s", err, tt.wantErr, tt.wantFile)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ID.String() != testID {
				t.Errorf("ID = %s", got.ID)
			}
		})
	}
}

func TestExpiredSVIDIsLoadedWithAWarning(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	writeCertAndKey(t, f, f.ca.SVID(t, testID, mtlstest.Expired()))
	var l logs
	s := newSource(t, f.config(), &l)
	mtlstest.Run(t, s)
	mtlstest.WaitReady(t, s)
	if got := l.Records(t, "the SVID is outside its validity period"); len(got) != 1 || got[0]["level"] != "WARN" {
		t.Errorf("validity warnings = %v", got)
	}
}

// rsaSVID returns an SVID certificate (PEM) with an RSA key, signed by a
// throwaway ECDSA root of example.org (mtlstest issues ECDSA keys only).
func rsaSVID(t *testing.T) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rsa test root"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := url.Parse(testID)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, URIs: []*url.URL{id},
	}
	der, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, &key.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key
}

func TestPEMBlocks(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	one := bundlePEM(ca.Bundle())
	two := append(append([]byte{}, one...), bundlePEM(mtlstest.NewCA(t, testTD).Bundle())...)
	broken := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("abc")})
	broken = []byte(strings.Replace(string(broken), "YWJj", "Y!!!", 1)) // bad base64
	tests := []struct {
		name    string
		data    []byte
		want    int
		wantErr string
	}{
		{"one", one, 1, ""},
		{"two", two, 2, ""},
		{"second cut short", two[:len(two)-40], 0, "1 of 2 PEM blocks"},
		{"malformed block before a good one", append(broken, one...), 0, "1 of 2 PEM blocks"},
		{"no PEM", []byte("nothing"), 0, "no PEM data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			blocks, err := pemBlocks(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(blocks) != tt.want {
				t.Fatalf("got %d blocks, err %v; want %d", len(blocks), err, tt.want)
			}
		})
	}
}

func TestRunReturnsOnCancel(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var l logs
	s := newSource(t, f.config(), &l)
	stop := mtlstest.Run(t, s)
	mtlstest.WaitReady(t, s)
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v, want already running", err)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	if _, err := s.Certificate(); err != nil {
		t.Errorf("Certificate after Run returned: %v", err)
	}
	// Run may start again once it has returned.
	stop = mtlstest.Run(t, s)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("second Run returned %v, want context.Canceled", err)
	}
}

func TestRelevantEvents(t *testing.T) {
	t.Parallel()
	s := New(Config{CertFile: "/etc/id/svid.pem", KeyFile: "/etc/id/key.pem", Bundles: map[string][]string{
		testTD: {"/etc/bundles/b.pem"},
	}})
	l := newLoader(s)
	tests := []struct {
		ev   fsnotify.Event
		want bool
	}{
		{fsnotify.Event{Name: "/etc/id/svid.pem", Op: fsnotify.Write}, true},
		{fsnotify.Event{Name: "/etc/id/key.pem", Op: fsnotify.Create}, true},
		{fsnotify.Event{Name: "/etc/bundles/b.pem", Op: fsnotify.Rename}, true},
		{fsnotify.Event{Name: "/etc/id/..data", Op: fsnotify.Create}, true},
		{fsnotify.Event{Name: "/etc/id", Op: fsnotify.Remove}, true},
		{fsnotify.Event{Name: "/etc/id/svid.pem", Op: fsnotify.Write | fsnotify.Chmod}, true},
		{fsnotify.Event{Name: "/etc/id/svid.pem", Op: fsnotify.Chmod}, false},
		{fsnotify.Event{Name: "/etc/id/other.pem", Op: fsnotify.Write}, false},
		{fsnotify.Event{Name: "/etc/bundles/svid.pem", Op: fsnotify.Write}, false},
	}
	for _, tt := range tests {
		if got := l.relevant(tt.ev); got != tt.want {
			t.Errorf("relevant(%v) = %v, want %v", tt.ev, got, tt.want)
		}
	}
}
