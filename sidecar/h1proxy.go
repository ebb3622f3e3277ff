package sidecar

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/outrider-mesh/outrider/gateway"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/policy/jwtauth"
	"github.com/outrider-mesh/outrider/policy/pathnorm"
	"github.com/outrider-mesh/outrider/sidecar/balance"
	"github.com/outrider-mesh/outrider/sidecar/http1"
	"github.com/outrider-mesh/outrider/sidecar/overload"
	"github.com/outrider-mesh/outrider/sidecar/route"
	"github.com/outrider-mesh/outrider/telemetry/accesslog"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
)

// The HTTP/1.1 forwarding loop: one goroutine per client connection reads
// a request head, picks where it goes, streams the request to a pooled
// upstream connection and the response back, and loops while both sides
// keep the connection alive. Nothing is buffered beyond the bufio buffers;
// no goroutine is started per request (only for Upgrade tunnels).

const (
	// clientIdleTimeout closes a keep-alive client connection that sent
	// nothing for this long (above poolIdleTimeout, so a peer's pool drops
	// the connection first). The default of HTTPLimits.IdleTimeout.
	clientIdleTimeout = 90 * time.Second
	// bodyIdleTimeout bounds each wait for more of a request body, as
	// nginx's client_body_timeout (slow POST); a timed-out body gets 408.
	// The default of HTTPLimits.BodyIdleTimeout.
	bodyIdleTimeout = 60 * time.Second
	// maxInterim bounds the interim (1xx) responses relayed before the
	// final one; more make the response invalid (502), so an upstream
	// cannot keep a request busy with an endless stream of them. The
	// default of HTTPLimits.MaxInterim.
	maxInterim = 10
	// meshMaxStreams and edgeMaxStreams bound the HTTP/2 streams open at
	// once on a mesh (public and upstream) and an ingress connection.
	meshMaxStreams = 1000
	edgeMaxStreams = 100
	// idleRelease is how long a keep-alive client connection waits for
	// its next request holding its read buffer; then the buffer goes back
	// to the pool until the request comes.
	idleRelease = time.Second
	// continueTimeout is how long a request with Expect: 100-continue waits
	// for the upstream's interim answer before its body is sent anyway
	// (curl waits 1 s).
	continueTimeout = time.Second
	// maxPickAttempts bounds how many endpoints one request tries to
	// connect to.
	maxPickAttempts = 3
)

// Error codes of responses the sidecar generates itself, sent in the
// x-outrider-error header (as Envoy's x-envoy-* headers do) and logged.
const (
	errNoHealthyUpstream = "no_healthy_upstream"
	errConnectFailure    = "upstream_connect_failure"
	errUpstreamTimeout   = "upstream_timeout"
	errUpstreamReset     = "upstream_reset"
	errBadResponse       = "bad_upstream_response"
	errBadRequest        = "bad_request"
	errDenied            = "denied"
	errUpstreamOverflow  = "upstream_overflow"
	errOverloaded        = "overloaded"
	errBodyTimeout       = "request_timeout"
)

// errDraining: the connection closes instead of waiting for a request.
var errDraining = errors.New("sidecar: draining")

// errTooManyInterim is an upstream that sent more interim (1xx) responses
// than the listener's MaxInterim: a bad response (502).
var errTooManyInterim = &http1.Error{Status: 502, Reason: "too many interim (1xx) responses"}

// headerError names the header on every response the sidecar generates.
const headerError = "x-outrider-error"

// h1Target is where a route sends requests: a balanced set of mesh
// endpoints (outbound) or the local application (inbound).
type h1Target interface {
	// plan chooses where hc's request goes, once per request before its
	// first attempt, into hc.dest; it may rewrite the request's target and
	// headers (the upstream's routes).
	plan(hc *h1Conn)
	// acquire returns a connection for the request planned in d, skipping
	// endpoints in tried. The returned *balance.Endpoint (nil for the
	// application) must be released with Done. Errors are
	// balance.ErrNoEndpoint or dial errors.
	acquire(ctx context.Context, d *dest, tried []string) (*upConn, *balance.Endpoint, error)
	// name is the upstream or application, for logs.
	name() string
}

// h1Proxy holds what every connection of one listener shares.
type h1Proxy struct {
	target          h1Target
	retryBudget     *retryBudget // nil: no retries (the application)
	log             *slog.Logger
	stat            *counters
	maxHeaderBytes  int
	maxHeaders      int           // header fields per request or response
	responseTimeout time.Duration // 0: none
	inbound         bool          // set X-Forwarded-For/-Proto on requests
	tel             *telemetry
	route           *metrics.Route
	peer            string // inbound: the client sidecar's SPIFFE ID
	// authz, inbound, decides every request: intentions change while
	// pooled connections from other sidecars stay open, so the decision
	// made at their handshake is not enough, and L7 rules need the
	// request. Paths are normalized with norm first; jwt, when set,
	// verifies bearer tokens.
	authz *connAuthz
	norm  pathnorm.Options
	jwt   *jwtauth.Verifier
	// brk, outbound, is the upstream's circuit breaker (Limits).
	brk *breaker
	// overload admits each request (nil: all).
	overload *overload.Manager
	// lim bounds the connections' idle waits and heads, request bodies'
	// progress and interim responses (a zero field: its default).
	// MaxConcurrentStreams does not apply here.
	lim HTTPLimits
	// gw, inbound, is the listener's gateway: the requests it handles are
	// served through it (h1gateway.go), the others forwarded as usual.
	gw *gatewaySlot
}

