package certs

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fixture is a store over three pairs: a default (RSA, default.test), an
// exact name (a.example.com) and a wildcard (*.example.com).
type fixture struct {
	ca                   *testCA
	dir                  string
	cfg                  Config
	def, exact, wildcard string // serials
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{ca: newCA(t, "test CA"), dir: t.TempDir()}
	c, k, def := f.ca.leaf(t, leafOpts{keyType: "rsa"}, "default.test")
	f.def = def
	p0 := writePair(t, f.dir, "default", c, k)
	c, k, f.exact = f.ca.leaf(t, leafOpts{}, "a.example.com")
	p1 := writePair(t, f.dir, "exact", c, k)
	c, k, f.wildcard = f.ca.leaf(t, leafOpts{}, "*.example.com")
	p2 := writePair(t, f.dir, "wildcard", c, k)
	f.cfg = Config{Certificates: []Certificate{p0, p1, p2}}
	return f
}

func TestSNISelection(t *testing.T) {
	f := newFixture(t)
	s, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, s.TLSConfig())
	for _, tc := range []struct {
		sni, want string
		verify    bool
	}{
		{"a.example.com", f.exact, true},
		{"A.Example.COM", f.exact, true},
		{"b.example.com", f.wildcard, true},
		{"x.y.example.com", f.def, false}, // a wildcard covers one label only
		{"example.com", f.def, false},
		{"unknown.org", f.def, false},
		{"default.test", f.def, true},
		{"", f.def, false}, // no SNI
	} {
		if got := servedSerial(t, addr, tc.sni); got != tc.want {
			t.Errorf("SNI %q: served serial %s, want %s", tc.sni, got, tc.want)
		}
		if tc.verify {
			// A real client verifying the chain and the name accepts it.
			if _, err := handshake(addr, &tls.Config{ServerName: tc.sni, RootCAs: f.ca.pool()}); err != nil {
				t.Errorf("SNI %q: verified handshake: %v", tc.sni, err)
			}
		}
	}
}

func TestSNILookupNormalizes(t *testing.T) {
	f := newFixture(t)
	s, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"a.example.com.":  f.exact,
		"B.EXAMPLE.COM.":  f.wildcard,
		".example.com":    f.def,
		"*.example.com":   f.wildcard,
		"a.example.com..": f.def,
	} {
		c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Leaf.SerialNumber.Text(16); got != want {
			t.Errorf("%q: serial %s, want %s", name, got, want)
		}
	}
}

func TestNoSNIMatchesLocalIP(t *testing.T) {
	f := newFixture(t)
	c, k, ipSerial := f.ca.leaf(t, leafOpts{}, "127.0.0.1")
	f.cfg.Certificates = append(f.cfg.Certificates, writePair(t, f.dir, "ip", c, k))
	s, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, s.TLSConfig())
	if got := servedSerial(t, addr, ""); got != ipSerial {
		t.Errorf("no SNI on 127.0.0.1: serial %s, want the IP SAN certificate %s", got, ipSerial)
	}
	// Go's client verifies the IP SAN when dialling an address.
	if _, err := handshake(addr, &tls.Config{RootCAs: f.ca.pool()}); err != nil {
		t.Errorf("verified handshake by IP: %v", err)
	}
}

func TestRejectUnknownSNI(t *testing.T) {
	f := newFixture(t)
	f.cfg.RejectUnknownSNI = true
	s, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, s.TLSConfig())
	if _, err := handshake(addr, &tls.Config{ServerName: "unknown.org", InsecureSkipVerify: true}); err == nil {
		t.Error("unknown SNI: handshake succeeded, want refused")
	}
	if got := servedSerial(t, addr, ""); got != f.def {
		t.Errorf("no SNI: serial %s, want the default %s", got, f.def)
	}
	if got := servedSerial(t, addr, "b.example.com"); got != f.wildcard {
		t.Errorf("known SNI: serial %s, want %s", got, f.wildcard)
	}
}

