package sidecar

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrider-mesh/outrider/gateway"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/policy/jwtauth"
	"github.com/outrider-mesh/outrider/policy/pathnorm"
	"github.com/outrider-mesh/outrider/sidecar/balance"
	"github.com/outrider-mesh/outrider/sidecar/http1"
	"github.com/outrider-mesh/outrider/sidecar/overload"
	"github.com/outrider-mesh/outrider/telemetry/accesslog"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
)

// The net/http path carries HTTP/2 and gRPC (and HTTP/1.1 to or from
// HTTP/2-only services): Go's HTTP server reads requests from connections
// the sidecar accepted and handed over, and httputil.ReverseProxy forwards
// them through a RoundTripper that balances each request over the mesh
// (outbound) or sends it to the application (inbound). Streams are flushed
// as they come, trailers and grpc-status pass through, and grpc-timeout
// bounds the call.

// h2Server serves handed-over connections with a net/http server.
type h2Server struct {
	srv *http.Server
	ln  *connListener
	// abuse is told when the HTTP/2 guard closes a connection, and
	// whether it said GOAWAY first.
	abuse func(reason string, goAway bool, remote net.Addr)
}

// h2ServerConfig is what newH2Server needs besides the handler.
type h2ServerConfig struct {
	maxHeaderBytes, maxHeaders int
	// readHeader and idle are the server's head and idle timeouts
	// (defaults 30s and clientIdleTimeout).
	readHeader, idle time.Duration
	// streams bounds the HTTP/2 streams open at once on a connection
	// (0: meshMaxStreams, as mesh peers multiplex a whole service's
	// traffic on few connections; an ingress sets edgeMaxStreams).
	// streamWindow and connWindow are the HTTP/2 receive windows (0: Go's
	// defaults, 1 MiB each; an ingress sets Envoy's edge values).
	streams, streamWindow, connWindow int
	// overload admits each request (nil: all).
	overload *overload.Manager
	log      *slog.Logger
	// abuse is told when the HTTP/2 guard closes a connection, and
	// whether it said GOAWAY first.
	abuse func(reason string, goAway bool, remote net.Addr)
	// bodyIdle bounds each wait for more of a request body (0:
	// bodyIdleTimeout), on connections whose connInfo does not set it.
	bodyIdle time.Duration
}

// newH2Server starts a server for h whose connections come from serveConn.
// Its HTTP/2 accepts prior-knowledge connections (h2c from applications,
// and h2 over the sidecar's TLS, which the server sees as plaintext because
// the handshake is done before hand-over).
func newH2Server(h http.Handler, cfg h2ServerConfig) *h2Server {
	readHeader, idle, log := cmp.Or(cfg.readHeader, 30*time.Second), cmp.Or(cfg.idle, clientIdleTimeout), cfg.log
	maxHeaderBytes := cfg.maxHeaderBytes
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	s := &h2Server{
		srv: &http.Server{
			Handler:           admit(limitHeaders(h, cfg.maxHeaders, log), cfg.overload, log),
			Protocols:         &protos,
			MaxHeaderBytes:    maxHeaderBytes,
			ReadHeaderTimeout: readHeader,
			IdleTimeout:       idle,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
			HTTP2: &http.HTTP2Config{MaxConcurrentStreams: cmp.Or(cfg.streams, meshMaxStreams),
				MaxReceiveBufferPerStream: cfg.streamWindow, MaxReceiveBufferPerConnection: cfg.connWindow},
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				if hc, ok := c.(*handedConn); ok {
					info := hc.info
					info.bodyIdle = cmp.Or(info.bodyIdle, cfg.bodyIdle, bodyIdleTimeout)
					ctx = context.WithValue(ctx, connInfoKey{}, info)
				}
				return ctx
			},
		},
		ln:    newConnListener(),
		abuse: cfg.abuse,
	}
	go s.srv.Serve(s.ln)
	return s
}

