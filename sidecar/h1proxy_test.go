package sidecar

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/sidecar/balance"
	"github.com/outrider-mesh/outrider/sidecar/http1"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
	"github.com/outrider-mesh/outrider/telemetry/tracing"
)

// rawBackend answers every request on a connection with respond's bytes,
// reading requests with the http1 codec. It counts accepted connections.
type rawBackend struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func startRawBackend(tb testing.TB, respond func(req *http1.RequestHead, br *bufio.Reader, w *bufio.Writer) bool) *rawBackend {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &rawBackend{ln: ln}
	tb.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			b.wg.Go(func() {
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				var req http1.RequestHead
				for {
					if err := req.Read(br, 0); err != nil {
						return
					}
					if req.Body != http1.BodyNone {
						if _, err := http1.CopyBody(bufio.NewWriter(io.Discard), br, req.Body, req.ContentLength, req.Body); err != nil {
							return
						}
					}
					keep := respond(&req, br, bw) && !req.Close // as real servers do
					if bw.Flush() != nil || !keep {
						return
					}
				}
			})
		}
	})
	return b
}

func hello(_ *http1.RequestHead, _ *bufio.Reader, w *bufio.Writer) bool {
	w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\nhello from backend\n")
	return true
}

// poolTarget sends every request to one address through a pool; with ep
// set it poses as a balanced mesh endpoint.
type poolTarget struct {
	pool *connPool
	ep   *balance.Endpoint
}

func (p poolTarget) name() string { return "backend" }
func (p poolTarget) plan(*h1Conn) {}
func (p poolTarget) acquire(ctx context.Context, _ *dest, _ []string) (*upConn, *balance.Endpoint, error) {
	uc, err := p.pool.get(ctx, 0)
	return uc, p.ep, err
}

// startH1Proxy serves an h1Proxy to backend on a loopback listener and
// returns its address and tracker.
func startH1Proxy(tb testing.TB, backend string) (string, *tracker) {
	tb.Helper()
	return startH1ProxyWith(tb, backend, nil, nil)
}

// startH1ProxyWith is startH1Proxy with a tracing telemetry (nil: none)
// and, when ep is set, the backend posing as that mesh endpoint; edits
// change the proxy before it serves.
func startH1ProxyWith(tb testing.TB, backend string, tr *tracing.Tracing, ep *balance.Endpoint, edits ...func(*h1Proxy)) (string, *tracker) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	pool := newConnPool(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", backend)
	})
	m := metrics.New("test")
	tel := newTelemetry(m, nil)
	if tr != nil {
		tel.useTracing(tr)
	}
	p := &h1Proxy{target: poolTarget{pool: pool, ep: ep}, log: slog.New(slog.DiscardHandler), stat: &counters{}, maxHeaderBytes: http1.DefaultMaxHeaderBytes,
		responseTimeout: 5 * time.Second, tel: tel, route: m.Route(metrics.Outbound, "backend")}
	for _, edit := range edits {
		edit(p)
	}
	conns := newTracker()
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(ln, conns, nil, p.log, func(c net.Conn) {
			ir := &idleReader{c: c}
			p.serve(c, getReader(ir), ir, conns, c)
		})
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conns.drain(ctx)
		pool.close()
	})
	return ln.Addr().String(), conns
}

// exchange writes raw on c and returns the response status line and body.
func exchange(t *testing.T, c net.Conn, br *bufio.Reader, raw string) (int, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var resp http1.ResponseHead
	if err := resp.Read(br, []byte("GET"), 0); err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	bw := bufio.NewWriter(&body)
	if resp.Body != http1.BodyNone {
		if _, err := http1.CopyBody(bw, br, resp.Body, resp.ContentLength, http1.BodyUntilClose); err != nil && resp.Body != http1.BodyUntilClose {
			t.Fatal(err)
		}
	}
	bw.Flush()
	return resp.Status, body.String()
}

const getReq = "GET / HTTP/1.1\r\nHost: backend\r\n\r\n"

