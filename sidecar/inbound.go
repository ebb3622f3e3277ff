package sidecar

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrider-mesh/outrider/internal/lograte"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/policy/jwtauth"
	"github.com/outrider-mesh/outrider/policy/pathnorm"
	"github.com/outrider-mesh/outrider/sidecar/balance"
	"github.com/outrider-mesh/outrider/sidecar/overload"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
)

// inbound is the public listener: it terminates mTLS from other sidecars,
// authorizes the peer during the handshake, and forwards to the local
// application: bytes for a tcp service; requests for an HTTP one, over
// pooled connections (HTTP/1.1, or h2c for http2 and grpc services).
type inbound struct {
	ln    net.Listener
	tls   *tls.Config
	cfg   atomic.Pointer[PublicListener] // updated in place on registration changes
	log   *slog.Logger
	stat  *counters
	loops *loops   // nil: relay with two goroutines per connection
	conns *tracker // owner of c, for relays that outlive the handler's view of c

	app      *connPool       // HTTP/1.1 connections to the application
	appH1    *http.Transport // for HTTP/2 requests to an HTTP/1.1 application
	appH2C   *http.Transport // for any request to an http2 or grpc application
	h2Server *h2Server
	// gw is the gateway in front of the application (Public.Gateway).
	gw gatewaySlot

	tel     *telemetry
	route   *metrics.Route
	metrics *metrics.Metrics
	authz   *policy.Authorizer
	norm    pathnorm.Options  // how request paths are normalized
	jwt     *jwtauth.Verifier // nil: no JWT providers
	// dryRunLog rate-limits the "would be denied" log lines.
	dryRunLog lograte.Limiter
	overload  *overload.Manager
}

func newInbound(ln net.Listener, cfg *PublicListener, s *Sidecar) *inbound {
	in := &inbound{ln: ln, log: s.log, stat: &s.stat, loops: s.loops, conns: s.conns,
		tel: s.tel, route: s.tel.metrics.Route(metrics.Inbound, "local_app"), metrics: s.tel.metrics, authz: &s.authz,
		norm: s.opts.PathNormalization, jwt: s.opts.JWT, overload: s.overload}
	in.cfg.Store(cfg)
	dial := func(ctx context.Context) (net.Conn, error) {
		cfg := in.cfg.Load()
		d := net.Dialer{Timeout: cfg.LocalConnectTimeout}
		c, err := d.DialContext(ctx, "tcp", cfg.LocalService)
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	}
	in.app = newConnPool(dial)
	transport := func(h2c bool) *http.Transport {
		var protos http.Protocols
		if h2c {
			protos.SetUnencryptedHTTP2(true)
		} else {
			protos.SetHTTP1(true)
		}
		return &http.Transport{
			Protocols:             &protos,
			DialContext:           func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
			DisableCompression:    true,
			MaxIdleConnsPerHost:   poolMaxIdle,
			IdleConnTimeout:       poolIdleTimeout,
			ResponseHeaderTimeout: cfg.LocalRequestTimeout,
		}
	}
	in.appH1, in.appH2C = transport(false), transport(true)
	in.h2Server = newH2Server(reverseProxy(appTransport{in}, "local_app", true, in.stat, in.log, in.tel, in.route, &in.gw), h2ServerConfig{
		maxHeaderBytes: cfg.MaxHeaderBytes, maxHeaders: cfg.MaxHeaders, idle: cfg.IdleTimeout, streams: cfg.MaxConcurrentStreams,
		streamWindow: cfg.InitialStreamWindowSize, connWindow: cfg.InitialConnectionWindowSize,
		overload: s.overload, log: in.log, abuse: abuseReporter(in.tel, in.log, "public")})
	return in
}

// appTransport sends a request to the application with the transport its
// current protocol needs.
type appTransport struct{ in *inbound }