// h1Conn is the per-connection state; its heads and buffers are reused for
// every request on the connection.
type h1Conn struct {
	p   *h1Proxy
	c   net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	src netip.Addr
	// srcText is src formatted, for X-Forwarded-For; xfcc is the peer's
	// X-Forwarded-Client-Cert value.
	srcText, xfcc string
	req           http1.RequestHead
	resp          http1.ResponseHead
	wire          []byte  // head being written
	wireBuf       *[]byte // wire's pooled buffer (takeWire)
	drain         *drainState
	ir            *idleReader // under br; nil: no body idle timeout
	// clientClose: the client connection closes after this exchange. The
	// request's own Close is cleared before forwarding: it is hop-by-hop
	// and must not close the pooled upstream connection.
	clientClose bool
	rec         record
	// headReported: this exchange's response status has gone to outlier
	// detection already (when the head arrived).
	headReported bool
	// dest is where the current request goes (plan); routeReq is the
	// request as route matches see it, reused.
	dest     dest
	routeReq route.Request

	// inbound authorization, reused for every request
	authReq   policy.Request
	tokens    tokenMemo
	pathBuf   []byte // a normalized path
	targetBuf []byte // a rewritten request target
	// replay holds the current request's body, read whole before the
	// first attempt so that a retry can send it again (bufferBody); nil
	// when the body is streamed.
	replay *[]byte

	// For requests served through the gateway, made once per connection.
	ci       connInfo
	ciSet    bool
	tlsState *tls.ConnectionState
	// interimMu orders a 100 Continue (sent when the transport first
	// reads the body) and the application's 1xx answers (relayed from
	// the transport's reading goroutine) on bw.
	interimMu sync.Mutex
}

// replayBufs holds the bodies kept for retries (at most maxReplayBody).
var replayBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// bufferBody reads the request's body whole, before the first attempt,
// when the route may retry the request: an idempotent request with a
// Content-Length of at most maxReplayBody and no Expect: 100-continue (the
// client waits for the upstream's verdict before sending it). It reports
// false when the client's body failed (the connection must close; the
// reason is recorded).
func (hc *h1Conn) bufferBody() bool {
	d, req := &hc.dest, &hc.req
	if d.rt == nil || !d.rt.Retry.Enabled() || req.Body != http1.BodyLength || req.ContentLength > maxReplayBody ||
		req.Expect100 || !idempotent(req.Method) {
		return true
	}
	bp := replayBufs.Get().(*[]byte)
	b := slices.Grow((*bp)[:0], int(req.ContentLength))[:req.ContentLength]
	n, err := io.ReadFull(hc.br, b)
	hc.rec.rx = int64(n)
	if err != nil {
		*bp = b[:0]
		replayBufs.Put(bp)
		hc.rec.flag = "DC"
		hc.p.log.Debug("client request body aborted", "upstream", hc.p.target.name(), "error", err)
		return false
	}
	*bp = b
	hc.replay = bp
	return true
}

// releaseBody returns the kept body, if any, to the pool.
func (hc *h1Conn) releaseBody() {
	if hc.replay != nil {
		*hc.replay = (*hc.replay)[:0]
		replayBufs.Put(hc.replay)
		hc.replay = nil
	}
}

// drainState lets shutdown close a keep-alive connection between requests
// without cutting one in flight.
//
// A connection that has not carried a request yet is not closed at once:
// it was accepted before the listener closed, so its client is about to
// send a request on it, and a client cannot tell a connection closed
// under its first request from a failed exchange (it retries only on a
// reused one). Its first request is still served, with Connection: close,
// if it arrives within firstRequestGrace.
type drainState struct {
	mu       sync.Mutex
	idle     bool
	draining bool
	served   bool // a request has started arriving on the connection
	c        net.Conn
}

// firstRequestGrace is how long a draining connection that has carried no
// request yet waits for its first one.
const firstRequestGrace = time.Second

// graceful is called by the tracker when draining starts.
func (d *drainState) graceful() {
	d.mu.Lock()
	d.draining = true
	switch {
	case d.idle && d.served:
		d.c.SetReadDeadline(time.Unix(1, 0))
	case d.idle:
		d.c.SetReadDeadline(time.Now().Add(firstRequestGrace))
	}
	d.mu.Unlock()
}

func (d *drainState) isDraining() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.draining
}

// waitRequest marks the connection idle and arms its idle deadline; it
// reports false when the connection must close instead (draining). Both
// happen under the lock graceful takes, so a drain cannot be missed.
func (d *drainState) waitRequest(deadline time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.draining && d.served {
		return false
	}
	if grace := time.Now().Add(firstRequestGrace); d.draining && grace.Before(deadline) {
		deadline = grace
	}
	d.idle = true
	d.c.SetReadDeadline(deadline)
	return true
}

// rearm moves the idle deadline of a connection still idle; it reports
// false when the connection must close instead (draining).
func (d *drainState) rearm(deadline time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.draining {
		return !d.served // a first request's wait keeps its grace deadline
	}
	d.c.SetReadDeadline(deadline)
	return true
}

// serving marks the connection busy: a request started arriving. If a
// drain expired the deadline meanwhile, the request gets a fresh one.
func (d *drainState) serving(deadline time.Time) {
	d.mu.Lock()
	d.idle, d.served = false, true
	if d.draining {
		d.c.SetReadDeadline(deadline)
	}
	d.mu.Unlock()
}

var h1BufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// serve runs the loop for client connection c (already past any TLS
// handshake); br may hold bytes already read from c. It returns when the
// connection is done; the caller closes c.
//
// ir, when not nil, is the reader under br: it bounds the wait for each
// piece of a request body (slow POST), and lets serve return br's buffer
// to the pool while the connection is idle. serve owns br, which must
// come from getReader when ir is set: it puts it back when it returns.
func (p *h1Proxy) serve(c net.Conn, br *bufio.Reader, ir *idleReader, conns *tracker, tracked net.Conn) {
	hc := &h1Conn{p: p, c: c, br: br, ir: ir, src: remoteIP(c)}
	hc.drain = &drainState{c: c}
	conns.onDrain(tracked, hc.drain.graceful, p.inbound)
	hc.takeWire()
	defer hc.putWire()
	defer func() {
		if hc.br != nil && ir != nil {
			putReader(hc.br)
		}
	}()
	for {
		keep := hc.serveOne()
		// The writer is pooled between requests (serveOne takes one once a
		// request arrives): an idle keep-alive connection holds no write
		// buffer. Everything written was flushed; Flush is a no-op then.
		if hc.bw != nil {
			hc.bw.Flush()
			putWriter(hc.bw)
			hc.bw = nil
		}
		if !keep {
			return
		}
	}
}

