package mtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/mtls/devca"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
)

// These tests put hostile identities in otherwise valid leaves, signed by
// the trusted root of testdata/badcerts, and present them in real
// handshakes both ways: a client to a server made by ServerConfig, and a
// server to the Dialer. The side that verifies must refuse, with an error
// that says why and that metrics.ClassifyHandshakeError names.

// edgeCA signs leaves with the trusted fixture root.
type edgeCA struct {
	root *x509.Certificate
	key  crypto.Signer
}

func newEdgeCA(t testing.TB) *edgeCA {
	t.Helper()
	block, _ := pem.Decode(readFixture(t, "root-key.pem"))
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &edgeCA{root: fixtureBundle(t, "root").X509Authorities()[0], key: k.(crypto.Signer)}
}

// leaf issues a leaf whose URI SANs are exactly uris, byte for byte (the
// SAN extension is written by hand, so x509 neither checks nor normalizes
// them), with an X.509-SVID's key usages unless edit changes them. Leaf
// is nil when crypto/x509 cannot parse the result.
func (ca *edgeCA) leaf(t testing.TB, uris []string, edit func(*x509.Certificate)) *tls.Certificate {
	t.Helper()
	names := make([]asn1.RawValue, len(uris))
	for i, u := range uris {
		names[i] = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u)}
	}
	san, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return ca.leafSAN(t, san, edit)
}

// leafSAN is leaf with the subjectAltName extension's value given whole.
func (ca *edgeCA) leafSAN(t testing.TB, san []byte, edit func(*x509.Certificate)) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{Organization: []string{"identity edges"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: oidSubjectAltName, Value: san}},
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	cert.Leaf, _ = x509.ParseCertificate(der)
	return cert
}

// edgeSource presents cert and trusts only the fixture root.
func edgeSource(t testing.TB, cert *tls.Certificate) *fixtureSource {
	return &fixtureSource{cert: cert, bundles: x509bundle.NewSet(fixtureBundle(t, "root"))}
}

// validLeaf is an SVID for id from the fixture root.
func validLeaf(t *testing.T, id spiffeid.ID) *tls.Certificate {
	t.Helper()
	ca, err := devca.Parse(readFixture(t, "root.pem"), readFixture(t, "root-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Mint(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := TLSCertificate(svid)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// serveOnce accepts one connection on loopback and runs a server
// handshake with cfg; the handshake's error arrives on the channel.
func serveOnce(t *testing.T, cfg *tls.Config) (addr string, result <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, cfg)
		err = tc.Handshake()
		if err == nil {
			// Let a TLS 1.3 client read its tickets and our verdict.
			_, err = tc.Write([]byte("ok"))
		}
		done <- err
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), done
}

// dialOnce dials addr with a Dialer presenting a valid client SVID and
// expecting expected; it returns Dial's error (after one read when the
// handshake succeeded).
func dialOnce(t *testing.T, addr string, expected spiffeid.ID) error {
	t.Helper()
	d := NewDialer(edgeSource(t, validLeaf(t, fixtureClientID)), 5*time.Second)
	conn, err := d.Dial(t.Context(), addr, expected)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Read(make([]byte, 2))
	return err
}

// pairOK reports whether handshakePair saw an accepted handshake: the
// client's read after it ends when the server hangs up.
func pairOK(serverErr, clientErr error) bool {
	return serverErr == nil && (clientErr == nil || errors.Is(clientErr, io.EOF))
}

func wantRefusal(t *testing.T, side string, err error, reason, verdict string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted", side)
	}
	if got := metrics.ClassifyHandshakeError(err); got != reason {
		t.Errorf("%s: ClassifyHandshakeError(%q) = %s, want %s", side, err, got, reason)
	}
	if !strings.Contains(err.Error(), verdict) {
		t.Errorf("%s: error %q does not say %q", side, err, verdict)
	}
}

