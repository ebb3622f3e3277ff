package certs

import (
	"crypto/tls"
	"strings"
	"testing"
)

func FuzzGetCertificate(f *testing.F) {
	f.Add("a.example.com")
	f.Add("B.EXAMPLE.COM.")
	f.Add("*.example.com")
	f.Add(".")
	f.Add("..example.com")
	f.Add("")
	fx := newFixture(f)
	s, err := New(fx.cfg)
	if err != nil {
		f.Fatal(err)
	}
	known := map[string]bool{fx.def: true, fx.exact: true, fx.wildcard: true}
	f.Fuzz(func(t *testing.T, name string) {
		c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil || c == nil {
			t.Fatalf("%q: %v", name, err)
		}
		if !known[c.Leaf.SerialNumber.Text(16)] {
			t.Fatalf("%q: unknown certificate", name)
		}
		// For a valid host name, a certificate chosen by match covers it
		// by the rules clients verify with. (An invalid SNI name, which
		// no client would accept a certificate for anyway, may get any.)
		if c != s.cur.Load().def && validHostName(strings.TrimSuffix(name, ".")) {
			if err := c.Leaf.VerifyHostname(name); err != nil {
				t.Fatalf("%q: served %v, which does not cover it: %v", name, c.Leaf.DNSNames, err)
			}
		}
	})
}

func BenchmarkGetCertificate(b *testing.B) {
	ca, dir := newCA(b, "bench CA"), b.TempDir()
	var cfg Config
	for i, n := range []string{"default.test", "a.example.com", "*.example.com"} {
		c, k, _ := ca.leaf(b, leafOpts{}, n)
		cfg.Certificates = append(cfg.Certificates, writePair(b, dir, string(rune('a'+i)), c, k))
	}
	c, k, _ := ca.leaf(b, leafOpts{keyType: "rsa"}, "dual.example.com")
	cfg.Certificates = append(cfg.Certificates, writePair(b, dir, "dual-rsa", c, k))
	c, k, _ = ca.leaf(b, leafOpts{}, "dual.example.com")
	cfg.Certificates = append(cfg.Certificates, writePair(b, dir, "dual-ec", c, k))
	s, err := New(cfg, WithMetrics(NewMetrics(nil), "bench"))
	if err != nil {
		b.Fatal(err)
	}
	hello := func(name string) *tls.ClientHelloInfo {
		return &tls.ClientHelloInfo{
			ServerName:        name,
			CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			SupportedVersions: []uint16{tls.VersionTLS12},
			SupportedCurves:   []tls.CurveID{tls.CurveP256},
			SupportedPoints:   []uint8{0},
			SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		}
	}
	for _, name := range []string{"a.example.com", "Mixed.Example.com", "b.example.com", "unknown.org", "dual.example.com"} {
		h := hello(name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.GetCertificate(h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