func TestKeyTypeSelection(t *testing.T) {
	ca, dir := newCA(t, "test CA"), t.TempDir()
	c, k, rsaSerial := ca.leaf(t, leafOpts{keyType: "rsa"}, "dual.example.com")
	p0 := writePair(t, dir, "rsa", c, k)
	c, k, ecSerial := ca.leaf(t, leafOpts{}, "dual.example.com")
	p1 := writePair(t, dir, "ecdsa", c, k)
	s, err := New(Config{Certificates: []Certificate{p0, p1}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, s.TLSConfig())
	for _, tc := range []struct {
		name  string
		suite uint16
		want  string
	}{
		{"ECDSA-only client", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, ecSerial},
		{"RSA-only client", tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, rsaSerial},
	} {
		cs, err := handshake(addr, &tls.Config{
			ServerName: "dual.example.com", RootCAs: ca.pool(),
			MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tc.suite},
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := cs.PeerCertificates[0].SerialNumber.Text(16); got != tc.want {
			t.Errorf("%s: serial %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestProtocolVersionsAndSuites(t *testing.T) {
	f := newFixture(t)
	s, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, s.TLSConfig())
	base := func() *tls.Config { return &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool()} }

	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c := base()
		c.MinVersion, c.MaxVersion = v, v
		if _, err := handshake(addr, c); err == nil {
			t.Errorf("%s client: handshake succeeded, want refused", tls.VersionName(v))
		}
	}
	cbc := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
	c := base()
	c.MaxVersion, c.CipherSuites = tls.VersionTLS12, cbc
	if _, err := handshake(addr, c); err == nil {
		t.Error("TLS 1.2 client offering only CBC suites: handshake succeeded, want refused")
	}
	// The same client with an AEAD suite is served: the refusal above is
	// about the suites.
	c = base()
	c.MaxVersion, c.CipherSuites = tls.VersionTLS12, append(cbc, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
	cs, err := handshake(addr, c)
	if err != nil {
		t.Fatalf("TLS 1.2 client with ChaCha20: %v", err)
	}
	if cs.Version != tls.VersionTLS12 || cs.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Errorf("negotiated %s %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
	}
	// Configured suites restrict further.
	f.cfg.CipherSuites = []string{"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"}
	s2, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr2 := serveTLS(t, s2.TLSConfig())
	c = base()
	c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	if _, err := handshake(addr2, c); err == nil {
		t.Error("suite outside cipher_suites: handshake succeeded, want refused")
	}
}

func TestMinVersion13(t *testing.T) {
	f := newFixture(t)
	f.cfg.MinVersion = "1.3"
	s, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, s.TLSConfig())
	c := &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool(), MaxVersion: tls.VersionTLS12}
	if _, err := handshake(addr, c); err == nil {
		t.Error("TLS 1.2 client against min_version 1.3: handshake succeeded")
	}
	cs, err := handshake(addr, &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool()})
	if err != nil || cs.Version != tls.VersionTLS13 {
		t.Errorf("TLS 1.3 client: %v, version %x", err, cs.Version)
	}
}

// TestHTTP2AndHSTS serves net/http over the store's config: ALPN picks
// h2, and HSTS is on TLS responses only.
func TestHTTP2AndHSTS(t *testing.T) {
	f := newFixture(t)
	f.cfg.HSTS = HSTS{MaxAge: 365 * 24 * time.Hour, IncludeSubdomains: true}
	s, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.Proto))
	})
	srv := httptest.NewUnstartedServer(s.HSTS(backend))
	srv.TLS = s.TLSConfig()
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool()},
		ForceAttemptHTTP2: true,
	}}
	resp, err := client.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || resp.TLS.NegotiatedProtocol != "h2" {
		t.Errorf("proto %s, ALPN %q; want HTTP/2.0 over h2", resp.Proto, resp.TLS.NegotiatedProtocol)
	}
	if got, want := resp.Header.Get("Strict-Transport-Security"), "max-age=31536000; includeSubDomains"; got != want {
		t.Errorf("HSTS %q, want %q", got, want)
	}
	// ALPN at the TLS level: an h2 and http/1.1 client gets h2.
	addr := serveTLS(t, s.TLSConfig())
	cs, err := handshake(addr, &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool(), NextProtos: []string{"http/1.1", "h2"}})
	if err != nil || cs.NegotiatedProtocol != "h2" {
		t.Errorf("ALPN: %v, negotiated %q, want h2", err, cs.NegotiatedProtocol)
	}

	plain := httptest.NewServer(s.HSTS(backend))
	defer plain.Close()
	resp, err = http.Get(plain.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get("Strict-Transport-Security"); v != "" {
		t.Errorf("plain HTTP response carries HSTS %q", v)
	}
}

