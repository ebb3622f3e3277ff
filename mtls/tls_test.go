package mtls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"

	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	trustDomain = "11111111-2222-3333-4444-555555555555.consul"
	serverID    = "spiffe://" + trustDomain + "/ns/default/dc/dc1/svc/api"
	clientID    = "spiffe://" + trustDomain + "/ns/default/dc/dc1/svc/web"
	otherID     = "spiffe://" + trustDomain + "/ns/default/dc/dc1/svc/db"
)

// wait bounds every blocking step of these tests. Nothing should come close
// to it; it only turns a hang into a failure.
const wait = 5 * time.Second

var errDenied = errors.New("denied by test authorizer")

// verdict is what one server-side VerifyConnection call saw and decided.
type verdict struct {
	resumed bool
	err     error
}

// outcome is the server's view of one accepted connection.
type outcome struct {
	err      error     // from the server's handshake
	verdicts []verdict // VerifyConnection calls made during it (0 or 1)
}

// server is a loopback mTLS server built with mtls.ServerConfig. After a
// successful handshake it writes "ok\n" and reads until the client closes.
// Connections must be made one at a time for next to attribute outcomes.
type server struct {
	addr     string
	outcomes chan error
	verdicts chan verdict
}

func startServer(t *testing.T, src mtls.Source, authorize mtls.Authorizer) *server {
	t.Helper()
	return startServerALPN(t, src, authorize, nil)
}

// startServerALPN is startServer with the ALPN protocols the server selects
// from: mtls.ALPNOutrider for an Outrider sidecar, "h2" for Consul's
// built-in proxy.
func startServerALPN(t *testing.T, src mtls.Source, authorize mtls.Authorizer, nextProtos []string) *server {
	t.Helper()
	s := &server{outcomes: make(chan error, 64), verdicts: make(chan verdict, 64)}
	cfg := mtls.ServerConfig(src, authorize, nextProtos)
	inner := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		err := inner(cs)
		select {
		case s.verdicts <- verdict{resumed: cs.DidResume, err: err}:
		default:
		}
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(tls.Server(raw, cfg)) })
		}
	})
	return s
}

func (s *server) serve(conn *tls.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
	err := conn.Handshake()
	select {
	case s.outcomes <- err:
	default:
	}
	if err != nil {
		return
	}
	if _, err := io.WriteString(conn, "ok\n"); err != nil {
		return
	}
	io.Copy(io.Discard, conn)
}

// next returns the outcome of the connection just made.
func (s *server) next(t *testing.T) outcome {
	t.Helper()
	var o outcome
	select {
	case o.err = <-s.outcomes:
	case <-time.After(wait):
		t.Fatal("server saw no connection")
	}
	for {
		select {
		case v := <-s.verdicts:
			o.verdicts = append(o.verdicts, v)
		default:
			return o
		}
	}
}

// exchange reads the server's greeting, which only arrives once the server
// has accepted the handshake, and closes conn. In TLS 1.3 a client whose
// certificate the server rejects completes its side of the handshake and
// learns of the rejection here. Reading also stores TLS 1.3 session tickets.
func exchange(conn *tls.Conn) error {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
	buf := make([]byte, 3)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != "ok\n" {
		return errors.New("unexpected greeting " + string(buf))
	}
	return nil
}

// dial connects with the Dialer and completes the exchange.
func dial(t *testing.T, d *mtls.Dialer, addr, expected string) (tls.ConnectionState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	conn, err := d.Dial(ctx, addr, spiffeid.RequireFromString(expected))
	if err != nil {
		return tls.ConnectionState{}, err
	}
	cs := conn.ConnectionState()
	return cs, exchange(conn)
}

// dialConfig connects with a client configuration and completes the exchange.
func dialConfig(t *testing.T, cfg *tls.Config, addr string) (tls.ConnectionState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	conn := c.(*tls.Conn)
	cs := conn.ConnectionState()
	return cs, exchange(conn)
}

func wantErrContaining(t *testing.T, what string, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want one containing %q", what, subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: error %q does not contain %q", what, err, s)
		}
	}
}

