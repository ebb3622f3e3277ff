package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
// one SPIFFE ID, and returns that ID. Beyond go-spiffe's x509svid.Verify
// it enforces the rest of the X.509-SVID rules on the leaf (checkLeaf),
// except the extended key usage, which depends on the side: ServerConfig
// and ClientConfig check that too.
func VerifyPeer(src Source, cs tls.ConnectionState) (spiffeid.ID, error) {
	return verifyPeer(src, cs, x509.ExtKeyUsageAny)
}

// verifyPeer is VerifyPeer for a peer whose leaf must allow usage
// (x509.ExtKeyUsageAny: any).
func verifyPeer(src Source, cs tls.ConnectionState, usage x509.ExtKeyUsage) (spiffeid.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, fmt.Errorf("mtls: peer presented no certificate")
	}
	id, _, err := x509svid.Verify(cs.PeerCertificates, src)
	if err == nil {
		err = checkLeaf(cs.PeerCertificates[0], id, usage)
	}
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("mtls: peer certificate rejected (%s): %w", describeChain(cs.PeerCertificates), err)
	}
	return id, nil
}

// ALPNOutrider is the ALPN protocol an Outrider public listener selects
// when a client offers it. A client that sees it negotiated knows the
// server re-verifies and re-authorizes resumed sessions, so it may resume.
const ALPNOutrider = "x-outrider-l4"

// clientALPN is what the Dialer offers: the Outrider marker, and
// "http/1.1" only because Go servers configured with just "h2" (Consul's
// built-in proxy) reject a client whose list has no overlap except for
// that fallback (crypto/tls negotiateALPN); they then select nothing.
var clientALPN = []string{ALPNOutrider, "http/1.1"}

// curves is the key exchange preference for mesh links: X25519 and P-256
// (Envoy's defaults). Go's default adds the X25519MLKEM768 post-quantum
// hybrid first, which costs about a quarter of a full handshake's CPU
// (BenchmarkHandshake) on every new connection between sidecars.
var curves = []tls.CurveID{tls.X25519, tls.CurveP256}

// cipherSuites are the TLS 1.2 suites of mesh links: ECDHE (forward
// secrecy) with an AEAD, for ECDSA and RSA leaves (Consul issues either).
// Go's default list also has the ECDHE CBC-SHA1 suites; every mesh peer
// (Go, Envoy) offers these first anyway. TLS 1.3 suites are not
// configurable and all qualify.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// PostQuantumCurves puts the X25519MLKEM768 hybrid first, for links that
// must resist harvest-now-decrypt-later; assign it to a config's
// CurvePreferences, or pass it to WithCurves.
var PostQuantumCurves = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}