// serveOne handles one request; it reports whether the connection stays
// open for another.
func (hc *h1Conn) serveOne() bool {
	p := hc.p
	// One deadline covers the idle wait and the whole head (a slow-loris
	// head cannot outlast it); it is cleared only for requests whose body
	// or tunnel is read next, so a plain GET costs one deadline update.
	now := time.Now()
	deadline := now.Add(cmp.Or(p.lim.IdleTimeout, clientIdleTimeout))
	// A connection that stays idle past idleRelease gives its read
	// buffer back (awaitRequest); the first wait is that long.
	first := deadline
	if hc.ir != nil && hc.br.Buffered() == 0 {
		first = now.Add(idleRelease)
	}
	if !hc.drain.waitRequest(first) {
		return false
	}
	if err := hc.awaitRequest(first, deadline); err != nil {
		return false // closed, idle timeout or draining
	}
	hc.bw = getWriter(hc.c)
	// Draining may begin from here on: the request is still served, and
	// its response says Connection: close (relayResponse checks).
	hc.drain.serving(deadline)
	err := hc.req.ReadLimits(hc.br, p.maxHeaderBytes, p.maxHeaders)
	if err == nil && (hc.req.Body != http1.BodyNone || hc.req.Upgrade != nil) {
		hc.c.SetReadDeadline(time.Time{})
		if hc.ir != nil && hc.req.Upgrade == nil {
			// From here each read of the body must make progress within
			// bodyIdleTimeout; the next request's wait re-arms the idle
			// deadline.
			hc.ir.timeout = cmp.Or(p.lim.BodyIdleTimeout, bodyIdleTimeout)
			defer func() { hc.ir.timeout = 0 }()
		}
	}
	if err != nil {
		var he *http1.Error
		if errors.As(err, &he) {
			p.stat.badRequests.Add(1)
			p.log.Warn("malformed request rejected", "listener", p.target.name(), "remote", hc.c.RemoteAddr().String(),
				"status", he.Status, "reason", he.Reason)
			hc.fail(he.Status, he.Reason, errBadRequest, true)
		}
		return false
	}
	return hc.forward()
}

// fail writes a sidecar-generated error response.
func (hc *h1Conn) fail(status int, body, code string, close bool) {
	hc.rec.status, hc.rec.flag = status, flagFor(code)
	http1.WriteError(hc.bw, status, body, close, headerError, code)
	hc.bw.Flush()
}

// forward sends the current request upstream and relays the response.
func (hc *h1Conn) forward() bool {
	p := hc.p
	hc.rec.reset(time.Now())
	if reason := p.overload.AdmitRequest(); reason != overload.ReasonNone {
		if p.overload.LogRefusal() {
			p.log.Warn("overloaded: requests shed", "listener", p.target.name(), "reason", string(reason))
		}
		// A request beyond max_requests leaves the connection open, as
		// Envoy's stop_accepting_requests does: closing it would make
		// the client reconnect (an mTLS handshake on the mesh side),
		// costing more than the request shed. Memory shedding closes it
		// (Envoy's disable_http_keepalive), and so does a body not read.
		keep := reason == overload.ReasonMaxRequests && p.overload.KeepAlive() &&
			!hc.clientClose && hc.req.Body == http1.BodyNone
		hc.fail(503, "overloaded", errOverloaded, !keep)
		hc.finish()
		return keep
	}
	p.route.InFlight(1)
	keep := hc.forwardAttempts()
	hc.finish()
	p.route.InFlight(-1)
	p.overload.RequestDone()
	return keep
}

// finish records the request in metrics, the server span and the access log.
func (hc *h1Conn) finish() {
	p, r, req := hc.p, &hc.rec, &hc.req
	total := time.Since(r.start)
	p.route.Request(unsafeString(req.Method), r.status, r.flag, r.rx, r.tx, total, r.upstreamDur)
	if p.inbound && r.span != nil {
		endSpan(r.span, r.status, r.flag, nil)
	}
	if a := p.tel.access; a != nil {
		dir, protocol := "outbound", "HTTP/1.1"
		if p.inbound {
			dir = "inbound"
		}
		if req.Minor == 0 {
			protocol = "HTTP/1.0"
		}
		rid, _ := req.Header.Get("X-Request-Id")
		// Log encodes the entry before it returns: views of the head's
		// buffer are safe to pass.
		a.Log(&accesslog.Entry{
			Start: r.start, Duration: total, UpstreamDuration: r.upstreamDur,
			Direction: dir, Upstream: p.target.name(), TraceID: r.traceID, SpanID: r.spanID,
			Peer: p.peer, Downstream: hc.c.RemoteAddr().String(),
			Method: unsafeString(req.Method), Authority: unsafeString(req.Host), Path: unsafeString(req.Target), Protocol: protocol,
			Status: r.status, Flags: r.flag, RxBytes: r.rx, TxBytes: r.tx, Endpoint: r.endpoint,
			RequestID: unsafeString(rid), Attempts: r.attempts, Rule: r.rule,
		})
	}
}

