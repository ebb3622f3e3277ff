package metrics

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
)

// testCA is a self-made certificate authority for plain crypto/tls pairs.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert, key}
}

// leaf issues a certificate for "localhost" valid from notBefore to notAfter.
func (ca *testCA) leaf(t *testing.T, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// handshake runs a TLS handshake between a server and a client over
// loopback TCP and returns each side's error. After a client handshake that
// succeeded it reads once, which is where a TLS 1.3 client learns that the
// server rejected its certificate.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- tls.Server(c, server).HandshakeContext(ctx)
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(raw, client)
	clientErr = c.Handshake()
	if clientErr == nil {
		_, clientErr = c.Read(make([]byte, 1))
	}
	return <-done, clientErr
}

// rawClient connects to a TLS server and lets act do anything with the
// plain TCP connection; it returns the server's handshake error.
func rawClient(t *testing.T, server *tls.Config, serverTimeout time.Duration, act func(net.Conn)) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(serverTimeout))
		done <- tls.Server(c, server).Handshake()
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	act(raw)
	return <-done
}

func TestClassifyHandshakeErrorCryptoTLS(t *testing.T) {
	t.Parallel()
	ca, other := newTestCA(t, "ca"), newTestCA(t, "other ca")
	now := time.Now()
	good := ca.leaf(t, now.Add(-time.Minute), now.Add(time.Hour))
	expired := ca.leaf(t, now.Add(-2*time.Hour), now.Add(-time.Hour))
	notYetValid := ca.leaf(t, now.Add(time.Hour), now.Add(2*time.Hour))
	foreign := other.leaf(t, now.Add(-time.Minute), now.Add(time.Hour))

	serverConfig := func(v uint16) *tls.Config {
		return &tls.Config{
			Certificates: []tls.Certificate{good},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.pool(),
			MinVersion:   v, MaxVersion: v,
		}
	}
	// The client presents certs whatever CAs the server asks for (with
	// Certificates, crypto/tls would send nothing rather than a
	// certificate of another CA).
	clientConfig := func(v uint16, certs ...tls.Certificate) *tls.Config {
		return &tls.Config{
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if len(certs) == 0 {
					return &tls.Certificate{}, nil
				}
				return &certs[0], nil
			},
			RootCAs:    ca.pool(),
			ServerName: "localhost",
			MinVersion: v, MaxVersion: v,
		}
	}
	for _, c := range []struct {
		name                 string
		server, client       *tls.Config
		wantServer, wantClnt string // "" = the side must succeed or is not checked
	}{
		{"no client cert TLS1.3", serverConfig(tls.VersionTLS13), clientConfig(tls.VersionTLS13),
			ReasonNoClientCert, ReasonNoClientCert},
		{"no client cert TLS1.2", serverConfig(tls.VersionTLS12), clientConfig(tls.VersionTLS12),
			ReasonNoClientCert, ReasonProtocol}, // TLS 1.2 has no certificate_required alert: handshake_failure
		{"client cert from unknown CA", serverConfig(tls.VersionTLS13), clientConfig(tls.VersionTLS13, foreign),
			ReasonUnknownCA, ReasonUnknownCA},
		// The server says so with a certificate_expired alert.
		{"expired client cert", serverConfig(tls.VersionTLS13), clientConfig(tls.VersionTLS13, expired),
			ReasonExpired, ReasonExpired},
		{"client cert not yet valid", serverConfig(tls.VersionTLS13), clientConfig(tls.VersionTLS13, notYetValid),
			ReasonExpired, ReasonExpired},
		// The client's verdict reaches the server as a bad_certificate alert.
		{"server cert from unknown CA", &tls.Config{Certificates: []tls.Certificate{foreign}},
			clientConfig(tls.VersionTLS13), ReasonBadCertificate, ReasonUnknownCA},
		// A Go client sends bad_certificate whatever its reason.
		{"expired server cert", &tls.Config{Certificates: []tls.Certificate{expired}},
			clientConfig(tls.VersionTLS13), ReasonBadCertificate, ReasonExpired},
		{"server name mismatch", &tls.Config{Certificates: []tls.Certificate{good}},
			&tls.Config{RootCAs: ca.pool(), ServerName: "elsewhere"}, ReasonBadCertificate, ReasonBadCertificate},
		{"version mismatch", serverConfig(tls.VersionTLS13), clientConfig(tls.VersionTLS12, good),
			ReasonProtocol, ReasonProtocol},
		{"no common ALPN", &tls.Config{Certificates: []tls.Certificate{good}, NextProtos: []string{"h2"}},
			&tls.Config{RootCAs: ca.pool(), ServerName: "localhost", NextProtos: []string{"x-other"}},
			ReasonProtocol, ReasonProtocol},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			serr, cerr := handshake(t, c.server, c.client)
			if serr == nil || cerr == nil {
				t.Fatalf("handshake did not fail: server %v, client %v", serr, cerr)
			}
			if got := ClassifyHandshakeError(serr); got != c.wantServer {
				t.Errorf("server %q: got %s, want %s", serr, got, c.wantServer)
			}
			if got := ClassifyHandshakeError(cerr); got != c.wantClnt {
				t.Errorf("client %q: got %s, want %s", cerr, got, c.wantClnt)
			}
		})
	}

	t.Run("plaintext client", func(t *testing.T) {
		t.Parallel()
		err := rawClient(t, serverConfig(tls.VersionTLS13), 5*time.Second, func(c net.Conn) {
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		})
		if got := ClassifyHandshakeError(err); got != ReasonProtocol {
			t.Errorf("%q: got %s, want %s", err, got, ReasonProtocol)
		}
	})
	t.Run("silent client", func(t *testing.T) {
		t.Parallel()
		err := rawClient(t, serverConfig(tls.VersionTLS13), 50*time.Millisecond, func(c net.Conn) {
			time.Sleep(200 * time.Millisecond)
		})
		if got := ClassifyHandshakeError(err); got != ReasonTimeout {
			t.Errorf("%q: got %s, want %s", err, got, ReasonTimeout)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		t.Parallel()
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		err := tls.Server(a, serverConfig(tls.VersionTLS13)).HandshakeContext(ctx)
		if got := ClassifyHandshakeError(err); got != ReasonTimeout {
			t.Errorf("%q: got %s, want %s", err, got, ReasonTimeout)
		}
	})
	t.Run("client hangs up", func(t *testing.T) {
		t.Parallel()
		err := rawClient(t, serverConfig(tls.VersionTLS13), 5*time.Second, func(c net.Conn) { c.Close() })
		if got := ClassifyHandshakeError(err); got != ReasonOther {
			t.Errorf("%q: got %s, want %s", err, got, ReasonOther)
		}
	})
}

