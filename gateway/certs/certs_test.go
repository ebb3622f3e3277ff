package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

var serial int64 = 100

// write issues a leaf for names into dir/base.crt and .key.
func (ca *testCA) write(t *testing.T, dir, base string, names ...string) Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	c := Certificate{CertFile: filepath.Join(dir, base+".crt"), KeyFile: filepath.Join(dir, base+".key")}
	writeAtomic(t, c.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeAtomic(t, c.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	return c
}

func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// serve runs a TLS listener with s's configuration answering "ok".
func serve(t *testing.T, s *Store) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(s.WithHSTS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok " + r.Proto)) })))
	// Not StartTLS: it would add httptest's own certificate, which Go
	// prefers to GetCertificate for clients without SNI.
	srv.Listener = tls.NewListener(srv.Listener, s.TLSConfig())
	srv.EnableHTTP2 = true
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// served is the first DNS name of the certificate a handshake with sni
// gets.
func served(t *testing.T, addr string, ca *testCA, cfg *tls.Config) (string, error) {
	t.Helper()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.RootCAs = ca.pool
	cfg.InsecureSkipVerify = true // the name is checked below, not by crypto/tls
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	cs := c.ConnectionState()
	return cs.PeerCertificates[0].DNSNames[0], nil
}

func TestSNISelectionAndPolicy(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	s, err := New(Config{Certificates: []Certificate{
		ca.write(t, dir, "default", "default.example.com"),
		ca.write(t, dir, "api", "api.example.com"),
		ca.write(t, dir, "wild", "*.apps.example.com"),
	}, HSTS: HSTS{MaxAge: 365 * 24 * time.Hour, IncludeSubdomains: true}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	for sni, want := range map[string]string{
		"api.example.com": "api.example.com", "API.Example.com.": "api.example.com",
		"x.apps.example.com": "*.apps.example.com", "a.b.apps.example.com": "default.example.com",
		"apps.example.com": "default.example.com", "unknown.test": "default.example.com", "": "default.example.com",
	} {
		got, err := served(t, addr, ca, &tls.Config{ServerName: sni})
		if err != nil || got != want {
			t.Errorf("SNI %q: served %q (%v), want %q", sni, got, err, want)
		}
	}
	for name, cfg := range map[string]*tls.Config{
		"TLS 1.1":      {MaxVersion: tls.VersionTLS11},
		"TLS 1.0":      {MaxVersion: tls.VersionTLS10},
		"CBC-only 1.2": {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}},
	} {
		if _, err := served(t, addr, ca, cfg); err == nil {
			t.Errorf("%s client was served", name)
		}
	}
	// ALPN h2 and HSTS through a real HTTP client.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "api.example.com"}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" {
		t.Errorf("negotiated %s, want HTTP/2.0", resp.Proto)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000; includeSubDomains" {
		t.Errorf("HSTS = %q", got)
	}
	if len(s.Certificates()) != 3 || s.Certificates()[1].Names[0] != "api.example.com" {
		t.Errorf("Certificates() = %+v", s.Certificates())
	}
}

func TestHotReload(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	// Kubernetes' layout: dir/tls.crt -> ..data/tls.crt, ..data -> a versioned directory.
	v1 := filepath.Join(dir, "v1")
	os.Mkdir(v1, 0o755)
	ca.write(t, v1, "tls", "one.example.com")
	if err := os.Symlink("v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	pair := Certificate{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	os.Symlink(filepath.Join("..data", "tls.crt"), pair.CertFile)
	os.Symlink(filepath.Join("..data", "tls.key"), pair.KeyFile)
	other := ca.write(t, t.TempDir(), "plain", "plain-one.example.com")

	s, err := New(Config{Certificates: []Certificate{pair, other}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Watch(ctx) }()
	// Watch returns once ctx ends: its goroutine does not outlive the test.
	defer func() { cancel(); <-done }()
	addr := serve(t, s)
	waitServed := func(sni, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := served(t, addr, ca, &tls.Config{ServerName: sni})
			if err == nil && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("SNI %s: served %q (%v), want %q", sni, got, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitServed("one.example.com", "one.example.com")
	// The symlink swap.
	v2 := filepath.Join(dir, "v2")
	os.Mkdir(v2, 0o755)
	ca.write(t, v2, "tls", "two.example.com")
	os.Symlink("v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitServed("two.example.com", "two.example.com")
	// In place.
	ca.write(t, filepath.Dir(other.CertFile), "plain", "plain-two.example.com")
	waitServed("plain-two.example.com", "plain-two.example.com")
	// A broken replacement keeps what is served.
	writeAtomic(t, other.CertFile, []byte("not a certificate"))
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "certificates[1]") || !strings.Contains(err.Error(), other.CertFile) {
		t.Fatalf("broken reload: %v", err)
	}
	waitServed("plain-two.example.com", "plain-two.example.com")
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "certificates: at least one") {
		t.Errorf("no certificates: %v", err)
	}
	err := Config{Certificates: []Certificate{{CertFile: "x"}}, MinVersion: "1.1"}.Validate()
	if err == nil || !strings.Contains(err.Error(), "certificates[0].key_file: required") || !strings.Contains(err.Error(), "min_version") {
		t.Errorf("validate: %v", err)
	}
	if _, err := New(Config{Certificates: []Certificate{{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}}}); err == nil || !strings.Contains(err.Error(), "/nonexistent.crt") {
		t.Errorf("missing file: %v", err)
	}
}

func TestRedirect(t *testing.T) {
	h := RedirectHandler("8443")
	for _, c := range []struct{ host, target, want string }{
		{"example.com", "/a/b?x=1", "https://example.com:8443/a/b?x=1"},
		{"example.com:8080", "/", "https://example.com:8443/"},
		{"[2001:db8::1]:80", "/p", "https://[2001:db8::1]:8443/p"},
	} {
		r := httptest.NewRequest("GET", "http://x"+c.target, nil)
		r.Host = c.host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusPermanentRedirect || w.Header().Get("Location") != c.want {
			t.Errorf("%s%s: %d %q, want %q", c.host, c.target, w.Code, w.Header().Get("Location"), c.want)
		}
	}
	for _, host := range []string{"", "evil.com/x", "a b", "ex\"ample"} {
		r := httptest.NewRequest("GET", "http://x/", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest {
			t.Errorf("host %q: %d %q", host, w.Code, w.Header().Get("Location"))
		}
	}
	r := httptest.NewRequest("GET", "http://x/", nil)
	r.Host = "example.com"
	w := httptest.NewRecorder()
	RedirectHandler("443").ServeHTTP(w, r)
	if w.Header().Get("Location") != "https://example.com/" {
		t.Errorf("port 443: %q", w.Header().Get("Location"))
	}
}

func BenchmarkGetCertificate(b *testing.B) {
	t := &testing.T{}
	ca := newCA(t)
	dir := b.TempDir()
	var pairs []Certificate
	for i := range 20 {
		pairs = append(pairs, ca.write(t, dir, "c"+string(rune('a'+i)), "host"+string(rune('a'+i))+".example.com"))
	}
	s, err := New(Config{Certificates: pairs})
	if err != nil {
		b.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{ServerName: "hostk.example.com", SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedVersions: []uint16{tls.VersionTLS13}, SupportedCurves: []tls.CurveID{tls.CurveP256}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetCertificate(hello); err != nil {
			b.Fatal(err)
		}
	}
}