func TestH1ProxyReusesUpstreamConnections(t *testing.T) {
	b := startRawBackend(t, hello)
	addr, _ := startH1Proxy(t, b.ln.Addr().String())
	for range 3 { // three client connections, ten requests each
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		for range 10 {
			if status, body := exchange(t, c, br, getReq); status != 200 || body != "hello from backend\n" {
				t.Fatalf("got %d %q", status, body)
			}
		}
		c.Close()
	}
	// A client's Connection: close ends its own connection, not the pooled
	// upstream one.
	for range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if status, _ := exchange(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n"); status != 200 {
			t.Fatalf("status %d", status)
		}
		c.Close()
	}
	if n := b.accepted.Load(); n != 1 {
		t.Fatalf("backend accepted %d connections for 35 sequential requests, want 1 (pooled)", n)
	}
}

// A pooled connection the upstream closed while idle is replaced without
// the client noticing.
func TestH1ProxyRetriesStalePooledConnection(t *testing.T) {
	var n atomic.Int64
	b := startRawBackend(t, func(req *http1.RequestHead, br *bufio.Reader, w *bufio.Writer) bool {
		hello(req, br, w)
		return n.Add(1)%2 == 0 // every other response closes the connection after it is sent
	})
	addr, _ := startH1Proxy(t, b.ln.Addr().String())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 6 {
		time.Sleep(20 * time.Millisecond) // let the close reach the proxy
		if status, _ := exchange(t, c, br, getReq); status != 200 {
			t.Fatalf("request %d: status %d", i, status)
		}
	}
}

// An upstream answering an Expect: 100-continue request with a final
// status gets that status to the client, which must then close.
func TestH1ProxyExpectContinueRejected(t *testing.T) {
	b := startRawBackend(t, hello)
	b.ln.Close() // replace the backend: answer 417 without reading the body
	ln, err := net.Listen("tcp", b.ln.Addr().String())
	if err != nil {
		t.Skip("port reuse failed:", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var req http1.RequestHead
		if req.Read(bufio.NewReader(c), 0) == nil {
			io.WriteString(c, "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 4\r\n\r\nnope")
		}
		time.Sleep(time.Second)
	}()
	addr, _ := startH1Proxy(t, ln.Addr().String())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	status, body := exchange(t, c, br, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if status != 417 || body != "nope" {
		t.Fatalf("got %d %q, want 417 nope", status, body)
	}
}

// An HTTP/1.0 client gets a chunked upstream response delimited by close.
func TestH1ProxyHTTP10Client(t *testing.T) {
	b := startRawBackend(t, func(_ *http1.RequestHead, _ *bufio.Reader, w *bufio.Writer) bool {
		w.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
		return true
	})
	addr, _ := startH1Proxy(t, b.ln.Addr().String())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(string(all), "\r\n\r\n")
	if body != "hello world" || strings.Contains(strings.ToLower(head), "chunked") || !strings.Contains(head, "Connection: close") {
		t.Fatalf("response %q", all)
	}
}

// CONNECT is refused and never reaches the upstream; an h2c upgrade is
// forwarded as a plain HTTP/1.1 request without its Upgrade and
// HTTP2-Settings fields.
func TestH1ProxyRefusesConnectAndH2CUpgrade(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	b := startRawBackend(t, func(req *http1.RequestHead, br *bufio.Reader, w *bufio.Writer) bool {
		mu.Lock()
		seen = append(seen, string(req.AppendWire(nil)))
		mu.Unlock()
		return hello(req, br, w)
	})
	addr, _ := startH1Proxy(t, b.ln.Addr().String())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	status, _ := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: web\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
	if status != 200 {
		t.Fatalf("h2c upgrade: status %d, want 200 as HTTP/1.1", status)
	}
	status, _ = exchange(t, c, br, "CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n")
	if status != 405 {
		t.Errorf("CONNECT: status %d, want 405", status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("the upstream saw %d requests, want only the upgrade one: %q", len(seen), seen)
	}
	if low := strings.ToLower(seen[0]); strings.Contains(low, "upgrade") || strings.Contains(low, "http2-settings") {
		t.Errorf("forwarded with its upgrade fields:\n%s", seen[0])
	}
}

// Draining closes idle keep-alive connections at once and lets a request
// in flight finish, with Connection: close.
func TestH1ProxyGracefulDrain(t *testing.T) {
	release := make(chan struct{})
	b := startRawBackend(t, func(req *http1.RequestHead, br *bufio.Reader, w *bufio.Writer) bool {
		if string(req.Target) == "/slow" {
			<-release
		}
		return hello(req, br, w)
	})
	addr, conns := startH1Proxy(t, b.ln.Addr().String())
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if status, _ := exchange(t, idle, bufio.NewReader(idle), getReq); status != 200 {
		t.Fatal(status)
	}
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)

	drained := make(chan int)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		drained <- conns.drain(ctx)
	}()
	// The idle connection is closed by the proxy.
	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF", err)
	}
	// Release the slow answer only once drain has reached every keep-alive
	// connection: it tells them one by one, and the idle one may be told
	// (and closed) before the busy one.
	for !conns.told.Load() {
		time.Sleep(time.Millisecond)
	}
	close(release)
	br := bufio.NewReader(busy)
	var resp http1.ResponseHead
	busy.SetReadDeadline(time.Now().Add(2 * time.Second))
	if err := resp.Read(br, []byte("GET"), 0); err != nil || resp.Status != 200 || !resp.Close {
		t.Fatalf("in-flight request: %v status %d close %v", err, resp.Status, resp.Close)
	}
	if n := <-drained; n != 0 {
		t.Fatalf("drain had to force-close %d connections", n)
	}
}