// malformedIDs are URI SANs that must not be taken for a SPIFFE ID, with
// the reason counted and the words of the error. Most pass crypto/x509's
// parser and reach go-spiffe's; the ones x509 refuses fail
// tls.Conn's certificate parsing ("x509: ..."), before any of our code.
var malformedIDs = []struct {
	name    string
	uris    []string
	reason  string
	verdict string
}{
	{"uppercase scheme", []string{"SPIFFE://example.org/client"}, metrics.ReasonNoSPIFFEID, "is not written as the SPIFFE ID spiffe://example.org/client it parses to"},
	{"mixed-case scheme", []string{"Spiffe://example.org/client"}, metrics.ReasonNoSPIFFEID, "is not written as the SPIFFE ID spiffe://example.org/client it parses to"},
	{"uppercase trust domain", []string{"spiffe://Example.org/client"}, metrics.ReasonNoSPIFFEID, "trust domain characters are limited"},
	{"trailing slash", []string{"spiffe://example.org/client/"}, metrics.ReasonNoSPIFFEID, "trailing slash"},
	{"empty segment", []string{"spiffe://example.org//client"}, metrics.ReasonNoSPIFFEID, "empty segments"},
	{"dot segment", []string{"spiffe://example.org/./client"}, metrics.ReasonNoSPIFFEID, "dot segments"},
	{"dot-dot segment", []string{"spiffe://example.org/x/../client"}, metrics.ReasonNoSPIFFEID, "dot segments"},
	{"percent-encoded slash", []string{"spiffe://example.org/a%2Fclient"}, metrics.ReasonNoSPIFFEID, "path segment characters"},
	{"percent-encoded letter", []string{"spiffe://example.org/%63lient"}, metrics.ReasonNoSPIFFEID, "path segment characters"},
	{"query", []string{"spiffe://example.org/client?x=1"}, metrics.ReasonNoSPIFFEID, "path segment characters"},
	{"fragment", []string{"spiffe://example.org/client#x"}, metrics.ReasonNoSPIFFEID, "path segment characters"},
	{"space", []string{"spiffe://example.org/cli ent"}, metrics.ReasonNoSPIFFEID, "path segment characters"},
	{"userinfo", []string{"spiffe://user@example.org/client"}, metrics.ReasonNoSPIFFEID, "trust domain characters are limited"},
	{"port", []string{"spiffe://example.org:443/client"}, metrics.ReasonNoSPIFFEID, "trust domain characters are limited"},
	{"empty trust domain", []string{"spiffe:///client"}, metrics.ReasonNoSPIFFEID, "trust domain is missing"},
	{"IPv6-literal trust domain", []string{"spiffe://[::1]/client"}, metrics.ReasonNoSPIFFEID, "trust domain characters are limited"},
	// Digits and dots are trust domain characters: it parses, and no
	// bundle is held for it.
	{"IPv4-literal trust domain", []string{"spiffe://127.0.0.1/client"}, metrics.ReasonUnknownTrustDomain, `no X.509 bundle for trust domain "127.0.0.1"`},
	{"trust domain only", []string{"spiffe://example.org"}, metrics.ReasonNoSPIFFEID, "ID of a trust domain, not of a workload"},
	{"overlong", []string{"spiffe://example.org/" + strings.Repeat("c", MaxIDLength)}, metrics.ReasonNoSPIFFEID, "over the 2048"},
	{"NUL byte", []string{"spiffe://example.org/cli\x00ent"}, metrics.ReasonBadCertificate, "invalid control character"},
	{"non-ASCII", []string{"spiffe://example.org/cl\u00efent"}, metrics.ReasonBadCertificate, "uniformResourceIdentifier is malformed"},
	{"no scheme", []string{"//example.org/client"}, metrics.ReasonNoSPIFFEID, "scheme is missing or invalid"},
	{"other scheme beside a valid ID", []string{"https://example.org/client", "spiffe://example.org/client"}, metrics.ReasonNoSPIFFEID, "more than one URI SAN"},
	{"two SPIFFE IDs", []string{"spiffe://example.org/client", "spiffe://example.org/server"}, metrics.ReasonNoSPIFFEID, "more than one URI SAN"},
	{"same SPIFFE ID twice", []string{"spiffe://example.org/client", "spiffe://example.org/client"}, metrics.ReasonNoSPIFFEID, "more than one URI SAN"},
}