// unsafeString views b as a string for a call that does not keep it.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (hc *h1Conn) forwardAttempts() bool {
	p, req := hc.p, &hc.req
	switch {
	case string(req.Method) == "CONNECT":
		// A tunnel to wherever the client names: no route enables one, so
		// it is refused, never forwarded (as Envoy without a CONNECT
		// matcher).
		p.stat.badRequests.Add(1)
		p.log.Warn("CONNECT refused", "upstream", p.target.name(), "target", string(req.Target), "remote", hc.c.RemoteAddr().String())
		hc.fail(405, "CONNECT is not enabled", errBadRequest, true)
		return false
	case req.Upgrade != nil && bytes.EqualFold(bytes.TrimSpace(req.Upgrade), []byte("h2c")):
		// An HTTP/1.1 to h2c upgrade (deprecated by RFC 9113) is not
		// relayed: the request goes on as HTTP/1.1, its Upgrade and
		// HTTP2-Settings fields dropped as hop-by-hop (as Envoy strips it).
		req.Upgrade = nil
	}
	// Before the sidecar adds fields of its own (X-Forwarded-*, the
	// request ID, traceparent): a client's Connection may name them, and
	// hop-by-hop removal must not take them away.
	req.DropConnectionFields()
	var path string
	if p.authz != nil {
		// Before anything reads the target: the span, the log and the
		// application all see the normalized path the rules matched.
		var err error
		if path, err = hc.normalizeH1(p.norm); err != nil {
			p.stat.badRequests.Add(1)
			logBadPath(p.log, p.peer, string(req.Method), string(req.Target), err)
			hc.fail(400, "malformed request path", errBadPath, true)
			hc.rec.flag = "BR"
			return false
		}
	}
	// A request the gateway handles gets its X-Forwarded-* fields from
	// the gateway's proxy, as on the net/http path.
	var gw *gateway.Gateway
	var gwURL *url.URL
	if p.gw.enabled() {
		gw, gwURL = hc.gatewayFor()
	}
	if p.inbound && gwURL == nil {
		hc.setForwarded()
	}
	hc.clientClose, req.Close = req.Close, false
	if len(req.Host) == 0 {
		// HTTP/1.0 without Host: the upstream speaks HTTP/1.1, which
		// requires one.
		req.Header.Add("Host", p.target.name())
	}
	if !req.Header.Has("X-Request-Id") {
		req.Header.Add("X-Request-Id", newRequestID())
	}
	tel := p.tel
	carrier := headerCarrier{&req.Header}
	var parent context.Context
	if tel.tracer != nil {
		kind := trace.SpanKindClient
		if p.inbound {
			kind = trace.SpanKindServer
		}
		// Unsampled requests are handled on traceparent's bytes; a retry
		// sends the same one (nothing records their spans).
		handled, base := tel.fastUnsampled(&req.Header, unsafeString(req.Method), kind)
		switch {
		case handled:
		case p.inbound:
			_, span := tel.startServerSpan(base, carrier, unsafeString(req.Method), func(span trace.Span) {
				target, host := copyPair(req.Target, req.Host)
				serverAttrs(span, methodString(req.Method), target, host, hc.srcString(), p.peer)
			})
			hc.rec.span = span
			if tel.access != nil {
				hc.rec.noteSpan(span)
			}
		default:
			// Each attempt's span is a child of what the application sent.
			parent = tel.extract(base, carrier)
		}
	}
	// A CORS preflight the gateway answers itself is not authorized: it
	// carries no credentials, so a token-requiring rule would refuse
	// it, and it never reaches the application.
	preflight := gw != nil && hc.isPreflight() && gw.AnswersPreflight(gwURL.Path)
	if preflight {
		hc.rec.rule = preflightRule
		if p.jwt != nil {
			hc.tokens.reset(h1JWTRequest{req}) // no claims: nothing was verified for it
		}
	}
	if p.authz != nil && !preflight {
		if d := hc.authorize(path); !d.Allow {
			keep := !hc.clientClose && req.Body == http1.BodyNone
			dn := denialFor(d, hc.tokens.errFor(d.Provider))
			hc.rec.status, hc.rec.flag = dn.status, "DI"
			if dn.challenge != "" {
				http1.WriteError(hc.bw, dn.status, dn.body, !keep, headerError, dn.code, "WWW-Authenticate", dn.challenge)
			} else {
				http1.WriteError(hc.bw, dn.status, dn.body, !keep, headerError, dn.code)
			}
			hc.bw.Flush()
			return keep
		}
	}
	if gwURL != nil {
		return hc.serveGateway(gw, gwURL)
	}
	if p.brk != nil {
		if !p.brk.request() {
			return hc.overflow("max_concurrent_requests")
		}
		defer p.brk.requestDone()
	}
	p.target.plan(hc)
	d := &hc.dest
	if d.rt != nil && d.rt.RequestTimeout > 0 {
		d.deadline = time.Now().Add(d.rt.RequestTimeout)
	}
	if !hc.bufferBody() {
		return false
	}
	defer hc.releaseBody()
	attempts := maxPickAttempts
	if d.rt != nil && d.rt.Retry.Enabled() {
		attempts = max(attempts, 1+d.rt.Retry.NumRetries)
	}
	retries := 0 // retries the route's policy asked for, each from the budget
	p.retryBudget.start()
	defer func() {
		p.retryBudget.end(retries)
		p.retryBudget.done()
	}()
	var tried []string
	var lastErr error
	for attempt := 0; attempt < attempts; attempt++ {
		uc, ep, err := p.target.acquire(context.Background(), d, tried)
		if errors.Is(err, balance.ErrNoEndpoint) && retries > 0 && len(tried) > 0 {
			// A retry prefers another endpoint, but when every one has
			// been tried it goes to one of them again (as Envoy's).
			tried = tried[:0]
			uc, ep, err = p.target.acquire(context.Background(), d, tried)
		}
		if errors.Is(err, balance.ErrNoEndpoint) {
			break // none, or none left untried
		}
		if errors.Is(err, errOverflow) {
			if ep != nil {
				ep.Done()
			}
			return hc.overflow("max_connections")
		}
		hc.rec.attempts++
		if attempt > 0 {
			p.route.Retry()
		}
		var span trace.Span
		if parent != nil && ep != nil {
			span = tel.startClientSpan(parent, carrier, unsafeString(req.Method), func(span trace.Span) {
				clientAttrs(span, methodString(req.Method), string(req.Target), p.target.name(), ep.Address, ep.Identity.String(), attempt+1)
			})
			if tel.access != nil {
				hc.rec.noteSpan(span)
			}
		}
		if err != nil {
			lastErr = err
			if ep == nil {
				break // the application: nothing else to try
			}
			if span != nil {
				endSpan(span, 0, "UF", err)
			}
			tried = append(tried, ep.Address)
			ep.DoneWith(balance.LocalFailure)
			p.log.Warn("upstream endpoint failed; trying another", "upstream", p.target.name(), "endpoint", ep.Address, "error", err)
			continue
		}
		if ep != nil {
			hc.rec.endpoint = ep.Address
		} else if tel.access != nil {
			// Only the access log shows it, and formatting it allocates.
			hc.rec.endpoint = uc.Conn.RemoteAddr().String()
		}
		hc.headReported = false
		retryOK := hc.mayRetry(retries)
		keep, end := hc.exchange(uc, ep, retryOK)
		if span != nil {
			endSpan(span, hc.rec.status, hc.rec.flag, nil)
		}
		if ep != nil {
			if o, ok := hc.outcome(end); ok {
				ep.DoneWith(o)
			} else {
				ep.Done()
			}
		}
		if end == exchangeRetry {
			// The route's retry policy: another endpoint, after a backoff.
			retries++
			if ep != nil {
				tried = append(tried, ep.Address)
			}
			p.log.Warn("upstream answer retried", "upstream", p.target.name(), "endpoint", hc.rec.endpoint, "status", hc.rec.status, "retry", retries)
			hc.rec.status, hc.rec.flag = 0, ""
			sleepBackoff(retries, d.deadline)
			lastErr = errRetriesExhausted
			continue
		}
		if end != exchangeStale {
			return keep
		}
		// A reused pooled connection failed before the request reached the
		// application: the upstream closed it, and likely its other idle
		// ones too (a restart). Drop them and send the request once more,
		// on a fresh connection.
		uc.pool.closeIdle()
		lastErr = errors.New("pooled connection closed by the upstream")
	}
	p.stat.upstreamFailures.Add(1)
	keep := !hc.clientClose && req.Body == http1.BodyNone
	if lastErr == nil {
		p.log.Error("no healthy endpoint", "upstream", p.target.name(), "method", string(req.Method), "path", string(req.Target))
		hc.fail(503, "no healthy upstream", errNoHealthyUpstream, !keep)
		return keep
	}
	p.log.Error("upstream unavailable", "upstream", p.target.name(), "method", string(req.Method), "path", string(req.Target), "error", lastErr)
	hc.fail(503, "upstream connect error", errConnectFailure, !keep)
	return keep
}

