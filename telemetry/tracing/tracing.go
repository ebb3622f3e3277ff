package tracing

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracerName is the instrumentation scope of the sidecar's spans.
const TracerName = "github.com/outrider-mesh/outrider"

// Option configures New.
type Option func(*options)

type options struct {
	logger     *slog.Logger
	version    string
	attrs      []attribute.KeyValue
	exporter   sdktrace.SpanExporter
	syncExport bool

	// Internal knobs; tests set them directly.
	batchSize     int
	batchInterval time.Duration
	logEvery      time.Duration
}

// WithLogger sets the logger for export failures and dropped spans (rate
// limited to one line per 30s per kind). Without it nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithVersion sets the resource's service.version and the tracer's
// instrumentation version (the sidecar's build version).
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithAttributes adds resource attributes, e.g. the proxy ID. Config.Attributes
// win over them for the same key; service.name and service.version are set
// from Config.ServiceName and WithVersion.
func WithAttributes(kv ...attribute.KeyValue) Option {
	return func(o *options) { o.attrs = append(o.attrs, kv...) }
}

// WithExporter replaces the OTLP exporter, e.g. with
// tracetest.NewInMemoryExporter in tests. The Tracing owns it and shuts it
// down. Config.Endpoint, Protocol, Insecure and Headers are then unused; with
// Config.Enabled false the exporter is not used at all.
func WithExporter(e sdktrace.SpanExporter) Option { return func(o *options) { o.exporter = e } }

// WithSyncExport exports each span when it ends, on the goroutine that ends
// it, so that tests see spans at once. Not for production: a slow collector
// then slows traffic.
func WithSyncExport() Option { return func(o *options) { o.syncExport = true } }

// Tracing is the sidecar's tracer provider and propagator. Its methods are
// safe for concurrent use. The zero value is not usable; call New.
type Tracing struct {
	cfg      Config // defaults applied
	service  string
	endpoint string // redacted exporter URL, or "custom" with WithExporter
	res      *resource.Resource

	tracer  trace.Tracer
	tp      trace.TracerProvider
	prop    propagation.TextMapPropagator
	sampler sdktrace.Sampler // nil when disabled
	proc    *processor       // nil when disabled

	shutdownOnce sync.Once
	shutdownErr  error
}

// New builds the sidecar's Tracing; defaultService is the service.name used
// when cfg.ServiceName is "" (the proxied service's name).
//
// With cfg.Enabled false, Tracer is the OTel no-op tracer (noop.NewTracerProvider):
// nothing is recorded, no goroutine is started, and a span started from a
// context carrying a remote span context keeps that span context, so
// Propagator passes trace headers through unchanged.
//
// With cfg.Enabled true, New starts one export goroutine (see the package
// doc) that Shutdown stops. It does not connect to the collector: a
// collector that is down shows up as dropped spans and log lines, never as
// an error here nor as latency on the traffic. ctx bounds the exporter's set
// up only.
//
// Errors name the bad Config field.
func New(ctx context.Context, cfg Config, defaultService string, opts ...Option) (*Tracing, error) {
	o := &options{
		logger:        slog.New(slog.DiscardHandler),
		batchSize:     defaultBatchSize,
		batchInterval: defaultBatchInterval,
		logEvery:      defaultLogEvery,
	}
	for _, opt := range opts {
		opt(o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.applyDefaults()

	prop, err := newPropagator(cfg.Propagators)
	if err != nil {
		return nil, fmt.Errorf("tracing: Propagators: %w", err)
	}
	t := &Tracing{cfg: cfg, prop: prop, service: serviceName(cfg, defaultService)}

	if !cfg.Enabled {
		t.tp = noop.NewTracerProvider()
		t.tracer = t.tp.Tracer(TracerName)
		return t, nil
	}

	sampler, err := newSampler(cfg.Sampler, cfg.SamplerArg)
	if err != nil {
		return nil, fmt.Errorf("tracing: Sampler: %w", err)
	}
	t.res = newResource(cfg, t.service, o)

	p := &provider{sampler: sampler}
	p.tracer = &tracer{p: p}
	var exp spanExporter
	t.endpoint = "custom"
	if o.exporter != nil {
		scope := instrumentation.Scope{Name: TracerName, Version: o.version}
		exp = &sdkExporter{exp: o.exporter, res: t.res, scope: scope}
	} else {
		u, err := parseEndpoint(cfg.Endpoint, cfg.Insecure, cfg.Protocol)
		if err != nil {
			return nil, fmt.Errorf("tracing: Endpoint: %w", err)
		}
		t.endpoint = u.Redacted()
		if exp, err = newOTLPExporter(cfg, u, t.res, o.version); err != nil {
			return nil, err // names the Config field
		}
	}
	t.proc = newProcessor(exp, o, cfg.MaxQueueSize, cfg.ExportTimeout, t.endpoint)
	p.proc = t.proc
	t.sampler = sampler
	t.tp, t.tracer = p, p.tracer
	return t, nil
}

// serviceName resolves service.name: Config.ServiceName, else a service.name
// in Config.Attributes, else the caller's default.
func serviceName(cfg Config, defaultService string) string {
	if cfg.ServiceName != "" {
		return cfg.ServiceName
	}
	if n := cfg.Attributes["service.name"]; n != "" {
		return n
	}
	return defaultService
}

// newResource builds the resource: option attributes, then Config.Attributes
// (sorted by key), then service.name and service.version; a later value wins
// for the same key.
func newResource(cfg Config, service string, o *options) *resource.Resource {
	attrs := slices.Clone(o.attrs)
	for _, k := range slices.Sorted(maps.Keys(cfg.Attributes)) {
		attrs = append(attrs, attribute.String(k, cfg.Attributes[k]))
	}
	attrs = append(attrs, semconv.ServiceName(service))
	if o.version != "" {
		attrs = append(attrs, semconv.ServiceVersion(o.version))
	}
	return resource.NewWithAttributes(semconv.SchemaURL, attrs...)
}

// Tracer returns the sidecar's tracer (scope TracerName). With tracing
// disabled it is the OTel no-op tracer.
func (t *Tracing) Tracer() trace.Tracer { return t.tracer }

// TracerProvider returns the provider behind Tracer, for instrumentation
// libraries that take one (otelhttp, otelgrpc). With tracing disabled it is
// the no-op provider.
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.tp }

// Propagator returns the configured propagator. It works whether or not
// tracing is enabled.
func (t *Tracing) Propagator() propagation.TextMapPropagator { return t.prop }

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t.proc != nil }

