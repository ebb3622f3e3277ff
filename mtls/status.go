package mtls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Store holds what an Identity implementation has loaded (the current SVID,
// its TLS certificate and the trusted X.509 bundles) and what its Status
// reports. An implementation (spiffesource, filesource) owns one Store: its
// refresh goroutine calls Update with every identity it reads and Fail with
// every refresh error; its Source methods, Ready and Status delegate here.
//
// Update and Fail may be called from any goroutine; they are serialized.
// GetX509SVID, GetX509BundleForTrustDomain and Certificate read one atomic
// pointer to an immutable value: they never block, and allocate only to
// return an error. Status takes a short lock.
type Store struct {
	source   string
	endpoint string
	log      *slog.Logger

	cur atomic.Pointer[held]

	readyOnce sync.Once
	ready     chan struct{}

	mu        sync.Mutex // serializes Update and Fail; guards the fields below
	lastErr   string
	lastErrAt time.Time
}

// held is one published identity; never modified once stored.
type held struct {
	svid      *x509svid.SVID
	cert      *tls.Certificate
	bundles   map[spiffeid.TrustDomain]*x509bundle.Bundle
	tds       []string // names of the bundles' trust domains, sorted
	updated   time.Time
	rotations int64
}

// NewStore returns an empty Store whose Status names source and endpoint
// (see IdentityStatus). Update logs the identities it publishes to log
// (nil: discard), which should name the implementation in its attributes.
func NewStore(source, endpoint string, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{source: source, endpoint: endpoint, log: log, ready: make(chan struct{})}
}

// Update publishes svid and bundles, from the next handshake on, unless
// they are the ones already held. bundles replaces every bundle held: a
// trust domain missing from it (a federation removed) is no longer trusted.
// Bundles without authorities are left out; bundles of one trust domain are
// merged. The first Update closes Ready. A success clears the last error.
//
// It logs at INFO the first SVID and every rotation (spiffe_id, serial,
// not_after), and any change in the set of trusted trust domains. The
// tls.Certificate is built here, once per new SVID.
//
// An SVID that is nil or has no certificate, or whose trust domain has no
// bundle, is an error: nothing changes (not even the last error, which the
// caller sets with Fail after wrapping the error with its package prefix;
// the text here has none). changed reports whether the SVID or a bundle
// differs from what was held.
func (s *Store) Update(svid *x509svid.SVID, bundles []*x509bundle.Bundle) (changed bool, err error) {
	if svid == nil || len(svid.Certificates) == 0 {
		return false, errors.New("no SVID")
	}
	m := make(map[spiffeid.TrustDomain]*x509bundle.Bundle, len(bundles))
	for _, b := range bundles {
		if b == nil || b.Empty() {
			continue
		}
		if prev, ok := m[b.TrustDomain()]; ok {
			merged := prev.Clone()
			for _, c := range b.X509Authorities() {
				merged.AddX509Authority(c)
			}
			b = merged
		}
		m[b.TrustDomain()] = b
	}
	td := svid.ID.TrustDomain()
	if _, ok := m[td]; !ok {
		return false, fmt.Errorf("no X.509 bundle for the SVID's trust domain %q (SVID %s)", td, svid.ID)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.cur.Load()
	sameSVID := prev != nil && sameChain(prev.svid, svid)
	sameBundles := prev != nil && maps.EqualFunc(prev.bundles, m, (*x509bundle.Bundle).Equal)
	if sameSVID && sameBundles {
		s.lastErr, s.lastErrAt = "", time.Time{}
		return false, nil
	}

	now := time.Now()
	next := &held{bundles: m, updated: now}
	if sameSVID {
		next.svid, next.cert, next.rotations = prev.svid, prev.cert, prev.rotations
	} else {
		cert, err := TLSCertificate(svid)
		if err != nil {
			return false, err
		}
		next.svid, next.cert = svid, cert
		if prev != nil {
			next.rotations = prev.rotations + 1
		}
	}
	if sameBundles {
		next.tds = prev.tds
	} else {
		for td := range m {
			next.tds = append(next.tds, td.Name())
		}
		slices.Sort(next.tds)
	}
	// Log first, then publish: whoever sees the new identity (Status, a
	// handshake, a test) can count on its log record being written.
	leaf := next.svid.Certificates[0]
	if !sameSVID {
		attrs := []any{"spiffe_id", next.svid.ID.String(), "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter}
		if prev == nil {
			s.log.Info("SVID loaded", attrs...)
		} else {
			attrs = append(attrs, "previous_serial", prev.svid.Certificates[0].SerialNumber.Text(16), "rotations", next.rotations)
			s.log.Info("SVID rotated", attrs...)
		}
		if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
			s.log.Warn("the SVID is outside its validity period",
				"spiffe_id", next.svid.ID.String(), "not_before", leaf.NotBefore, "not_after", leaf.NotAfter)
		}
	}
	switch {
	case prev == nil:
		s.log.Info("trust bundles loaded", "trust_domains", next.tds)
	case !slices.Equal(prev.tds, next.tds):
		s.log.Info("trusted trust domains changed", "trust_domains", next.tds, "previous", prev.tds)
	case !sameBundles:
		s.log.Info("trust bundles updated", "trust_domains", next.tds)
	}
	s.cur.Store(next)
	s.lastErr, s.lastErrAt = "", time.Time{}
	s.readyOnce.Do(func() { close(s.ready) })
	return true, nil
}

// sameChain reports whether a and b hold the same certificates. The key
// need not be compared: x509svid checks that it matches the leaf.
func sameChain(a, b *x509svid.SVID) bool {
	return slices.EqualFunc(a.Certificates, b.Certificates, func(x, y *x509.Certificate) bool {
		return bytes.Equal(x.Raw, y.Raw)
	})
}

// Fail records err as the last error shown by Status (until the next
// successful Update). It does not log: the caller logs, with its context.
func (s *Store) Fail(err error) {
	s.mu.Lock()
	s.lastErr, s.lastErrAt = err.Error(), time.Now()
	s.mu.Unlock()
}

// Ready is closed by the first successful Update.
func (s *Store) Ready() <-chan struct{} { return s.ready }

// GetX509SVID implements x509svid.Source: the current SVID, or ErrNotReady.
func (s *Store) GetX509SVID() (*x509svid.SVID, error) {
	h := s.cur.Load()
	if h == nil {
		return nil, ErrNotReady
	}
	return h.svid, nil
}

// Certificate implements Source: the current SVID as a TLS certificate, or
// ErrNotReady.
func (s *Store) Certificate() (*tls.Certificate, error) {
	h := s.cur.Load()
	if h == nil {
		return nil, ErrNotReady
	}
	return h.cert, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source. Before the
// first Update it returns ErrNotReady; for a trust domain without a bundle,
// an error whose text contains `no X.509 bundle for trust domain "<td>"`.
func (s *Store) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	h := s.cur.Load()
	if h == nil {
		return nil, ErrNotReady
	}
	if b, ok := h.bundles[td]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("mtls: no X.509 bundle for trust domain %q (%s trusts %v)", td, s.source, h.tds)
}

// Status returns the IdentityStatus of what is held; Details is left for
// the caller to fill.
func (s *Store) Status() IdentityStatus {
	st := IdentityStatus{Source: s.source, Endpoint: s.endpoint}
	if h := s.cur.Load(); h != nil {
		leaf := h.svid.Certificates[0]
		st.SPIFFEID = h.svid.ID.String()
		st.Serial = leaf.SerialNumber.Text(16)
		st.NotBefore, st.NotAfter = leaf.NotBefore, leaf.NotAfter
		st.TrustDomain = h.svid.ID.TrustDomain().Name()
		st.TrustDomains = slices.Clone(h.tds)
		st.Updated, st.Rotations = h.updated, h.rotations
	}
	s.mu.Lock()
	st.LastError, st.LastErrorAt = s.lastErr, s.lastErrAt
	s.mu.Unlock()
	return st
}