// limitHeaders answers 431 to a request with more than max header fields
// (<= 0: http1.DefaultMaxFields), the bound the HTTP/1.1 fast path applies
// while parsing; net/http bounds only the bytes.
func limitHeaders(h http.Handler, max int, log *slog.Logger) http.Handler {
	if max <= 0 {
		max = http1.DefaultMaxFields
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		if r.Host != "" {
			n++
		}
		for _, vv := range r.Header {
			n += len(vv)
		}
		if n > max {
			log.Warn("malformed request rejected", "remote", r.RemoteAddr, "status", http.StatusRequestHeaderFieldsTooLarge,
				"reason", "too many header fields", "fields", n)
			w.Header().Set("Connection", "close")
			http.Error(w, "too many header fields", http.StatusRequestHeaderFieldsTooLarge)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// admit sheds a request the overload manager refuses with 503, closing
// the connection (HTTP/1.1; an HTTP/2 stream just ends); while
// shedding, admitted HTTP/1.1 requests are answered with Connection:
// close too, so clients reconnect and meet the connection budget.
func admit(h http.Handler, ov *overload.Manager, log *slog.Logger) http.Handler {
	if ov == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reason := ov.AdmitRequest(); reason != overload.ReasonNone {
			if ov.LogRefusal() {
				log.Warn("overloaded: requests shed", "reason", string(reason), "remote", r.RemoteAddr)
			}
			w.Header().Set(headerError, errOverloaded)
			if r.ProtoMajor == 1 {
				w.Header().Set("Connection", "close")
			}
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		defer ov.RequestDone()
		if !ov.KeepAlive() && r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// connInfo is what a handler may know about the connection a request came on.
type connInfo struct {
	src  netip.Addr
	peer string // peer SPIFFE ID (inbound)
	// authz decides each request (inbound; nil outbound), after its path
	// is normalized with norm; jwt verifies bearer tokens when set.
	authz *connAuthz
	norm  pathnorm.Options
	jwt   *jwtauth.Verifier
	// bodyIdle bounds each wait for more of a request body (0: the
	// server's setting).
	bodyIdle time.Duration
}

type connInfoKey struct{}

func connInfoFrom(ctx context.Context) connInfo {
	ci, _ := ctx.Value(connInfoKey{}).(connInfo)
	return ci
}

// serveConn hands c to the server and blocks until the server closed it,
// so the caller's connection accounting stays right.
func (s *h2Server) serveConn(c net.Conn, info connInfo) {
	// Every connection is guarded: HTTP/2 ones are watched for abuse,
	// HTTP/1.1 ones pass through untouched.
	g := newGuardedConn(c, func(reason string, goAway bool) { s.abuse(reason, goAway, c.RemoteAddr()) })
	hc := &handedConn{Conn: g, info: info, closed: make(chan struct{})}
	if !s.ln.push(hc) {
		return
	}
	<-hc.closed
}

// shutdown stops taking connections, sends HTTP/2 GOAWAY and closes idle
// connections; in-flight requests finish (the sidecar's drain bounds them
// by closing their connections). It does not wait.
func (s *h2Server) shutdown() {
	s.ln.Close()
	go s.srv.Shutdown(context.Background())
}

// handedConn signals when the server closes it.
type handedConn struct {
	net.Conn
	info   connInfo
	once   sync.Once
	closed chan struct{}
}

func (c *handedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// connListener is a net.Listener fed by push.
type connListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// reverseProxy returns the handler forwarding to rt. inbound adds the
// X-Forwarded-* fields for the application and starts a server span; the
// outbound RoundTripper starts a client span per attempt.
//
// gw, when not nil, receives the proxy as its inner handler: requests go
// through the gateway installed there, if any, once authorized.
func reverseProxy(rt http.RoundTripper, name string, inbound bool, stat *counters, log *slog.Logger, tel *telemetry, route *metrics.Route, gw *gatewaySlot) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			out := pr.Out
			out.URL.Scheme = "http"
			out.URL.Host = pr.In.Host
			if out.URL.Host == "" {
				out.URL.Host = name
			}
			ci := connInfoFrom(pr.In.Context())
			// ReverseProxy drops X-Forwarded-* before Rewrite; what the
			// application, an ingress or a peer sidecar set passes through
			// (inbound, with this hop added), as on the HTTP/1.1 path.
			for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := pr.In.Header[k]; ok {
					out.Header[k] = v
				}
			}
			if inbound {
				ip := ci.src.String()
				if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
					out.Header.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+ip)
				} else {
					out.Header.Set("X-Forwarded-For", ip)
				}
				if out.Header.Get("X-Forwarded-Proto") == "" {
					out.Header.Set("X-Forwarded-Proto", "https")
				}
				out.Header.Del(headerClientCert)
				if ci.peer != "" {
					out.Header.Set(headerClientCert, "URI="+ci.peer)
				}
			}
			if out.Header.Get("X-Request-Id") == "" {
				out.Header.Set("X-Request-Id", newRequestID())
			}
		},
		Transport: rt,
		// 0, not -1: ReverseProxy flushes every response of unknown length
		// (streams, gRPC) as it comes anyway; an empty one (ContentLength
		// 0: a trailers-only gRPC answer) is then written only when the
		// handler returns, as one HEADERS frame ending the stream, which a
		// caller's retry policy can read (Envoy retries on grpc-status in
		// headers only).
		FlushInterval: 0,
		BufferPool:    copyBuffers{},
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ModifyResponse: func(resp *http.Response) error {
			stat.requests.Add(1)
			if _, ok := resp.Header["Grpc-Status"]; ok && resp.ContentLength != 0 {
				// A status in headers that do not end the stream: the
				// proxy flushes headers before the body, so the status is
				// sent as trailers, which every gRPC client accepts after
				// headers. (A trailers-only answer, ContentLength 0, stays
				// one HEADERS frame: see FlushInterval.)
				if resp.Trailer == nil {
					resp.Trailer = http.Header{}
				}
				for _, k := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
					if v, ok := resp.Header[k]; ok {
						resp.Trailer[k] = v
						delete(resp.Header, k)
					}
				}
			}
			if rec, ok := resp.Request.Context().Value(h2RecordKey{}).(*h2Record); ok && rec.cookie != nil {
				resp.Header.Add("Set-Cookie", rec.cookie.String())
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			proxyError(w, r, err, name, stat, log)
		},
	}
	if gw != nil {
		gw.inner = rp
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			// No route enables a tunnel (extended CONNECT included): refused,
			// never forwarded, as on the HTTP/1.1 path.
			stat.badRequests.Add(1)
			log.Warn("CONNECT refused", "upstream", name, "target", r.Host, "remote", r.RemoteAddr)
			w.Header().Set(headerError, errBadRequest)
			http.Error(w, "CONNECT is not enabled", http.StatusMethodNotAllowed)
			return
		}
		if isGRPC(r) {
			if t := r.Header.Get("Grpc-Timeout"); t != "" {
				if d, ok := parseGRPCTimeout(t); ok {
					ctx, cancel := context.WithTimeout(r.Context(), d)
					defer cancel()
					r = r.WithContext(ctx)
				}
			}
		}
		start := time.Now()
		route.InFlight(1)
		rec := &h2Record{upstreamDur: -1}
		ctx := context.WithValue(r.Context(), h2RecordKey{}, rec)
		ci := connInfoFrom(ctx)
		var span trace.Span
		if tel.tracer != nil {
			carrier := propagation.HeaderCarrier(r.Header)
			if inbound {
				_, span = tel.startServerSpan(context.Background(), carrier, r.Method, func(span trace.Span) {
					serverAttrs(span, r.Method, r.URL.Path, r.Host, ci.src.String(), ci.peer)
				})
			} else {
				rec.parent = tel.prop.Extract(context.Background(), carrier)
			}
		}
		body := &countingBody{ReadCloser: r.Body}
		if r.Body != nil && r.Body != http.NoBody {
			if !isGRPC(r) && ci.bodyIdle > 0 {
				// Slow POST: each read of the body must make progress
				// within bodyIdleTimeout, as on the HTTP/1.1 loop. gRPC
				// streams are exempt: a client stream may rightly idle
				// between messages (the RPC's deadline bounds it).
				body.rc, body.idle, body.rec = http.NewResponseController(w), ci.bodyIdle, rec
				defer body.disarm()
			}
			r.Body = body
		}
		sw := &statusWriter{ResponseWriter: w}
		// A CORS preflight the gateway answers itself (matched on the
		// normalized path, as the gateway matches it) is not authorized:
		// it carries no credentials, so a token-requiring rule would
		// refuse it, and it never reaches the application.
		var pf *gateway.Gateway
		if ci.authz != nil && gw.enabled() && isPreflight(r) {
			if _, err := normalizeH2(r, ci.norm); err == nil {
				pf = gw.preflight(r)
			}
		}
		switch {
		case pf != nil:
			rec.rule = preflightRule
			gw.serveWith(pf, sw, r.WithContext(ctx), ci, rec)
		case ci.authz == nil || authorizeH2(sw, r, ci, rec, span, log):
			if gw != nil {
				gw.serve(sw, r.WithContext(ctx), ci, rec)
			} else {
				rp.ServeHTTP(sw, r.WithContext(ctx))
			}
		}
		total := time.Since(start)
		route.Request(r.Method, sw.status, rec.flag, body.n.Load(), sw.bytes, total, rec.upstreamDur)
		route.InFlight(-1)
		if span != nil {
			endSpan(span, sw.status, rec.flag, nil)
			if tel.access != nil && span.SpanContext().IsValid() {
				rec.traceID, rec.spanID = span.SpanContext().TraceID().String(), span.SpanContext().SpanID().String()
			}
		}
		if tel.access != nil {
			dir := "outbound"
			if inbound {
				dir = "inbound"
			}
			tel.access.Log(&accesslog.Entry{
				Start: start, Duration: total, UpstreamDuration: rec.upstreamDur,
				Direction: dir, Upstream: name, TraceID: rec.traceID, SpanID: rec.spanID,
				Peer: ci.peer, Downstream: r.RemoteAddr, Method: r.Method, Authority: r.Host, Path: r.URL.RequestURI(),
				Protocol: r.Proto, Status: sw.status, Flags: rec.flag, RxBytes: body.n.Load(), TxBytes: sw.bytes,
				Endpoint: rec.endpoint, RequestID: r.Header.Get("X-Request-Id"), Attempts: rec.attempts, Rule: rec.rule,
			})
		}
	})
}