func TestHSTSValue(t *testing.T) {
	year := 365 * 24 * time.Hour
	for _, tc := range []struct {
		h    HSTS
		want string
	}{
		{HSTS{}, ""},
		{HSTS{MaxAge: 90 * time.Second}, "max-age=90"},
		{HSTS{MaxAge: 1500 * time.Millisecond}, "max-age=1"},
		{HSTS{MaxAge: year, IncludeSubdomains: true, Preload: true}, "max-age=31536000; includeSubDomains; preload"},
	} {
		if got := tc.h.Value(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.h, got, tc.want)
		}
	}
	// Off: the handler is returned unchanged.
	s := &Store{}
	h := http.NewServeMux()
	if got, ok := s.HSTS(h).(*http.ServeMux); !ok || got != h {
		t.Error("HSTS off does not return next unchanged")
	}
}

func TestClientAuth(t *testing.T) {
	f := newFixture(t)
	caFile := f.dir + "/clients.pem"
	if err := os.WriteFile(caFile, f.ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	cc, ck, _ := f.ca.leaf(t, leafOpts{client: true})
	good, err := tls.X509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	other := newCA(t, "other CA")
	oc, ok, _ := other.leaf(t, leafOpts{client: true})
	bad, _ := tls.X509KeyPair(oc, ok)

	for _, mode := range []string{"require", "optional"} {
		cfg := f.cfg
		cfg.ClientAuth = &ClientAuth{CAFile: caFile, Mode: mode}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		addr := serveTLS(t, s.TLSConfig())
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			client := func(certs ...tls.Certificate) *tls.Config {
				return &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool(), Certificates: certs, MaxVersion: v}
			}
			if _, err := handshake(addr, client(good)); err != nil {
				t.Errorf("%s %s: valid client certificate refused: %v", mode, tls.VersionName(v), err)
			}
			if _, err := handshake(addr, client(bad)); err == nil {
				t.Errorf("%s %s: certificate from another CA accepted", mode, tls.VersionName(v))
			}
			_, err := handshake(addr, client())
			if mode == "require" && err == nil {
				t.Errorf("require %s: client without a certificate accepted", tls.VersionName(v))
			}
			if mode == "optional" && err != nil {
				t.Errorf("optional %s: client without a certificate refused: %v", tls.VersionName(v), err)
			}
		}
	}
}

func TestNewErrors(t *testing.T) {
	f := newFixture(t)
	missing := f.cfg
	missing.Certificates = append([]Certificate(nil), f.cfg.Certificates...)
	missing.Certificates[1].CertFile = f.dir + "/nope.crt"
	mismatched := f.cfg
	mismatched.Certificates = append([]Certificate(nil), f.cfg.Certificates...)
	mismatched.Certificates[2].KeyFile = f.cfg.Certificates[1].KeyFile
	garbage := f.dir + "/garbage.crt"
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := f.cfg
	bad.Certificates = append([]Certificate(nil), f.cfg.Certificates...)
	bad.Certificates[0].CertFile = garbage
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"missing file", missing, []string{"certificates[1]: cert_file " + f.dir + "/nope.crt"}},
		{"key of another pair", mismatched, []string{"certificates[2]: ", "wildcard.crt", "exact.key"}},
		{"not PEM", bad, []string{"certificates[0]: ", "garbage.crt"}},
		{"zero config", Config{}, []string{"certificates: at least one"}},
		{"invalid shape", Config{MinVersion: "1.0"}, []string{"min_version", "certificates"}},
	} {
		_, err := New(tc.cfg)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", tc.name, err, w)
			}
		}
	}
}