// authorize decides the current request, whose normalized path is path,
// and on an allow applies the JWT providers' forwarding.
func (hc *h1Conn) authorize(path string) policy.Decision {
	p, req, ar := hc.p, &hc.req, &hc.authReq
	ar.Method, ar.Path, ar.Header, ar.Auth = unsafeString(req.Method), path, h1Headers{&req.Header}, nil
	if p.jwt != nil {
		spoofable(p.jwt, h1Editor{hc})
		hc.tokens.v = p.jwt
		hc.tokens.reset(h1JWTRequest{req})
		ar.Auth = &hc.tokens
	}
	d := p.authz.decide(ar)
	hc.rec.rule = d.Rule
	noteDecision(hc.rec.span, d)
	if d.Allow && p.jwt != nil {
		hc.tokens.forward(h1Editor{hc})
	}
	return d
}

// exchangeEnd is how an exchange ended, for the attempt loop.
type exchangeEnd uint8

const (
	// exchangeDone: answered (relayed, or an error response written).
	exchangeDone exchangeEnd = iota
	// exchangeStale: a reused connection failed before any byte of the
	// request could have been acted on; send it again on a fresh one.
	exchangeStale
	// exchangeRetry: the route's retry policy asked for another attempt;
	// nothing was written to the client.
	exchangeRetry
)

// mayRetry reports whether the current request may be retried by its
// route's retry policy after an answer or a reset, retries retries in:
// the route has a policy with retries left, the request has no body or one
// kept whole (bufferBody; a streamed one cannot be sent again), its method
// is idempotent (a non-idempotent request may have had effects), and the
// deadline has not passed. Connect failures are retried whatever the
// policy: nothing was sent.
func (hc *h1Conn) mayRetry(retries int) bool {
	d := &hc.dest
	if d.rt == nil || !d.rt.Retry.Enabled() || retries >= d.rt.Retry.NumRetries {
		return false
	}
	if !hc.resendable() || !idempotent(hc.req.Method) {
		return false
	}
	return d.deadline.IsZero() || time.Now().Before(d.deadline)
}

// resendable reports whether the current request can be sent again whole:
// it has no body, or its body was kept (bufferBody).
func (hc *h1Conn) resendable() bool { return hc.req.Body == http1.BodyNone || hc.replay != nil }

// idempotent: RFC 9110 section 9.2.2.
func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// outcome is what the exchange just done says about its endpoint, for
// outlier detection, beyond the response status reported when the head
// arrived; ok is false when it says nothing more (the client went away or
// sent a bad body, a stale pooled connection is retried, or the status
// was reported and the body relayed whole).
func (hc *h1Conn) outcome(end exchangeEnd) (balance.Outcome, bool) {
	switch r := &hc.rec; {
	case end == exchangeStale, r.flag == "DC", r.flag == "BR":
		return 0, false
	case end == exchangeRetry && !hc.headReported:
		return balance.LocalFailure, true // a reset before the head
	case r.flag == "UC", r.flag == "UT":
		return balance.LocalFailure, true // no head, or a body cut short
	case hc.headReported:
		return 0, false
	default:
		return balance.OutcomeOf(r.status), true
	}
}

// discardResponse drops the response head just read, and its body, so
// that the request can be retried: uc goes back to its pool when the body
// is already buffered (or there is none), and is closed otherwise.
func (hc *h1Conn) discardResponse(uc *upConn) {
	resp := &hc.resp
	switch {
	case resp.Close:
		uc.Conn.Close()
	case resp.Body == http1.BodyNone:
		uc.pool.put(uc)
	case resp.Body == http1.BodyLength && int64(uc.br.Buffered()) >= resp.ContentLength:
		uc.br.Discard(int(resp.ContentLength))
		uc.pool.put(uc)
	default:
		uc.Conn.Close()
	}
}