// authorizeH2 normalizes r's path and decides r; it answers a denied or
// malformed request itself and reports whether r may be forwarded.
func authorizeH2(w http.ResponseWriter, r *http.Request, ci connInfo, rec *h2Record, span trace.Span, log *slog.Logger) bool {
	path, err := normalizeH2(r, ci.norm)
	if err != nil {
		rec.flag = "BR"
		ci.authz.in.stat.badRequests.Add(1)
		logBadPath(log, ci.peer, r.Method, r.RequestURI, err)
		denyRequest(w, r, denial{400, errBadPath, "malformed request path", 3, ""})
		return false
	}
	req := &policy.Request{Method: r.Method, Path: path, Header: h2Headers(r.Header)}
	var tokens *tokenMemo
	if ci.jwt != nil {
		spoofable(ci.jwt, h2Editor{r})
		tokens = &tokenMemo{v: ci.jwt, req: h2JWTRequest{r}}
		req.Auth = tokens
	}
	d := ci.authz.decide(req)
	rec.rule = d.Rule
	noteDecision(span, d)
	if !d.Allow {
		rec.flag = "DI"
		var terr error
		if tokens != nil {
			terr = tokens.errFor(d.Provider)
		}
		denyRequest(w, r, denialFor(d, terr))
		return false
	}
	if tokens != nil {
		rec.claims = tokens.verified()
		tokens.forward(h2Editor{r})
	}
	return true
}

