package sidecar

import (
	"context"
	"encoding/hex"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrider-mesh/outrider/sidecar/http1"
	"github.com/outrider-mesh/outrider/telemetry/accesslog"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
	"github.com/outrider-mesh/outrider/telemetry/tracing"
)

// telemetry is what the data path records into. Every part may be off:
// tracer nil (no spans, headers pass through untouched), access nil.
// Metrics are always on.
type telemetry struct {
	tracer      trace.Tracer
	prop        propagation.TextMapPropagator
	parentBased bool // the sampler follows the parent (see childOfUnsampled)
	// sampleRoot is the sampler's decision for a root span (see
	// unsampledRoot); nil: leave every decision to the SDK.
	sampleRoot func(id trace.TraceID, name string, kind trace.SpanKind) bool
	// w3c: only W3C headers are propagated, so the HTTP/1.1 loop may
	// handle unsampled requests on traceparent's bytes (fastUnsampled).
	w3c     bool
	metrics *metrics.Metrics
	access  *accesslog.Logger
}

// newTelemetry starts with tracing off; Sidecar.startTracing turns it on
// before any listener exists.
func newTelemetry(m *metrics.Metrics, a *accesslog.Logger) *telemetry {
	tel := &telemetry{metrics: m, access: a}
	if !a.Enabled() {
		tel.access = nil
	}
	return tel
}

// useTracing turns spans on with t (before any listener reads tel).
func (tel *telemetry) useTracing(t *tracing.Tracing) {
	tel.tracer, tel.prop = t.Tracer(), t.Propagator()
	tel.parentBased, tel.sampleRoot, tel.w3c = t.ParentBased(), t.SampleRoot, t.W3COnly()
}

// Envoy-style response flags for metrics and access logs, from the codes
// of sidecar-generated errors.
func flagFor(code string) string {
	switch code {
	case errNoHealthyUpstream:
		return "UH"
	case errConnectFailure:
		return "UF"
	case errUpstreamTimeout:
		return "UT"
	case errUpstreamReset, errBadResponse:
		return "UC"
	case errBadRequest:
		return "BR"
	case errDenied:
		return "DI"
	case errUpstreamOverflow:
		return "UO"
	case errOverloaded:
		return "OM"
	case errBodyTimeout:
		return "SI"
	}
	return ""
}

// record is one request (or L4 connection) as telemetry sees it; the
// HTTP/1.1 loop reuses one per connection.
type record struct {
	start       time.Time
	upstreamDur time.Duration // to the response head; -1 when none
	status      int
	flag        string
	rx, tx      int64 // body bytes from the client, to the client
	endpoint    string
	attempts    int
	rule        string     // the authorization rule that decided (inbound)
	span        trace.Span // the server span (inbound) or the last client span (outbound)
	traceID     string
	spanID      string
}

func (r *record) reset(now time.Time) {
	*r = record{start: now, upstreamDur: -1}
}

// noteSpan keeps the IDs of span for the access log (the caller checks
// that an access log is on: hex-encoding them costs two allocations).
func (r *record) noteSpan(span trace.Span) {
	if sc := span.SpanContext(); sc.IsValid() {
		r.traceID, r.spanID = sc.TraceID().String(), sc.SpanID().String()
	}
}

// endSpan finishes span with the HTTP outcome.
func endSpan(span trace.Span, status int, flag string, err error) {
	if !span.IsRecording() {
		span.End()
		return
	}
	var attrs [2]attribute.KeyValue // on the stack (tracing.SetAttributes)
	n := 0
	if status > 0 {
		attrs[n], n = attribute.Int("http.response.status_code", status), n+1
	}
	if flag != "" {
		attrs[n], n = attribute.String("outrider.response_flags", flag), n+1
	}
	tracing.SetAttributes(span, attrs[:n]...)
	switch {
	case err != nil:
		span.SetStatus(codes.Error, err.Error())
	case flag != "":
		span.SetStatus(codes.Error, flag)
	case status >= 500:
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// headerCarrier adapts an HTTP/1.1 head's fields to the propagators.
type headerCarrier struct{ h *http1.Header }

func (c headerCarrier) Get(key string) string {
	v, _ := c.h.Get(key)
	return string(v)
}

func (c headerCarrier) Set(key, value string) { c.h.Set(key, value) }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c.h.Fields))
	for _, f := range c.h.Fields {
		keys = append(keys, string(f.Name))
	}
	return keys
}

