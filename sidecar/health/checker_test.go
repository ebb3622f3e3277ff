package health_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
	"github.com/outrider-mesh/outrider/sidecar/health"
)

// pki is a trust domain with a server identity (the endpoint's sidecar)
// and a client one (the checking sidecar).
type pki struct {
	server, client *mtlstest.Source
	serverID       spiffeid.ID
}

func newPKI(t *testing.T) *pki {
	ca := mtlstest.NewCA(t, "example.org")
	return &pki{
		server:   mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/web"), ca.Bundle()),
		client:   mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/client"), ca.Bundle()),
		serverID: spiffeid.RequireFromString("spiffe://example.org/web"),
	}
}

// transport dials as the sidecar does: mTLS, verifying the endpoint's ID.
func (p *pki) transport(h2 bool) health.Transport {
	return health.Transport{
		HTTP1:    mtls.NewDialer(p.client, time.Second, mtls.WithALPN("http/1.1"), mtls.WithoutResumption()),
		HTTP2:    mtls.NewDialer(p.client, time.Second, mtls.WithALPN("h2"), mtls.WithoutResumption()),
		UseHTTP2: h2,
		Host:     "web",
	}
}

func (p *pki) endpoint(addr string) discovery.Endpoint {
	return discovery.Endpoint{Address: addr, Identity: p.serverID, Weight: 1}
}

// app is an mTLS HTTP server whose health answer the test sets.
type app struct {
	srv    *httptest.Server
	status atomic.Int32 // the status /healthz answers
	block  atomic.Bool  // /healthz never answers
	mu     sync.Mutex
	seen   []*http.Request
	counts map[int]int // answers sent, by status
}

func startApp(t *testing.T, p *pki, h2 bool) *app {
	a := &app{counts: map[int]int{}}
	a.status.Store(200)
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.block.Load() {
			<-r.Context().Done()
			return
		}
		code := int(a.status.Load())
		a.mu.Lock()
		a.seen = append(a.seen, r)
		a.counts[code]++
		a.mu.Unlock()
		w.WriteHeader(code)
	}))
	a.srv.TLS = mtls.ServerConfig(p.server, nil, []string{"h2", "http/1.1"})
	// httptest fills Certificates, which crypto/tls prefers to
	// GetCertificate when the client sends no SNI (an IP address).
	cert, err := p.server.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	a.srv.TLS.Certificates = []tls.Certificate{*cert}
	a.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	a.srv.EnableHTTP2 = h2
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

func (a *app) count(code int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counts[code]
}

func (a *app) addr() string { return a.srv.Listener.Addr().String() }

// changes records a Checker's transitions, with a snapshot of something
// taken when each was reported.
type changes struct {
	mu   sync.Mutex
	list []health.Change
	at   []int
	of   func() int
}

func (c *changes) add(ch health.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, ch)
	n := 0
	if c.of != nil {
		n = c.of()
	}
	c.at = append(c.at, n)
}

// wait waits for the n-th change (from 1) and returns it with its
// snapshot.
func (c *changes) wait(t *testing.T, n int) (health.Change, int) {
	t.Helper()
	mtlstest.WaitFor(t, fmt.Sprintf("change %d", n), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.list) >= n
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.list[n-1], c.at[n-1]
}

func fast(cfg health.Config) health.Config {
	cfg.Interval, cfg.Timeout = 10*time.Millisecond, time.Second
	cfg.HealthyThreshold, cfg.UnhealthyThreshold = 2, 3
	return cfg
}

func snap(eps ...discovery.Endpoint) *discovery.Snapshot {
	return &discovery.Snapshot{Service: "web", Endpoints: eps}
}

