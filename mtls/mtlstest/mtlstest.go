// Package mtlstest is an in-memory certificate authority and a swappable
// mtls.Source for tests. It issues SPIFFE leaves (good and deliberately bad)
// from an ECDSA P-256 root, so that tests can run real TLS handshakes
// through mtls.ServerConfig, mtls.ClientConfig and mtls.Dialer without files.
//
// Nothing here is fit for production: keys live in memory and every
// certificate is short-lived.
package mtlstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/outrider-mesh/outrider/mtls"
)

// LeafValidity is how long a leaf issued by SVID is valid.
const LeafValidity = time.Hour

// caValidity is how long a test root or intermediate is valid.
const caValidity = 24 * time.Hour

// CA is a test certificate authority for one trust domain. A CA made by
// NewCA is a self-signed root; one made by Intermediate signs leaves with
// an intermediate and puts it in each leaf's chain. Safe for concurrent use.
type CA struct {
	td     spiffeid.TrustDomain
	cert   *x509.Certificate   // the signing certificate
	key    *ecdsa.PrivateKey   // its key
	chain  []*x509.Certificate // intermediates appended after each leaf
	bundle *x509bundle.Bundle  // the root only
}

// NewCA returns a self-signed ECDSA P-256 root for trust domain td (for
// example "11111111-2222-3333-4444-555555555555.consul"). Like Consul's
// roots, it carries the URI SAN spiffe://<td>. Two CAs made with the same td
// share the trust domain but not the root: each distrusts the other's leaves.
func NewCA(t testing.TB, td string) *CA {
	t.Helper()
	trustDomain, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		t.Fatalf("mtlstest: trust domain %q: %v", td, err)
	}
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		Subject:               pkix.Name{CommonName: "Outrider Test Root " + td},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{trustDomain.ID().URL()},
	}
	cert := sign(t, tmpl, tmpl, &key.PublicKey, key)
	return &CA{
		td:     trustDomain,
		cert:   cert,
		key:    key,
		bundle: x509bundle.FromX509Authorities(trustDomain, []*x509.Certificate{cert}),
	}
}

// Intermediate returns a CA in the same trust domain whose signing
// certificate is an intermediate issued by ca. Its leaves chain through the
// intermediate (included in SVID.Certificates) to ca's root, and its Bundle
// is ca's root bundle.
func (ca *CA) Intermediate(t testing.TB) *CA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		Subject:               pkix.Name{CommonName: "Outrider Test Intermediate " + ca.td.Name()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{ca.td.ID().URL()},
	}
	cert := sign(t, tmpl, ca.cert, &key.PublicKey, ca.key)
	return &CA{
		td:     ca.td,
		cert:   cert,
		key:    key,
		chain:  append([]*x509.Certificate{cert}, ca.chain...),
		bundle: ca.bundle,
	}
}

// TrustDomain returns the CA's trust domain.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Root returns the root certificate the CA's leaves chain to.
func (ca *CA) Root() *x509.Certificate { return ca.bundle.X509Authorities()[0] }

// Bundle returns a bundle holding only this CA's root. Each call returns a
// new bundle, so callers may add authorities to it.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, ca.bundle.X509Authorities())
}

// LeafOption alters a leaf's template before it is signed; use it to issue
// deliberately invalid leaves.
type LeafOption func(*x509.Certificate)

// Expired makes the leaf's validity end an hour before it is issued.
func Expired() LeafOption {
	return func(c *x509.Certificate) {
		now := time.Now()
		c.NotBefore, c.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)
	}
}

// TTL makes the leaf valid for d from now (as an identity provider with a
// short SVID lifetime issues it).
func TTL(d time.Duration) LeafOption {
	return func(c *x509.Certificate) { c.NotAfter = time.Now().Add(d) }
}

// ExtraURI adds a second URI SAN (uri must parse as a URL), which makes the
// leaf an invalid SVID.
func ExtraURI(uri string) LeafOption {
	return func(c *x509.Certificate) {
		u, err := url.Parse(uri)
		if err != nil {
			panic(fmt.Sprintf("mtlstest: ExtraURI(%q): %v", uri, err))
		}
		c.URIs = append(c.URIs, u)
	}
}

// NoURI removes the URI SAN, so the leaf carries no SPIFFE ID at all.
func NoURI() LeafOption {
	return func(c *x509.Certificate) { c.URIs = nil }
}