func (a appTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	cfg := a.in.cfg.Load()
	limitInterim(r, cfg.MaxInterim)
	// HTTP/2 to the application only when it is declared to speak it.
	var t http.RoundTripper = a.in.appH1
	switch p := cfg.Protocol; {
	case p == HTTP2 || p == GRPC:
		t = a.in.appH2C
	case (r.Body == nil || r.Body == http.NoBody) && r.Header.Get("Upgrade") == "":
		t = roundTripFunc(a.in.syncRoundTrip)
	}
	sent := time.Now()
	resp, err := t.RoundTrip(r)
	if rec := h2RecordFrom(r.Context()); rec != nil {
		rec.upstreamDur = time.Since(sent)
		rec.attempts++
		rec.endpoint = cfg.LocalService
	}
	return resp, err
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// close releases pooled connections once the listener is closed.
func (in *inbound) close() {
	in.h2Server.shutdown()
	in.app.close()
	in.appH1.CloseIdleConnections()
	in.appH2C.CloseIdleConnections()
}

// name implements h1Target.
func (in *inbound) name() string { return "local_app" }

// plan implements h1Target: the application is the only destination.
func (in *inbound) plan(*h1Conn) {}

// acquire implements h1Target: a pooled connection to the application.
func (in *inbound) acquire(ctx context.Context, _ *dest, _ []string) (*upConn, *balance.Endpoint, error) {
	uc, err := in.app.get(ctx, 0)
	return uc, nil, err
}

func (in *inbound) handle(c net.Conn) {
	cfg := in.cfg.Load()
	start := time.Now()
	remote := c.RemoteAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.HandshakeTimeout)
	raw := newLoopConn(c)
	tc := tls.Server(raw, in.tls)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		if errors.Is(err, io.EOF) {
			// Closed before saying anything: a TCP health check (Consul's
			// "sidecar listening" check does this every interval).
			in.log.Debug("inbound connection closed before the TLS handshake", "remote", remote)
			return
		}
		in.stat.handshakeFailures.Add(1)
		in.metrics.HandshakeFailure(metrics.ClassifyHandshakeError(err))
		in.log.Warn("inbound connection rejected", "remote", remote, "reason", err)
		return
	}
	cs := tc.ConnectionState()
	if cs.DidResume {
		in.stat.resumed.Add(1)
	}
	peer := ""
	var peerID spiffeid.ID
	if pcs := cs.PeerCertificates; len(pcs) > 0 {
		if id, err := x509svid.IDFromCert(pcs[0]); err == nil {
			peer, peerID = id.String(), id
		}
	}
	if alpn := cs.NegotiatedProtocol; cfg.Protocol.L7() || alpn == "http/1.1" || alpn == "h2" {
		// An HTTP service is always served per request, whatever the peer
		// negotiated, so per-request policy cannot be skipped by asking
		// for a byte stream. A peer that negotiated HTTP is served per
		// request too: it is an L7 sidecar whose pooled connections may
		// outlive a protocol change that has not reached this sidecar yet.
		if !cfg.Protocol.L7() {
			l7 := *cfg
			l7.Protocol = HTTP
			cfg = &l7
		}
		in.handleL7(tc, c, cfg, peer, peerID)
		return
	}
	in.route.Connection(1)
	defer in.route.Connection(-1)
	var span trace.Span
	if in.tel.tracer != nil {
		_, span = in.tel.tracer.Start(context.Background(), "tcp local_app", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("client.address", remote), attribute.String("outrider.peer.spiffe_id", peer)))
	}
	d := net.Dialer{Timeout: cfg.LocalConnectTimeout}
	app, err := d.Dial("tcp", cfg.LocalService)
	if err != nil {
		in.stat.upstreamFailures.Add(1)
		in.log.Error("local application unreachable; closing inbound connection",
			"remote", remote, "peer", peer, "local_service", cfg.LocalService, "error", err)
		in.tel.connectionDone(span, "inbound", "local_app", peer, c, start, 0, 0, "UF", cfg.LocalService, err)
		return
	}
	defer app.Close()
	in.stat.active.Add(1)
	up, down, err := forward(in.loops, tc, raw, app, in.conns, c)
	in.stat.active.Add(-1)
	if err != nil {
		in.log.Debug("inbound connection aborted", "remote", remote, "peer", peer, "reason", err)
	}
	in.stat.connections.Add(1)
	in.route.ConnectionClosed(up, down, time.Since(start))
	in.tel.connectionDone(span, "inbound", "local_app", peer, c, start, up, down, "", cfg.LocalService, nil)
	if in.log.Enabled(context.Background(), slog.LevelDebug) {
		in.log.Debug("inbound connection closed", "remote", remote, "peer", peer,
			"bytes_in", up, "bytes_out", down, "duration", time.Since(start))
	}
}

