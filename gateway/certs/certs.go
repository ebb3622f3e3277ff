// Package certs holds an ingress listener's TLS certificates: several
// key pairs from files, chosen by SNI, reloaded when the files change,
// served with modern defaults (TLS 1.2+, ECDHE and AEAD suites only, ALPN
// h2 and http/1.1).
//
// A Store is safe for concurrent use: handshakes read the current set
// through an atomic pointer; one goroutine (Watch) reloads it. A reload
// that fails (a half-written update, a key that does not match) keeps the
// previous set and logs the file at fault.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/outrider-mesh/outrider/internal/confval"
)

// Config is an ingress listener's tls section.
type Config struct {
	// Certificates are the key pairs served. The first is the default,
	// for clients that send no SNI or a name no certificate has. At
	// least one.
	Certificates []Certificate `yaml:"certificates"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// ALPN is the application protocols offered, in preference order.
	// Default ["h2", "http/1.1"].
	ALPN []string `yaml:"alpn"`
	// HSTS, when max_age is set, adds Strict-Transport-Security to every
	// response of the listener.
	HSTS HSTS `yaml:"hsts"`
	// RedirectHTTP, when set, is host:port of a plain-HTTP listener that
	// answers every request with a redirect to the same host and path
	// over HTTPS (308).
	RedirectHTTP string `yaml:"redirect_http"`
}

// Certificate is one key pair.
type Certificate struct {
	// CertFile is a PEM certificate chain, leaf first. Required.
	CertFile string `yaml:"cert_file"`
	// KeyFile is its PEM private key. Required.
	KeyFile string `yaml:"key_file"`
}

// HSTS is the Strict-Transport-Security policy.
type HSTS struct {
	// MaxAge is the policy's lifetime; 0 (default) sends no header.
	MaxAge time.Duration `yaml:"max_age"`
	// IncludeSubdomains and Preload add those directives.
	IncludeSubdomains bool `yaml:"include_subdomains"`
	Preload           bool `yaml:"preload"`
}

// Value is the header's value ("" when off).
func (h HSTS) Value() string {
	if h.MaxAge <= 0 {
		return ""
	}
	v := fmt.Sprintf("max-age=%d", int64(h.MaxAge/time.Second))
	if h.IncludeSubdomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v
}

// Validate checks the shape of c; New reads the files.
func (c Config) Validate() error {
	var errs []error
	if len(c.Certificates) == 0 {
		errs = append(errs, confval.Errorf("certificates", "at least one certificate is required"))
	}
	for i, p := range c.Certificates {
		if p.CertFile == "" {
			errs = append(errs, confval.Errorf(fmt.Sprintf("certificates[%d].cert_file", i), "required"))
		}
		if p.KeyFile == "" {
			errs = append(errs, confval.Errorf(fmt.Sprintf("certificates[%d].key_file", i), "required"))
		}
	}
	if _, err := minVersion(c.MinVersion); err != nil {
		errs = append(errs, confval.Errorf("min_version", "%v", err))
	}
	for i, p := range c.ALPN {
		if p == "" || len(p) > 255 {
			errs = append(errs, confval.Errorf(fmt.Sprintf("alpn[%d]", i), "want a protocol name such as h2 or http/1.1"))
		}
	}
	if c.HSTS.MaxAge < 0 {
		errs = append(errs, confval.Errorf("hsts.max_age", "negative"))
	}
	return errors.Join(errs...)
}

func minVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q: want 1.2 or 1.3", s)
}

// cipherSuites are the TLS 1.2 suites offered: ECDHE key exchange and
// AEAD ciphers only (Mozilla's "intermediate" profile). TLS 1.3 suites
// are not configurable in Go and are all AEAD.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Info describes one loaded certificate, for the admin API.
type Info struct {
	File     string    `json:"file"`
	Names    []string  `json:"names"`
	NotAfter time.Time `json:"not_after"`
	Serial   string    `json:"serial"`
}

// set is one loaded generation of the certificates.
type set struct {
	certs []*tls.Certificate
	exact map[string][]int // name -> indexes into certs
	wild  map[string][]int // "example.com" for *.example.com
	info  []Info
}

// Store serves the certificates of one listener.
type Store struct {
	cfg  Config
	log  *slog.Logger
	cur  atomic.Pointer[set]
	tls  *tls.Config
	hsts string
	now  func() time.Time
}

// Option configures New.
type Option func(*Store)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// New loads every certificate; an error names the entry and its file.
func New(cfg Config, opts ...Option) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, log: slog.New(slog.DiscardHandler), hsts: cfg.HSTS.Value(), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	st, err := load(cfg.Certificates)
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	mv, _ := minVersion(cfg.MinVersion)
	alpn := cfg.ALPN
	if len(alpn) == 0 {
		alpn = []string{"h2", "http/1.1"}
	}
	s.tls = &tls.Config{
		MinVersion:     mv,
		CipherSuites:   cipherSuites,
		NextProtos:     alpn,
		GetCertificate: s.GetCertificate,
	}
	return s, nil
}

func load(pairs []Certificate) (*set, error) {
	st := &set{exact: map[string][]int{}, wild: map[string][]int{}}
	for i, p := range pairs {
		c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			return nil, confval.Errorf(fmt.Sprintf("certificates[%d]", i), "loading %s and %s: %v", p.CertFile, p.KeyFile, err)
		}
		leaf := c.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, confval.Errorf(fmt.Sprintf("certificates[%d]", i), "parsing %s: %v", p.CertFile, err)
			}
			c.Leaf = leaf
		}
		names := slices.Clone(leaf.DNSNames)
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = append(names, leaf.Subject.CommonName)
		}
		for _, n := range names {
			n = strings.TrimSuffix(strings.ToLower(n), ".")
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				st.wild[rest] = append(st.wild[rest], i)
			} else {
				st.exact[n] = append(st.exact[n], i)
			}
		}
		st.certs = append(st.certs, &c)
		st.info = append(st.info, Info{File: p.CertFile, Names: names, NotAfter: leaf.NotAfter, Serial: leaf.SerialNumber.String()})
	}
	return st, nil
}

// TLSConfig is the listener's server configuration.
func (s *Store) TLSConfig() *tls.Config { return s.tls }

// HSTSValue is the Strict-Transport-Security value ("" when off).
func (s *Store) HSTSValue() string { return s.hsts }

// GetCertificate picks the certificate for the client's SNI: an exact
// name, else a wildcard for its parent, else the default (the first).
// Among several for one name, the first the client supports wins (an
// ECDSA and an RSA certificate for the same host).
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := s.cur.Load()
	name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	pick := func(idx []int) *tls.Certificate {
		for _, i := range idx {
			if hello.SupportsCertificate(st.certs[i]) == nil {
				return st.certs[i]
			}
		}
		if len(idx) > 0 {
			return st.certs[idx[0]]
		}
		return nil
	}
	if name != "" {
		if c := pick(st.exact[name]); c != nil {
			return c, nil
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if c := pick(st.wild[parent]); c != nil {
				return c, nil
			}
		}
	}
	return st.certs[0], nil
}

// Certificates describes the certificates served now.
func (s *Store) Certificates() []Info { return slices.Clone(s.cur.Load().info) }

// Reload reads every file again; on error the current set stays.
func (s *Store) Reload() error {
	st, err := load(s.cfg.Certificates)
	if err != nil {
		return err
	}
	old := s.cur.Swap(st)
	for i, in := range st.info {
		if old == nil || i >= len(old.info) || old.info[i].Serial != in.Serial {
			s.log.Info("ingress certificate loaded", "file", in.File, "names", in.Names, "not_after", in.NotAfter.UTC().Format(time.RFC3339), "serial", in.Serial)
		}
	}
	return nil
}

// pollInterval re-reads the files even without a file event.
const pollInterval = time.Minute

// Watch reloads the certificates when anything changes in their
// directories (Kubernetes swaps a Secret volume's files through a
// symlink, so directories are watched, not files), debounced, and every
// pollInterval. It blocks until ctx ends.
func (s *Store) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("certs: watching: %w", err)
	}
	defer w.Close()
	seen := map[string]bool{}
	for _, p := range s.cfg.Certificates {
		for _, d := range []string{filepath.Dir(p.CertFile), filepath.Dir(p.KeyFile)} {
			if !seen[d] {
				seen[d] = true
				if err := w.Add(d); err != nil {
					return fmt.Errorf("certs: watching %s: %w", d, err)
				}
			}
		}
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.Errors:
			s.log.Warn("certificate watch", "error", err)
			continue
		case <-w.Events:
			// Writers update a pair in several steps: wait for quiet.
			debounce.Reset(100 * time.Millisecond)
			continue
		case <-debounce.C:
		case <-tick.C:
		}
		if err := s.Reload(); err != nil {
			s.log.Error("ingress certificates not reloaded; serving the previous ones", "error", err)
		}
	}
}
