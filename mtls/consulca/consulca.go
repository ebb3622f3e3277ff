// Package consulca is the mtls.Source for Consul's Connect CA: the leaf
// certificate of the proxied service and the CA roots, both followed with
// blocking queries so that rotations apply to the next handshake.
package consulca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/sync/errgroup"

	"github.com/outrider-mesh/outrider/discovery/consul"
	"github.com/outrider-mesh/outrider/mtls"
)

// Source follows the leaf certificate of one service and the Connect CA
// roots. Readers (handshakes) get the latest values without blocking.
type Source struct {
	service string
	leafW   *consul.Watch[*leaf]
	rootsW  *consul.Watch[*roots]

	leaf  atomic.Pointer[leaf]
	roots atomic.Pointer[roots]

	rotations atomic.Int64
	updated   atomic.Pointer[time.Time]

	readyOnce sync.Once
	ready     chan struct{}
}

type leaf struct {
	svid   *x509svid.SVID
	cert   *tls.Certificate
	serial string
}

type roots struct {
	td     spiffeid.TrustDomain
	bundle *x509bundle.Bundle
	ids    []string
}

// New returns a Source for the leaf certificate of service (the proxied
// service, not the proxy). Nothing is fetched until Run.
func New(client *api.Client, service string, opts ...consul.Option) *Source {
	s := &Source{service: service, ready: make(chan struct{})}
	s.leafW = consul.NewWatch("connect/ca/leaf/"+service, fetchLeaf(client, service), s.setLeaf, opts...)
	s.rootsW = consul.NewWatch("connect/ca/roots", fetchRoots(client), s.setRoots, opts...)
	return s
}

// Run follows the leaf and the roots until ctx is done.
func (s *Source) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.leafW.Run(ctx) })
	g.Go(func() error { return s.rootsW.Run(ctx) })
	return g.Wait()
}

// Ready is closed once both a leaf and the roots have been loaded.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// TrustDomain returns the cluster's trust domain, or ErrNotReady.
func (s *Source) TrustDomain() (spiffeid.TrustDomain, error) {
	r := s.roots.Load()
	if r == nil {
		return spiffeid.TrustDomain{}, mtls.ErrNotReady
	}
	return r.td, nil
}

// GetX509SVID implements x509svid.Source.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) {
	l := s.leaf.Load()
	if l == nil {
		return nil, mtls.ErrNotReady
	}
	return l.svid, nil
}

// Certificate implements mtls.Source.
func (s *Source) Certificate() (*tls.Certificate, error) {
	l := s.leaf.Load()
	if l == nil {
		return nil, mtls.ErrNotReady
	}
	return l.cert, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source. Only the
// cluster's own trust domain has a bundle.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	r := s.roots.Load()
	if r == nil {
		return nil, mtls.ErrNotReady
	}
	if td != r.td {
		return nil, fmt.Errorf("consulca: no bundle for trust domain %q (this cluster is %q)", td, r.td)
	}
	return r.bundle, nil
}

// Status is the source's state for /config_dump; it holds no secrets.
type Status struct {
	Service     string          `json:"service"`
	TrustDomain string          `json:"trust_domain,omitempty"`
	LeafSerial  string          `json:"leaf_serial,omitempty"`
	LeafID      string          `json:"leaf_spiffe_id,omitempty"`
	NotAfter    time.Time       `json:"leaf_not_after,omitzero"`
	RootIDs     []string        `json:"root_ids,omitempty"`
	Watches     []consul.Status `json:"watches"`
}

// Detail reports what is loaded and how fresh each Consul watch is.
func (s *Source) Detail() Status {
	st := Status{Service: s.service, Watches: []consul.Status{s.leafW.Status(), s.rootsW.Status()}}
	if l := s.leaf.Load(); l != nil {
		st.LeafSerial, st.LeafID, st.NotAfter = l.serial, l.svid.ID.String(), l.svid.Certificates[0].NotAfter
	}
	if r := s.roots.Load(); r != nil {
		st.TrustDomain, st.RootIDs = r.td.Name(), r.ids
	}
	return st
}

// Status implements mtls.Identity; Details holds the Detail.
func (s *Source) Status() mtls.IdentityStatus {
	d := s.Detail()
	st := mtls.IdentityStatus{Source: "consul", SPIFFEID: d.LeafID, Serial: d.LeafSerial,
		NotAfter: d.NotAfter, TrustDomain: d.TrustDomain, Rotations: s.rotations.Load(), Details: d}
	if l := s.leaf.Load(); l != nil {
		st.NotBefore = l.svid.Certificates[0].NotBefore
	}
	if d.TrustDomain != "" {
		st.TrustDomains = []string{d.TrustDomain}
	}
	if u := s.updated.Load(); u != nil {
		st.Updated = *u
	}
	for _, w := range d.Watches {
		if w.LastError != "" {
			st.LastError = w.Name + ": " + w.LastError
		}
	}
	return st
}