// grpcStatus is the grpc-status of a response head (a trailers-only gRPC
// answer carries it there), or -1.
func grpcStatus(h *http1.Header) int {
	v, ok := h.Get("Grpc-Status")
	if !ok {
		return -1
	}
	return parseGRPCStatus(unsafeString(v))
}

// reportHead gives the status of a response head just read to outlier
// detection, before its body is relayed: the next request picked already
// knows of the failure (Envoy counts a status as its headers arrive).
func (hc *h1Conn) reportHead(ep *balance.Endpoint) {
	if ep != nil {
		ep.Report(balance.OutcomeOf(hc.resp.Status))
		hc.headReported = true
	}
}

// overflow answers a request refused by the upstream's limits.
func (hc *h1Conn) overflow(limit string) bool {
	p, req := hc.p, &hc.req
	p.stat.upstreamFailures.Add(1)
	keep := !hc.clientClose && req.Body == http1.BodyNone
	p.log.Warn("upstream limit reached; request refused", "upstream", p.target.name(), "limit", limit,
		"method", string(req.Method), "path", string(req.Target))
	hc.fail(503, "upstream overflow", errUpstreamOverflow, !keep)
	return keep
}

// exchange runs one request/response on uc and says how it ended
// (exchangeStale and exchangeRetry close or return uc). retryOK: the
// route's retry policy may ask for another attempt (mayRetry), if the
// retry budget allows.
func (hc *h1Conn) exchange(uc *upConn, ep *balance.Endpoint, retryOK bool) (keep bool, end exchangeEnd) {
	p, req, resp := hc.p, &hc.req, &hc.resp
	cookie := hc.dest.cookie
	hc.wire = req.AppendWire(hc.wire[:0])
	_, werr := uc.bw.Write(hc.wire)
	if werr == nil && (req.Body == http1.BodyNone || req.Expect100) {
		werr = uc.bw.Flush()
	}
	if werr != nil {
		uc.Conn.Close()
		if uc.reused && hc.resendable() {
			return false, exchangeStale
		}
		return hc.upstreamFailed(werr), exchangeDone
	}

	bodySent := req.Body == http1.BodyNone
	maxInterim := cmp.Or(p.lim.MaxInterim, maxInterim)
	interim := 0 // interim responses relayed, over the whole exchange
	if req.Expect100 && !bodySent {
		// Wait briefly for the upstream's verdict before sending the body:
		// a 100 or a final answer. Other interim answers (103) are relayed
		// and the wait goes on (RFC 9110 section 15.2).
		uc.Conn.SetReadDeadline(time.Now().Add(continueTimeout))
		err := hc.readHead(uc, &interim, maxInterim, true)
		uc.Conn.SetReadDeadline(time.Time{})
		switch {
		case err == nil && resp.Status == 100:
			if err := hc.bw.Flush(); err != nil { // readHead's write of the 100 failed
				uc.Conn.Close()
				return false, exchangeDone
			}
		case err == nil:
			// A final answer (417, 401, ...) without reading the body: relay
			// it; the unread body means the client connection must close.
			hc.clientClose = true
			hc.reportHead(ep)
			return hc.relayResponse(uc, cookie, true), exchangeDone
		case isTimeout(err):
			// No 100 in time: send the body anyway, as clients do.
		default:
			uc.Conn.Close()
			return hc.upstreamFailed(err), exchangeDone
		}
	}
	if hc.replay != nil {
		_, werr := uc.bw.Write(*hc.replay)
		if werr == nil {
			werr = uc.bw.Flush()
		}
		if werr != nil {
			uc.Conn.Close()
			if uc.reused {
				return false, exchangeStale
			}
			return hc.upstreamFailed(werr), exchangeDone
		}
		bodySent = true
	}
	if !bodySent {
		n, err := http1.CopyBody(uc.bw, hc.br, req.Body, req.ContentLength, req.Body)
		hc.rec.rx = n
		if err != nil {
			uc.Conn.Close()
			if errors.Is(err, http1.ErrBodySource) {
				if errors.Is(err, http1.ErrBodyFraming) {
					// Bad framing found mid-body: the upstream saw an
					// aborted request; the client gets the 400.
					p.stat.badRequests.Add(1)
					p.log.Warn("malformed request body rejected", "upstream", p.target.name(), "remote", hc.c.RemoteAddr().String(),
						"status", 400, "reason", err)
					hc.fail(400, "malformed request body", errBadRequest, true)
					return false, exchangeDone
				}
				if isTimeout(err) {
					// Slow POST: the client stopped sending its body.
					p.log.Warn("request body timed out", "upstream", p.target.name(), "remote", hc.c.RemoteAddr().String(),
						"idle", cmp.Or(p.lim.BodyIdleTimeout, bodyIdleTimeout), "received", n)
					hc.fail(408, "request body timeout", errBodyTimeout, true)
					return false, exchangeDone
				}
				hc.rec.flag = "DC"
				p.log.Debug("client request body aborted", "upstream", p.target.name(), "error", err)
				return false, exchangeDone
			}
			return hc.upstreamFailed(err), exchangeDone
		}
		if err := uc.bw.Flush(); err != nil {
			uc.Conn.Close()
			return hc.upstreamFailed(err), exchangeDone
		}
	}

	sent := time.Now()
	routeDeadline := !hc.dest.deadline.IsZero()
	switch {
	case routeDeadline:
		// The route's RequestTimeout bounds the whole response, body
		// included, over every attempt (as Envoy's route timeout).
		uc.Conn.SetReadDeadline(hc.dest.deadline)
		uc.routeDeadline = true
		uc.idle.limit = hc.dest.deadline
	case p.responseTimeout > 0:
		uc.Conn.SetReadDeadline(sent.Add(p.responseTimeout))
		uc.deadline = true // for the head only: cleared before the body (clearDeadline)
		uc.idle.limit = sent.Add(p.responseTimeout)
	}
	if rt := hc.dest.rt; rt != nil && rt.IdleTimeout > 0 {
		// The route's IdleTimeout: the upstream may pause at most that
		// long between bytes, head and body (as Envoy's route
		// idle_timeout); a pause before the head is answered 504, one in
		// the body cuts the response.
		uc.idle.timeout = rt.IdleTimeout
	}
	if err := hc.readHead(uc, &interim, maxInterim, false); err != nil {
		uc.Conn.Close()
		if uc.reused && hc.resendable() && (errors.Is(err, io.EOF) || isReset(err)) {
			return false, exchangeStale
		}
		if retryOK && !isTimeout(err) && hc.dest.rt.Retry.OnReset() && p.retryBudget.begin() {
			return false, exchangeRetry
		}
		return hc.upstreamFailed(err), exchangeDone
	}
	hc.rec.upstreamDur = time.Since(sent)
	// The response deadline stays armed only while the head is awaited:
	// relayResponse clears it before reading a body that is not buffered
	// yet (uc.deadline), so long bodies and tunnels are not cut; a route's
	// RequestTimeout stays.
	uc.deadline = p.responseTimeout > 0 && !routeDeadline
	hc.reportHead(ep)
	if retryOK && hc.dest.rt.Retry.OnResponse(resp.Status, grpcStatus(&resp.Header), resp.Header.Has("X-Envoy-Ratelimited")) &&
		p.retryBudget.begin() {
		hc.rec.status = resp.Status
		hc.discardResponse(uc)
		return false, exchangeRetry
	}
	return hc.relayResponse(uc, cookie, false), exchangeDone
}