// TestClassifyHandshakeErrorMTLS drives Outrider's own mTLS configurations
// (go-spiffe verification, SPIFFE ID checks, the policy authorizer).
func TestClassifyHandshakeErrorMTLS(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, "example.org")
	otherTD := mtlstest.NewCA(t, "other.org")
	rogue := mtlstest.NewCA(t, "example.org") // same trust domain, another root
	const web, api = "spiffe://example.org/ns/default/dc/dc1/svc/web", "spiffe://example.org/ns/default/dc/dc1/svc/api"
	serverSrc := mtlstest.NewSource(ca.SVID(t, api), ca.Bundle())
	allow := func(spiffeid.ID) error { return nil }
	deny := func(peer spiffeid.ID) error {
		// The sidecar's Authorizer error.
		return fmt.Errorf("policy: %s denied by %s: %s", peer, "intention web->api", "deny intention")
	}
	nonSPIFFEURI := func(c *x509.Certificate) { c.URIs[0], _ = url.Parse("https://example.org/web") }
	caFlag := func(c *x509.Certificate) { c.IsCA = true }
	client := func(svid *x509svid.SVID, expected string) *tls.Config {
		src := mtlstest.NewSource(svid, ca.Bundle())
		return mtls.ClientConfig(src, spiffeid.RequireFromString(expected), nil)
	}
	for _, c := range []struct {
		name                   string
		authorize              mtls.Authorizer
		client                 *tls.Config
		wantServer, wantClient string
	}{
		{"denied by policy", deny, client(ca.SVID(t, web), api), ReasonDenied, ReasonBadCertificate},
		{"server is not who the client expects", allow, client(ca.SVID(t, web), web), ReasonBadCertificate, ReasonSPIFFEIDMismatch},
		// The server's VerifyConnection verdicts all reach the client as a
		// bad_certificate alert.
		{"client from another trust domain", allow, client(otherTD.SVID(t, "spiffe://other.org/svc/web"), api), ReasonUnknownTrustDomain, ReasonBadCertificate},
		{"client from a rogue root", allow, client(rogue.SVID(t, web), api), ReasonUnknownCA, ReasonBadCertificate},
		{"expired client SVID", allow, client(ca.SVID(t, web, mtlstest.Expired()), api), ReasonExpired, ReasonBadCertificate},
		{"client leaf without SPIFFE ID", allow, client(ca.SVID(t, web, mtlstest.NoURI()), api), ReasonNoSPIFFEID, ReasonBadCertificate},
		{"client leaf with two SPIFFE IDs", allow, client(ca.SVID(t, web, mtlstest.ExtraURI(api)), api), ReasonNoSPIFFEID, ReasonBadCertificate},
		{"client leaf with a non-SPIFFE URI", allow, client(ca.SVID(t, web, nonSPIFFEURI), api), ReasonNoSPIFFEID, ReasonBadCertificate},
		{"client leaf with the CA flag", allow, client(ca.SVID(t, web, caFlag), api), ReasonBadCertificate, ReasonBadCertificate},
		{"client without certificate", allow, &tls.Config{InsecureSkipVerify: true}, ReasonNoClientCert, ReasonNoClientCert},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			serr, cerr := handshake(t, mtls.ServerConfig(serverSrc, c.authorize, nil), c.client)
			if serr == nil || cerr == nil {
				t.Fatalf("handshake did not fail: server %v, client %v", serr, cerr)
			}
			if got := ClassifyHandshakeError(serr); got != c.wantServer {
				t.Errorf("server %q: got %s, want %s", serr, got, c.wantServer)
			}
			if got := ClassifyHandshakeError(cerr); got != c.wantClient {
				t.Errorf("client %q: got %s, want %s", cerr, got, c.wantClient)
			}
		})
	}

	t.Run("mtls.Dialer wrapping", func(t *testing.T) {
		t.Parallel()
		ln, err := tls.Listen("tcp", "127.0.0.1:0", mtls.ServerConfig(serverSrc, deny, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		d := mtls.NewDialer(mtlstest.NewSource(ca.SVID(t, web), ca.Bundle()), time.Second)
		_, err = d.Dial(context.Background(), ln.Addr().String(), spiffeid.RequireFromString(web))
		if got := ClassifyHandshakeError(err); got != ReasonSPIFFEIDMismatch {
			t.Errorf("%q: got %s, want %s", err, got, ReasonSPIFFEIDMismatch)
		}
		// A dial error wrapped in "mtls: " is not a TLS protocol error.
		addr := ln.Addr().String()
		ln.Close()
		_, err = d.Dial(context.Background(), addr, spiffeid.RequireFromString(api))
		if got := ClassifyHandshakeError(err); got != ReasonOther {
			t.Errorf("%q: got %s, want %s", err, got, ReasonOther)
		}
	})
}

func TestClassifyHandshakeErrorTexts(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ReasonOther},
		{io.EOF, ReasonOther},
		{errors.New("read tcp 1.2.3.4:1->5.6.7.8:2: read: connection reset by peer"), ReasonOther},
		{fmt.Errorf("mtls: handshake with 10.0.0.1:20000: %w", context.DeadlineExceeded), ReasonTimeout},
		{errors.New("mtls: peer presented no certificate"), ReasonNoClientCert},
		{errors.New("x509svid: could not get X509 bundle: consulca: no bundle for trust domain \"a\""), ReasonUnknownTrustDomain},
		{errors.New(`x509svid: could not get X509 bundle: x509bundle: no X.509 bundle for trust domain "other.org"`), ReasonUnknownTrustDomain},
		{errors.New("x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority"), ReasonUnknownCA},
		{errors.New("x509svid: could not get leaf SPIFFE ID: certificate contains no URI SAN"), ReasonNoSPIFFEID},
		{errors.New("x509svid: could not get leaf SPIFFE ID: certificate contains more than one URI SAN"), ReasonNoSPIFFEID},
		{errors.New("x509svid: could not get leaf SPIFFE ID: scheme is missing or invalid"), ReasonNoSPIFFEID},
		{errors.New("x509svid: could not get leaf SPIFFE ID: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"), ReasonNoSPIFFEID},
		{errors.New("x509svid: could not verify leaf certificate: x509: certificate has expired or is not yet valid: current time 2026-01-01T00:00:00Z is after 2020-01-01T00:00:00Z"), ReasonExpired},
		{fmt.Errorf("wrapped: %w", x509.CertificateInvalidError{Reason: x509.Expired}), ReasonExpired},
		{fmt.Errorf("wrapped: %w", x509.CertificateInvalidError{Reason: x509.NotAuthorizedToSign}), ReasonBadCertificate},
		{errors.New("remote error: tls: expired certificate"), ReasonExpired},
		{errors.New("remote error: tls: unknown certificate authority"), ReasonUnknownCA},
		{errors.New("remote error: tls: bad certificate"), ReasonBadCertificate},
		{errors.New("x509svid: leaf certificate with CA flag set to true"), ReasonBadCertificate},
		{errors.New("unexpected ID \"spiffe://a/b\""), ReasonSPIFFEIDMismatch},
		{errors.New("remote error: tls: access denied"), ReasonDenied},
		{errors.New("remote error: tls: handshake failure"), ReasonProtocol},
		{errors.New("tls: no cipher suite supported by both client and server"), ReasonProtocol},
		{fmt.Errorf("quic: %w", tls.AlertError(40)), ReasonProtocol},
	} {
		if got := ClassifyHandshakeError(c.err); got != c.want {
			t.Errorf("ClassifyHandshakeError(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}