// BenchmarkH1Proxy measures one keep-alive request through the HTTP/1.1
// loop to a pooled plaintext upstream (no TLS): the per-request cost of
// parsing, rewriting and relaying.
func BenchmarkH1Proxy(b *testing.B) {
	be := startRawBackend(b, hello)
	addr, _ := startH1Proxy(b, be.ln.Addr().String())
	benchRequests(b, addr, "GET /api/items?id=42 HTTP/1.1\r\nHost: web\r\nUser-Agent: bench\r\nAccept: */*\r\nX-Request-Id: 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\r\n\r\n")
}

// BenchmarkH1ProxyPolicy is the inbound loop (path normalization and a
// per-request decision) with no rules and with 20 local rules layered over
// 20 intentions, where every rule is tried and the last one allows.
func BenchmarkH1ProxyPolicy(b *testing.B) {
	be := startRawBackend(b, hello)
	td := spiffeid.RequireTrustDomainFromString("11111111-2222-3333-4444-555555555555.consul")
	peer := spiffeid.RequireFromPath(td, "/ns/default/dc/dc1/svc/frontend")
	var ixns []*api.Intention
	for i := range 19 {
		ixns = append(ixns, &api.Intention{SourceName: fmt.Sprintf("svc-%d", i), DestinationName: "web", Action: api.IntentionActionAllow})
	}
	ixns = append(ixns, &api.Intention{SourceName: "frontend", DestinationName: "web", Action: api.IntentionActionAllow})
	in, err := policy.Compile("web", ixns, policy.CompileOptions{TrustDomain: td})
	if err != nil {
		b.Fatal(err)
	}
	var rules []policy.Rule
	for i := range 8 {
		rules = append(rules, policy.Rule{HTTP: &policy.HTTPMatch{PathPrefix: fmt.Sprintf("/admin-%d/", i)}})
	}
	rules = append(rules, policy.Rule{HTTP: &policy.HTTPMatch{Methods: []string{"DELETE", "TRACE"}}},
		policy.Rule{HTTP: &policy.HTTPMatch{Headers: []policy.HeaderMatch{{Name: "x-debug", Present: true}}}})
	for i := range 9 {
		rules = append(rules, policy.Rule{Allow: true, ID: spiffeid.RequireFromPath(td, fmt.Sprintf("/ns/default/dc/dc1/svc/svc-%d", i)),
			HTTP: &policy.HTTPMatch{PathPrefix: fmt.Sprintf("/svc-%d/", i)}})
	}
	rules = append(rules, policy.Rule{Allow: true, Pattern: "spiffe://" + td.Name() + "/ns/default/dc/*/svc/frontend",
		HTTP: &policy.HTTPMatch{Methods: []string{"GET", "HEAD"}}})
	local, err := policy.CompileRules(rules, policy.RulesOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		local *policy.Rules
	}{{"intentions", nil}, {"intentions+20-rules", local}} {
		b.Run(bc.name, func(b *testing.B) {
			s := &Sidecar{log: slog.New(slog.DiscardHandler)}
			s.authz.Store(in)
			s.authz.StoreLocal(bc.local)
			m := metrics.New("test")
			inb := &inbound{log: s.log, stat: &s.stat, metrics: m, authz: &s.authz}
			addr, _ := startH1ProxyWith(b, be.ln.Addr().String(), nil, nil, func(p *h1Proxy) {
				p.inbound, p.authz, p.route = true, &connAuthz{in: inb, peer: peer}, m.Route(metrics.Inbound, "local_app")
			})
			benchRequests(b, addr, "GET /api/items?id=42 HTTP/1.1\r\nHost: web\r\nUser-Agent: bench\r\nAccept: */*\r\nX-Request-Id: 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\r\n\r\n")
		})
	}
}