// readHead reads the upstream's next response head into hc.resp and
// returns at a final one (101 included) or, when continue100, at a 100
// Continue. The interim (1xx) responses before it, that 100 included, are
// relayed to the client as they come (a failed write is left in hc.bw);
// *interim counts them over the exchange, and one more than max is
// errTooManyInterim.
func (hc *h1Conn) readHead(uc *upConn, interim *int, max int, continue100 bool) error {
	p, req, resp := hc.p, &hc.req, &hc.resp
	for {
		if err := resp.ReadLimits(uc.br, req.Method, p.maxHeaderBytes, p.maxHeaders); err != nil {
			return err
		}
		if resp.Status >= 200 || resp.Status == 101 {
			return nil
		}
		if *interim == max {
			return errTooManyInterim
		}
		*interim++
		if req.Minor > 0 { // never to an HTTP/1.0 client (RFC 9110 section 15.2)
			hc.wire = resp.AppendWire(hc.wire[:0], http1.BodyNone, false)
			hc.bw.Write(hc.wire)
			hc.bw.Flush()
		}
		if continue100 && resp.Status == 100 {
			return nil
		}
	}
}

// relayResponse writes the response head read into hc.resp to the client
// and streams its body. It returns uc to its pool when the exchange ended
// cleanly, and reports whether the client connection stays open.
func (hc *h1Conn) relayResponse(uc *upConn, cookie *balance.SetCookie, bodyUnread bool) bool {
	p, req, resp := hc.p, &hc.req, &hc.resp
	hc.rec.status = resp.Status
	if resp.Status == 101 && req.Upgrade != nil {
		uc.clearDeadline()
		uc.idle.timeout = 0 // a tunnel is not a request: only the proxy's tunnel limits apply
		return hc.tunnel(uc)
	}
	if cookie != nil {
		resp.Header.Add("Set-Cookie", cookie.String())
	}
	if d := &hc.dest; d.rt != nil {
		d.rt.ApplyResponse(d.sp, &resp.Header)
	}
	out := resp.Body
	closeClient := hc.clientClose || req.Minor == 0 || hc.drain.isDraining() || !p.overload.KeepAlive()
	if out == http1.BodyUntilClose {
		if req.Minor >= 1 {
			out = http1.BodyChunked
		} else {
			closeClient = true
		}
	}
	if out == http1.BodyChunked && req.Minor == 0 {
		// An HTTP/1.0 client cannot take chunks: delimit by closing.
		out, closeClient = http1.BodyUntilClose, true
	}
	hc.wire = resp.AppendWire(hc.wire[:0], out, closeClient)
	if _, err := hc.bw.Write(hc.wire); err != nil {
		uc.Conn.Close()
		return false
	}
	reusable := !resp.Close && !bodyUnread
	if resp.Body == http1.BodyLength && out == http1.BodyLength && int64(uc.br.Buffered()) >= resp.ContentLength {
		// The whole body is already buffered (small responses): copy it
		// and give the upstream connection back before the client flush,
		// so the client's next request can reuse it.
		body, _ := uc.br.Peek(int(resp.ContentLength))
		hc.bw.Write(body)
		hc.rec.tx = int64(len(body))
		uc.br.Discard(len(body))
		if reusable {
			uc.pool.put(uc)
		} else {
			uc.Conn.Close()
		}
		p.stat.requests.Add(1)
		return hc.bw.Flush() == nil && !closeClient
	}
	if resp.Body != http1.BodyNone {
		uc.clearDeadline()
		n, err := http1.CopyBody(hc.bw, uc.br, resp.Body, resp.ContentLength, out)
		hc.rec.tx = n
		if err != nil {
			uc.Conn.Close()
			if errors.Is(err, http1.ErrBodySource) {
				hc.rec.flag = "UC"
				p.stat.upstreamFailures.Add(1)
				p.log.Warn("upstream response body cut short", "upstream", p.target.name(), "error", err)
			} else {
				hc.rec.flag = "DC"
			}
			return false // the client sees a truncated body and a close
		}
	}
	if err := hc.bw.Flush(); err != nil {
		uc.Conn.Close()
		return false
	}
	if reusable {
		uc.pool.put(uc)
	} else {
		uc.Conn.Close()
	}
	p.stat.requests.Add(1)
	return !closeClient
}