// TestIdentityEdgesMalformedIDs presents each malformed ID as a client's
// and as a server's, and checks a valid ID and one of exactly MaxIDLength
// bytes are accepted the same way.
func TestIdentityEdgesMalformedIDs(t *testing.T) {
	t.Parallel()
	ca := newEdgeCA(t)
	serverSrc := edgeSource(t, validLeaf(t, fixtureServerID))
	longest := "spiffe://example.org/" + strings.Repeat("c", MaxIDLength-len("spiffe://example.org/"))

	for _, good := range []string{fixtureClientID.String(), longest} {
		leaf := ca.leaf(t, []string{good}, nil)
		id := spiffeid.RequireFromString(good)
		authorized := make(chan spiffeid.ID, 1)
		server := ServerConfig(serverSrc, func(p spiffeid.ID) error { authorized <- p; return nil }, nil)
		if serr, cerr := handshakePair(t, server, ClientConfig(edgeSource(t, leaf), fixtureServerID, nil)); !pairOK(serr, cerr) {
			t.Fatalf("%d-byte client ID: server %v, client %v", len(good), serr, cerr)
		}
		if got := <-authorized; got != id {
			t.Errorf("authorized %s, want %s", got, id)
		}
		addr, _ := serveOnce(t, &tls.Config{Certificates: []tls.Certificate{*leaf}})
		if err := dialOnce(t, addr, id); err != nil {
			t.Fatalf("%d-byte server ID: %v", len(good), err)
		}
	}

	for _, c := range malformedIDs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			leaf := ca.leaf(t, c.uris, nil)
			ourCheck := leaf.Leaf != nil // x509 parsed it: our verification must refuse it

			t.Run("client", func(t *testing.T) {
				server := ServerConfig(serverSrc, func(p spiffeid.ID) error {
					t.Errorf("authorizer ran for %s", p)
					return nil
				}, nil)
				serr, cerr := handshakePair(t, server, ClientConfig(edgeSource(t, leaf), fixtureServerID, nil))
				t.Logf("server: %v", serr)
				wantRefusal(t, "server", serr, c.reason, c.verdict)
				if ourCheck && !strings.Contains(serr.Error(), "peer certificate rejected (") {
					t.Errorf("server error %q does not name the certificate", serr)
				}
				// The client learns only the alert: bad_certificate from
				// VerifyConnection, decode_error when crypto/tls could not
				// parse the certificate.
				want := metrics.ReasonBadCertificate
				if !ourCheck {
					want = metrics.ReasonProtocol
				}
				if got := metrics.ClassifyHandshakeError(cerr); got != want {
					t.Errorf("client: ClassifyHandshakeError(%q) = %s, want %s", cerr, got, want)
				}
			})
			t.Run("server", func(t *testing.T) {
				addr, _ := serveOnce(t, &tls.Config{Certificates: []tls.Certificate{*leaf}})
				// Expect what the URI would mean if normalized: SPIFFE://x/y
				// must not pass as spiffe://x/y.
				err := dialOnce(t, addr, fixtureClientID)
				t.Logf("dialer: %v", err)
				wantRefusal(t, "dialer", err, c.reason, c.verdict)
			})
		})
	}
}

// TestIdentityEdgesErrorBounded: a peer's names reach the logs cut short.
func TestIdentityEdgesErrorBounded(t *testing.T) {
	t.Parallel()
	ca := newEdgeCA(t)
	leaf := ca.leaf(t, []string{"spiffe://example.org/" + strings.Repeat("c", 64<<10)}, func(c *x509.Certificate) {
		c.Subject.CommonName = strings.Repeat("n", 32<<10)
	})
	_, err := VerifyPeer(edgeSource(t, nil), tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf.Leaf}})
	if err == nil {
		t.Fatal("accepted")
	}
	if n := len(err.Error()); n > 2*1024 {
		t.Errorf("error is %d bytes: %.300s...", n, err)
	}
	if !strings.Contains(err.Error(), "(65557 bytes)") {
		t.Errorf("error %q does not say how long the ID was", err)
	}
}

