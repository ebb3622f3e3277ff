package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrider-mesh/outrider/internal/confval"
)

// Store holds the serving certificates of one listener and selects one
// per handshake. Its methods are safe for concurrent use: handshakes read
// an immutable snapshot through an atomic pointer; reloads (Run, Reload)
// build a new snapshot and swap it in.
type Store struct {
	cfg      Config // defaults applied
	log      *slog.Logger
	now      func() time.Time
	debounce time.Duration
	poll     time.Duration
	metrics  *storeMetrics

	base       *tls.Config
	clientAuth tls.ClientAuthType // 0 when client_auth is off

	reloadMu sync.Mutex // serializes reloads
	cur      atomic.Pointer[snapshot]
	running  atomic.Bool
}

// snapshot is one generation of loaded certificates. Never mutated after
// it is published.
type snapshot struct {
	entries  []entry
	exact    map[string][]*tls.Certificate // lower-case DNS name or IP → certificates, config order
	wildcard map[string][]*tls.Certificate // "example.com" for "*.example.com"
	def      *tls.Certificate
	clientCA *x509.CertPool // nil when client_auth is off
	caErr    string
}

type entry struct {
	cert *tls.Certificate
	info Info
}

// Info describes one configured certificate as it is served now, for the
// admin API.
type Info struct {
	// File and KeyFile are the configured paths.
	File    string `json:"file"`
	KeyFile string `json:"key_file"`
	// Names are the DNS and IP subject alternative names of the leaf, as
	// indexed for SNI (lower case).
	Names     []string  `json:"names"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Serial is the leaf's serial number in hexadecimal.
	Serial  string `json:"serial"`
	Issuer  string `json:"issuer"`
	KeyType string `json:"key_type"` // "RSA", "ECDSA", "Ed25519"
	// LoadedAt is when this certificate was first read from the files.
	LoadedAt time.Time `json:"loaded_at"`
	// LastError is why the latest reload of this pair failed ("" when it
	// succeeded); the certificate above is then the previous one.
	LastError string `json:"last_error,omitempty"`
}

// Option configures New.
type Option func(*Store)

// WithLogger sets the logger for reloads (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) {
		if l != nil {
			s.log = l
		}
	}
}

// WithMetrics reports reloads, certificate selections and expiry to m,
// labelled by listener (a name from configuration). nil m: no metrics.
func WithMetrics(m *Metrics, listener string) Option {
	return func(s *Store) {
		if m != nil {
			s.metrics = m.forStore(listener)
		}
	}
}

// WithClock sets the clock for LoadedAt and the expiry gauge (tests).
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

// WithDebounce sets how long Run waits after the last file event before
// reloading (default 250ms), so that a pair written in two steps is read
// once, complete.
func WithDebounce(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.debounce = d
		}
	}
}

// WithPollInterval sets how often Run reloads without a file event, for
// missed events and file systems that send none (default 1m).
func WithPollInterval(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.poll = d
		}
	}
}

// New validates cfg and loads every certificate pair. An error names the
// entry and the file ("certificates[1]: cert_file /etc/tls/b.crt: ...").
// The Store serves these certificates until Run or Reload sees new ones.
func New(cfg Config, opts ...Option) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Certificates) == 0 {
		return nil, confval.Errorf("certificates", "at least one certificate (cert_file and key_file) is required to serve TLS")
	}
	cfg = withDefaults(cfg)
	s := &Store{
		cfg:      cfg,
		log:      slog.Default(),
		now:      time.Now,
		debounce: 250 * time.Millisecond,
		poll:     time.Minute,
	}
	for _, o := range opts {
		o(s)
	}
	snap, errs := s.load(nil)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.cur.Store(snap)
	s.base = s.buildConfig()
	if s.metrics != nil {
		s.metrics.register(s)
	}
	for _, e := range snap.entries {
		s.warnValidity(e)
	}
	return s, nil
}

func withDefaults(cfg Config) Config {
	cfg.Certificates = slices.Clone(cfg.Certificates)
	if cfg.MinVersion == "" {
		cfg.MinVersion = "1.2"
	}
	if len(cfg.ALPN) == 0 {
		cfg.ALPN = defaultALPN
	}
	cfg.ALPN = slices.Clone(cfg.ALPN)
	if cfg.ClientAuth != nil {
		ca := *cfg.ClientAuth
		if ca.Mode == "" {
			ca.Mode = "require"
		}
		cfg.ClientAuth = &ca
	}
	if cfg.Redirect.Status == 0 {
		cfg.Redirect.Status = 308
	}
	return cfg
}

// Config returns the configuration with defaults applied.
func (s *Store) Config() Config { return s.cfg }

// TLSConfig returns a server configuration that selects the certificate
// by SNI from the latest loaded set: MinVersion, the ECDHE AEAD suites,
// NextProtos from alpn. Each call returns a new value the caller may
// change (not GetCertificate or VerifyConnection).
func (s *Store) TLSConfig() *tls.Config { return s.base.Clone() }

func (s *Store) buildConfig() *tls.Config {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     slices.Clone(s.cfg.ALPN),
		GetCertificate: s.GetCertificate,
	}
	if s.cfg.MinVersion == "1.3" {
		c.MinVersion = tls.VersionTLS13
	}
	if len(s.cfg.CipherSuites) > 0 {
		for _, name := range s.cfg.CipherSuites {
			c.CipherSuites = append(c.CipherSuites, allowedSuites[name])
		}
	} else {
		c.CipherSuites = slices.Clone(defaultSuites)
	}
	if ca := s.cfg.ClientAuth; ca != nil {
		// The CA pool is reloadable, so verification is ours, in
		// VerifyConnection: it also runs on session resumption.
		c.ClientAuth = tls.RequireAnyClientCert
		if ca.Mode == "optional" {
			c.ClientAuth = tls.RequestClientCert
		}
		s.clientAuth = c.ClientAuth
		c.VerifyConnection = s.verifyClient
	}
	return c
}

// verifyClient checks the client's chain against the current CA pool.
func (s *Store) verifyClient(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		if s.clientAuth == tls.RequestClientCert {
			return nil
		}
		return errors.New("certs: a client certificate is required")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         s.cur.Load().clientCA,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("certs: client certificate: %w", err)
	}
	return nil
}

// GetCertificate is tls.Config.GetCertificate: the certificate for the
// client's SNI name (exact name, then a wildcard one label deep), or, for
// a connection without SNI, one whose IP SAN is the local address; else
// the first configured certificate (or an error with reject_unknown_sni).
// When several certificates cover the name, the first whose key the
// client supports (ECDSA or RSA) is chosen. It does not block.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	snap := s.cur.Load()
	name := hello.ServerName
	var cands []*tls.Certificate
	var how int
	if name != "" {
		cands, how = snap.lookup(name)
	} else if hello.Conn != nil {
		if a, ok := hello.Conn.LocalAddr().(*net.TCPAddr); ok {
			cands = snap.exact[a.IP.String()]
			how = matchExact
		}
	}
	if len(cands) == 0 {
		if name != "" && s.cfg.RejectUnknownSNI {
			s.metrics.selected(matchRejected)
			return nil, fmt.Errorf("certs: no certificate for server name %q", name)
		}
		s.metrics.selected(matchDefault)
		return snap.def, nil
	}
	s.metrics.selected(how)
	if len(cands) == 1 {
		return cands[0], nil
	}
	for _, c := range cands {
		if hello.SupportsCertificate(c) == nil {
			return c, nil
		}
	}
	return cands[0], nil
}

const (
	matchExact = iota
	matchWildcard
	matchDefault
	matchRejected
	numMatch
)

var matchNames = [numMatch]string{"exact", "wildcard", "default", "rejected"}

// lookup finds the certificates for an SNI name: case-insensitive, a
// trailing dot ignored.
func (s *snapshot) lookup(name string) ([]*tls.Certificate, int) {
	name = strings.TrimSuffix(name, ".")
	name = strings.ToLower(name) // no allocation when already lower case
	if c := s.exact[name]; len(c) > 0 {
		return c, matchExact
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c := s.wildcard[name[i+1:]]; len(c) > 0 {
			return c, matchWildcard
		}
	}
	return nil, matchDefault
}

// Certificates describes the configured certificates, in configuration
// order.
func (s *Store) Certificates() []Info {
	snap := s.cur.Load()
	out := make([]Info, len(snap.entries))
	for i, e := range snap.entries {
		out[i] = e.info
		out[i].Names = slices.Clone(e.info.Names)
	}
	return out
}

// Reload reads every pair again now. A pair that fails to load keeps its
// previous certificate (the others are still updated); the error names
// each failure. Safe to call concurrently with Run and handshakes.
func (s *Store) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.cur.Load()
	snap, errs := s.load(old)
	changed := false
	for i, e := range snap.entries {
		if e.cert != old.entries[i].cert {
			changed = true
			s.log.Info("certs: serving a new certificate", "file", e.info.File,
				"names", e.info.Names, "serial", e.info.Serial,
				"not_after", e.info.NotAfter.UTC().Format(time.RFC3339))
			s.warnValidity(e)
		}
	}
	if snap.caErr != old.caErr || snap.clientCA != old.clientCA {
		changed = true
	}
	for _, err := range errs {
		s.log.Warn("certs: keeping the previous certificate", "error", err)
	}
	if changed || len(errs) > 0 {
		s.cur.Store(snap)
	}
	switch {
	case len(errs) > 0:
		s.metrics.reloaded("error")
	case changed:
		s.metrics.reloaded("changed")
	default:
		s.metrics.reloaded("unchanged")
	}
	return errors.Join(errs...)
}

func (s *Store) warnValidity(e entry) {
	now := s.now()
	switch {
	case now.After(e.info.NotAfter):
		s.log.Warn("certs: serving an expired certificate", "file", e.info.File, "not_after", e.info.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(e.info.NotBefore):
		s.log.Warn("certs: serving a certificate not valid yet", "file", e.info.File, "not_before", e.info.NotBefore.UTC().Format(time.RFC3339))
	}
}

// load reads every pair into a new snapshot. With old set, a pair that
// fails keeps old's certificate, and an unchanged pair keeps old's
// pointer (so callers can tell what changed).
func (s *Store) load(old *snapshot) (*snapshot, []error) {
	snap := &snapshot{
		entries:  make([]entry, len(s.cfg.Certificates)),
		exact:    map[string][]*tls.Certificate{},
		wildcard: map[string][]*tls.Certificate{},
	}
	var errs []error
	for i, p := range s.cfg.Certificates {
		cert, err := loadPair(p)
		switch {
		case err != nil:
			err = fmt.Errorf("certificates[%d]: %w", i, err)
			errs = append(errs, err)
			if old == nil {
				continue
			}
			snap.entries[i] = old.entries[i]
			snap.entries[i].info.LastError = err.Error()
		case old != nil && sameChain(old.entries[i].cert, cert):
			snap.entries[i] = old.entries[i]
			snap.entries[i].info.LastError = ""
		default:
			snap.entries[i] = entry{cert: cert, info: describe(p, cert.Leaf, s.now())}
		}
	}
	if old == nil && len(errs) > 0 {
		return nil, errs
	}
	for _, e := range snap.entries {
		for _, n := range e.info.Names {
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				snap.wildcard[rest] = append(snap.wildcard[rest], e.cert)
			} else {
				snap.exact[n] = append(snap.exact[n], e.cert)
			}
		}
	}
	snap.def = snap.entries[0].cert
	if ca := s.cfg.ClientAuth; ca != nil {
		pool, err := loadCA(ca.CAFile)
		switch {
		case err != nil && old == nil:
			return nil, append(errs, err)
		case err != nil:
			errs = append(errs, err)
			snap.clientCA, snap.caErr = old.clientCA, err.Error()
		case old != nil && old.clientCA != nil && old.clientCA.Equal(pool):
			snap.clientCA = old.clientCA
		default:
			snap.clientCA = pool
		}
	}
	return snap, errs
}

func loadPair(p Certificate) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		return nil, fmt.Errorf("cert_file %s: %w", p.CertFile, err)
	}
	keyPEM, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("key_file %s: %w", p.KeyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cert_file %s, key_file %s: %w", p.CertFile, p.KeyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("cert_file %s: %w", p.CertFile, err)
		}
	}
	return &cert, nil
}

func loadCA(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("client_auth.ca_file %s: %w", file, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("client_auth.ca_file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

func sameChain(a, b *tls.Certificate) bool {
	return slices.EqualFunc(a.Certificate, b.Certificate, bytes.Equal)
}

// describe builds the Info of a freshly loaded pair, indexing the leaf's
// names: DNS SANs lower-cased without a trailing dot (wildcards only as a
// whole first label, "*.example.com"), and IP SANs. The common name is
// not used: clients ignore it too.
func describe(p Certificate, leaf *x509.Certificate, now time.Time) Info {
	info := Info{
		File: p.CertFile, KeyFile: p.KeyFile,
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		Serial: leaf.SerialNumber.Text(16), Issuer: leaf.Issuer.String(),
		LoadedAt: now,
	}
	switch leaf.PublicKey.(type) {
	case *rsa.PublicKey:
		info.KeyType = "RSA"
	case *ecdsa.PublicKey:
		info.KeyType = "ECDSA"
	case ed25519.PublicKey:
		info.KeyType = "Ed25519"
	}
	for _, n := range leaf.DNSNames {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n == "" || strings.Contains(strings.TrimPrefix(n, "*."), "*") || slices.Contains(info.Names, n) {
			continue
		}
		info.Names = append(info.Names, n)
	}
	for _, ip := range leaf.IPAddresses {
		if n := ip.String(); !slices.Contains(info.Names, n) {
			info.Names = append(info.Names, n)
		}
	}
	return info
}