// ServerConfig returns the configuration of a public (inbound) listener:
// it presents the source's current SVID, requires a client certificate that
// chains to the current bundle and carries one SPIFFE ID, and then asks
// authorize. nextProtos is the ALPN list; a sidecar passes ALPNOutrider.
//
// Sessions may be resumed: VerifyConnection runs on resumed handshakes too,
// so the chain is verified against the current bundle and the peer is
// authorized against the current policy every time.
func ServerConfig(src Source, authorize Authorizer, nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     cipherSuites,
		CurvePreferences: curves,
		ClientAuth:       tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return src.Certificate()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := verifyPeer(src, cs, x509.ExtKeyUsageClientAuth)
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
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     cipherSuites,
		CurvePreferences: curves,
		// Consul's leaves carry no DNS name: the chain and the SPIFFE ID are
		// verified in VerifyConnection instead of by hostname.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return src.Certificate()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := verifyPeer(src, cs, x509.ExtKeyUsageServerAuth)
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
// Session resumption is limited to Outrider servers. Consul's built-in
// proxy (and other Go servers that authorize in VerifyPeerCertificate)
// skip their intentions check on a resumed session, so a client that
// resumed with them would walk past a deny intention. A server is known to
// be Outrider once a full handshake with it negotiated ALPNOutrider; only
// then are its session tickets kept, and a handshake that does not
// negotiate it forgets the address again.
type Dialer struct {
	src     Source
	timeout time.Duration
	cache   tls.ClientSessionCache
	peers   *outriderSessions // nil when WithSessionCache replaced the policy
	wrap    func(net.Conn) net.Conn
	curves  []tls.CurveID // nil: the package default
	alpn    []string      // nil: clientALPN
	configs sync.Map      // spiffeid.ID -> *tls.Config
}

// DialerOption configures a Dialer.
type DialerOption func(*Dialer)

// WithSessionCache makes the Dialer resume sessions with every server
// through cache, Outrider or not. Safe only when every server dialled
// re-verifies resumed sessions; for tests.
func WithSessionCache(cache tls.ClientSessionCache) DialerOption {
	return func(d *Dialer) { d.cache, d.peers = cache, nil }
}

// WithConnWrapper makes the Dialer build its TLS connections over
// wrap(raw TCP connection); tls.Conn.NetConn returns the wrapper.
func WithConnWrapper(wrap func(net.Conn) net.Conn) DialerOption {
	return func(d *Dialer) { d.wrap = wrap }
}

// WithCurves sets the key exchanges the Dialer offers, in order.
func WithCurves(c []tls.CurveID) DialerOption {
	return func(d *Dialer) { d.curves = c }
}

// WithALPN sets the application protocols the Dialer offers, in order
// (default: ALPNOutrider then http/1.1, for L4 streams). L7 dialers offer
// "h2" or "http/1.1" alone and read the result from the connection state.
func WithALPN(protos ...string) DialerOption {
	return func(d *Dialer) { d.alpn = protos }
}

// WithoutResumption disables session resumption entirely.
func WithoutResumption() DialerOption {
	return func(d *Dialer) { d.cache, d.peers = nil, nil }
}

// NewDialer returns a Dialer whose TCP connect and TLS handshake together
// take at most timeout (0 means 10s, the value Consul's built-in proxy uses).
func NewDialer(src Source, timeout time.Duration, opts ...DialerOption) *Dialer {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	peers := newOutriderSessions(1024)
	d := &Dialer{src: src, timeout: timeout, cache: peers, peers: peers}
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
	under := raw
	if d.wrap != nil {
		under = d.wrap(raw)
	}
	conn := tls.Client(under, d.config(expected))
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		if d.peers != nil {
			d.peers.forget(raw.RemoteAddr().String())
		}
		return nil, fmt.Errorf("mtls: handshake with %s: %w", addr, err)
	}
	if d.peers != nil {
		d.peers.observe(raw.RemoteAddr().String(), conn.ConnectionState().NegotiatedProtocol)
	}
	return conn, nil
}

func (d *Dialer) config(expected spiffeid.ID) *tls.Config {
	if c, ok := d.configs.Load(expected); ok {
		return c.(*tls.Config)
	}
	cfg := ClientConfig(d.src, expected, d.cache)
	cfg.NextProtos = clientALPN
	if d.alpn != nil {
		cfg.NextProtos = d.alpn
	}
	if d.curves != nil {
		cfg.CurvePreferences = d.curves
	}
	c, _ := d.configs.LoadOrStore(expected, cfg)
	return c.(*tls.Config)
}

// outriderSessions is a client session cache that stores tickets only for
// servers marked as Outrider (see Dialer). Keys are remote addresses, as
// crypto/tls uses when ServerName is empty.
type outriderSessions struct {
	lru tls.ClientSessionCache
	max int

	mu       sync.Mutex
	outrider map[string]struct{}
}

func newOutriderSessions(n int) *outriderSessions {
	return &outriderSessions{lru: tls.NewLRUClientSessionCache(n), max: n, outrider: map[string]struct{}{}}
}

// observe records what a completed handshake with addr negotiated.
func (o *outriderSessions) observe(addr, alpn string) {
	if alpn != ALPNOutrider {
		o.forget(addr)
		return
	}
	o.mu.Lock()
	if _, ok := o.outrider[addr]; !ok {
		if len(o.outrider) >= o.max {
			clear(o.outrider) // endpoints churned a lot: start over, losing only resumption
		}
		o.outrider[addr] = struct{}{}
	}
	o.mu.Unlock()
}

// forget stops resuming with addr and drops its ticket.
func (o *outriderSessions) forget(addr string) {
	o.mu.Lock()
	_, ok := o.outrider[addr]
	delete(o.outrider, addr)
	o.mu.Unlock()
	if ok {
		o.lru.Put(addr, nil)
	}
}

func (o *outriderSessions) Get(key string) (*tls.ClientSessionState, bool) {
	return o.lru.Get(key)
}

func (o *outriderSessions) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		o.mu.Lock()
		_, ok := o.outrider[key]
		o.mu.Unlock()
		if !ok {
			return
		}
	}
	o.lru.Put(key, cs)
}