func (s *Source) setLeaf(l *leaf) {
	if prev := s.leaf.Swap(l); prev != nil && prev.serial != l.serial {
		s.rotations.Add(1)
	}
	s.touch()
	s.markReady()
}

func (s *Source) setRoots(r *roots) {
	s.roots.Store(r)
	s.touch()
	s.markReady()
}

func (s *Source) touch() {
	now := time.Now()
	s.updated.Store(&now)
}

func (s *Source) markReady() {
	if s.leaf.Load() != nil && s.roots.Load() != nil {
		s.readyOnce.Do(func() { close(s.ready) })
	}
}

func fetchLeaf(client *api.Client, service string) consul.Fetch[*leaf] {
	return func(opts *api.QueryOptions) (*leaf, *api.QueryMeta, error) {
		lc, meta, err := client.Agent().ConnectCALeaf(service, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("consulca: leaf for %q: %w", service, err)
		}
		l, err := parseLeaf(lc)
		if err != nil {
			return nil, nil, err
		}
		return l, meta, nil
	}
}

// parseLeaf converts Consul's leaf (certificate chain PEM and a SEC1 EC,
// PKCS#1 RSA or PKCS#8 key) into an SVID; go-spiffe wants PKCS#8.
func parseLeaf(lc *api.LeafCert) (*leaf, error) {
	var certDER []byte
	for rest := []byte(lc.CertPEM); ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			certDER = append(certDER, b.Bytes...)
		}
	}
	if len(certDER) == 0 {
		return nil, errors.New("consulca: leaf has no certificate")
	}
	kb, _ := pem.Decode([]byte(lc.PrivateKeyPEM))
	if kb == nil {
		return nil, errors.New("consulca: leaf has no private key")
	}
	keyDER, err := pkcs8(kb)
	if err != nil {
		return nil, fmt.Errorf("consulca: leaf key: %w", err)
	}
	svid, err := x509svid.ParseRaw(certDER, keyDER)
	if err != nil {
		return nil, fmt.Errorf("consulca: leaf: %w", err)
	}
	cert, err := mtls.TLSCertificate(svid)
	if err != nil {
		return nil, err
	}
	return &leaf{svid: svid, cert: cert, serial: lc.SerialNumber}, nil
}

// pkcs8 returns the PKCS#8 DER of a PEM private key. Consul encodes leaf
// keys as SEC1 "EC PRIVATE KEY" or, when the CA's PrivateKeyType is "rsa",
// as PKCS#1 "RSA PRIVATE KEY"; any other block is taken to be PKCS#8.
func pkcs8(kb *pem.Block) ([]byte, error) {
	var (
		key any
		err error
	)
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		return kb.Bytes, nil
	}
	if err != nil {
		return nil, err
	}
	return x509.MarshalPKCS8PrivateKey(key)
}

func fetchRoots(client *api.Client) consul.Fetch[*roots] {
	return func(opts *api.QueryOptions) (*roots, *api.QueryMeta, error) {
		list, meta, err := client.Agent().ConnectCARoots(opts)
		if err != nil {
			return nil, nil, fmt.Errorf("consulca: roots: %w", err)
		}
		r, err := parseRoots(list)
		if err != nil {
			return nil, nil, err
		}
		return r, meta, nil
	}
}

// parseRoots builds the trust bundle from every root Consul lists (the
// active one and those still trusted during a rotation).
func parseRoots(list *api.CARootList) (*roots, error) {
	td, err := spiffeid.TrustDomainFromString(list.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("consulca: roots: trust domain %q: %w", list.TrustDomain, err)
	}
	b := x509bundle.New(td)
	r := &roots{td: td, bundle: b}
	for _, root := range list.Roots {
		certs, err := parsePEMCerts(root.RootCertPEM)
		if err != nil {
			return nil, fmt.Errorf("consulca: root %s: %w", root.ID, err)
		}
		for _, c := range certs {
			b.AddX509Authority(c)
		}
		r.ids = append(r.ids, root.ID)
	}
	if b.Empty() {
		return nil, errors.New("consulca: Consul returned no CA roots")
	}
	return r, nil
}

func parsePEMCerts(s string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := []byte(s); ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate in PEM")
	}
	return out, nil
}

var _ mtls.Identity = (*Source)(nil)
