package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/outrider-mesh/outrider/internal/confval"
)

// Config is the TLS termination of an ingress listener. The zero Config
// means "no TLS" (the listener serves plain HTTP); setting anything else
// requires at least one certificate.
type Config struct {
	// Certificates are the serving certificates, each a PEM certificate
	// chain (leaf first) and its PEM private key. The certificate for a
	// connection is chosen by the name the client asks for (SNI) among the
	// DNS and IP subject alternative names of the leaves; the first entry
	// is served when no certificate matches. The files are read when the
	// listener starts and again whenever they change.
	Certificates []Certificate `yaml:"certificates"`
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or
	// "1.3".
	MinVersion string `yaml:"min_version"`
	// CipherSuites restricts the TLS 1.2 cipher suites, by their IANA
	// names ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"). Only ECDHE key
	// exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305) is allowed.
	// Default: all six of them (Mozilla "intermediate"). TLS 1.3 suites
	// are not configurable.
	CipherSuites []string `yaml:"cipher_suites"`
	// ALPN is the application protocols offered, in order of preference:
	// "h2" and/or "http/1.1". Default: ["h2", "http/1.1"].
	ALPN []string `yaml:"alpn"`
	// RejectUnknownSNI fails the handshake when the client names a server
	// that no certificate covers, instead of serving the first
	// certificate. A client sending no name still gets the first one.
	RejectUnknownSNI bool `yaml:"reject_unknown_sni"`
	// ClientAuth asks clients for a certificate (mutual TLS at the edge).
	// Off when absent.
	ClientAuth *ClientAuth `yaml:"client_auth"`
	// Redirect runs a plain HTTP listener that redirects every request to
	// HTTPS. Off when http_address is empty.
	Redirect Redirect `yaml:"redirect"`
	// HSTS adds Strict-Transport-Security to responses served over TLS.
	// Off when max_age is 0.
	HSTS HSTS `yaml:"hsts"`
}

// Certificate is one certificate and key pair.
type Certificate struct {
	// CertFile is the PEM certificate chain, leaf first.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key (PKCS #1, PKCS #8 or SEC 1) of the
	// leaf: RSA, ECDSA or Ed25519.
	KeyFile string `yaml:"key_file"`
}

// ClientAuth is client certificate verification.
type ClientAuth struct {
	// CAFile is the PEM bundle of CAs that client certificates must chain
	// to. Required. Reloaded with the certificates.
	CAFile string `yaml:"ca_file"`
	// Mode is "require" (default: a client without a valid certificate
	// fails the handshake) or "optional" (a client may send none; one it
	// sends must be valid).
	Mode string `yaml:"mode"`
}

// Redirect is the HTTP to HTTPS redirect listener.
type Redirect struct {
	// HTTPAddress is the plain HTTP listen address ("host:port", ":80").
	// Empty: no redirect listener.
	HTTPAddress string `yaml:"http_address"`
	// Status is the redirect status: 308 (default, keeps the method and
	// body) or 301.
	Status int `yaml:"status"`
}

// HSTS is the Strict-Transport-Security response header (RFC 6797).
type HSTS struct {
	// MaxAge is how long browsers remember to use HTTPS only ("8760h").
	// 0: no header. Whole seconds.
	MaxAge time.Duration `yaml:"max_age"`
	// IncludeSubdomains extends the policy to every subdomain.
	IncludeSubdomains bool `yaml:"include_subdomains"`
	// Preload adds the "preload" token (hstspreload.org); it requires
	// include_subdomains and a max_age of at least one year.
	Preload bool `yaml:"preload"`
}

// Enabled reports whether c configures TLS at all (a certificate or any
// other field is set); the zero Config is off.
func (c Config) Enabled() bool {
	return len(c.Certificates) > 0 || c.MinVersion != "" || len(c.CipherSuites) > 0 ||
		len(c.ALPN) > 0 || c.RejectUnknownSNI || c.ClientAuth != nil ||
		c.Redirect != (Redirect{}) || c.HSTS != (HSTS{})
}