// benchRequests sends req b.N times on one keep-alive connection to addr,
// reading each response.
func benchRequests(b *testing.B, addr, req string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	raw := []byte(req)
	var resp http1.ResponseHead
	discard := bufio.NewWriter(io.Discard)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testutil.CPUTime()
	defer func() { b.ReportMetric(float64(testutil.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op") }()
	for range b.N {
		if _, err := c.Write(raw); err != nil {
			b.Fatal(err)
		}
		if err := resp.Read(br, []byte("GET"), 0); err != nil {
			b.Fatal(err)
		}
		if _, err := http1.CopyBody(discard, br, resp.Body, resp.ContentLength, resp.Body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkH1ProxyTracing is BenchmarkH1Proxy (outbound side) with
// tracing off, sampling 1% and sampling everything, exporting over
// OTLP/HTTP to an in-process collector that discards what it gets.
func BenchmarkH1ProxyTracing(b *testing.B) {
	collector := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer collector.Close()
	for _, tc := range []struct {
		name    string
		sampler string
		arg     float64
	}{{"off", "", 0}, {"ratio0.01", "parentbased_traceidratio", 0.01}, {"always", "always_on", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			be := startRawBackend(b, hello)
			var tr *tracing.Tracing
			if tc.sampler != "" {
				var err error
				tr, err = tracing.New(context.Background(), tracing.Config{Enabled: true, Sampler: tc.sampler, SamplerArg: tc.arg,
					Protocol: tracing.ProtocolHTTP, Endpoint: collector.URL}, "bench")
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Shutdown(context.Background())
			}
			ep := &balance.Endpoint{Endpoint: discovery.Endpoint{Address: be.ln.Addr().String(), Weight: 1}}
			addr, _ := startH1ProxyWith(b, be.ln.Addr().String(), tr, ep)
			benchRequests(b, addr, "GET /api/items?id=42 HTTP/1.1\r\nHost: web\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
		})
	}
}

// When the upstream restarts, every pooled connection to it is dead: the
// first failure drops them all and the request goes on a fresh one.
func TestH1ProxyUpstreamRestartDropsPool(t *testing.T) {
	b := startRawBackend(t, func(req *http1.RequestHead, br *bufio.Reader, w *bufio.Writer) bool {
		if string(req.Target) == "/slow" {
			time.Sleep(100 * time.Millisecond)
		}
		return hello(req, br, w)
	})
	addr, _ := startH1Proxy(t, b.ln.Addr().String())
	// Four concurrent requests leave four idle pooled connections.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if status, _ := exchange(t, c, bufio.NewReader(c), "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"); status != 200 {
				t.Errorf("status %d", status)
			}
		})
	}
	wg.Wait()
	if n := b.accepted.Load(); n < 4 {
		t.Fatalf("backend accepted %d connections, want 4", n)
	}
	b.mu.Lock() // the "restart": the backend drops every connection
	for _, c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if status, _ := exchange(t, c, bufio.NewReader(c), getReq); status != 200 {
		t.Fatalf("after the restart: status %d, want 200", status)
	}
}

// Slow POST: a client that stops sending its body gets 408 after the body
// idle timeout and its connection closes; one that keeps sending slowly,
// each piece within the timeout, is served whatever the total time.
func TestH1ProxySlowBody(t *testing.T) {
	b := startRawBackend(t, hello)
	addr, _ := startH1ProxyWith(t, b.ln.Addr().String(), nil, nil, func(p *h1Proxy) { p.lim.BodyIdleTimeout = 300 * time.Millisecond })
	c, br := dialProxy(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	var resp http1.ResponseHead
	if err := resp.Read(br, []byte("POST"), 0); err != nil {
		t.Fatal(err)
	}
	if resp.Status != 408 {
		t.Errorf("stalled body: %d, want 408", resp.Status)
	}
	http1.CopyBody(bufio.NewWriter(io.Discard), br, resp.Body, resp.ContentLength, http1.BodyUntilClose)
	if _, err := br.ReadByte(); err == nil {
		t.Error("the connection stayed open after 408")
	}

	// 10 pieces 100ms apart (1s in all, over three timeouts): served.
	c, br = dialProxy(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	for i := range 10 {
		time.Sleep(100 * time.Millisecond)
		fmt.Fprint(c, i)
	}
	if err := resp.Read(br, []byte("POST"), 0); err != nil || resp.Status != 200 {
		t.Errorf("slow but steady body: %d %v, want 200", resp.Status, err)
	}
}

// An upstream that answers with an endless stream of 1xx responses gets
// the client a 502 after maxInterim of them, not a request held forever.
func TestH1ProxyBoundsInterimResponses(t *testing.T) {
	b := startRawBackend(t, func(_ *http1.RequestHead, _ *bufio.Reader, w *bufio.Writer) bool {
		for range 1000 {
			w.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
		}
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	addr, _ := startH1Proxy(t, b.ln.Addr().String())
	c, br := dialProxy(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	var resp http1.ResponseHead
	interim := 0
	for {
		if err := resp.Read(br, []byte("GET"), 0); err != nil {
			t.Fatal(err)
		}
		if resp.Status >= 200 {
			break
		}
		interim++
	}
	if resp.Status != 502 || interim != maxInterim {
		t.Errorf("got %d after %d interim responses, want 502 after %d", resp.Status, interim, maxInterim)
	}
}

// A keep-alive connection idle past idleRelease gives its read buffer
// back and waits for one byte without it: its next request, however it
// arrives (whole, or its first byte alone), is served intact.
func TestH1ProxyIdleConnectionReleasesBuffer(t *testing.T) {
	b := startRawBackend(t, hello)
	addr, _ := startH1Proxy(t, b.ln.Addr().String())
	c, br := dialProxy(t, addr)
	if st, body := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); st != 200 || body != "hello from backend\n" {
		t.Fatalf("first: %d %q", st, body)
	}
	time.Sleep(idleRelease + 300*time.Millisecond)
	if st, body := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); st != 200 || body != "hello from backend\n" {
		t.Fatalf("after idling: %d %q", st, body)
	}
	time.Sleep(idleRelease + 300*time.Millisecond)
	io.WriteString(c, "G")
	time.Sleep(100 * time.Millisecond)
	if st, body := exchange(t, c, br, "ET / HTTP/1.1\r\nHost: x\r\n\r\n"); st != 200 || body != "hello from backend\n" {
		t.Fatalf("first byte alone: %d %q", st, body)
	}
}

// dialProxy connects to an h1Proxy from startH1Proxy, with a 10s deadline
// and the connection closed at the test's end.
func dialProxy(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}
