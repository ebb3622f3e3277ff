package tracing

import (
	"context"
	"reflect"
	"runtime/debug"
	"slices"
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
	d := newSpanData()
	d.sc, d.parent, d.name, d.kind, d.start = sc, parent, name, cfg.SpanKind(), start
	if d.kind == trace.SpanKindUnspecified {
		d.kind = trace.SpanKindInternal
	}
	d.addAttrs(res.Attributes)
	d.addAttrs(cfg.Attributes())
	for _, l := range cfg.Links() {
		d.addLink(l)
	}
	s := &span{p: t.p, sc: sc, d: d}
	return trace.ContextWithSpan(ctx, s), s
}

// span is a recording span: a small handle, the one allocation a span
// costs, over the spanData that holds what is recorded. Its methods are
// safe for concurrent use; End detaches the data and hands it to the
// processor, after which the methods do nothing and the handle keeps only
// its span context. The data goes back to a pool once exported, so a
// caller that keeps a span (or a context holding it) past End can never
// see, or write into, another span's record.
type span struct {
	embedded.Span
	p     *provider
	sc    trace.SpanContext
	ended atomic.Bool
	mu    sync.Mutex
	d     *spanData // nil once ended
}

// spanData is what a span records, read by the exporter without a lock
// once End has queued it (the queue's channel send orders the writes).
// spanData values are pooled: a recording span used to be one allocation of
// about 1 KiB, whose allocation, zeroing and scanning were a third of a
// span's cost (BenchmarkSpan).
type spanData struct {
	sc     trace.SpanContext
	parent trace.SpanContext
	kind   trace.SpanKind
	start  time.Time
	end    time.Time
	name   string
	attrs  []attribute.KeyValue
	// attrBuf backs attrs up to the dozen attributes the sidecar sets.
	attrBuf [12]attribute.KeyValue
	// dropped attributes, events and links over the limits
	droppedAttrs, droppedEvents, droppedLinks int
	events                                    []event
	links                                     []trace.Link
	status                                    codes.Code
	statusMsg                                 string
}

var spanDataPool = sync.Pool{New: func() any { return new(spanData) }}

func newSpanData() *spanData {
	d := spanDataPool.Get().(*spanData)
	d.attrs = d.attrBuf[:0]
	return d
}

// release returns d to the pool, dropping every reference it holds; d must
// not be used afterwards.
func (d *spanData) release() {
	d.reset()
	spanDataPool.Put(d)
}

// reset zeroes d (TestSpanDataReset checks every field), field by field:
// copying the struct would copy attrBuf twice.
func (d *spanData) reset() {
	clear(d.attrBuf[:])
	d.sc, d.parent, d.kind, d.start, d.end, d.name, d.attrs = trace.SpanContext{}, trace.SpanContext{}, 0, time.Time{}, time.Time{}, "", nil
	d.droppedAttrs, d.droppedEvents, d.droppedLinks = 0, 0, 0
	d.events, d.links, d.status, d.statusMsg = nil, nil, codes.Unset, ""
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
func (s *span) SetAttributes(kv ...attribute.KeyValue) { s.setAttributes(kv) }
func (s *span) SetName(name string)                    { s.locked(func(d *spanData) { d.name = name }) }
func (s *span) AddLink(l trace.Link)                   { s.locked(func(d *spanData) { d.addLink(l) }) }

// setAttributes is SetAttributes without the closure, so that kv does not
// escape: SetAttributes(span, ...) below passes the sidecar's attributes on
// the stack.
func (s *span) setAttributes(kv []attribute.KeyValue) {
	s.mu.Lock()
	if s.d != nil {
		s.d.addAttrs(kv)
	}
	s.mu.Unlock()
}

// SetAttributes sets kv on span. For a span of this package it is
// span.SetAttributes(kv...) without an allocation: the caller's attributes
// stay on its stack, where the interface method would need them on the
// heap.
func SetAttributes(sp trace.Span, kv ...attribute.KeyValue) {
	if s, ok := sp.(*span); ok {
		s.setAttributes(kv)
		return
	}
	if sp.IsRecording() {
		sp.SetAttributes(slices.Clone(kv)...)
	}
}

// locked runs f on the span's data under its lock unless the span has
// ended.
func (s *span) locked(f func(*spanData)) {
	s.mu.Lock()
	if s.d != nil {
		f(s.d)
	}
	s.mu.Unlock()
}

// SetStatus follows the API's rules: Ok is final, Error keeps its
// description, Unset changes nothing.
func (s *span) SetStatus(code codes.Code, description string) {
	s.locked(func(d *spanData) {
		if code == codes.Unset || d.status == codes.Ok {
			return
		}
		d.status, d.statusMsg = code, ""
		if code == codes.Error {
			d.statusMsg = description
		}
	})
}

func (s *span) AddEvent(name string, opts ...trace.EventOption) {
	cfg := trace.NewEventConfig(opts...)
	s.locked(func(d *spanData) { d.addEvent(name, cfg.Timestamp(), cfg.Attributes()) })
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
	s.locked(func(d *spanData) { d.addEvent(semconv.ExceptionEventName, cfg.Timestamp(), attrs) })
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
	d := s.d
	if d == nil {
		s.mu.Unlock()
		return
	}
	s.d = nil
	s.ended.Store(true)
	s.mu.Unlock()
	cfg := trace.NewSpanEndConfig(opts...)
	if ts := cfg.Timestamp(); !ts.IsZero() {
		d.end = ts
	} else {
		d.end = d.start.Add(now.Sub(d.start))
	}
	d.attrs = dedupe(d.attrs)
	if d.sc.IsSampled() {
		s.p.proc.onEnd(d)
	} else {
		d.release()
	}
}

// addAttrs appends the valid attributes of kv up to the limit; the caller
// holds the span's lock (or owns the data). Duplicates are resolved at End.
func (d *spanData) addAttrs(kv []attribute.KeyValue) {
	for _, a := range kv {
		switch {
		case !a.Valid():
			d.droppedAttrs++
		case len(d.attrs) >= maxAttributes:
			d.droppedAttrs++
		default:
			d.attrs = append(d.attrs, a)
		}
	}
}

func (d *spanData) addLink(l trace.Link) {
	if !l.SpanContext.IsValid() {
		return
	}
	if len(d.links) >= maxLinks {
		d.droppedLinks++
		return
	}
	d.links = append(d.links, l)
}

func (d *spanData) addEvent(name string, ts time.Time, attrs []attribute.KeyValue) {
	if len(d.events) >= maxEvents {
		d.droppedEvents++
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
	d.events = append(d.events, e)
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