func TestHandshakeAccepted(t *testing.T) {
	t.Parallel()
	root := mtlstest.NewCA(t, trustDomain)
	inter := root.Intermediate(t)
	tests := []struct {
		name             string
		serverCA, peerCA *mtlstest.CA
	}{
		{"root-issued leaves", root, root},
		{"client leaf via intermediate", root, inter},
		{"server leaf via intermediate", inter, root},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			seen := make(chan spiffeid.ID, 1)
			s := startServer(t, mtlstest.NewSource(tt.serverCA.SVID(t, serverID), root.Bundle()),
				func(peer spiffeid.ID) error { seen <- peer; return nil })
			d := mtls.NewDialer(mtlstest.NewSource(tt.peerCA.SVID(t, clientID), root.Bundle()), wait)

			cs, err := dial(t, d, s.addr, serverID)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			if o := s.next(t); o.err != nil {
				t.Fatalf("server handshake: %v", o.err)
			}
			select {
			case got := <-seen:
				if got.String() != clientID {
					t.Errorf("authorizer saw %s, want %s", got, clientID)
				}
			default:
				t.Error("authorizer was not called")
			}
			if got := cs.PeerCertificates[0].URIs[0].String(); got != serverID {
				t.Errorf("client saw server %s, want %s", got, serverID)
			}
			if cs.Version != tls.VersionTLS13 {
				t.Errorf("negotiated %s, want TLS 1.3 by default", tls.VersionName(cs.Version))
			}
		})
	}
}

// TestHandshakeRejected covers certificates that one side must refuse. The
// side that refuses names the reason; the other side fails too, either in
// Dial or on its first Read (TLS 1.3 clients finish before the server
// verifies them).
func TestHandshakeRejected(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, trustDomain)
	other := mtlstest.NewCA(t, trustDomain) // same trust domain, different root
	tests := []struct {
		name       string
		serverSVID *x509svid.SVID
		clientSVID *x509svid.SVID
		expect     string
		clientErr  []string // substrings of the client's error (Dial or Read)
		serverErr  []string // substrings of the server's handshake error
	}{
		{
			name:       "server presents another SPIFFE ID",
			serverSVID: ca.SVID(t, otherID),
			clientSVID: ca.SVID(t, clientID),
			expect:     serverID,
			clientErr:  []string{"server presented " + otherID, "want " + serverID},
			serverErr:  []string{"bad certificate"},
		},
		{
			name:       "client leaf from another CA",
			serverSVID: ca.SVID(t, serverID),
			clientSVID: other.SVID(t, clientID),
			clientErr:  []string{"bad certificate"},
			serverErr:  []string{"peer certificate rejected", "unknown authority"},
		},
		{
			name:       "server leaf from another CA",
			serverSVID: other.SVID(t, serverID),
			clientSVID: ca.SVID(t, clientID),
			clientErr:  []string{"peer certificate rejected", "unknown authority"},
			serverErr:  []string{"bad certificate"},
		},
		{
			name:       "client leaf expired",
			serverSVID: ca.SVID(t, serverID),
			clientSVID: ca.SVID(t, clientID, mtlstest.Expired()),
			clientErr:  []string{"bad certificate"},
			serverErr:  []string{"expired"},
		},
		{
			name:       "server leaf expired",
			serverSVID: ca.SVID(t, serverID, mtlstest.Expired()),
			clientSVID: ca.SVID(t, clientID),
			clientErr:  []string{"expired"},
			serverErr:  []string{"bad certificate"},
		},
		{
			name:       "client leaf with two URI SANs",
			serverSVID: ca.SVID(t, serverID),
			clientSVID: ca.SVID(t, clientID, mtlstest.ExtraURI(otherID)),
			clientErr:  []string{"bad certificate"},
			serverErr:  []string{"more than one URI SAN"},
		},
		{
			name:       "server leaf with two URI SANs",
			serverSVID: ca.SVID(t, serverID, mtlstest.ExtraURI(otherID)),
			clientSVID: ca.SVID(t, clientID),
			clientErr:  []string{"more than one URI SAN"},
			serverErr:  []string{"bad certificate"},
		},
		{
			name:       "client leaf without URI SAN",
			serverSVID: ca.SVID(t, serverID),
			clientSVID: ca.SVID(t, clientID, mtlstest.NoURI()),
			clientErr:  []string{"bad certificate"},
			serverErr:  []string{"no URI SAN"},
		},
		{
			name:       "server leaf without URI SAN",
			serverSVID: ca.SVID(t, serverID, mtlstest.NoURI()),
			clientSVID: ca.SVID(t, clientID),
			clientErr:  []string{"no URI SAN"},
			serverErr:  []string{"bad certificate"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			authorized := make(chan spiffeid.ID, 1)
			s := startServer(t, mtlstest.NewSource(tt.serverSVID, ca.Bundle()),
				func(peer spiffeid.ID) error { authorized <- peer; return nil })
			d := mtls.NewDialer(mtlstest.NewSource(tt.clientSVID, ca.Bundle()), wait)
			expect := tt.expect
			if expect == "" {
				expect = serverID
			}

			_, err := dial(t, d, s.addr, expect)
			wantErrContaining(t, "client", err, tt.clientErr...)
			wantErrContaining(t, "server", s.next(t).err, tt.serverErr...)
			// Whichever side refused, the server never got a verified client
			// to authorize.
			select {
			case id := <-authorized:
				t.Errorf("authorizer ran for %s in a rejected handshake", id)
			default:
			}
		})
	}
}

