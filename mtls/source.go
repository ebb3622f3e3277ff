package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ErrNotReady is returned by a Source that has no identity or no bundle yet.
var ErrNotReady = errors.New("mtls: identity not loaded yet")

// Source is where the sidecar's identity and trust bundles come from. It is
// read on every TLS handshake, concurrently; implementations return the
// latest values without blocking, so rotation applies to the next handshake
// and never to established connections.
type Source interface {
	x509svid.Source
	x509bundle.Source
	// Certificate returns the current SVID as a ready-made TLS certificate
	// (built once per rotation, not per handshake).
	Certificate() (*tls.Certificate, error)
}

// TLSCertificate turns an SVID into a tls.Certificate with its leaf parsed.
func TLSCertificate(svid *x509svid.SVID) (*tls.Certificate, error) {
	if svid == nil || len(svid.Certificates) == 0 {
		return nil, errors.New("mtls: empty SVID")
	}
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, nil
}

// describeChain names a certificate for rejection logs without dumping it.
// URI SANs are shown as the certificate writes them, not as net/url
// re-serializes them (SPIFFE://x would show as spiffe://x), quoted; each
// name is cut to maxLogged bytes (a peer chooses them).
func describeChain(certs []*x509.Certificate) string {
	if len(certs) == 0 {
		return "no certificate"
	}
	c := certs[0]
	uris, err := rawURISANs(c)
	if err != nil {
		uris = nil
		for _, u := range c.URIs {
			uris = append(uris, u.String())
		}
	}
	return fmt.Sprintf("subject=%q uris=%s serial=%s", bounded(c.Subject.String()), quoteBounded(uris), c.SerialNumber.Text(16))
}
