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
	// ReasonBadCertificate: a certificate was presented but is unusable:
	// expired or not yet valid, malformed, without a SPIFFE ID, a CA
	// certificate used as a leaf, or rejected by the peer for such a reason.
	ReasonBadCertificate = "bad_certificate"
	// ReasonUnknownCA: the chain does not lead to a trusted root, or the
	// peer's trust domain has no bundle.
	ReasonUnknownCA = "unknown_ca"
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

// reasons is indexed by reasonIndex.
var reasons = [...]string{ReasonNoClientCert, ReasonBadCertificate, ReasonUnknownCA,
	ReasonSPIFFEIDMismatch, ReasonDenied, ReasonTimeout, ReasonProtocol, ReasonOther}

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
	if _, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
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
	case has("unknown authority", "tls: unknown certificate authority",
		"could not get X509 bundle", "no X.509 bundle", "x509bundle: "):
		// x509, the unknown_ca alert, and go-spiffe when the peer's trust
		// domain has no bundle (whatever the source's own error says).
		return ReasonUnknownCA
	case has("tls: bad certificate", "tls: expired certificate", "tls: unsupported certificate",
		"tls: revoked certificate", "tls: unknown certificate", "x509svid: ", "x509: "):
		// The peer's certificate alerts (checked after unknown_ca, whose
		// alert text starts the same), and go-spiffe's and x509's other
		// verdicts on a certificate.
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