func TestCertificatesInfo(t *testing.T) {
	f := newFixture(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s, err := New(f.cfg, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	infos := s.Certificates()
	if len(infos) != 3 {
		t.Fatalf("%d infos", len(infos))
	}
	i := infos[2]
	if i.File != f.cfg.Certificates[2].CertFile || i.KeyFile != f.cfg.Certificates[2].KeyFile ||
		i.Serial != f.wildcard || len(i.Names) != 1 || i.Names[0] != "*.example.com" ||
		i.KeyType != "ECDSA" || !i.LoadedAt.Equal(now) || i.NotAfter.IsZero() || !strings.Contains(i.Issuer, "test CA") {
		t.Errorf("info %+v", i)
	}
	if infos[0].KeyType != "RSA" {
		t.Errorf("default key type %q", infos[0].KeyType)
	}
	infos[2].Names[0] = "changed"
	if s.Certificates()[2].Names[0] != "*.example.com" {
		t.Error("Certificates shares its Names slices with the store")
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	now := time.Now()
	// The exact pair expires in exactly ten days by the injected clock.
	c, k, _ := f.ca.leaf(t, leafOpts{notAfter: now.Add(240 * time.Hour).Truncate(time.Second)}, "a.example.com")
	writePair(t, f.dir, "exact", c, k)
	clock := func() time.Time { return now.Truncate(time.Second) }
	s, err := New(f.cfg, WithMetrics(m, "public"), WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, s.TLSConfig())
	servedSerial(t, addr, "a.example.com")
	servedSerial(t, addr, "b.example.com")
	servedSerial(t, addr, "nothing.org")
	servedSerial(t, addr, "nothing.org")
	for match, want := range map[string]float64{"exact": 1, "wildcard": 1, "default": 2, "rejected": 0} {
		if got := metricValue(t, reg, "outrider_gateway_certs_selections_total", "match", match); got != want {
			t.Errorf("selections{match=%s} = %v, want %v", match, got, want)
		}
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	writePair(t, f.dir, "exact", []byte("broken"), k)
	if err := s.Reload(); err == nil {
		t.Fatal("reload of a broken file: no error")
	}
	for outcome, want := range map[string]float64{"unchanged": 1, "error": 1, "changed": 0} {
		if got := metricValue(t, reg, "outrider_gateway_certs_reloads_total", "outcome", outcome); got != want {
			t.Errorf("reloads{outcome=%s} = %v, want %v", outcome, got, want)
		}
	}
	var expiry float64
	found := false
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "outrider_gateway_certs_expiry_seconds" {
			continue
		}
		if n := len(mf.GetMetric()); n != 3 {
			t.Errorf("%d expiry series, want 3", n)
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "file" && l.GetValue() == f.cfg.Certificates[1].CertFile {
					expiry, found = mm.GetGauge().GetValue(), true
				}
			}
		}
	}
	if !found || expiry != 240*3600 {
		t.Errorf("expiry of %s: %v (found %v), want 864000", f.cfg.Certificates[1].CertFile, expiry, found)
	}
	// A second store for the same listener and files (a configuration
	// reload) does not make the scrape fail on duplicate series.
	c, k, _ = f.ca.leaf(t, leafOpts{}, "a.example.com")
	writePair(t, f.dir, "exact", c, k)
	s2, err := New(f.cfg, WithMetrics(m, "public"), WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if n := seriesCount(t, reg, "outrider_gateway_certs_expiry_seconds"); n != 3 {
		t.Errorf("%d expiry series with two stores, want 3", n)
	}
	s2.metrics.unregister(s2)
	// A store that stopped running is no longer reported.
	s.metrics.unregister(s)
	if n := seriesCount(t, reg, "outrider_gateway_certs_expiry_seconds"); n != 0 {
		t.Errorf("%d expiry series after unregister", n)
	}
}

func TestNewWarnsExpired(t *testing.T) {
	ca, dir := newCA(t, "test CA"), t.TempDir()
	c, k, _ := ca.leaf(t, leafOpts{notAfter: time.Now().Add(-time.Minute)}, "old.example.com")
	var logs bytes.Buffer
	_, err := New(Config{Certificates: []Certificate{writePair(t, dir, "old", c, k)}},
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatalf("an expired certificate is served (with a warning), got %v", err)
	}
	if !strings.Contains(logs.String(), "expired") || !strings.Contains(logs.String(), "old.crt") {
		t.Errorf("log %q", logs.String())
	}
}

// metricValue is the value of the series of name whose label has value
// (0 when there is none), from reg.
func metricValue(t *testing.T, reg prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

func seriesCount(t *testing.T, reg prometheus.Gatherer, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