// TestHTTPCheck: over mTLS, a first pass makes the endpoint healthy, one
// unexpected status unhealthy at once (Envoy: the endpoint said so), and
// HealthyThreshold passes bring it back; the request is GET path with the
// upstream's name as Host.
func TestHTTPCheck(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			p := newPKI(t)
			a := startApp(t, p, h2)
			rec := &changes{of: func() int { return a.count(503) + a.count(200)*1000 }}
			cfg := fast(health.Config{Type: health.HTTP, Path: "/healthz?full=1"})
			c := health.New(cfg, health.NewProber(cfg, p.transport(h2)), health.OnChange(rec.add))
			defer c.Close()
			ep := p.endpoint(a.addr())
			c.Update(snap(ep))

			ch, _ := rec.wait(t, 1)
			if ch.From != health.Pending || ch.To != health.Healthy || ch.Endpoint != ep {
				t.Fatalf("first change %+v, want pending to healthy", ch)
			}
			a.mu.Lock()
			r := a.seen[0]
			a.mu.Unlock()
			if r.Method != "GET" || r.URL.RequestURI() != "/healthz?full=1" || r.Host != "web" ||
				r.UserAgent() != health.UserAgent || r.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
				t.Fatalf("probe %s %s Host %q UA %q %s", r.Method, r.URL, r.Host, r.UserAgent(), r.Proto)
			}
			if got := r.TLS.PeerCertificates[0].URIs[0].String(); got != "spiffe://example.org/client" {
				t.Fatalf("probe presented %s", got)
			}

			a.status.Store(503)
			ch, at := rec.wait(t, 2)
			if ch.To != health.Unhealthy || ch.Reason != "HTTP status 503" {
				t.Fatalf("second change %+v, want unhealthy for the 503", ch)
			}
			if at%1000 != 1 {
				t.Fatalf("unhealthy after %d answers 503, want 1", at%1000)
			}
			if st, _ := c.Status(ep.Address); st.State != health.Unhealthy || st.LastFailure != "HTTP status 503" {
				t.Fatalf("status %+v", st)
			}

			before := a.count(200)
			a.status.Store(204) // 2xx passes by default
			a.mu.Lock()
			a.counts[204] = 0
			a.mu.Unlock()
			rec.of = func() int { return a.count(204) }
			ch, at = rec.wait(t, 3)
			if ch.To != health.Healthy || at != 2 || a.count(200) != before {
				t.Fatalf("third change %+v after %d passes, want healthy after 2", ch, at)
			}
		})
	}
}

// TestExpectedStatuses: only the configured statuses pass.
func TestExpectedStatuses(t *testing.T) {
	p := newPKI(t)
	a := startApp(t, p, false)
	a.status.Store(200)
	rec := &changes{}
	cfg := fast(health.Config{Type: health.HTTP, Path: "/", ExpectedStatuses: []health.StatusRange{{Min: 418, Max: 418}}})
	c := health.New(cfg, health.NewProber(cfg, p.transport(false)), health.OnChange(rec.add))
	defer c.Close()
	c.Update(snap(p.endpoint(a.addr())))
	if ch, _ := rec.wait(t, 1); ch.To != health.Unhealthy || ch.Reason != "HTTP status 200" {
		t.Fatalf("change %+v, want unhealthy for the 200", ch)
	}
	a.status.Store(418)
	if ch, _ := rec.wait(t, 2); ch.To != health.Healthy {
		t.Fatalf("change %+v, want healthy on 418", ch)
	}
}

// flaky is a TLS listener that, while broken, closes each connection as
// it accepts it, counting them.
type flaky struct {
	net.Listener
	broken atomic.Bool
	closed atomic.Int32
}

func (f *flaky) Accept() (net.Conn, error) {
	for {
		c, err := f.Listener.Accept()
		if err != nil || !f.broken.Load() {
			return c, err
		}
		c.Close()
		f.closed.Add(1)
	}
}