// spanName follows the HTTP semantic conventions: the method alone when no
// route template is known.
// It returns only constants: method may view a request buffer that is
// reused while the span waits for export.
func spanName(method string) string {
	for _, m := range spanMethods {
		if method == m {
			return m
		}
	}
	return "HTTP"
}

// methodString is method as a string that may outlive the request's
// buffer: a constant for the common methods, else a copy.
func methodString(method []byte) string {
	for _, m := range spanMethods {
		if string(method) == m {
			return m
		}
	}
	return string(method)
}

// copyPair copies a and b into strings that share one allocation.
func copyPair(a, b []byte) (string, string) {
	s := string(append(append(make([]byte, 0, len(a)+len(b)), a...), b...))
	return s[:len(a)], s[len(a):]
}

var spanMethods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}

// serverSpan and clientSpan are the spans' start options, made once (an
// option made per call is an allocation).
var (
	serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// startServerSpan starts the inbound span for a request whose headers are
// read through carrier, and injects its context back so the application
// sees the sidecar's span as its parent. Attributes are computed only for
// a sampled span: an unsampled request costs an extract, a start and an
// inject. attrs, which sets them, is called only then.
func (t *telemetry) startServerSpan(base context.Context, carrier propagation.TextMapCarrier, method string, attrs func(trace.Span)) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(t.extract(base, carrier), spanName(method), serverSpan...)
	if span.IsRecording() {
		attrs(span)
	}
	t.inject(ctx, carrier)
	return ctx, span
}

// extract is the propagator's Extract, done on the header's bytes for an
// HTTP/1.1 request when only W3C headers are propagated and traceparent is
// version 00 (what the propagator does with it, without its allocations);
// otherwise, and for HTTP/2, the propagator's. Baggage is not extracted on
// the fast path: the header is forwarded as it came, which is all the
// propagator's Inject would do with it.
func (t *telemetry) extract(base context.Context, carrier propagation.TextMapCarrier) context.Context {
	hc, ok := carrier.(headerCarrier)
	if !ok || !t.w3c {
		return t.prop.Extract(base, carrier)
	}
	v, ok := hc.h.Get("traceparent")
	if !ok {
		return base
	}
	if !validTraceparent(v) {
		return t.prop.Extract(base, carrier)
	}
	var cfg trace.SpanContextConfig
	hex.Decode(cfg.TraceID[:], v[3:35])
	hex.Decode(cfg.SpanID[:], v[36:52])
	cfg.TraceFlags = trace.TraceFlags(unhex(v[53])<<4 | unhex(v[54]))
	cfg.Remote = true
	if ts, ok := hc.h.Get("tracestate"); ok {
		if st, err := trace.ParseTraceState(string(ts)); err == nil {
			cfg.TraceState = st
		}
	}
	return trace.ContextWithRemoteSpanContext(base, trace.NewSpanContext(cfg))
}

// inject is the propagator's Inject, with extract's fast path: traceparent
// is written from the span context, tracestate only when the context has
// one (an incoming tracestate header is otherwise forwarded as it came).
func (t *telemetry) inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	hc, ok := carrier.(headerCarrier)
	if !ok || !t.w3c {
		t.prop.Inject(ctx, carrier)
		return
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	b := traceparent(tid, sid, sc.TraceFlags())
	hc.h.Set("traceparent", unsafeString(b[:])) // Set copies it
	if sc.TraceState().Len() > 0 {
		hc.h.Set("tracestate", sc.TraceState().String())
	}
}

// traceparent formats a version-00 traceparent value.
func traceparent(tid trace.TraceID, sid trace.SpanID, flags trace.TraceFlags) [55]byte {
	var b [55]byte
	copy(b[:], "00-")
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(flags)})
	return b
}

// validTraceparent reports whether v is a version-00 traceparent the
// propagator would accept: 00-<32 hex trace>-<16 hex span>-<2 hex flags>,
// lower case, IDs not all zero.
func validTraceparent(v []byte) bool {
	return len(v) == 55 && v[0] == '0' && v[1] == '0' && v[2] == '-' && v[35] == '-' && v[52] == '-' &&
		lowerHex(v[3:35]) && lowerHex(v[36:52]) && lowerHex(v[53:55]) && !allZero(v[3:35]) && !allZero(v[36:52])
}