// handleL7 serves an authenticated connection to an HTTP service: HTTP/2
// (by ALPN or by its preface) and any request to an http2/grpc service go
// through the net/http path; HTTP/1.1 to an http service through the
// lean HTTP/1.1 loop.
func (in *inbound) handleL7(tc *tls.Conn, tracked net.Conn, cfg *PublicListener, peer string, peerID spiffeid.ID) {
	in.route.Connection(1)
	defer in.route.Connection(-1)
	ir := &idleReader{c: tc}
	br := getReader(ir)
	az := &connAuthz{in: in, peer: peerID}
	info := connInfo{src: remoteIP(tracked), peer: peer, authz: az, norm: in.norm, jwt: in.jwt, bodyIdle: cfg.BodyIdleTimeout}
	h2 := tc.ConnectionState().NegotiatedProtocol == "h2"
	if !h2 && cfg.Protocol == HTTP {
		tc.SetReadDeadline(time.Now().Add(cmp.Or(cfg.IdleTimeout, clientIdleTimeout)))
		first, err := br.Peek(3)
		if err != nil {
			putReader(br)
			return
		}
		if string(first) != "PRI" {
			p := &h1Proxy{target: in, log: in.log, stat: in.stat, maxHeaderBytes: cfg.MaxHeaderBytes, maxHeaders: cfg.MaxHeaders,
				responseTimeout: cfg.LocalRequestTimeout, inbound: true, tel: in.tel, route: in.route, peer: peer,
				authz: az, norm: in.norm, jwt: in.jwt, overload: in.overload, gw: &in.gw, lim: cfg.HTTPLimits}
			p.serve(tc, br, ir, in.conns, tracked) // serve puts br back
			return
		}
		tc.SetReadDeadline(time.Time{})
	}
	// The HTTP server owns br from here on; it is not pooled.
	in.h2Server.serveConn(&bufferedConn{Conn: tc, r: br}, info)
}

// syncRoundTrip sends a request without a body to the HTTP/1.1
// application over the HTTP/1.1 loop's own pool, on the caller's
// goroutine, for the net/http path's proxy (the gateway's, and HTTP/2
// requests): no transport goroutines hand the request and the answer
// over (what that proxy cost most on top of the loop). An
// answer's body gives the connection back once read to its end. A reused
// connection that fails before any answer arrives is retried once on a
// fresh one for a replayable request (GET, HEAD, OPTIONS, TRACE), as
// net/http's transport does.
func (in *inbound) syncRoundTrip(r *http.Request) (*http.Response, error) {
	cfg := in.cfg.Load()
	for attempt := 0; ; attempt++ {
		uc, err := in.app.get(r.Context(), 0)
		if err != nil {
			return nil, err
		}
		resp, err := uc.roundTrip(r, cfg.LocalRequestTimeout, cmp.Or(cfg.MaxInterim, maxInterim))
		if err == nil {
			return resp, nil
		}
		uc.Conn.Close()
		replayable := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions || r.Method == http.MethodTrace
		if !uc.reused || !replayable || attempt > 0 || !errors.Is(err, errNoAnswer) {
			return nil, err
		}
	}
}

// errNoAnswer: the connection ended before any byte of an answer.
var errNoAnswer = errors.New("sidecar: the application closed the connection before answering")

// roundTrip writes r on uc and reads the answer's head; responseTimeout
// (0: none) bounds the wait for it, and maxInterim the interim answers
// before it.
func (uc *upConn) roundTrip(r *http.Request, responseTimeout time.Duration, maxInterim int) (_ *http.Response, err error) {
	// The request's end (a part's timeout, an HTTP/2 stream reset)
	// aborts the exchange, the body's reads included.
	ctx := r.Context()
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { uc.Conn.SetDeadline(time.Unix(1, 0)) })
		defer func() {
			if err != nil {
				stop()
				if ctx.Err() != nil {
					err = ctx.Err()
				}
			}
		}()
	}
	if err := r.Write(uc.bw); err != nil {
		return nil, err
	}
	if err := uc.bw.Flush(); err != nil {
		return nil, err
	}
	if responseTimeout > 0 {
		uc.Conn.SetReadDeadline(time.Now().Add(responseTimeout))
		uc.deadline = true
	}
	trace := httptrace.ContextClientTrace(r.Context())
	for interim := 0; ; interim++ {
		if _, err := uc.br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) || isReset(err) {
				return nil, errNoAnswer
			}
			return nil, err
		}
		resp, err := http.ReadResponse(uc.br, r)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == 101 {
			uc.clearDeadline()
			resp.Body = &pooledBody{ReadCloser: resp.Body, uc: uc, keep: !resp.Close, stop: stop, eof: resp.Body == http.NoBody}
			return resp, nil
		}
		if interim == maxInterim {
			return nil, errTooManyInterim
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// pooledBody is an answer's body read from a pooled connection: read to
// its end, the connection goes back to the pool; closed before, it is
// closed.
type pooledBody struct {
	io.ReadCloser
	uc   *upConn
	keep bool
	eof  bool
	stop func() bool // nil, or unregisters the request's abort
}

func (b *pooledBody) Read(p []byte) (int, error) {
	if b.uc == nil {
		return 0, io.EOF
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *pooledBody) Close() error {
	uc := b.uc
	if uc == nil {
		return nil
	}
	b.uc = nil
	aborted := b.stop != nil && !b.stop()
	if b.eof && b.keep && !aborted && uc.br.Buffered() == 0 {
		uc.pool.put(uc)
	} else {
		uc.Conn.Close()
	}
	return nil
}