// allowedSuites are the TLS 1.2 suites that may be configured: ECDHE key
// exchange, AEAD cipher. Both of Go's names of the ChaCha20 suites are
// accepted.
var allowedSuites = map[string]uint16{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256":       tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256":         tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384":       tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384":         tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305":        tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305":          tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// defaultSuites is the Mozilla "intermediate" TLS 1.2 list.
var defaultSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

var defaultALPN = []string{"h2", "http/1.1"}

// Validate checks the shape of c: every problem, as field errors. Whether
// the files exist and hold matching pairs is checked by New.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, confval.Errorf(path, format, args...))
	}
	if len(c.Certificates) == 0 {
		add("certificates", "at least one certificate (cert_file and key_file) is required to serve TLS")
	}
	for i, p := range c.Certificates {
		if strings.TrimSpace(p.CertFile) == "" {
			add(fmt.Sprintf("certificates[%d].cert_file", i), "required: the path of a PEM certificate chain")
		}
		if strings.TrimSpace(p.KeyFile) == "" {
			add(fmt.Sprintf("certificates[%d].key_file", i), "required: the path of the PEM private key")
		}
	}
	switch c.MinVersion {
	case "", "1.2", "1.3":
	case "1.0", "1.1":
		add("min_version", "%q is not accepted: TLS 1.0 and 1.1 are deprecated (RFC 8996); want \"1.2\" or \"1.3\"", c.MinVersion)
	default:
		add("min_version", "%q is not a TLS version; want \"1.2\" or \"1.3\"", c.MinVersion)
	}
	if len(c.CipherSuites) > 0 && c.MinVersion == "1.3" {
		add("cipher_suites", "applies to TLS 1.2 only, and min_version is \"1.3\" (TLS 1.3 suites are not configurable); remove it")
	}
	for i, name := range c.CipherSuites {
		if _, ok := allowedSuites[name]; !ok {
			add(fmt.Sprintf("cipher_suites[%d]", i), "%q is not allowed; want one of the ECDHE AEAD suites: %s", name, strings.Join(suiteNames(), ", "))
		}
	}
	seen := map[string]bool{}
	for i, p := range c.ALPN {
		switch {
		case p != "h2" && p != "http/1.1":
			add(fmt.Sprintf("alpn[%d]", i), "%q is not served by this listener; want \"h2\" or \"http/1.1\"", p)
		case seen[p]:
			add(fmt.Sprintf("alpn[%d]", i), "%q is listed twice", p)
		}
		seen[p] = true
	}
	if ca := c.ClientAuth; ca != nil {
		if strings.TrimSpace(ca.CAFile) == "" {
			add("client_auth.ca_file", "required: the PEM bundle of CAs client certificates must chain to")
		}
		switch ca.Mode {
		case "", "require", "optional":
		default:
			add("client_auth.mode", "%q is not a mode; want \"require\" or \"optional\"", ca.Mode)
		}
	}
	if a := c.Redirect.HTTPAddress; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil {
			add("redirect.http_address", "%q is not host:port (\":80\", \"0.0.0.0:80\")", a)
		} else if !validPort(port) {
			add("redirect.http_address", "%q: port %q is not a number from 1 to 65535", a, port)
		}
	}
	switch c.Redirect.Status {
	case 0, 301, 308:
	default:
		add("redirect.status", "%d is not accepted; want 308 (keeps the method) or 301", c.Redirect.Status)
	}
	h := c.HSTS
	switch {
	case h.MaxAge < 0:
		add("hsts.max_age", "must not be negative; 0 turns the header off")
	case h.MaxAge > 0 && h.MaxAge < time.Second:
		add("hsts.max_age", "%s is less than a second; HSTS counts whole seconds", h.MaxAge)
	}
	if h.MaxAge == 0 && (h.IncludeSubdomains || h.Preload) {
		add("hsts.max_age", "required when include_subdomains or preload is set (0 means no header)")
	}
	if h.Preload {
		if !h.IncludeSubdomains {
			add("hsts.preload", "requires include_subdomains: true (hstspreload.org)")
		}
		if h.MaxAge > 0 && h.MaxAge < 365*24*time.Hour {
			add("hsts.preload", "requires a max_age of at least one year (8760h); got %s", h.MaxAge)
		}
	}
	return errors.Join(errs...)
}

func suiteNames() []string {
	out := make([]string, len(defaultSuites))
	for i, id := range defaultSuites {
		out[i] = tls.CipherSuiteName(id)
	}
	return out
}

func validPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	n, _ := strconv.Atoi(s)
	return n >= 1 && n <= 65535
}