// denyRequest answers a request the sidecar refuses: the denial's status,
// or for gRPC the matching status code in a trailers-only answer.
func denyRequest(w http.ResponseWriter, r *http.Request, dn denial) {
	w.Header().Set(headerError, dn.code)
	if dn.challenge != "" {
		w.Header().Set("WWW-Authenticate", dn.challenge)
	}
	if isGRPC(r) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", strconv.Itoa(dn.grpc))
		w.Header().Set("Grpc-Message", "outrider: "+dn.body)
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(dn.status)
	io.WriteString(w, dn.body+"\n")
}

// h2Record carries one request's telemetry and hash-policy cookie between
// the handler, the RoundTripper (which picks the endpoint) and
// ModifyResponse / ErrorHandler.
type h2Record struct {
	cookie      *balance.SetCookie
	parent      context.Context // outbound: the application's trace context
	flag        string
	endpoint    string
	attempts    int
	rule        string          // the authorization rule that decided (inbound)
	claims      *jwtauth.Claims // a token the decision verified (inbound)
	upstreamDur time.Duration
	traceID     string
	spanID      string
	// bodyTimedOut: the request body's idle bound cut it; bodyMalformed:
	// its chunked framing was bad (HTTP/1.1 loop). Set on the
	// transport's goroutine.
	bodyTimedOut, bodyMalformed atomic.Bool
	// bodyDeadline is, while a body read waits under the idle bound, its
	// deadline (UnixNano); 0 otherwise.
	bodyDeadline atomic.Int64
	// tooManyInterim: the upstream sent more 1xx responses than allowed
	// (limitInterim, on the transport's goroutine).
	tooManyInterim atomic.Bool
}