func TestClientWithoutCertificateRejected(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, trustDomain)
	s := startServer(t, mtlstest.NewSource(ca.SVID(t, serverID), ca.Bundle()), nil)

	// A plain TLS client that verifies nothing and presents nothing.
	_, err := dialConfig(t, &tls.Config{InsecureSkipVerify: true}, s.addr)
	wantErrContaining(t, "client", err, "certificate required")
	o := s.next(t)
	wantErrContaining(t, "server", o.err, "client didn't provide a certificate")
	if len(o.verdicts) != 0 {
		t.Errorf("VerifyConnection ran %d times for a certificate-less client", len(o.verdicts))
	}
}

func TestPlaintextClientRejected(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, trustDomain)
	s := startServer(t, mtlstest.NewSource(ca.SVID(t, serverID), ca.Bundle()), nil)

	conn, err := net.DialTimeout("tcp", s.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: api\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	wantErrContaining(t, "server", s.next(t).err, "does not look like a TLS handshake")
	got, err := io.ReadAll(conn)
	if strings.Contains(string(got), "ok") {
		t.Errorf("plaintext client received application data %q", got)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("server did not close the plaintext connection: %v", err)
	}
}

func TestAuthorizerDenies(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, trustDomain)
	var asked atomic.Int32
	s := startServer(t, mtlstest.NewSource(ca.SVID(t, serverID), ca.Bundle()),
		func(spiffeid.ID) error { asked.Add(1); return errDenied })
	d := mtls.NewDialer(mtlstest.NewSource(ca.SVID(t, clientID), ca.Bundle()), wait)

	_, err := dial(t, d, s.addr, serverID)
	wantErrContaining(t, "client", err, "bad certificate")
	if o := s.next(t); !errors.Is(o.err, errDenied) {
		t.Errorf("server handshake error = %v, want the authorizer's %v", o.err, errDenied)
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("authorizer called %d times, want 1", n)
	}
}

// TestResumptionCannotSkipAuthorization proves that a resumed session goes
// through the authorizer again: after two allowed connections (the second
// resumed), the authorizer is flipped to deny and a third connection, which
// also resumes, is rejected.
func TestResumptionCannotSkipAuthorization(t *testing.T) {
	t.Parallel()
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			t.Parallel()
			ca := mtlstest.NewCA(t, trustDomain)
			var deny atomic.Bool
			s := startServer(t, mtlstest.NewSource(ca.SVID(t, serverID), ca.Bundle()),
				func(spiffeid.ID) error {
					if deny.Load() {
						return errDenied
					}
					return nil
				})
			cfg := mtls.ClientConfig(mtlstest.NewSource(ca.SVID(t, clientID), ca.Bundle()),
				spiffeid.RequireFromString(serverID), tls.NewLRUClientSessionCache(8)).Clone()
			cfg.MaxVersion = version

			for i, wantResumed := range []bool{false, true} {
				cs, err := dialConfig(t, cfg, s.addr)
				if err != nil {
					t.Fatalf("connection %d: %v", i+1, err)
				}
				if cs.Version != version {
					t.Fatalf("connection %d negotiated %s", i+1, tls.VersionName(cs.Version))
				}
				if cs.DidResume != wantResumed {
					t.Fatalf("connection %d: client DidResume = %v, want %v", i+1, cs.DidResume, wantResumed)
				}
				o := s.next(t)
				if o.err != nil || len(o.verdicts) != 1 || o.verdicts[0].resumed != wantResumed {
					t.Fatalf("connection %d: server saw %+v, want one verdict with resumed=%v", i+1, o, wantResumed)
				}
			}

			deny.Store(true)
			cs, err := dialConfig(t, cfg, s.addr)
			wantErrContaining(t, "client after deny", err, "bad certificate")
			if version == tls.VersionTLS13 && !cs.DidResume {
				t.Error("TLS 1.3 client did not resume the denied connection")
			}
			o := s.next(t)
			if !errors.Is(o.err, errDenied) {
				t.Errorf("server handshake error = %v, want %v", o.err, errDenied)
			}
			if len(o.verdicts) != 1 || !o.verdicts[0].resumed || !errors.Is(o.verdicts[0].err, errDenied) {
				t.Errorf("server verdicts = %+v, want one resumed handshake denied by the authorizer", o.verdicts)
			}
		})
	}
}

