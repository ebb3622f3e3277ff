package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"
)

// ExpiredError is returned instead of a certificate that is outside its
// validity period: presenting it would only make the peer fail the
// handshake, and an identity source that stopped renewing must be seen.
type ExpiredError struct {
	ID        string
	NotBefore time.Time
	NotAfter  time.Time
	Now       time.Time
}

func (e *ExpiredError) Error() string {
	if e.Now.Before(e.NotBefore) {
		return fmt.Sprintf("mtls: SVID %s is not valid before %s; refusing handshakes until it is",
			e.ID, e.NotBefore.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("mtls: SVID %s expired at %s and was not renewed; refusing handshakes until it is",
		e.ID, e.NotAfter.UTC().Format(time.RFC3339))
}

// FailClosed wraps id so that its certificate is never presented outside
// its validity period: Certificate returns an *ExpiredError instead (the
// handshake fails on this side, with that reason) and calls report with it,
// on the handshake's goroutine; report must be cheap and rate-limit itself.
// A renewed SVID is served again from the next handshake on.
func FailClosed(id Identity, report func(error)) Identity {
	return &failClosed{Identity: id, report: report}
}

type failClosed struct {
	Identity
	report func(error)
}

func (f *failClosed) Certificate() (*tls.Certificate, error) {
	c, err := f.Identity.Certificate()
	if err != nil {
		return nil, err
	}
	if err := CheckValidity(c.Leaf, time.Now()); err != nil {
		if f.report != nil {
			f.report(err)
		}
		return nil, err
	}
	return c, nil
}

// CheckValidity returns an *ExpiredError when now is outside the validity
// period of leaf (nil passes: TLSCertificate always sets tls.Certificate.Leaf).
func CheckValidity(leaf *x509.Certificate, now time.Time) error {
	if leaf == nil {
		return nil
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		id := ""
		if len(leaf.URIs) > 0 {
			id = leaf.URIs[0].String()
		}
		return &ExpiredError{ID: id, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, Now: now}
	}
	return nil
}
