package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"net/url"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzPeerURISAN presents a leaf signed by the trusted root whose URI SANs
// are the fuzzed strings, byte for byte, to the peer verification every
// handshake runs. An accepted peer has exactly one URI SAN, written exactly
// as the SPIFFE ID it is accepted as (which re-parses equal), naming a
// workload in the trust domain of a held bundle, in SPIFFE's canonical
// form: lower-case scheme and trust domain, no port, userinfo, query,
// fragment, percent-encoding, dot or empty segments.
func FuzzPeerURISAN(f *testing.F) {
	for _, s := range []string{
		"spiffe://example.org/client", "spiffe://", "spiffe://example.org", "spiffe://example.org/",
		"SPIFFE://example.org/client", "Spiffe://example.org/client", "spiffe://EXAMPLE.org/client",
		"spiffe://example.org:443/client", "spiffe://user@example.org/client", "spiffe://user:pw@example.org/client",
		"spiffe://example.org/client?x=1", "spiffe://example.org/client#f", "spiffe://example.org/%63lient",
		"spiffe://example.org/a%2Fb", "spiffe://example.org/./client", "spiffe://example.org/x/../client",
		"spiffe://example.org//client", "spiffe://example.org/client/", "spiffe:///client", "spiffe:example.org/client",
		"spiffe://[::1]/client", "spiffe://127.0.0.1/client", "spiffe://other.org/client", "spiffe://example.org/cl ient",
		"spiffe://example.org/cli\x00ent", "spiffe://example.org/cl\u00efent", "//example.org/client",
		"https://example.org/client", "spiffe://example.org/ns/default/dc/dc1/svc/web",
	} {
		f.Add(s, "", false)
	}
	f.Add("spiffe://example.org/client", "spiffe://example.org/server", true)
	f.Add("spiffe://example.org/client", "spiffe://example.org/client", true)
	f.Add("https://example.org/client", "spiffe://example.org/client", true)
	ca := newEdgeCA(f)
	src := edgeSource(f, nil)
	f.Fuzz(func(t *testing.T, first, second string, two bool) {
		uris := []string{first}
		if two {
			uris = append(uris, second)
		}
		leaf := ca.leaf(t, uris, nil)
		if leaf.Leaf == nil {
			return // crypto/x509 refuses the certificate; the handshake fails before us
		}
		id, err := verifyPeer(src, tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf.Leaf}}, x509.ExtKeyUsageClientAuth)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "mtls: peer certificate rejected (") {
				t.Fatalf("%q: error %q does not name the certificate", uris, err)
			}
			return
		}
		raw := uris[0]
		switch {
		case two:
			t.Fatalf("%q: two URI SANs accepted as %s", uris, id)
		case raw != id.String():
			t.Fatalf("URI SAN %q accepted as %s", raw, id)
		case id.Path() == "" || len(raw) > MaxIDLength:
			t.Fatalf("URI SAN %q accepted: not a workload ID of at most %d bytes", raw, MaxIDLength)
		case id.TrustDomain() != fixtureClientID.TrustDomain():
			t.Fatalf("URI SAN %q accepted in trust domain %s, which has no bundle", raw, id.TrustDomain())
		}
		if again, err := spiffeid.FromString(raw); err != nil || again != id {
			t.Fatalf("URI SAN %q accepted as %s re-parses as %s, %v", raw, id, again, err)
		}
		rest, ok := strings.CutPrefix(raw, "spiffe://"+id.TrustDomain().Name()+"/")
		if !ok || strings.Trim(id.TrustDomain().Name(), "abcdefghijklmnopqrstuvwxyz0123456789.-_") != "" {
			t.Fatalf("URI SAN %q accepted as %s: not canonical", raw, id)
		}
		for _, seg := range strings.Split(rest, "/") {
			if seg == "" || seg == "." || seg == ".." ||
				strings.Trim(seg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != "" {
				t.Fatalf("URI SAN %q accepted with segment %q", raw, seg)
			}
		}
	})
}

// FuzzRawURISANs reads fuzzed subjectAltName extension values the way
// checkLeaf does, in a certificate crypto/x509 parses: it finds the URIs
// x509 found, each as encoded (x509 holds them parsed), and refuses what
// is not DER rather than reading part of it.
func FuzzRawURISANs(f *testing.F) {
	for _, names := range [][]asn1.RawValue{
		{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte("spiffe://example.org/client")}},
		{{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte("example.org")},
			{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte("SPIFFE://example.org/client")}},
		{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte("spiffe://example.org/a")},
			{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte("spiffe://example.org/b")}},
		{{Class: asn1.ClassContextSpecific, Tag: 1, Bytes: []byte("a@example.org")}},
		{{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: []byte{127, 0, 0, 1}}},
	} {
		san, err := asn1.Marshal(names)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(san)
	}
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{0x30, 0x03, 0x86, 0x01})
	f.Add([]byte{0x31, 0x02, 0x86, 0x00})
	ca := newEdgeCA(f)
	f.Fuzz(func(t *testing.T, san []byte) {
		leaf := ca.leafSAN(t, san, nil)
		if leaf.Leaf == nil {
			return
		}
		uris, err := rawURISANs(leaf.Leaf)
		if err != nil {
			return // refused: no SPIFFE ID
		}
		if len(uris) != len(leaf.Leaf.URIs) {
			t.Fatalf("SAN % x: read %q, crypto/x509 found %v", san, uris, leaf.Leaf.URIs)
		}
		for i, u := range uris {
			if p, err := url.Parse(u); err != nil || p.String() != leaf.Leaf.URIs[i].String() {
				t.Fatalf("URI %d read as %q (%v), crypto/x509 parsed %q", i, u, err, leaf.Leaf.URIs[i])
			}
		}
	})
}