// SVID issues a leaf for the SPIFFE ID id (which must be in any trust
// domain; the CA does not check) with a fresh P-256 key: exactly one URI SAN,
// not a CA, valid for LeafValidity, usable for client and server auth. opts
// may break any of these. The SVID's ID field is id even when an option
// removed or added URI SANs.
func (ca *CA) SVID(t testing.TB, id string, opts ...LeafOption) *x509svid.SVID {
	t.Helper()
	sid, err := spiffeid.FromString(id)
	if err != nil {
		t.Fatalf("mtlstest: SPIFFE ID %q: %v", id, err)
	}
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(LeafValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{sid.URL()},
	}
	for _, o := range opts {
		o(tmpl)
	}
	leaf := sign(t, tmpl, ca.cert, &key.PublicKey, ca.key)
	return &x509svid.SVID{
		ID:           sid,
		Certificates: append([]*x509.Certificate{leaf}, ca.chain...),
		PrivateKey:   key,
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("mtlstest: generate key: %v", err)
	}
	return key
}

func newSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("mtlstest: serial: %v", err)
	}
	return n
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, priv *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		t.Fatalf("mtlstest: create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("mtlstest: parse certificate: %v", err)
	}
	return cert
}

// Source is an mtls.Source whose SVID and bundles the test swaps at runtime.
// Every method is safe for concurrent use and never blocks: handshakes in
// flight see either the old or the new value.
type Source struct {
	identity atomic.Pointer[identity]
	bundles  atomic.Pointer[map[spiffeid.TrustDomain]*x509bundle.Bundle]
}

type identity struct {
	svid *x509svid.SVID
	cert *tls.Certificate
	err  error // from mtls.TLSCertificate, returned by Certificate
}

var _ mtls.Identity = (*Source)(nil)

// Run implements mtls.Identity: there is nothing to follow, so it waits
// for ctx.
func (s *Source) Run(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Ready implements mtls.Identity; a test Source is always ready (set an
// SVID before a sidecar runs it).
func (s *Source) Ready() <-chan struct{} { return closed }

// Status implements mtls.Identity.
func (s *Source) Status() mtls.IdentityStatus {
	st := mtls.IdentityStatus{Source: "test"}
	if id := s.identity.Load(); id != nil && len(id.svid.Certificates) > 0 {
		leaf := id.svid.Certificates[0]
		st.SPIFFEID, st.Serial = id.svid.ID.String(), leaf.SerialNumber.Text(16)
		st.NotBefore, st.NotAfter, st.TrustDomain = leaf.NotBefore, leaf.NotAfter, id.svid.ID.TrustDomain().Name()
	}
	if m := s.bundles.Load(); m != nil {
		for td := range *m {
			st.TrustDomains = append(st.TrustDomains, td.Name())
		}
		slices.Sort(st.TrustDomains)
	}
	return st
}

// NewSource returns a Source presenting svid (nil: none yet) and trusting
// bundles, as SetSVID and SetBundles would set them.
func NewSource(svid *x509svid.SVID, bundles ...*x509bundle.Bundle) *Source {
	s := &Source{}
	s.SetSVID(svid)
	s.SetBundles(bundles...)
	return s
}

// SetSVID replaces the SVID presented from the next handshake on. nil
// removes it: Certificate and GetX509SVID then return mtls.ErrNotReady. An
// SVID without certificates is stored, and Certificate reports why it cannot
// be presented.
func (s *Source) SetSVID(svid *x509svid.SVID) {
	if svid == nil {
		s.identity.Store(nil)
		return
	}
	cert, err := mtls.TLSCertificate(svid)
	s.identity.Store(&identity{svid: svid, cert: cert, err: err})
}

// SetBundles replaces the trusted bundles from the next handshake on.
// Bundles of the same trust domain are merged, which is how a root rotation
// window (old and new root both trusted) is expressed. No bundles means
// nothing is trusted.
func (s *Source) SetBundles(bundles ...*x509bundle.Bundle) {
	m := make(map[spiffeid.TrustDomain]*x509bundle.Bundle, len(bundles))
	for _, b := range bundles {
		merged, ok := m[b.TrustDomain()]
		if !ok {
			merged = x509bundle.New(b.TrustDomain())
			m[b.TrustDomain()] = merged
		}
		for _, c := range b.X509Authorities() {
			merged.AddX509Authority(c)
		}
	}
	s.bundles.Store(&m)
}

// GetX509SVID implements x509svid.Source.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) {
	id := s.identity.Load()
	if id == nil {
		return nil, mtls.ErrNotReady
	}
	return id.svid, nil
}

// Certificate implements mtls.Source.
func (s *Source) Certificate() (*tls.Certificate, error) {
	id := s.identity.Load()
	if id == nil {
		return nil, mtls.ErrNotReady
	}
	return id.cert, id.err
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	m := s.bundles.Load()
	if m != nil {
		if b, ok := (*m)[td]; ok {
			return b, nil
		}
	}
	return nil, fmt.Errorf("mtlstest: no bundle for trust domain %q", td)
}