// tunnel relays bytes both ways after a 101 Switching Protocols, for
// WebSocket and other upgrades. It owns uc from here on.
func (hc *h1Conn) tunnel(uc *upConn) bool {
	hc.wire = hc.resp.AppendWire(hc.wire[:0], http1.BodyNone, false)
	hc.bw.Write(hc.wire)
	if err := hc.bw.Flush(); err != nil {
		uc.Conn.Close()
		return false
	}
	hc.p.stat.requests.Add(1)
	hc.p.stat.active.Add(1)
	client := &bufferedConn{Conn: hc.c, r: hc.br}
	up := &bufferedConn{Conn: uc.Conn, r: uc.br}
	splice(client, up)
	hc.p.stat.active.Add(-1)
	uc.Conn.Close()
	return false
}

// upstreamFailed maps an upstream error to the sidecar's response (only
// when no byte of the response went to the client yet) and reports false.
func (hc *h1Conn) upstreamFailed(err error) bool {
	p := hc.p
	p.stat.upstreamFailures.Add(1)
	status, body, code := 502, "upstream reset before response", errUpstreamReset
	var he *http1.Error
	switch {
	case isTimeout(err):
		status, body, code = 504, "upstream request timeout", errUpstreamTimeout
	case errors.As(err, &he):
		status, body, code = 502, "bad upstream response", errBadResponse
	}
	p.log.Error("upstream request failed", "upstream", p.target.name(), "method", string(hc.req.Method),
		"path", string(hc.req.Target), "status", status, "reason", code, "error", err)
	hc.fail(status, body, code, true)
	return false
}

// srcString is src formatted, once per connection: formatting allocates.
func (hc *h1Conn) srcString() string {
	if hc.srcText == "" {
		hc.srcText = hc.src.String()
	}
	return hc.srcText
}

// setForwarded records the mesh hop for the application.
func (hc *h1Conn) setForwarded() {
	h := &hc.req.Header
	ip := hc.srcString()
	switch prior, n := h.Lookup("X-Forwarded-For"); n {
	case 0:
		h.Add("X-Forwarded-For", ip)
	case 1:
		h.Set("X-Forwarded-For", string(prior)+", "+ip)
	default:
		// Several fields are one list (RFC 9110 section 5.3), as the
		// net/http path joins them: this hop goes last.
		var b []byte
		for _, v := range h.Values("X-Forwarded-For") {
			b = append(append(b, v...), ", "...)
		}
		h.Set("X-Forwarded-For", string(b)+ip)
	}
	if !h.Has("X-Forwarded-Proto") {
		h.Add("X-Forwarded-Proto", "https")
	}
	// The peer's identity, as Envoy's forward_client_cert_details
	// SANITIZE_SET writes it: whatever the client sent is replaced, so an
	// application reading it cannot be told another identity.
	h.Del(headerClientCert)
	if hc.p.peer != "" {
		if hc.xfcc == "" {
			hc.xfcc = "URI=" + hc.p.peer // once per connection
		}
		h.Add(headerClientCert, hc.xfcc)
	}
}

// headerClientCert carries the mesh peer's identity to the application.
const headerClientCert = "X-Forwarded-Client-Cert"

// newRequestID returns a random UUIDv4 string (not cryptographic: it
// correlates logs and traces).
func newRequestID() string {
	const hex = "0123456789abcdef"
	var b [36]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	hi = hi&^(0xf<<12) | 4<<12   // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // variant 10
	j := 0
	for i := 0; i < 32; i++ {
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b[j] = '-'
			j++
		}
		var nib uint64
		if i < 16 {
			nib = hi >> (60 - 4*i) & 0xf
		} else {
			nib = lo >> (60 - 4*(i-16)) & 0xf
		}
		b[j] = hex[nib]
		j++
	}
	return string(b[:])
}

// bufferedConn reads through r (which may hold bytes already read from
// Conn) and writes straight to Conn.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// CloseWrite half-closes when the underlying connection can.
func (b *bufferedConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) || errors.Is(err, io.ErrUnexpectedEOF)
}

// requestHash adapts a request head to balance.Request.
type requestHash struct {
	req *http1.RequestHead
	src netip.Addr
}

func (r requestHash) Header(name string) ([]byte, bool) { return r.req.Header.Get(name) }
func (r requestHash) Cookie(name string) ([]byte, bool) { return r.req.Header.Cookie(name) }
func (r requestHash) Query(name string) ([]byte, bool)  { return r.req.Query(name) }
func (r requestHash) SourceIP() netip.Addr              { return r.src }

// takeWire gives hc a pooled buffer for the heads it writes; putWire
// returns it (to be called once per takeWire).
func (hc *h1Conn) takeWire() {
	hc.wireBuf = h1BufPool.Get().(*[]byte)
	hc.wire = (*hc.wireBuf)[:0]
}

func (hc *h1Conn) putWire() {
	if hc.wireBuf == nil {
		return
	}
	*hc.wireBuf = hc.wire[:0]
	h1BufPool.Put(hc.wireBuf)
	hc.wireBuf, hc.wire = nil, nil
}

// awaitRequest blocks until the next request's first byte, waiting with
// the read buffer until first (the read deadline waitRequest armed). A
// connection still idle then gives the buffer back to the pool and waits
// on until deadline for one byte, read straight from the connection; a
// pooled reader taken once it came reads it first (idleReader.pending).
// So an idle keep-alive connection holds no read buffer, while a busy one
// pays nothing more than one deadline update. On success the head's
// deadline is deadline.
func (hc *h1Conn) awaitRequest(first, deadline time.Time) error {
	_, err := hc.br.Peek(1)
	if err == nil {
		if !first.Equal(deadline) {
			hc.c.SetReadDeadline(deadline)
		}
		return nil
	}
	if first.Equal(deadline) || !isTimeout(err) {
		return err
	}
	if !hc.drain.rearm(deadline) {
		return errDraining
	}
	// Nor the buffer of the heads it writes.
	putReader(hc.br)
	hc.br = nil
	hc.putWire()
	n, err := hc.ir.c.Read(hc.ir.one[:])
	hc.br = getReader(hc.ir)
	hc.takeWire()
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	hc.ir.pending = true
	return nil
}
