package metrics

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strings"
)

// Reasons of TLS handshake failures, the reason label of
// outrider_tls_handshake_failures_total.
const (
	// ReasonNoClientCert: the client presented no certificate.
	ReasonNoClientCert = "no_client_cert"
	// ReasonBadCertificate: a certificate was presented but is unusable for
	// a reason no finer class names: malformed, a CA certificate used as a
	// leaf, forbidden key usages, or rejected by the peer with a
	// bad_certificate alert (which is all a Go peer sends for most of them).
	ReasonBadCertificate = "bad_certificate"
	// ReasonExpired: the certificate is expired or not yet valid (x509
	// reports both the same way), or the peer said so with a
	// certificate_expired alert.
	ReasonExpired = "expired"
	// ReasonNoSPIFFEID: the leaf does not carry exactly one valid SPIFFE ID:
	// no URI SAN, more than one, or a URI that is not a SPIFFE ID.
	ReasonNoSPIFFEID = "no_spiffe_id"
	// ReasonUnknownCA: the chain does not lead to a root of the bundle of
	// the peer's trust domain (or, for plain TLS, to a trusted root).
	ReasonUnknownCA = "unknown_ca"
	// ReasonUnknownTrustDomain: there is no bundle for the trust domain of
	// the peer's SPIFFE ID (a foreign mesh, or a federation not set up).
	ReasonUnknownTrustDomain = "unknown_trust_domain"
	// ReasonSPIFFEIDMismatch: the chain verified but the SPIFFE ID is not
	// the one expected.
	ReasonSPIFFEIDMismatch = "spiffe_id_mismatch"
	// ReasonDenied: the peer was authenticated but policy denied it.
	ReasonDenied = "denied"
	// ReasonTimeout: the handshake did not finish before its deadline.
	ReasonTimeout = "timeout"
	// ReasonProtocol: the peer does not speak a TLS the listener accepts
	// (plaintext, versions, cipher suites, ALPN, malformed messages).
	ReasonProtocol = "protocol"
	// ReasonOther: anything else, such as the peer closing the connection
	// mid-handshake (TCP health checks and port scanners do).
	ReasonOther = Other
)

// reasons is indexed by reasonIndex. ReasonOther stays last: reasonIndex
// maps a reason it does not know to it.
var reasons = [...]string{ReasonNoClientCert, ReasonBadCertificate, ReasonExpired, ReasonNoSPIFFEID,
	ReasonUnknownCA, ReasonUnknownTrustDomain, ReasonSPIFFEIDMismatch, ReasonDenied, ReasonTimeout,
	ReasonProtocol, ReasonOther}

const numReasons = len(reasons)

func reasonIndex(reason string) int {
	for i, r := range reasons {
		if r == reason {
			return i
		}
	}
	return numReasons - 1
}

// ClassifyHandshakeError maps an error from a TLS handshake (either side,
// crypto/tls, go-spiffe, Outrider's mtls and policy wrappers) to one of
// the Reason* constants. It inspects error types where they exist and
// falls back to the stable texts of crypto/tls, go-spiffe and Outrider,
// so wrapping with %w or %v both work. nil and unrecognized errors are
// ReasonOther.
func ClassifyHandshakeError(err error) string {
	if err == nil {
		return ReasonOther
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return ReasonTimeout
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return ReasonTimeout
	}
	msg := err.Error()
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(msg, s) {
				return true
			}
		}
		return false
	}
	// Outrider's own verdicts come first: they are about an authenticated
	// peer and may wrap nothing typed.
	switch {
	case has(" denied by ", "tls: access denied"):
		// sidecar's Authorizer ("policy: <id> denied by <rule>: ..."), or
		// the peer's access_denied alert.
		return ReasonDenied
	case has("mtls: server presented ", "unexpected ID", "unexpected trust domain"):
		// mtls.ClientConfig, go-spiffe tlsconfig.AuthorizeID / AuthorizeMemberOf.
		return ReasonSPIFFEIDMismatch
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return ReasonUnknownCA
	}
	if ce, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		if ce.Reason == x509.Expired {
			return ReasonExpired
		}
		return ReasonBadCertificate
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return ReasonBadCertificate
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return ReasonProtocol
	}
	switch {
	case has("client didn't provide a certificate", "peer presented no certificate",
		"tls: certificate required", "empty certificates chain"):
		// server side (crypto/tls, mtls.VerifyPeer, go-spiffe), and the
		// certificate_required alert a TLS 1.3 client reads.
		return ReasonNoClientCert
	case has("unknown authority", "tls: unknown certificate authority"):
		// x509 (wrapped with %v), and the unknown_ca alert.
		return ReasonUnknownCA
	case has("could not get X509 bundle", "no X.509 bundle", "x509bundle: "):
		// go-spiffe when the source has no bundle for the peer's trust
		// domain, whatever the source's own error says.
		return ReasonUnknownTrustDomain
	case has("could not get leaf SPIFFE ID", "certificate contains no URI SAN",
		"certificate contains more than one URI SAN", "scheme is missing or invalid"):
		// go-spiffe's x509svid.Verify and IDFromCert, and spiffeid's
		// parse errors for a URI that is not a SPIFFE ID.
		return ReasonNoSPIFFEID
	case has("certificate has expired or is not yet valid", "tls: expired certificate"):
		// x509 (wrapped with %v), and the certificate_expired alert.
		return ReasonExpired
	case has("tls: bad certificate", "tls: unsupported certificate",
		"tls: revoked certificate", "tls: unknown certificate", "x509svid: ", "x509: "):
		// The peer's other certificate alerts (checked after unknown_ca,
		// whose alert text starts the same), and go-spiffe's and x509's
		// other verdicts on a certificate.
		return ReasonBadCertificate
	case hasTLSPrefix(msg), has("remote error: "):
		// Every other crypto/tls error and alert is about the protocol:
		// versions, cipher suites, curves, ALPN, unexpected messages.
		return ReasonProtocol
	}
	if _, ok := errors.AsType[tls.AlertError](err); ok { // QUIC transports
		return ReasonProtocol
	}
	return ReasonOther
}

// hasTLSPrefix reports whether msg holds a crypto/tls error text ("tls: "),
// not counting Outrider's "mtls: " prefix, which wraps any dial error.
func hasTLSPrefix(msg string) bool {
	for i := 0; ; {
		j := strings.Index(msg[i:], "tls: ")
		if j < 0 {
			return false
		}
		if i+j == 0 || msg[i+j-1] != 'm' {
			return true
		}
		i += j + len("tls: ")
	}
}