// TestIdentityEdgesKeyUsage checks the X.509-SVID rules on a leaf's
// usages (X509-SVID §4.1, §4.3, §4.4) from both sides. The extended key
// usage is optional; when present it must allow the use this side makes
// of the leaf.
func TestIdentityEdgesKeyUsage(t *testing.T) {
	t.Parallel()
	ca := newEdgeCA(t)
	eku := func(u ...x509.ExtKeyUsage) func(*x509.Certificate) {
		return func(c *x509.Certificate) { c.ExtKeyUsage = u }
	}
	const usageVerdict = "certificate specifies an incompatible key usage"
	tests := []struct {
		name                 string
		edit                 func(*x509.Certificate)
		asClient, asServer   string // "" accepted, else what the error says
		clientWhy, serverWhy string // the reason counted
	}{
		{name: "SVID usages"},
		{name: "CA flag", edit: func(c *x509.Certificate) { c.IsCA = true },
			asClient: "leaf certificate with CA flag set to true", asServer: "leaf certificate with CA flag set to true"},
		{name: "keyCertSign", edit: func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign },
			asClient: "KeyCertSign", asServer: "KeyCertSign"},
		{name: "cRLSign", edit: func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCRLSign },
			asClient: "KeyCrlSign", asServer: "KeyCrlSign"},
		{name: "no digitalSignature", edit: func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement },
			asClient: "without the digitalSignature key usage", asServer: "without the digitalSignature key usage"},
		{name: "no key usage extension", edit: func(c *x509.Certificate) { c.KeyUsage = 0 },
			asClient: "without the digitalSignature key usage", asServer: "without the digitalSignature key usage"},
		{name: "clientAuth only", edit: eku(x509.ExtKeyUsageClientAuth),
			asServer: "does not allow serverAuth"},
		{name: "serverAuth only", edit: eku(x509.ExtKeyUsageServerAuth),
			asClient: "does not allow clientAuth"},
		{name: "codeSigning only", edit: eku(x509.ExtKeyUsageCodeSigning),
			asClient: "does not allow clientAuth", asServer: "does not allow serverAuth"},
		{name: "unknown extended key usage only", edit: func(c *x509.Certificate) {
			c.ExtKeyUsage, c.UnknownExtKeyUsage = nil, []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 99999, 1}}
		}, asClient: "does not allow clientAuth", asServer: "does not allow serverAuth"},
		{name: "no extended key usage", edit: eku()},
		{name: "anyExtendedKeyUsage", edit: eku(x509.ExtKeyUsageAny)},
	}
	serverSrc := edgeSource(t, validLeaf(t, fixtureServerID))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// As a client, to ServerConfig.
			leaf := ca.leaf(t, []string{fixtureClientID.String()}, tt.edit)
			serr, cerr := handshakePair(t, ServerConfig(serverSrc, nil, nil), ClientConfig(edgeSource(t, leaf), fixtureServerID, nil))
			if tt.asClient == "" {
				if !pairOK(serr, cerr) {
					t.Errorf("client leaf refused: server %v, client %v", serr, cerr)
				}
			} else {
				wantRefusal(t, "server", serr, metrics.ReasonBadCertificate, tt.asClient)
			}
			if strings.HasPrefix(tt.asClient, "does not allow") || strings.HasPrefix(tt.asClient, "without") {
				wantRefusal(t, "server", serr, metrics.ReasonBadCertificate, usageVerdict)
			}

			// As a server, to the Dialer.
			leaf = ca.leaf(t, []string{fixtureServerID.String()}, tt.edit)
			addr, _ := serveOnce(t, &tls.Config{Certificates: []tls.Certificate{*leaf}})
			err := dialOnce(t, addr, fixtureServerID)
			if tt.asServer == "" {
				if err != nil {
					t.Errorf("server leaf refused: %v", err)
				}
				return
			}
			wantRefusal(t, "dialer", err, metrics.ReasonBadCertificate, tt.asServer)
		})
	}
}

// TestIdentityEdgesTLSVersions: TLS 1.2 is the minimum (Envoy clients
// still default to it), and in TLS 1.2 only ECDHE with an AEAD is
// accepted, on both sides.
func TestIdentityEdgesTLSVersions(t *testing.T) {
	t.Parallel()
	serverSrc := edgeSource(t, validLeaf(t, fixtureServerID))
	clientSrc := edgeSource(t, validLeaf(t, fixtureClientID))
	tests := []struct {
		name     string
		min, max uint16
		suites   []uint16
		verdict  string // "" accepted; else what the refusing side says
	}{
		{name: "TLS 1.0", min: tls.VersionTLS10, max: tls.VersionTLS10, verdict: "unsupported versions"},
		{name: "TLS 1.1", min: tls.VersionTLS10, max: tls.VersionTLS11, verdict: "unsupported versions"},
		{name: "TLS 1.2 ECDHE-ECDSA AES-GCM", max: tls.VersionTLS12, suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
		{name: "TLS 1.2 ECDHE-ECDSA ChaCha20", max: tls.VersionTLS12, suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}},
		{name: "TLS 1.2 ECDHE CBC-SHA1", max: tls.VersionTLS12, suites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		}, verdict: "no cipher suite supported"},
		{name: "TLS 1.2 ECDHE CBC-SHA256", max: tls.VersionTLS12, suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
			verdict: "no cipher suite supported"},
		{name: "TLS 1.2 RSA key exchange", max: tls.VersionTLS12, suites: []uint16{
			tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_RSA_WITH_AES_128_CBC_SHA,
		}, verdict: "no cipher suite supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// A client of these versions and suites to ServerConfig.
			client := ClientConfig(clientSrc, fixtureServerID, nil)
			client.MinVersion, client.MaxVersion, client.CipherSuites = tt.min, tt.max, tt.suites
			if client.MinVersion == 0 {
				client.MinVersion = tls.VersionTLS12
			}
			serr, cerr := handshakePair(t, ServerConfig(serverSrc, nil, nil), client)
			if tt.verdict == "" {
				if !pairOK(serr, cerr) {
					t.Fatalf("refused: server %v, client %v", serr, cerr)
				}
			} else {
				wantRefusal(t, "server", serr, metrics.ReasonProtocol, tt.verdict)
				wantRefusal(t, "client", cerr, metrics.ReasonProtocol, "remote error")
			}

			// A server of these versions and suites to the Dialer.
			addr, _ := serveOnce(t, &tls.Config{
				Certificates: []tls.Certificate{*validLeaf(t, fixtureServerID)},
				MinVersion:   tt.min, MaxVersion: tt.max, CipherSuites: tt.suites,
			})
			err := dialOnce(t, addr, fixtureServerID)
			if tt.verdict == "" {
				if err != nil {
					t.Fatalf("dialer refused: %v", err)
				}
				return
			}
			wantRefusal(t, "dialer", err, metrics.ReasonProtocol, "tls: ")
		})
	}
}

