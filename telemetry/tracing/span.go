package tracing

import (
	"context"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// Span limits, as the SDK's defaults (OTEL_SPAN_*_COUNT_LIMIT = 128).
const (
	maxAttributes = 128
	maxEvents     = 128
	maxLinks      = 128
)

// provider is the sidecar's trace.TracerProvider when tracing is enabled.
//
// It records spans itself instead of through the SDK's TracerProvider: the
// SDK's span (a mutex-guarded object whose attributes are de-duplicated
// through a map and copied into a snapshot at End) and its OTLP exporter
// (a transform into the generated protobuf types, then reflection-driven
// marshalling) cost about 16 us of CPU per span on the project's machine,
// against a budget of a few microseconds per request (issue 7). A span here
// is one allocation that the export goroutine encodes straight into OTLP's
// wire format (otlp.go). The SDK still provides the samplers and the
// resource, and WithExporter feeds SDK span exporters (tests).
type provider struct {
	embedded.TracerProvider
	tracer  *tracer
	sampler sdktrace.Sampler
	proc    *processor
}

func (p *provider) Tracer(string, ...trace.TracerOption) trace.Tracer { return p.tracer }

// tracer starts spans for provider; every span has the sidecar's scope.
type tracer struct {
	embedded.Tracer
	p *provider
}

// Start implements trace.Tracer: the parent is ctx's span context (none
// with trace.WithNewRoot); a root span's trace ID is the one WithTraceID put
// in ctx, else random. The sampler decides; a dropped span is a
// non-recording span that only carries its span context.
func (t *tracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	cfg := trace.NewSpanStartConfig(opts...)
	if ctx == nil {
		ctx = context.Background()
	}
	var parent trace.SpanContext
	if cfg.NewRoot() {
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContext{})
	} else {
		parent = trace.SpanContextFromContext(ctx)
	}
	tid := parent.TraceID()
	if !parent.IsValid() {
		if id, ok := ctx.Value(presetTraceID{}).(trace.TraceID); ok && id.IsValid() {
			tid = id
		} else {
			tid = RandomTraceID()
		}
	}
	res := t.p.sampler.ShouldSample(sdktrace.SamplingParameters{
		ParentContext: ctx, TraceID: tid, Name: name, Kind: cfg.SpanKind(),
		Attributes: cfg.Attributes(), Links: cfg.Links(),
	})
	scc := trace.SpanContextConfig{TraceID: tid, SpanID: RandomSpanID(), TraceState: res.Tracestate}
	if res.Decision == sdktrace.RecordAndSample {
		scc.TraceFlags = parent.TraceFlags() | trace.FlagsSampled
	} else {
		scc.TraceFlags = parent.TraceFlags() &^ trace.FlagsSampled
	}
	sc := trace.NewSpanContext(scc)
	if res.Decision == sdktrace.Drop {
		ctx = trace.ContextWithSpanContext(ctx, sc)
		return ctx, trace.SpanFromContext(ctx)
	}
	start := cfg.Timestamp()
	if start.IsZero() {
		start = time.Now()
	}
	s := &span{p: t.p, sc: sc, parent: parent, name: name, kind: cfg.SpanKind(), start: start}
	s.attrs = s.attrBuf[:0]
	if s.kind == trace.SpanKindUnspecified {
		s.kind = trace.SpanKindInternal
	}
	s.addAttrs(res.Attributes)
	s.addAttrs(cfg.Attributes())
	for _, l := range cfg.Links() {
		s.addLink(l)
	}
	return trace.ContextWithSpan(ctx, s), s
}

// span is a recording span. Its methods are safe for concurrent use; after
// End they do nothing, and the processor's goroutine reads the fields
// without a lock (the queue's channel send orders them).
type span struct {
	embedded.Span
	p      *provider
	sc     trace.SpanContext
	parent trace.SpanContext
	kind   trace.SpanKind
	start  time.Time
	end    time.Time

	ended atomic.Bool
	mu    sync.Mutex
	name  string
	attrs []attribute.KeyValue
	// attrBuf backs attrs up to the dozen attributes the sidecar sets, so
	// that a span is one allocation.
	attrBuf [12]attribute.KeyValue
	// dropped attributes, events and links over the limits
	droppedAttrs, droppedEvents, droppedLinks int
	events                                    []event
	links                                     []trace.Link
	status                                    codes.Code
	statusMsg                                 string
}

// event is one span event.
type event struct {
	name    string
	time    time.Time
	attrs   []attribute.KeyValue
	dropped int
}

