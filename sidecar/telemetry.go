package sidecar

import (
	"context"
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
)

// telemetry is what the data path records into. Every part may be off:
// tracer nil (no spans, headers pass through untouched), access nil.
// Metrics are always on.
type telemetry struct {
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
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
	if status > 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if flag != "" {
		span.SetAttributes(attribute.String("outrider.response_flags", flag))
	}
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
func spanName(method string) string {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE":
		return method
	}
	return "HTTP"
}

// startServerSpan starts the inbound span for a request whose headers are
// read through carrier, and injects its context back so the application
// sees the sidecar's span as its parent. Attributes are computed only for
// a sampled span: an unsampled request costs an extract, a start and an
// inject. attrs is called only then.
func (t *telemetry) startServerSpan(carrier propagation.TextMapCarrier, method string, attrs func() []attribute.KeyValue) (context.Context, trace.Span) {
	ctx := t.prop.Extract(context.Background(), carrier)
	ctx, span := t.tracer.Start(ctx, spanName(method), trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(attrs()...)
	}
	t.prop.Inject(ctx, carrier)
	return ctx, span
}

// startClientSpan starts the outbound span for one attempt, as a child of
// parent (what the application sent, extracted once before the first
// attempt, or nothing: a new trace), and injects it into the request.
func (t *telemetry) startClientSpan(parent context.Context, carrier propagation.TextMapCarrier, method string, attrs func() []attribute.KeyValue) trace.Span {
	ctx, span := t.tracer.Start(parent, spanName(method), trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(attrs()...)
	}
	t.prop.Inject(ctx, carrier)
	return span
}

// serverAttrs and clientAttrs follow the HTTP semantic conventions, plus
// Outrider's identity attributes.
func serverAttrs(method, path, host, client, peer string) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("http.request.method", method),
		attribute.String("url.path", path),
		attribute.String("server.address", host),
		attribute.String("client.address", client),
		attribute.String("outrider.peer.spiffe_id", peer),
	}
}

func clientAttrs(method, path, upstream, endpoint, identity string, attempt int) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("http.request.method", method),
		attribute.String("url.path", path),
		attribute.String("server.address", upstream),
		attribute.String("network.peer.address", endpoint),
		attribute.String("outrider.endpoint.spiffe_id", identity),
		attribute.Int("outrider.attempt", attempt),
	}
}

// connectionDone records an L4 connection: span (may be nil), access log.
// rx is bytes from the client, tx bytes to it.
func (t *telemetry) connectionDone(span trace.Span, dir, upstream, peer string, c net.Conn, start time.Time, rx, tx int64, flag, endpoint string, err error) {
	var traceID, spanID string
	if span != nil {
		span.SetAttributes(attribute.Int64("outrider.bytes_received", rx), attribute.Int64("outrider.bytes_sent", tx))
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

// statusWriter captures the status and body bytes an http.Handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
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