// TestTCPCheckThreshold: a tcp check passes on a completed mTLS handshake;
// connections that fail make a healthy endpoint unhealthy only after
// UnhealthyThreshold in a row, and it comes back after HealthyThreshold
// handshakes.
func TestTCPCheckThreshold(t *testing.T) {
	p := newPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flaky{Listener: ln}
	var handshakes atomic.Int32
	tl := tls.NewListener(f, mtls.ServerConfig(p.server, nil, []string{"http/1.1"}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			if c.(*tls.Conn).HandshakeContext(context.Background()) == nil {
				handshakes.Add(1)
			}
			c.Close()
		}
	}()
	defer func() { tl.Close(); <-done }()

	rec := &changes{of: func() int { return int(f.closed.Load()) }}
	var results sync.Map
	cfg := fast(health.Config{Type: health.TCP})
	c := health.New(cfg, health.NewProber(cfg, p.transport(false)), health.OnChange(rec.add),
		health.OnResult(func(r health.Result) {
			n, _ := results.LoadOrStore(r, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		}))
	defer c.Close()
	ep := p.endpoint(ln.Addr().String())
	c.Update(snap(ep))
	if ch, _ := rec.wait(t, 1); ch.To != health.Healthy {
		t.Fatalf("change %+v, want healthy", ch)
	}
	f.broken.Store(true)
	ch, at := rec.wait(t, 2)
	if ch.To != health.Unhealthy || at != 3 {
		t.Fatalf("change %+v after %d failed connections, want unhealthy after 3", ch, at)
	}
	if !strings.Contains(ch.Reason, "handshake") && !strings.Contains(ch.Reason, "EOF") && !strings.Contains(ch.Reason, "reset") {
		t.Fatalf("reason %q does not say the connection failed", ch.Reason)
	}
	if n, ok := results.Load(health.Error); !ok || n.(*atomic.Int32).Load() < 3 {
		t.Fatal("the failed connections were not reported as errors")
	}
	f.broken.Store(false)
	if ch, _ := rec.wait(t, 3); ch.To != health.Healthy {
		t.Fatalf("change %+v, want healthy again", ch)
	}
}

// TestTimeout: a probe without an answer within Timeout is a timeout,
// which counts towards UnhealthyThreshold like a connection failure.
func TestTimeout(t *testing.T) {
	p := newPKI(t)
	a := startApp(t, p, false)
	var timeouts atomic.Int32
	rec := &changes{of: func() int { return int(timeouts.Load()) }}
	cfg := fast(health.Config{Type: health.HTTP, Path: "/healthz"})
	cfg.Timeout = 500 * time.Millisecond // well above a handshake under -race
	c := health.New(cfg, health.NewProber(cfg, p.transport(false)), health.OnChange(rec.add),
		health.OnResult(func(r health.Result) {
			if r == health.Timeout {
				timeouts.Add(1)
			}
		}))
	defer c.Close()
	c.Update(snap(p.endpoint(a.addr())))
	if ch, _ := rec.wait(t, 1); ch.To != health.Healthy {
		t.Fatalf("change %+v, want healthy", ch)
	}
	a.block.Store(true)
	timeouts.Store(0)
	ch, at := rec.wait(t, 2)
	if ch.To != health.Unhealthy || at != 3 || !strings.HasPrefix(ch.Reason, "timeout after 500ms") {
		t.Fatalf("change %+v after %d timeouts, want unhealthy after 3", ch, at)
	}
}

// TestGRPCCheck: grpc.health.v1 against a real gRPC health server over
// mTLS: SERVING passes, NOT_SERVING and an unknown service (NOT_FOUND)
// take the endpoint out at once.
func TestGRPCCheck(t *testing.T) {
	p := newPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(mtls.ServerConfig(p.server, nil, []string{"h2"}))))
	hs := grpchealth.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus("web.v1.Web", healthpb.HealthCheckResponse_SERVING)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	defer func() { srv.Stop(); <-done }()

	check := func(service string) (*health.Checker, *changes) {
		rec := &changes{}
		cfg := fast(health.Config{Type: health.GRPC, Service: service})
		c := health.New(cfg, health.NewProber(cfg, p.transport(false)), health.OnChange(rec.add))
		c.Update(snap(p.endpoint(ln.Addr().String())))
		return c, rec
	}
	c, rec := check("web.v1.Web")
	defer c.Close()
	if ch, _ := rec.wait(t, 1); ch.To != health.Healthy {
		t.Fatalf("change %+v, want healthy", ch)
	}
	hs.SetServingStatus("web.v1.Web", healthpb.HealthCheckResponse_NOT_SERVING)
	if ch, _ := rec.wait(t, 2); ch.To != health.Unhealthy || ch.Reason != "gRPC health status NOT_SERVING" {
		t.Fatalf("change %+v, want unhealthy for NOT_SERVING", ch)
	}
	hs.SetServingStatus("web.v1.Web", healthpb.HealthCheckResponse_SERVING)
	if ch, _ := rec.wait(t, 3); ch.To != health.Healthy {
		t.Fatalf("change %+v, want healthy", ch)
	}

	other, orec := check("nobody")
	defer other.Close()
	if ch, _ := orec.wait(t, 1); ch.To != health.Unhealthy || !strings.HasPrefix(ch.Reason, "gRPC status 5") {
		t.Fatalf("change %+v, want unhealthy for NOT_FOUND (5)", ch)
	}
}

// fakeProber answers from a function of the address; it counts probes,
// sessions and the probes in flight.
type fakeProber struct {
	answer   func(ctx context.Context, addr string) error
	probes   sync.Map // addr -> *atomic.Int32
	open     atomic.Int32
	inFlight atomic.Int32
	maxSeen  atomic.Int32
}