// TestDialerResumption checks that a Dialer resumes sessions only when
// given a session cache: by default it must not, so that servers which skip
// authorization on resumption (Consul's built-in proxy) still check it.
func TestDialerResumption(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, trustDomain)
	tests := []struct {
		name        string
		serverALPN  []string
		opts        []mtls.DialerOption
		wantResumed bool
	}{
		// By default only a server that negotiated the Outrider marker is
		// resumed with: a server of unknown kind may authorize only on
		// full handshakes.
		{name: "default, unknown server", wantResumed: false},
		{name: "default, Outrider server", serverALPN: []string{mtls.ALPNOutrider}, wantResumed: true},
		// Consul's built-in proxy selects from ["h2"]: the handshake must
		// still succeed (no ALPN overlap error), and never resume.
		{name: "default, built-in-like h2 server", serverALPN: []string{"h2"}, wantResumed: false},
		{name: "WithoutResumption", serverALPN: []string{mtls.ALPNOutrider}, opts: []mtls.DialerOption{mtls.WithoutResumption()}, wantResumed: false},
		{name: "WithSessionCache", opts: []mtls.DialerOption{mtls.WithSessionCache(tls.NewLRUClientSessionCache(8))}, wantResumed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startServerALPN(t, mtlstest.NewSource(ca.SVID(t, serverID), ca.Bundle()), nil, tt.serverALPN)
			d := mtls.NewDialer(mtlstest.NewSource(ca.SVID(t, clientID), ca.Bundle()), wait, tt.opts...)
			for i, want := range []bool{false, tt.wantResumed, tt.wantResumed} {
				cs, err := dial(t, d, s.addr, serverID)
				if err != nil {
					t.Fatalf("connection %d: %v", i+1, err)
				}
				o := s.next(t)
				if o.err != nil || len(o.verdicts) != 1 {
					t.Fatalf("connection %d: server saw %+v", i+1, o)
				}
				if cs.DidResume != want || o.verdicts[0].resumed != want {
					t.Errorf("connection %d: resumed client=%v server=%v, want %v",
						i+1, cs.DidResume, o.verdicts[0].resumed, want)
				}
			}
		})
	}
}

// TestRootRotation swaps the server's trust bundle as Consul's roots change:
// during the rotation window both roots are trusted; once the old root is
// removed, a client holding an old-root leaf is rejected on its next
// handshake, even when that handshake resumes a cached session.
func TestRootRotation(t *testing.T) {
	t.Parallel()
	oldCA := mtlstest.NewCA(t, trustDomain)
	newCA := mtlstest.NewCA(t, trustDomain)
	bothRoots := []*x509bundle.Bundle{oldCA.Bundle(), newCA.Bundle()}

	serverSrc := mtlstest.NewSource(oldCA.SVID(t, serverID), bothRoots...)
	s := startServer(t, serverSrc, nil)
	oldClient := mtls.NewDialer(mtlstest.NewSource(oldCA.SVID(t, clientID), bothRoots...), wait,
		mtls.WithSessionCache(tls.NewLRUClientSessionCache(8)))
	newClient := mtls.NewDialer(mtlstest.NewSource(newCA.SVID(t, clientID), bothRoots...), wait,
		mtls.WithSessionCache(tls.NewLRUClientSessionCache(8)))

	// Rotation window: both leaves are accepted, and the old client resumes.
	for i, c := range []struct {
		name        string
		d           *mtls.Dialer
		wantResumed bool
	}{
		{"old-root client", oldClient, false},
		{"old-root client again", oldClient, true},
		{"new-root client", newClient, false},
	} {
		cs, err := dial(t, c.d, s.addr, serverID)
		if err != nil {
			t.Fatalf("window %d, %s: %v", i, c.name, err)
		}
		if o := s.next(t); o.err != nil {
			t.Fatalf("window %d, %s: server: %v", i, c.name, o.err)
		}
		if cs.DidResume != c.wantResumed {
			t.Fatalf("window %d, %s: DidResume = %v, want %v", i, c.name, cs.DidResume, c.wantResumed)
		}
	}

	// The old root is retired: the server now presents a new-root leaf and
	// trusts only the new root.
	serverSrc.SetSVID(newCA.SVID(t, serverID))
	serverSrc.SetBundles(newCA.Bundle())

	_, err := dial(t, oldClient, s.addr, serverID)
	wantErrContaining(t, "old-root client after rotation", err, "bad certificate")
	o := s.next(t)
	wantErrContaining(t, "server, old-root client after rotation", o.err, "unknown authority")
	if len(o.verdicts) != 1 || !o.verdicts[0].resumed {
		t.Errorf("server verdicts = %+v, want the rejection to happen on a resumed session", o.verdicts)
	}

	fresh := mtls.NewDialer(mtlstest.NewSource(oldCA.SVID(t, clientID), bothRoots...), wait)
	_, err = dial(t, fresh, s.addr, serverID)
	wantErrContaining(t, "old-root client, full handshake", err, "bad certificate")
	wantErrContaining(t, "server, old-root client full handshake", s.next(t).err, "unknown authority")

	if _, err := dial(t, newClient, s.addr, serverID); err != nil {
		t.Errorf("new-root client after rotation: %v", err)
	}
	if o := s.next(t); o.err != nil {
		t.Errorf("server, new-root client after rotation: %v", o.err)
	}
}