// SampleRoot reports whether a root span (no parent) in trace id would be
// sampled: the configured sampler's own decision, so a caller can decide
// before starting a span. To start the sampled span in that trace, pass
// WithTraceID(ctx, id) to Tracer().Start. False when tracing is disabled.
func (t *Tracing) SampleRoot(id trace.TraceID, name string, kind trace.SpanKind) bool {
	if t.sampler == nil {
		return false
	}
	r := t.sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: id, Name: name, Kind: kind})
	return r.Decision == sdktrace.RecordAndSample
}

// WithTraceID makes the next root span started with ctx use trace id
// (see SampleRoot) instead of a random one.
func WithTraceID(ctx context.Context, id trace.TraceID) context.Context {
	return context.WithValue(ctx, presetTraceID{}, id)
}

type presetTraceID struct{}

// HasTraceID reports whether ctx carries a trace ID from WithTraceID.
func HasTraceID(ctx context.Context) bool {
	_, ok := ctx.Value(presetTraceID{}).(trace.TraceID)
	return ok
}

// RandomTraceID and RandomSpanID return valid (non-zero) random IDs from
// the runtime's per-thread generator (no lock, unlike the SDK's default).
func RandomTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func RandomSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

// W3COnly reports whether the only trace headers propagated are W3C's
// (tracecontext, with or without baggage), so a caller may read and write
// traceparent itself on a fast path.
func (t *Tracing) W3COnly() bool {
	tc := false
	for _, p := range t.cfg.Propagators {
		switch p {
		case "tracecontext":
			tc = true
		case "baggage":
		default:
			return false
		}
	}
	return tc
}

// ParentBased reports whether the sampler follows a parent's decision
// (the parentbased_* samplers, the default). Then a child of an unsampled
// parent is never sampled, and a caller may skip the SDK for it: a span
// context with the parent's trace, a new span ID and the unsampled flag is
// exactly what the SDK would make.
func (t *Tracing) ParentBased() bool { return strings.HasPrefix(t.cfg.Sampler, "parentbased_") }

// Stats returns the export counters; all zero when tracing is disabled.
// Dropped + Exported equals Started once Shutdown has returned nil, except
// for spans ending concurrently with Shutdown.
func (t *Tracing) Stats() Stats {
	if t.proc == nil {
		return Stats{}
	}
	return t.proc.stats.snapshot()
}

// ForceFlush exports the spans ended so far, waiting until ctx ends at most.
// For tests and for a last flush before a process exits without Shutdown.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t.proc == nil {
		return nil
	}
	return t.proc.ForceFlush(ctx)
}

// Shutdown flushes the queued spans and stops the export goroutine and the
// exporter, waiting until ctx ends at most; when ctx ends first, the export
// in flight is cancelled, the spans still queued are dropped and ctx's error
// is returned. Spans ended afterwards are not exported. Idempotent: later
// calls return the first call's result (a concurrent call waits for the
// first one).
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.proc == nil {
		return nil
	}
	t.shutdownOnce.Do(func() {
		if err := t.proc.Shutdown(ctx); err != nil {
			t.shutdownErr = fmt.Errorf("tracing: shutdown: %w", err)
		}
	})
	return t.shutdownErr
}

// Describe returns a summary of the effective configuration for
// /config_dump: a new map on each call, safe to marshal as JSON. Header
// values are replaced by "[redacted]" and an endpoint's password by "xxxxx".
func (t *Tracing) Describe() map[string]any {
	cfg := t.cfg
	d := map[string]any{
		"enabled":      t.Enabled(),
		"service_name": t.service,
		"propagators":  slices.Clone(cfg.Propagators),
	}
	if !t.Enabled() {
		return d
	}
	headers := make(map[string]string, len(cfg.Headers))
	for k := range cfg.Headers {
		headers[k] = "[redacted]"
	}
	res := make(map[string]string)
	for _, kv := range t.res.Attributes() {
		res[string(kv.Key)] = kv.Value.String()
	}
	d["endpoint"] = t.endpoint
	d["protocol"] = cfg.Protocol
	d["headers"] = headers
	d["sampler"] = cfg.Sampler
	d["sampler_arg"] = cfg.SamplerArg
	d["max_queue_size"] = cfg.MaxQueueSize
	d["export_timeout"] = cfg.ExportTimeout.String()
	d["resource"] = res
	return d
}
