package mtls

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Authorizer decides whether a verified peer may proceed. It runs inside the
// handshake (so a denied peer never gets a connection) and must not block.
type Authorizer func(peer spiffeid.ID) error

// VerifyPeer checks that the peer's certificate chain verifies against the
// source's current bundle for the peer's trust domain and carries exactly
// one SPIFFE ID, and returns that ID.
func VerifyPeer(src Source, cs tls.ConnectionState) (spiffeid.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, fmt.Errorf("mtls: peer presented no certificate")
	}
	id, _, err := x509svid.Verify(cs.PeerCertificates, src)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("mtls: peer certificate rejected (%s): %w", describeChain(cs.PeerCertificates), err)
	}
	return id, nil
}

// ServerConfig returns the configuration of a public (inbound) listener:
// it presents the source's current SVID, requires a client certificate that
// chains to the current bundle and carries one SPIFFE ID, and then asks
// authorize. nextProtos is the ALPN list (nil for L4).
func ServerConfig(src Source, authorize Authorizer, nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return src.Certificate()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := VerifyPeer(src, cs)
			if err != nil {
				return err
			}
			if authorize != nil {
				return authorize(id)
			}
			return nil
		},
		NextProtos: nextProtos,
	}
}

// ClientConfig returns the configuration for dialing an endpoint that must
// present exactly the SPIFFE ID expected. Sessions are cached per remote
// address in cache (may be nil); resumed sessions are verified again.
func ClientConfig(src Source, expected spiffeid.ID, cache tls.ClientSessionCache) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Consul's leaves carry no DNS name: the chain and the SPIFFE ID are
		// verified in VerifyConnection instead of by hostname.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return src.Certificate()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := VerifyPeer(src, cs)
			if err != nil {
				return err
			}
			if id != expected {
				return fmt.Errorf("mtls: server presented %s, want %s", id, expected)
			}
			return nil
		},
		ClientSessionCache: cache,
	}
}

// Dialer originates mTLS connections to endpoints. It keeps one client
// configuration per expected identity. Safe for concurrent use.
//
// By default it never resumes TLS sessions: Consul's built-in proxy (and
// other Go servers that authorize in VerifyPeerCertificate) skip their
// intentions check on a resumed session, so a client that resumes would
// walk past a deny intention on the server side. Our own server
// re-verifies resumed sessions (see ServerConfig), so WithSessionCache is
// safe only when every server dialled is known to do the same.
type Dialer struct {
	src     Source
	timeout time.Duration
	cache   tls.ClientSessionCache
	configs sync.Map // spiffeid.ID -> *tls.Config
}

// DialerOption configures a Dialer.
type DialerOption func(*Dialer)

// WithSessionCache enables TLS session resumption with cache. See Dialer
// for when this is safe.
func WithSessionCache(cache tls.ClientSessionCache) DialerOption {
	return func(d *Dialer) { d.cache = cache }
}

// NewDialer returns a Dialer whose TCP connect and TLS handshake together
// take at most timeout (0 means 10s, the value Consul's built-in proxy uses).
func NewDialer(src Source, timeout time.Duration, opts ...DialerOption) *Dialer {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := &Dialer{src: src, timeout: timeout}
	for _, o := range opts {
		o(d)
	}
	return d
}

// Dial connects to addr and completes a handshake in which the server must
// prove it is expected. It honours ctx and the dialer's timeout.
func (d *Dialer) Dial(ctx context.Context, addr string, expected spiffeid.ID) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var nd net.Dialer
	raw, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mtls: dial %s: %w", addr, err)
	}
	conn := tls.Client(raw, d.config(expected))
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("mtls: handshake with %s: %w", addr, err)
	}
	return conn, nil
}

func (d *Dialer) config(expected spiffeid.ID) *tls.Config {
	if c, ok := d.configs.Load(expected); ok {
		return c.(*tls.Config)
	}
	c, _ := d.configs.LoadOrStore(expected, ClientConfig(d.src, expected, d.cache))
	return c.(*tls.Config)
}