// TestClientRootRotation is the client side of a rotation: a client that no
// longer trusts the server's root rejects it even on a resumed session.
func TestClientRootRotation(t *testing.T) {
	t.Parallel()
	oldCA := mtlstest.NewCA(t, trustDomain)
	newCA := mtlstest.NewCA(t, trustDomain)
	s := startServer(t, mtlstest.NewSource(oldCA.SVID(t, serverID), oldCA.Bundle(), newCA.Bundle()), nil)
	clientSrc := mtlstest.NewSource(newCA.SVID(t, clientID), oldCA.Bundle(), newCA.Bundle())
	d := mtls.NewDialer(clientSrc, wait, mtls.WithSessionCache(tls.NewLRUClientSessionCache(8)))

	if _, err := dial(t, d, s.addr, serverID); err != nil {
		t.Fatal(err)
	}
	if o := s.next(t); o.err != nil {
		t.Fatalf("server: %v", o.err)
	}

	clientSrc.SetBundles(newCA.Bundle())
	_, err := dial(t, d, s.addr, serverID)
	wantErrContaining(t, "client", err, "peer certificate rejected", "unknown authority")
	o := s.next(t)
	if len(o.verdicts) != 1 || !o.verdicts[0].resumed {
		t.Errorf("server verdicts = %+v, want one for a resumed session", o.verdicts)
	}
}

// stallingListener accepts connections and never answers the handshake. It
// hangs up after twice the test bound, so that a Dialer ignoring its deadline
// fails the test instead of hanging it.
func stallingListener(t *testing.T) (addr string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	acc := make(chan struct{}, 16)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  []net.Conn
		timers []*time.Timer
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			timers = append(timers, time.AfterFunc(2*wait, func() { c.Close() }))
			mu.Unlock()
			acc <- struct{}{}
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for i, c := range conns {
			timers[i].Stop()
			c.Close()
		}
	})
	return ln.Addr().String(), acc
}

func TestDialerStalledHandshake(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, trustDomain)
	src := mtlstest.NewSource(ca.SVID(t, clientID), ca.Bundle())
	tests := []struct {
		name    string
		timeout time.Duration
		ctx     func(t *testing.T) context.Context
		want    error
	}{
		{
			name:    "dialer timeout",
			timeout: 100 * time.Millisecond,
			ctx:     func(t *testing.T) context.Context { return t.Context() },
			want:    context.DeadlineExceeded,
		},
		{
			name:    "context canceled",
			timeout: time.Hour,
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				timer := time.AfterFunc(100*time.Millisecond, cancel)
				t.Cleanup(func() { timer.Stop(); cancel() })
				return ctx
			},
			want: context.Canceled,
		},
		{
			name:    "context deadline",
			timeout: time.Hour,
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
			want: context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, accepted := stallingListener(t)
			d := mtls.NewDialer(src, tt.timeout)

			start := time.Now()
			conn, err := d.Dial(tt.ctx(t), addr, spiffeid.RequireFromString(serverID))
			elapsed := time.Since(start)
			if err == nil {
				conn.Close()
				t.Fatal("Dial succeeded against a server that never answers")
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Dial error = %v, want %v", err, tt.want)
			}
			if elapsed > wait {
				t.Errorf("Dial returned after %v, want well under %v", elapsed, wait)
			}
			select {
			case <-accepted:
			case <-time.After(wait):
				t.Error("the TCP connection was never accepted: the test did not reach the handshake")
			}
		})
	}
}