// startClientSpan starts the outbound span for one attempt, as a child of
// parent (what the application sent, extracted once before the first
// attempt, or nothing: a new trace), and injects it into the request.
func (t *telemetry) startClientSpan(parent context.Context, carrier propagation.TextMapCarrier, method string, attrs func(trace.Span)) trace.Span {
	ctx, span := t.tracer.Start(parent, spanName(method), clientSpan...)
	if span.IsRecording() {
		attrs(span)
	}
	t.inject(ctx, carrier)
	return span
}

// fastUnsampled handles, on the header's bytes alone, a request that will
// not be sampled, as childOfUnsampled and unsampledRoot do through the
// propagators: an unsampled W3C traceparent gets a new span ID written in
// place; a request without one gets a new unsampled traceparent when the
// sampler says no to a root. It reports false when the request needs the
// SDK (sampled, or a traceparent it does not parse, which the SDK judges).
// No allocation on the unsampled child path.
//
// When it drew a root trace ID that the sampler does sample, it returns
// false with base carrying that ID (tracing.WithTraceID), for the SDK span.
func (t *telemetry) fastUnsampled(h *http1.Header, method string, kind trace.SpanKind) (handled bool, base context.Context) {
	base = context.Background()
	if !t.w3c || !t.parentBased {
		return false, base
	}
	if v, ok := h.Get("traceparent"); ok {
		if !validTraceparent(v) {
			return false, base
		}
		if unhex(v[54])&1 != 0 { // sampled flag
			return false, base
		}
		sid := tracing.RandomSpanID()
		hex.Encode(v[36:52], sid[:])
		return true, base
	}
	if t.sampleRoot == nil {
		return false, base
	}
	id := tracing.RandomTraceID()
	if t.sampleRoot(id, spanName(method), kind) {
		return false, tracing.WithTraceID(base, id)
	}
	sid := tracing.RandomSpanID()
	b := traceparent(id, sid, 0)
	h.Add("traceparent", unsafeString(b[:])) // Add copies it
	return true, base
}

func lowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != '0' {
			return false
		}
	}
	return true
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// serverAttrs and clientAttrs follow the HTTP semantic conventions, plus
// Outrider's identity attributes.
// Outrider's identity attributes. They set them through
// tracing.SetAttributes, which keeps the attributes off the heap.
func serverAttrs(span trace.Span, method, path, host, client, peer string) {
	tracing.SetAttributes(span,
		attribute.String("http.request.method", method),
		attribute.String("url.path", path),
		attribute.String("server.address", host),
		attribute.String("client.address", client),
		attribute.String("outrider.peer.spiffe_id", peer))
}

func clientAttrs(span trace.Span, method, path, upstream, endpoint, identity string, attempt int) {
	tracing.SetAttributes(span,
		attribute.String("http.request.method", method),
		attribute.String("url.path", path),
		attribute.String("server.address", upstream),
		attribute.String("network.peer.address", endpoint),
		attribute.String("outrider.endpoint.spiffe_id", identity),
		attribute.Int("outrider.attempt", attempt))
}

// connectionDone records an L4 connection: span (may be nil), access log.
// rx is bytes from the client, tx bytes to it.
func (t *telemetry) connectionDone(span trace.Span, dir, upstream, peer string, c net.Conn, start time.Time, rx, tx int64, flag, endpoint string, err error) {
	var traceID, spanID string
	if span != nil {
		tracing.SetAttributes(span, attribute.Int64("outrider.bytes_received", rx), attribute.Int64("outrider.bytes_sent", tx))
		endSpan(span, 0, flag, err)
		if sc := span.SpanContext(); sc.IsValid() {
			traceID, spanID = sc.TraceID().String(), sc.SpanID().String()
		}
	}
	if t.access != nil {
		t.access.Log(&accesslog.Entry{
			Start: start, Duration: time.Since(start), UpstreamDuration: -1, Direction: dir, Upstream: upstream,
			TraceID: traceID, SpanID: spanID, Peer: peer, Downstream: c.RemoteAddr().String(), Protocol: "TCP",
			Flags: flag, RxBytes: rx, TxBytes: tx, Endpoint: endpoint, Attempts: 1,
		})
	}
}

// statusWriter captures the final status and body bytes an http.Handler
// wrote. Interim (1xx) responses are only relayed: 101 Switching
// Protocols is final (an upgrade), the others are not (RFC 9110 15.2).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and friends.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
