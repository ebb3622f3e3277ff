package certs

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/internal/confval"
	"go.yaml.in/yaml/v3"
)

func TestValidate(t *testing.T) {
	pair := []Certificate{{CertFile: "a.crt", KeyFile: "a.key"}}
	year := 365 * 24 * time.Hour
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // "path: message fragment"
	}{
		{"zero is off", Config{}, nil},
		{"minimal", Config{Certificates: pair}, nil},
		{"full", Config{
			Certificates: pair, MinVersion: "1.2", ALPN: []string{"http/1.1"},
			CipherSuites: []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"},
			ClientAuth:   &ClientAuth{CAFile: "ca.pem", Mode: "optional"},
			Redirect:     Redirect{HTTPAddress: ":80", Status: 301},
			HSTS:         HSTS{MaxAge: year, IncludeSubdomains: true, Preload: true},
		}, nil},
		{"settings without certificates", Config{HSTS: HSTS{MaxAge: time.Hour}}, []string{"certificates: at least one"}},
		{"empty files", Config{Certificates: []Certificate{{}, {CertFile: "b.crt"}}}, []string{
			"certificates[0].cert_file: required", "certificates[0].key_file: required", "certificates[1].key_file: required"}},
		{"old version", Config{Certificates: pair, MinVersion: "1.1"}, []string{"min_version: \"1.1\" is not accepted"}},
		{"bad version", Config{Certificates: pair, MinVersion: "TLS1.3"}, []string{"min_version: \"TLS1.3\" is not a TLS version"}},
		{"CBC suite", Config{Certificates: pair, CipherSuites: []string{"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_AES_128_GCM_SHA256"}}, []string{
			"cipher_suites[0]: \"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA\" is not allowed", "cipher_suites[1]: "}},
		{"suites with 1.3", Config{Certificates: pair, MinVersion: "1.3", CipherSuites: []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}}, []string{"cipher_suites: applies to TLS 1.2 only"}},
		{"ALPN", Config{Certificates: pair, ALPN: []string{"h2", "h3", "h2"}}, []string{"alpn[1]: \"h3\"", "alpn[2]: \"h2\" is listed twice"}},
		{"client auth", Config{Certificates: pair, ClientAuth: &ClientAuth{Mode: "request"}}, []string{"client_auth.ca_file: required", "client_auth.mode: \"request\""}},
		{"redirect", Config{Certificates: pair, Redirect: Redirect{HTTPAddress: "80", Status: 302}}, []string{"redirect.http_address: \"80\" is not host:port", "redirect.status: 302"}},
		{"redirect port", Config{Certificates: pair, Redirect: Redirect{HTTPAddress: ":http"}}, []string{"redirect.http_address: \":http\": port"}},
		{"hsts negative", Config{Certificates: pair, HSTS: HSTS{MaxAge: -time.Second}}, []string{"hsts.max_age: must not be negative"}},
		{"hsts sub-second", Config{Certificates: pair, HSTS: HSTS{MaxAge: time.Millisecond}}, []string{"hsts.max_age: 1ms is less than a second"}},
		{"hsts flags without max_age", Config{Certificates: pair, HSTS: HSTS{IncludeSubdomains: true}}, []string{"hsts.max_age: required"}},
		{"preload", Config{Certificates: pair, HSTS: HSTS{MaxAge: time.Hour, Preload: true}}, []string{
			"hsts.preload: requires include_subdomains", "hsts.preload: requires a max_age of at least one year"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fields := confval.Fields(tc.cfg.Validate())
			var got []string
			for _, f := range fields {
				got = append(got, f.Error())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("errors %q, want %d matching %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("error %d: %q, want prefix %q", i, got[i], w)
				}
			}
		})
	}
}

func TestDefaultSuitesAreECDHEAEAD(t *testing.T) {
	secure := map[uint16]bool{}
	for _, cs := range tls.CipherSuites() {
		secure[cs.ID] = true
	}
	for _, id := range defaultSuites {
		name := tls.CipherSuiteName(id)
		if !secure[id] || !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20")) {
			t.Errorf("default suite %s is not a secure ECDHE AEAD suite", name)
		}
	}
	for name, id := range allowedSuites {
		if !strings.HasPrefix(tls.CipherSuiteName(id), "TLS_ECDHE_") || !secure[id] {
			t.Errorf("allowed %s", name)
		}
	}
}

// TestREADMEExample decodes the README's example (with yaml.v3, whose
// rules the project's decoder follows for these types) and validates it,
// so the documented keys are the struct's tags.
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), "```yaml\n")
	example, _, _ := strings.Cut(rest, "```")
	var doc struct {
		TLS Config `yaml:"tls"`
	}
	dec := yaml.NewDecoder(strings.NewReader(example))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	c := doc.TLS
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Certificates) != 3 || c.ClientAuth == nil || c.ClientAuth.Mode != "optional" ||
		c.HSTS.MaxAge != 8760*time.Hour || !c.HSTS.IncludeSubdomains || c.Redirect.Status != 308 ||
		c.Redirect.HTTPAddress != ":80" || len(c.ALPN) != 2 {
		t.Errorf("decoded %+v", c)
	}
}