// TestIdentityEdgesSNI: authorization is by SPIFFE ID, never by SNI. A
// server whose SVID names another workload is refused even though its
// certificate also carries, as a DNS SAN, exactly the SNI the client
// sent (the name Consul gives Envoy for the expected service); a server
// presents its SVID whatever SNI it is asked for and authorizes the
// client's SPIFFE ID, whatever SNI the client claims; and the Dialer sends
// no SNI at all.
func TestIdentityEdgesSNI(t *testing.T) {
	t.Parallel()
	const sni = "server.default.dc1.internal.example.org.consul"
	other := spiffeid.RequireFromString("spiffe://example.org/other")
	ca, err := devca.Parse(readFixture(t, "root.pem"), readFixture(t, "root-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	impostorSVID, err := ca.Mint(other, time.Hour, sni)
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := TLSCertificate(impostorSVID)
	if err != nil {
		t.Fatal(err)
	}
	clientSrc := edgeSource(t, validLeaf(t, fixtureClientID))

	t.Run("server with another SPIFFE ID and the SNI's DNS name", func(t *testing.T) {
		t.Parallel()
		client := ClientConfig(clientSrc, fixtureServerID, nil)
		client.ServerName = sni
		seen := make(chan string, 1)
		server := ServerConfig(edgeSource(t, impostor), nil, nil)
		server.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) { seen <- h.ServerName; return nil, nil }
		_, cerr := handshakePair(t, server, client)
		if got := <-seen; got != sni {
			t.Fatalf("client sent SNI %q, want %q", got, sni)
		}
		wantRefusal(t, "client", cerr, metrics.ReasonSPIFFEIDMismatch, "server presented "+other.String()+", want "+fixtureServerID.String())
	})

	t.Run("client SNI naming another service", func(t *testing.T) {
		t.Parallel()
		authorized := make(chan spiffeid.ID, 1)
		server := ServerConfig(edgeSource(t, validLeaf(t, fixtureServerID)), func(p spiffeid.ID) error {
			authorized <- p
			if p != other {
				return errDeniedByTest(p)
			}
			return nil
		}, nil)
		client := ClientConfig(clientSrc, fixtureServerID, nil)
		client.ServerName = "other.default.dc1.internal.example.org.consul"
		serr, _ := handshakePair(t, server, client)
		if got := <-authorized; got != fixtureClientID {
			t.Errorf("authorizer saw %s, want the client's SPIFFE ID %s", got, fixtureClientID)
		}
		wantRefusal(t, "server", serr, metrics.ReasonDenied, "denied by")
	})

	t.Run("Dialer sends no SNI", func(t *testing.T) {
		t.Parallel()
		seen := make(chan string, 1)
		cfg := &tls.Config{
			Certificates:       []tls.Certificate{*validLeaf(t, fixtureServerID)},
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) { seen <- h.ServerName; return nil, nil },
		}
		addr, _ := serveOnce(t, cfg)
		if err := dialOnce(t, addr, fixtureServerID); err != nil {
			t.Fatal(err)
		}
		if got := <-seen; got != "" {
			t.Errorf("Dialer sent SNI %q", got)
		}
	})
}

type deniedByTest spiffeid.ID

func (d deniedByTest) Error() string {
	return spiffeid.ID(d).String() + " denied by the test's allow list"
}

func errDeniedByTest(id spiffeid.ID) error { return deniedByTest(id) }
