package mtls

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxIDLength is the longest SPIFFE ID accepted from a peer, in bytes
// (SPIFFE-ID §2.3: implementations must support 2048 and should not issue
// longer). It bounds what reaches policy, logs and metrics.
const MaxIDLength = 2048

// oidSubjectAltName is the subjectAltName extension (RFC 5280 §4.2.1.6).
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// checkLeaf enforces what x509svid.Verify leaves out of the X.509-SVID
// rules for the verified leaf whose SPIFFE ID is id:
//
//   - the URI SAN is written exactly as id. go-spiffe parses the URI that
//     net/url re-serialized, which lowercases the scheme: "SPIFFE://td/x"
//     would otherwise be accepted as spiffe://td/x, while any tool reading
//     the certificate (Envoy's SAN matchers, openssl) sees another string;
//   - id names a workload: it has a path (a leaf for spiffe://td would
//     pass any policy that matches on the trust domain alone);
//   - id is at most MaxIDLength bytes;
//   - the key usage has digitalSignature (X509-SVID §4.3): the leaf's key
//     signs the handshake. keyCertSign, cRLSign and CA=true are go-spiffe's;
//   - when an extended key usage is present (optional, §4.4), it allows
//     usage: serverAuth for a server's leaf, clientAuth for a client's, as
//     RFC 5280 §4.2.1.12 and every TLS stack read it. §4.4 asks issuers for
//     both; a leaf missing only the one this side does not use is harmless
//     and accepted. x509.ExtKeyUsageAny skips the check (VerifyPeer).
//
// Errors about the ID say "could not get leaf SPIFFE ID", as go-spiffe's
// do, and usage errors wrap x509.CertificateInvalidError, so that
// metrics.ClassifyHandshakeError counts them as no_spiffe_id and
// bad_certificate.
func checkLeaf(leaf *x509.Certificate, id spiffeid.ID, usage x509.ExtKeyUsage) error {
	uris, err := rawURISANs(leaf)
	if err != nil {
		return fmt.Errorf("could not get leaf SPIFFE ID: %w", err)
	}
	if len(uris) != 1 || uris[0] != id.String() {
		return fmt.Errorf("could not get leaf SPIFFE ID: the URI SAN is not written as the SPIFFE ID %s it parses to", id)
	}
	if id.Path() == "" {
		return fmt.Errorf("could not get leaf SPIFFE ID: %s is the ID of a trust domain, not of a workload", id)
	}
	if n := len(uris[0]); n > MaxIDLength {
		return fmt.Errorf("could not get leaf SPIFFE ID: it is %d bytes, over the %d a SPIFFE ID may have", n, MaxIDLength)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return fmt.Errorf("leaf certificate without the digitalSignature key usage: %w",
			x509.CertificateInvalidError{Cert: leaf, Reason: x509.IncompatibleUsage})
	}
	if usage != x509.ExtKeyUsageAny && (len(leaf.ExtKeyUsage) > 0 || len(leaf.UnknownExtKeyUsage) > 0) &&
		!slices.Contains(leaf.ExtKeyUsage, usage) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return fmt.Errorf("leaf certificate's extended key usage does not allow %s: %w",
			usageName(usage), x509.CertificateInvalidError{Cert: leaf, Reason: x509.IncompatibleUsage})
	}
	return nil
}

// rawURISANs returns the URI SANs of cert as the certificate encodes them
// (x509.Certificate.URIs holds them parsed, which normalizes).
func rawURISANs(cert *x509.Certificate) ([]string, error) {
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &seq); err != nil || len(rest) > 0 ||
			seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
			return nil, errors.New("malformed subjectAltName extension")
		}
		var uris []string
		for rest := seq.Bytes; len(rest) > 0; {
			var name asn1.RawValue
			var err error
			if rest, err = asn1.Unmarshal(rest, &name); err != nil {
				return nil, errors.New("malformed subjectAltName extension")
			}
			if name.Class == asn1.ClassContextSpecific && name.Tag == 6 { // uniformResourceIdentifier
				uris = append(uris, string(name.Bytes))
			}
		}
		return uris, nil
	}
	return nil, nil
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	}
	return fmt.Sprintf("extended key usage %d", u)
}

// maxLogged is how much of one name from a peer's certificate goes into an
// error: enough to recognise it, little enough that a hostile certificate
// cannot flood the logs.
const maxLogged = 256

// quoteBounded quotes each of names (escaping control and non-ASCII
// bytes), cutting each to maxLogged bytes.
func quoteBounded(names []string) string {
	out := "["
	for i, n := range names {
		if i > 0 {
			out += " "
		}
		out += fmt.Sprintf("%+q", bounded(n))
	}
	return out + "]"
}

// bounded cuts s to maxLogged bytes, saying how long it was.
func bounded(s string) string {
	if len(s) <= maxLogged {
		return s
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:maxLogged], len(s))
}