func (s *span) SpanContext() trace.SpanContext         { return s.sc }
func (s *span) IsRecording() bool                      { return !s.ended.Load() }
func (s *span) TracerProvider() trace.TracerProvider   { return s.p }
func (s *span) SetAttributes(kv ...attribute.KeyValue) { s.locked(func() { s.addAttrs(kv) }) }
func (s *span) SetName(name string)                    { s.locked(func() { s.name = name }) }
func (s *span) AddLink(l trace.Link)                   { s.locked(func() { s.addLink(l) }) }

// locked runs f under the span's lock unless the span has ended.
func (s *span) locked(f func()) {
	s.mu.Lock()
	if !s.ended.Load() {
		f()
	}
	s.mu.Unlock()
}

// SetStatus follows the API's rules: Ok is final, Error keeps its
// description, Unset changes nothing.
func (s *span) SetStatus(code codes.Code, description string) {
	s.locked(func() {
		if code == codes.Unset || s.status == codes.Ok {
			return
		}
		s.status, s.statusMsg = code, ""
		if code == codes.Error {
			s.statusMsg = description
		}
	})
}

func (s *span) AddEvent(name string, opts ...trace.EventOption) {
	cfg := trace.NewEventConfig(opts...)
	s.locked(func() { s.addEvent(name, cfg.Timestamp(), cfg.Attributes()) })
}

// RecordError adds an "exception" event as the semantic conventions name it.
func (s *span) RecordError(err error, opts ...trace.EventOption) {
	if err == nil {
		return
	}
	cfg := trace.NewEventConfig(opts...)
	attrs := append([]attribute.KeyValue{
		semconv.ExceptionType(errorType(err)),
		semconv.ExceptionMessage(err.Error()),
	}, cfg.Attributes()...)
	if cfg.StackTrace() {
		attrs = append(attrs, semconv.ExceptionStacktrace(string(debug.Stack())))
	}
	s.locked(func() { s.addEvent(semconv.ExceptionEventName, cfg.Timestamp(), attrs) })
}

func errorType(err error) string {
	t := reflect.TypeOf(err)
	if t.PkgPath() == "" && t.Name() == "" {
		return t.String()
	}
	return t.PkgPath() + "." + t.Name()
}

// End records the end time (the start plus the monotonic time elapsed, as
// the SDK does) and hands a sampled span to the processor. Only the first
// call counts.
func (s *span) End(opts ...trace.SpanEndOption) {
	now := time.Now()
	s.mu.Lock()
	if s.ended.Load() {
		s.mu.Unlock()
		return
	}
	cfg := trace.NewSpanEndConfig(opts...)
	if ts := cfg.Timestamp(); !ts.IsZero() {
		s.end = ts
	} else {
		s.end = s.start.Add(now.Sub(s.start))
	}
	s.attrs = dedupe(s.attrs)
	s.ended.Store(true)
	s.mu.Unlock()
	if s.sc.IsSampled() {
		s.p.proc.onEnd(s)
	}
}

// addAttrs appends the valid attributes of kv up to the limit; the caller
// holds the lock (or owns the span). Duplicates are resolved at End.
func (s *span) addAttrs(kv []attribute.KeyValue) {
	for _, a := range kv {
		switch {
		case !a.Valid():
			s.droppedAttrs++
		case len(s.attrs) >= maxAttributes:
			s.droppedAttrs++
		default:
			s.attrs = append(s.attrs, a)
		}
	}
}

func (s *span) addLink(l trace.Link) {
	if !l.SpanContext.IsValid() {
		return
	}
	if len(s.links) >= maxLinks {
		s.droppedLinks++
		return
	}
	s.links = append(s.links, l)
}

func (s *span) addEvent(name string, ts time.Time, attrs []attribute.KeyValue) {
	if len(s.events) >= maxEvents {
		s.droppedEvents++
		return
	}
	if ts.IsZero() {
		ts = time.Now()
	}
	e := event{name: name, time: ts}
	for _, a := range attrs {
		if a.Valid() && len(e.attrs) < maxAttributes {
			e.attrs = append(e.attrs, a)
		} else {
			e.dropped++
		}
	}
	s.events = append(s.events, e)
}

// dedupe keeps the last value set for each key, in the order keys were
// first set, as the SDK reports attributes. A span has about a dozen, so a
// quadratic scan beats a map.
func dedupe(attrs []attribute.KeyValue) []attribute.KeyValue {
	out := attrs[:0]
	for _, a := range attrs {
		dup := false
		for j := range out {
			if out[j].Key == a.Key {
				out[j] = a
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, a)
		}
	}
	clear(attrs[len(out):])
	return out
}