// bodyTimeout reports whether the body's idle bound cut it: the reader
// saw the timeout, or a read is still waiting past its deadline. The
// second matters because net/http's server cancels the request's context
// when the connection's read deadline fires, before that read returns:
// the reverse proxy can see the cancellation first, and would take the
// slow client for one that went away.
func (r *h2Record) bodyTimeout() bool {
	if r.bodyTimedOut.Load() {
		return true
	}
	d := r.bodyDeadline.Load()
	return d != 0 && time.Now().UnixNano() >= d
}

type h2RecordKey struct{}

func h2RecordFrom(ctx context.Context) *h2Record {
	rec, _ := ctx.Value(h2RecordKey{}).(*h2Record)
	return rec
}

// countingBody counts request body bytes read.
type countingBody struct {
	io.ReadCloser
	// n is atomic: the HTTP/2 transport may still be reading the body on
	// its own goroutine when the handler records the request (an answer
	// that came before the whole body was sent).
	n atomic.Int64

	// rc and idle, when set, bound each Read: the stream's (HTTP/2) or
	// connection's (HTTP/1.1) read deadline is moved to now + idle first,
	// and cleared at the body's end so that nothing else trips on it.
	rc    *http.ResponseController
	idle  time.Duration
	armed atomic.Bool // the transport reads on its goroutine, the handler disarms on its own
	rec   *h2Record   // told when the idle bound cut the body
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.rc != nil {
		dl := time.Now().Add(b.idle)
		ok := b.rc.SetReadDeadline(dl) == nil
		b.armed.Store(ok)
		if ok {
			b.rec.bodyDeadline.Store(dl.UnixNano())
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err != nil && b.armed.Load() {
		if isTimeout(err) {
			b.rec.bodyTimedOut.Store(true) // before the deadline is cleared
		}
		b.disarm()
	}
	if b.rc != nil {
		b.rec.bodyDeadline.Store(0)
	}
	return n, err
}

// disarm clears a read deadline Read set.
func (b *countingBody) disarm() {
	if b.armed.Swap(false) {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

// copyBuffers lends ReverseProxy its body-copy buffers (it allocates 32
// KiB per request without a pool).
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBuffers) Get() []byte { return *copyBufferPool.Get().(*[]byte) }

func (copyBuffers) Put(b []byte) {
	bp := new([]byte) // 24 bytes, against 32 KiB per request without the pool
	*bp = b
	copyBufferPool.Put(bp)
}

// limitInterim bounds the interim (1xx) responses of r, a request the
// reverse proxy is sending (0: maxInterim): one more than max fails the
// round trip with errTooManyInterim. Go's transports count nothing once a
// ClientTrace takes the 1xx responses (the caller "is responsible for
// limiting" them), and the reverse proxy's trace does, to relay them; so
// the bound is put in that trace's hook, which r's transport calls on its
// reading goroutine, one response after another. The trace is the one
// ReverseProxy made for this request alone: changing it here, before the
// transport sees r, adds no hooks to compose (httptrace composes them by
// reflection).
func limitInterim(r *http.Request, max int) {
	t := httptrace.ContextClientTrace(r.Context())
	if t == nil || t.Got1xxResponse == nil {
		return // not relayed: Go's transports bound them by header bytes
	}
	max = cmp.Or(max, maxInterim)
	relay, n, rec := t.Got1xxResponse, 0, h2RecordFrom(r.Context())
	t.Got1xxResponse = func(code int, h textproto.MIMEHeader) error {
		if n++; n > max {
			if rec != nil {
				// The HTTP/2 transport returns the error as the cause of
				// a stream error, which does not unwrap to it.
				rec.tooManyInterim.Store(true)
			}
			return errTooManyInterim
		}
		return relay(code, h)
	}
}

// proxyError answers a request the sidecar could not forward: gRPC calls
// get a trailers-only response with a grpc-status, others a short body.
func proxyError(w http.ResponseWriter, r *http.Request, err error, name string, stat *counters, log *slog.Logger) {
	status, code, msg, grpcCode := 502, errUpstreamReset, "upstream reset before response", 14
	rec := h2RecordFrom(r.Context())
	malformed := rec != nil && rec.bodyMalformed.Load()
	timedOut := rec != nil && rec.bodyTimeout()
	if !malformed && !timedOut { // the client's own body failed otherwise
		stat.upstreamFailures.Add(1)
	}
	switch {
	case malformed:
		// The client's body framing failed mid-body (the HTTP/1.1
		// loop's codec): the application saw an aborted request.
		stat.badRequests.Add(1)
		log.Warn("malformed request body rejected", "upstream", name, "remote", r.RemoteAddr, "status", 400)
		status, code, msg = 400, errBadRequest, "malformed request body"
		w.Header().Set("Connection", "close")
	case timedOut:
		// Slow POST: the client stopped sending its body.
		log.Warn("request body timed out", "upstream", name, "remote", r.RemoteAddr, "idle", connInfoFrom(r.Context()).bodyIdle)
		status, code, msg = 408, errBodyTimeout, "request body timeout"
		if r.ProtoMajor == 1 {
			// Else net/http's server reads the rest of the body before
			// answering (to keep the connection), which never comes.
			w.Header().Set("Connection", "close")
		}
	case errors.Is(err, balance.ErrNoEndpoint):
		status, code, msg = 503, errNoHealthyUpstream, "no healthy upstream"
	case errors.Is(err, errTooManyInterim) || rec != nil && rec.tooManyInterim.Load():
		code, msg = errBadResponse, "upstream sent too many interim (1xx) responses"
	case errors.Is(err, errOverflow):
		status, code, msg = 503, errUpstreamOverflow, "upstream overflow"
	case errors.As(err, new(*dialError)):
		status, code, msg = 503, errConnectFailure, "upstream connect error"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		status, code, msg, grpcCode = 504, errUpstreamTimeout, "upstream request timeout", 4
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		if rec := h2RecordFrom(r.Context()); rec != nil {
			rec.flag = "DC"
		}
		log.Debug("request cancelled by the client", "upstream", name, "path", r.URL.Path)
		return
	}
	if rec := h2RecordFrom(r.Context()); rec != nil {
		rec.flag = flagFor(code)
	}
	log.Error("upstream request failed", "upstream", name, "method", r.Method, "path", r.URL.Path,
		"status", status, "reason", code, "error", err)
	w.Header().Set(headerError, code)
	if isGRPC(r) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", strconv.Itoa(grpcCode))
		w.Header().Set("Grpc-Message", fmt.Sprintf("outrider: %s: %s", name, msg))
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return len(ct) >= 16 && ct[:16] == "application/grpc"
}

// parseGRPCTimeout reads a grpc-timeout value: at most 8 digits and a unit
// (H, M, S, m, u, n).
func parseGRPCTimeout(s string) (time.Duration, bool) {
	if len(s) < 2 || len(s) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second,
		'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[s[len(s)-1]]
	if unit == 0 {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// dialError marks a failure to reach an endpoint (nothing was sent).
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// httpRequestHash adapts an *http.Request to balance.Request.
type httpRequestHash struct {
	r   *http.Request
	src netip.Addr
}

func (h httpRequestHash) Header(name string) ([]byte, bool) {
	v := h.r.Header.Values(name)
	if len(v) == 0 {
		return nil, false
	}
	return []byte(v[0]), true
}

func (h httpRequestHash) Cookie(name string) ([]byte, bool) {
	c, err := h.r.Cookie(name)
	if err != nil {
		return nil, false
	}
	return []byte(c.Value), true
}

func (h httpRequestHash) Query(name string) ([]byte, bool) {
	q := h.r.URL.Query()
	if !q.Has(name) {
		return nil, false
	}
	return []byte(q.Get(name)), true
}

func (h httpRequestHash) SourceIP() netip.Addr { return h.src }
