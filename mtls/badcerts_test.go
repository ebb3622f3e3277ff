package mtls

// The fixtures are checked in; regenerate them with
// go generate -run badcerts .

//go:generate go run ./testdata/badcerts/gen.go -out testdata/badcerts

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/outrider-mesh/outrider/mtls/devca"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
)

const badcertsDir = "testdata/badcerts"

var (
	fixtureClientID = spiffeid.RequireFromString("spiffe://example.org/client")
	fixtureServerID = spiffeid.RequireFromString("spiffe://example.org/server")
)

// badcerts lists the client leaves of testdata/badcerts (README.md there
// says how each is made). reason is what the server counts when it rejects
// the leaf ("" for the valid one), verdict a part of the go-spiffe or x509
// error saying why. extra and at are the one thing that would make the leaf
// verify: trusting the root fixture extra as well, or verifying at time at;
// they show that each fixture is bad for its one reason only.
var badcerts = []struct {
	name    string
	reason  string
	verdict string
	extra   string
	at      time.Time
}{
	{name: "valid"},
	{"expired", metrics.ReasonExpired, "certificate has expired or is not yet valid", "", date(2019, 6, 1)},
	{"not-yet-valid", metrics.ReasonExpired, "certificate has expired or is not yet valid", "", date(2120, 6, 1)},
	{"no-uri-san", metrics.ReasonNoSPIFFEID, "certificate contains no URI SAN", "", time.Time{}},
	{"two-uri-sans", metrics.ReasonNoSPIFFEID, "certificate contains more than one URI SAN", "", time.Time{}},
	{"non-spiffe-uri", metrics.ReasonNoSPIFFEID, "scheme is missing or invalid", "", time.Time{}},
	{"ca-leaf", metrics.ReasonBadCertificate, "leaf certificate with CA flag set to true", "", time.Time{}},
	{"wrong-trust-domain", metrics.ReasonUnknownTrustDomain, `no X.509 bundle for trust domain "other.org"`, "other-td-root", time.Time{}},
	{"unknown-root-leaf", metrics.ReasonUnknownCA, "certificate signed by unknown authority", "unknown-root", time.Time{}},
}

// badcertRoots are the CA fixtures; root has its key (root-key.pem).
var badcertRoots = []string{"root", "unknown-root", "other-td-root"}

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// TestBadCertsVerifyPeer runs each client leaf through VerifyPeer with only
// the example.org bundle trusted.
func TestBadCertsVerifyPeer(t *testing.T) {
	t.Parallel()
	trusted := fixtureBundle(t, "root")
	src := &fixtureSource{bundles: x509bundle.NewSet(trusted)}
	for _, c := range badcerts {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			leaf := fixtureLeaf(t, c.name)
			certs := []*x509.Certificate{leaf.Leaf}
			id, err := VerifyPeer(src, tls.ConnectionState{PeerCertificates: certs})
			if c.reason == "" {
				if err != nil || id != fixtureClientID {
					t.Fatalf("VerifyPeer = %s, %v; want %s", id, err, fixtureClientID)
				}
				return
			}
			if err == nil {
				t.Fatalf("VerifyPeer accepted it as %s", id)
			}
			if !strings.Contains(err.Error(), describeChain(certs)) {
				t.Errorf("error %q does not name the certificate (%s)", err, describeChain(certs))
			}
			if !strings.Contains(err.Error(), c.verdict) {
				t.Errorf("error %q does not say %q", err, c.verdict)
			}
			if got := metrics.ClassifyHandshakeError(err); got != c.reason {
				t.Errorf("ClassifyHandshakeError(%q) = %s, want %s", err, got, c.reason)
			}

			// What would make it good.
			bundles := x509bundle.NewSet(trusted)
			if c.extra != "" {
				bundles.Add(fixtureBundle(t, c.extra))
			}
			var opts []x509svid.VerifyOption
			if !c.at.IsZero() {
				opts = append(opts, x509svid.WithTime(c.at))
			}
			if c.extra != "" || !c.at.IsZero() {
				if _, _, err := x509svid.Verify(certs, bundles, opts...); err != nil {
					t.Errorf("still rejected with its one fault fixed: %v", err)
				}
			}
		})
	}
}

