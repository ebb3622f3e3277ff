package devca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// File names in a CA or SVID directory.
const (
	CAFile      = "ca.pem"
	CAKeyFile   = "ca-key.pem"
	BundleFile  = "bundle.pem"
	SVIDFile    = "svid.pem"
	SVIDKeyFile = "svid-key.pem"
)

// DefaultValidity is how long a root made by New is valid unless
// WithValidity says otherwise.
const DefaultValidity = 365 * 24 * time.Hour

// backdate is how far before "now" certificates start to be valid, so that
// peers whose clocks run a little behind accept them.
const backdate = time.Minute

// organization names the issuer in every certificate, so that a stray
// development certificate is recognisable.
const organization = "Outrider development CA"

// CA is a development certificate authority for one trust domain: a
// self-signed root that signs SVIDs directly. It is immutable once made;
// Mint is safe for concurrent use.
type CA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
}

// Option configures New.
type Option func(*options)

type options struct {
	validity time.Duration
}

// WithValidity sets how long the root is valid (default DefaultValidity).
func WithValidity(d time.Duration) Option {
	return func(o *options) { o.validity = d }
}

// New creates a root for trust domain td with a fresh ECDSA P-256 key. Like
// SPIRE's, the root carries the URI SAN spiffe://<td>, which is how Load and
// Parse learn its trust domain.
func New(td spiffeid.TrustDomain, opts ...Option) (*CA, error) {
	if td.IsZero() {
		return nil, errors.New("devca: empty trust domain")
	}
	o := options{validity: DefaultValidity}
	for _, opt := range opts {
		opt(&o)
	}
	if o.validity <= 0 {
		return nil, fmt.Errorf("devca: validity must be positive, got %s", o.validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devca: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{organization}, CommonName: td.Name()},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(o.validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("devca: create root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devca: parse root: %w", err)
	}
	return &CA{td: td, cert: cert, key: key}, nil
}

// Load reads the CA that Save wrote to dir (ca.pem and ca-key.pem).
func Load(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("devca: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("devca: %w", err)
	}
	ca, err := Parse(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, dir)
	}
	return ca, nil
}

// Parse builds a CA from a PEM root certificate and its PEM private key
// (PKCS#8, or SEC 1 "EC PRIVATE KEY"). The root must be a CA certificate
// carrying exactly one URI SAN, spiffe://<trust domain>, and the key must
// be its own.
func Parse(certPEM, keyPEM []byte) (*CA, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("devca: CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devca: CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("devca: CA certificate: not a CA (basic constraints)")
	}
	if len(cert.URIs) != 1 {
		return nil, fmt.Errorf("devca: CA certificate: want one URI SAN spiffe://<trust domain>, got %d", len(cert.URIs))
	}
	id, err := spiffeid.FromURI(cert.URIs[0])
	if err != nil {
		return nil, fmt.Errorf("devca: CA certificate: URI SAN: %w", err)
	}
	if id.Path() != "" {
		return nil, fmt.Errorf("devca: CA certificate: URI SAN %s has a path; want spiffe://%s", id, id.TrustDomain().Name())
	}

	block, _ = pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("devca: CA key: no PEM block")
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("devca: CA key: unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("devca: CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("devca: CA key: %T cannot sign", key)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("devca: CA key does not match the CA certificate")
	}
	return &CA{td: id.TrustDomain(), cert: cert, key: signer}, nil
}

// TrustDomain returns the CA's trust domain.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Root returns the root certificate. Callers must not modify it.
func (ca *CA) Root() *x509.Certificate { return ca.cert }

// Bundle returns a new bundle holding the root, for verifiers.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// Mint issues an X.509-SVID for id with a fresh ECDSA P-256 key: a leaf
// signed by the root, with id as its only URI SAN and dns as DNS SANs (the
// first also as the subject's common name, as SPIRE does), usable for TLS
// servers and clients, valid from a minute ago for ttl. A ttl reaching past
// the root's expiry is cut to it, as SPIRE does: check NotAfter of the leaf.
//
// id must be in the CA's trust domain and name a workload (have a path).
func (ca *CA) Mint(id spiffeid.ID, ttl time.Duration, dns ...string) (*x509svid.SVID, error) {
	switch {
	case id.IsZero():
		return nil, errors.New("devca: empty SPIFFE ID")
	case id.TrustDomain() != ca.td:
		return nil, fmt.Errorf("devca: %s is not in the CA's trust domain %s", id, ca.td.Name())
	case id.Path() == "":
		return nil, fmt.Errorf("devca: %s names the trust domain, not a workload; add a path", id)
	case ttl <= 0:
		return nil, fmt.Errorf("devca: SVID ttl must be positive, got %s", ttl)
	}
	for _, name := range dns {
		if name == "" {
			return nil, errors.New("devca: empty DNS name")
		}
	}
	now := time.Now()
	notAfter := now.Add(ttl)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("devca: the CA expired at %s", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devca: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	subject := pkix.Name{Organization: []string{organization}}
	if len(dns) > 0 {
		subject.CommonName = dns[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("devca: sign SVID for %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devca: parse SVID for %s: %w", id, err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}, nil
}

// Save writes the CA to dir, creating dir (mode 0700) if needed: ca.pem,
// ca-key.pem (mode 0600) and bundle.pem. Existing files are replaced.
func (ca *CA) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("devca: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return fmt.Errorf("devca: encode CA key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	// The key first: a ca.pem is never newer than the key that signs with it.
	if err := writeFile(dir, CAKeyFile, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFile(dir, CAFile, certPEM, 0o644); err != nil {
		return err
	}
	return writeFile(dir, BundleFile, certPEM, 0o644)
}

// WriteSVID writes svid to dir, creating dir (mode 0755) if needed:
// svid.pem (the chain, leaf first) and svid-key.pem (PKCS#8, mode 0600).
// Each file is replaced atomically, the key first; between the two renames
// a reader can see the new key with the old certificate, which
// x509svid.Parse rejects ("does not match"), so a reloading reader should
// keep its current SVID and retry.
func WriteSVID(dir string, svid *x509svid.SVID) error {
	if svid == nil {
		return errors.New("devca: nil SVID")
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return fmt.Errorf("devca: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("devca: %w", err)
	}
	if err := writeFile(dir, SVIDKeyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(dir, SVIDFile, certPEM, 0o644)
}

// WriteBundle writes b to dir/bundle.pem, creating dir (mode 0755) if
// needed. Write the bundle before an SVID signed by a new root, so that
// peers reading the same directory trust it first.
func WriteBundle(dir string, b *x509bundle.Bundle) error {
	if b == nil || b.Empty() {
		return errors.New("devca: empty bundle")
	}
	data, err := b.Marshal()
	if err != nil {
		return fmt.Errorf("devca: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("devca: %w", err)
	}
	return writeFile(dir, BundleFile, data, 0o644)
}

// writeFile replaces dir/name with data atomically: it writes a temporary
// file in dir, syncs it and renames it over name.
func writeFile(dir, name string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return fmt.Errorf("devca: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("devca: write %s: %w", filepath.Join(dir, name), err)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("devca: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