func (f *fakeProber) NewSession(ep discovery.Endpoint) health.Session {
	f.open.Add(1)
	return &fakeSession{f: f, addr: ep.Address}
}

func (f *fakeProber) count(addr string) int32 {
	n, ok := f.probes.Load(addr)
	if !ok {
		return 0
	}
	return n.(*atomic.Int32).Load()
}

type fakeSession struct {
	f    *fakeProber
	addr string
}

func (s *fakeSession) Probe(ctx context.Context) error {
	n := s.f.inFlight.Add(1)
	defer s.f.inFlight.Add(-1)
	for {
		m := s.f.maxSeen.Load()
		if n <= m || s.f.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	c, _ := s.f.probes.LoadOrStore(s.addr, new(atomic.Int32))
	c.(*atomic.Int32).Add(1)
	return s.f.answer(ctx, s.addr)
}

func (s *fakeSession) Close() { s.f.open.Add(-1) }

// TestExcluded: the endpoints left out of balancing are those not
// healthy; while none is healthy, the pending ones are kept; once every
// endpoint failed, all are left out.
func TestExcluded(t *testing.T) {
	var down sync.Map // addr -> bool
	hold := make(chan struct{})
	f := &fakeProber{answer: func(ctx context.Context, addr string) error {
		if addr == "c:1" {
			select { // c stays pending until hold closes
			case <-hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if _, ok := down.Load(addr); ok {
			return &health.AnswerError{Reason: "down"}
		}
		return nil
	}}
	cfg := fast(health.Config{Type: health.TCP})
	cfg.HealthyThreshold = 1
	c := health.New(cfg, f)
	defer c.Close()
	a, b, cc := discovery.Endpoint{Address: "a:1", Weight: 1}, discovery.Endpoint{Address: "b:1", Weight: 1}, discovery.Endpoint{Address: "c:1", Weight: 1}
	s := snap(a, b, cc)
	excluded := func(s *discovery.Snapshot) string { return fmt.Sprint(c.Excluded(s)) }
	if got := c.Excluded(s); got != nil {
		t.Fatalf("before any probe %v are excluded, want none", got)
	}
	down.Store("b:1", true)
	c.Update(s)
	mtlstest.WaitFor(t, "a healthy, b unhealthy", func() bool {
		sa, _ := c.Status("a:1")
		sb, _ := c.Status("b:1")
		return sa.State == health.Healthy && sb.State == health.Unhealthy
	})
	if got := excluded(s); got != "map[b:1:true c:1:true]" {
		t.Fatalf("excluded %s, want the unhealthy b and the pending c", got)
	}
	if c.Healthy() != 1 {
		t.Fatalf("Healthy() = %d", c.Healthy())
	}
	down.Store("a:1", true)
	mtlstest.WaitFor(t, "a unhealthy", func() bool { st, _ := c.Status("a:1"); return st.State == health.Unhealthy })
	if got := excluded(s); got != "map[a:1:true b:1:true]" {
		t.Fatalf("excluded %s, want a and b: the pending c is kept while nothing is healthy", got)
	}
	// An endpoint the Checker has not been given counts as pending too.
	d := discovery.Endpoint{Address: "d:1", Weight: 1}
	if got := excluded(snap(a, b, cc, d)); got != "map[a:1:true b:1:true]" {
		t.Fatalf("excluded %s, want a and b", got)
	}
	down.Store("c:1", true)
	close(hold)
	mtlstest.WaitFor(t, "c unhealthy", func() bool { st, _ := c.Status("c:1"); return st.State == health.Unhealthy })
	if got := excluded(s); got != "map[a:1:true b:1:true c:1:true]" {
		t.Fatalf("excluded %s, want all once every endpoint failed", got)
	}
	down.Delete("b:1")
	mtlstest.WaitFor(t, "b healthy", func() bool { st, _ := c.Status("b:1"); return st.State == health.Healthy })
	if got := excluded(s); got != "map[a:1:true c:1:true]" {
		t.Fatalf("excluded %s, want b back", got)
	}
	if c.Excluded(nil) != nil {
		t.Fatal("Excluded(nil) is not nil")
	}
}

// TestRemovalStopsProbes: an endpoint that leaves the snapshot is no
// longer probed, its session is closed and its state forgotten; one that
// comes back starts pending. An identity change starts over too.
func TestRemovalStopsProbes(t *testing.T) {
	var held atomic.Pointer[chan struct{}] // when set, probes wait on it
	f := &fakeProber{answer: func(ctx context.Context, _ string) error {
		if h := held.Load(); h != nil {
			select {
			case <-*h:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}
	cfg := fast(health.Config{Type: health.TCP})
	c := health.New(cfg, f)
	defer c.Close()
	a, b := discovery.Endpoint{Address: "a:1"}, discovery.Endpoint{Address: "b:1"}
	c.Update(snap(a, b))
	mtlstest.WaitFor(t, "a few probes of both", func() bool { return f.count("a:1") > 2 && f.count("b:1") > 2 })
	c.Update(snap(a))
	mtlstest.WaitFor(t, "b's session closed", func() bool { return f.open.Load() == 1 })
	if _, ok := c.Status("b:1"); ok {
		t.Fatal("b is still known")
	}
	n := f.count("b:1")
	seenA := f.count("a:1")
	mtlstest.WaitFor(t, "more probes of a", func() bool { return f.count("a:1") > seenA+3 })
	if f.count("b:1") != n {
		t.Fatalf("b was probed %d more times after it left", f.count("b:1")-n)
	}
	// An identity change is a new endpoint. Its first probe is held so
	// that it cannot pass before the state is read.
	hold := make(chan struct{})
	held.Store(&hold)
	a2 := a
	a2.Identity = spiffeid.RequireFromString("spiffe://example.org/other")
	c.Update(snap(a2))
	if st, ok := c.Status("a:1"); !ok || st.State != health.Pending {
		t.Fatalf("a with a new identity: %+v, want pending", st)
	}
	held.Store(nil)
	close(hold)
	mtlstest.WaitFor(t, "a healthy again", func() bool { st, _ := c.Status("a:1"); return st.State == health.Healthy })
	mtlstest.WaitFor(t, "one session", func() bool { return f.open.Load() == 1 })
	c.Close()
	if f.open.Load() != 0 {
		t.Fatalf("%d sessions open after Close", f.open.Load())
	}
	c.Update(snap(a, b)) // after Close: nothing starts
	if f.open.Load() != 0 {
		t.Fatal("Update after Close started probes")
	}
}

// TestConcurrencyBound: no more probes than the bound are in flight.
func TestConcurrencyBound(t *testing.T) {
	f := &fakeProber{answer: func(ctx context.Context, _ string) error {
		<-ctx.Done() // every probe takes its whole timeout
		return ctx.Err()
	}}
	cfg := fast(health.Config{Type: health.TCP})
	cfg.Timeout = 20 * time.Millisecond
	c := health.New(cfg, f, health.WithConcurrency(2))
	defer c.Close()
	var eps []discovery.Endpoint
	for i := range 6 {
		eps = append(eps, discovery.Endpoint{Address: fmt.Sprintf("e%d:1", i)})
	}
	c.Update(snap(eps...))
	mtlstest.WaitFor(t, "every endpoint probed", func() bool {
		for _, e := range eps {
			if st, _ := c.Status(e.Address); st.State == health.Pending {
				return false
			}
		}
		return true
	})
	if m := f.maxSeen.Load(); m != 2 {
		t.Fatalf("%d probes in flight at once, want at most (and here exactly) 2", m)
	}
	for _, e := range eps {
		if st, _ := c.Status(e.Address); st.State != health.Unhealthy || !strings.HasPrefix(st.LastFailure, "timeout after 20ms") {
			t.Fatalf("%s: %+v, want unhealthy on timeouts", e.Address, st)
		}
	}
}

// TestCloseCancelsProbe: Close does not wait for a probe's timeout.
func TestCloseCancelsProbe(t *testing.T) {
	started := make(chan struct{})
	var once sync.Once
	f := &fakeProber{answer: func(ctx context.Context, _ string) error {
		once.Do(func() { close(started) })
		<-ctx.Done()
		return errors.New("cancelled")
	}}
	cfg := fast(health.Config{Type: health.TCP})
	cfg.Timeout = time.Hour
	c := health.New(cfg, f)
	c.Update(snap(discovery.Endpoint{Address: "a:1"}))
	<-started
	c.Close() // returns: the probe's context is cancelled
	c.Close() // idempotent
	if st, ok := c.Status("a:1"); ok {
		t.Fatalf("status after Close: %+v", st)
	}
}