// TestBadCertsHandshake presents each client leaf in a real handshake with
// a server made by ServerConfig, whose SVID comes from the fixture root.
// crypto/tls only parses a client chain under RequireAnyClientCert, so
// every leaf reaches VerifyConnection and the server's error carries the
// reason. The client only ever learns bad_certificate: that is the alert
// crypto/tls sends for any VerifyConnection error.
func TestBadCertsHandshake(t *testing.T) {
	t.Parallel()
	ca, err := devca.Parse(readFixture(t, "root.pem"), readFixture(t, "root-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	serverSVID, err := ca.Mint(fixtureServerID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := TLSCertificate(serverSVID)
	if err != nil {
		t.Fatal(err)
	}
	bundles := x509bundle.NewSet(fixtureBundle(t, "root"))
	serverSrc := &fixtureSource{cert: serverCert, bundles: bundles}

	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		for _, c := range badcerts {
			t.Run(tls.VersionName(version)+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				leaf := fixtureLeaf(t, c.name)
				authorized := make(chan spiffeid.ID, 1)
				server := ServerConfig(serverSrc, func(peer spiffeid.ID) error {
					authorized <- peer
					return nil
				}, nil)
				client := ClientConfig(&fixtureSource{cert: &leaf, bundles: bundles}, fixtureServerID, nil)
				client.MaxVersion = version

				serr, cerr := handshakePair(t, server, client)
				t.Logf("server: %v; client: %v", serr, cerr)
				if c.reason == "" {
					if serr != nil {
						t.Fatalf("server rejected the valid leaf: %v", serr)
					}
					if got := <-authorized; got != fixtureClientID {
						t.Errorf("server authorized %s, want %s", got, fixtureClientID)
					}
					return
				}
				if serr == nil {
					t.Fatalf("server accepted it as %s", <-authorized)
				}
				if got := metrics.ClassifyHandshakeError(serr); got != c.reason {
					t.Errorf("server: ClassifyHandshakeError(%q) = %s, want %s", serr, got, c.reason)
				}
				if !strings.Contains(serr.Error(), c.verdict) {
					t.Errorf("server error %q does not say %q", serr, c.verdict)
				}
				if got := metrics.ClassifyHandshakeError(cerr); got != metrics.ReasonBadCertificate {
					t.Errorf("client: ClassifyHandshakeError(%q) = %s, want %s", cerr, got, metrics.ReasonBadCertificate)
				}
			})
		}
	}
}

// TestBadCertsFixturesDocumented keeps the fixtures, this test's table and
// the README in step.
func TestBadCertsFixturesDocumented(t *testing.T) {
	t.Parallel()
	readme := string(readFixture(t, "README.md"))
	var want []string
	for _, name := range badcertRoots {
		want = append(want, name+".pem")
	}
	want = append(want, "root-key.pem")
	for _, c := range badcerts {
		want = append(want, c.name+".pem", c.name+"-key.pem")
	}
	entries, err := os.ReadDir(badcertsDir)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".pem") {
			have = append(have, e.Name())
		}
		if e.Name() != "README.md" && !strings.Contains(readme, "`"+e.Name()+"`") {
			t.Errorf("README.md does not list %s", e.Name())
		}
	}
	slices.Sort(want)
	if !slices.Equal(have, want) {
		t.Errorf("fixture files %v, want %v (add new ones to the table of badcerts_test.go)", have, want)
	}
}

// handshakePair runs a handshake between server and client over loopback
// TCP and returns each side's error. A client whose handshake succeeded
// reads once: that is where a TLS 1.3 client learns its certificate was
// rejected.
func handshakePair(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- tls.Server(c, server).HandshakeContext(ctx)
	}()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(raw, client)
	clientErr = c.HandshakeContext(ctx)
	serverErr = <-done
	if clientErr == nil {
		_, clientErr = c.Read(make([]byte, 1))
	}
	return serverErr, clientErr
}

// fixtureSource is a fixed Source (mtlstest imports this package, so its
// internal tests cannot use mtlstest.Source).
type fixtureSource struct {
	cert    *tls.Certificate
	bundles *x509bundle.Set
}

func (s *fixtureSource) Certificate() (*tls.Certificate, error) {
	if s.cert == nil {
		return nil, ErrNotReady
	}
	return s.cert, nil
}

func (s *fixtureSource) GetX509SVID() (*x509svid.SVID, error) {
	if s.cert == nil {
		return nil, ErrNotReady
	}
	id, _ := x509svid.IDFromCert(s.cert.Leaf) // zero for the leaves without one
	signer, _ := s.cert.PrivateKey.(crypto.Signer)
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{s.cert.Leaf}, PrivateKey: signer}, nil
}

func (s *fixtureSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundles.GetX509BundleForTrustDomain(td)
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(badcertsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// fixtureLeaf loads name.pem and name-key.pem; Leaf is set.
func fixtureLeaf(t *testing.T, name string) tls.Certificate {
	t.Helper()
	cert, err := tls.X509KeyPair(readFixture(t, name+".pem"), readFixture(t, name+"-key.pem"))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return cert
}

// fixtureBundle loads the root fixture name.pem as the bundle of the trust
// domain in its URI SAN.
func fixtureBundle(t testing.TB, name string) *x509bundle.Bundle {
	t.Helper()
	b, err := x509bundle.Parse(spiffeid.TrustDomain{}, readFixture(t, name+".pem"))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	root := b.X509Authorities()[0]
	if len(root.URIs) != 1 {
		t.Fatalf("%s: want one URI SAN, got %v", name, root.URIs)
	}
	td, err := spiffeid.TrustDomainFromURI(root.URIs[0])
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return x509bundle.FromX509Authorities(td, b.X509Authorities())
}
