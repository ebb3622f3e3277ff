package tracing

import (
	"context"
	"slices"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// sdkExporter feeds an SDK SpanExporter (WithExporter: tests' in-memory
// exporter) with the spans as the SDK would report them.
type sdkExporter struct {
	exp   sdktrace.SpanExporter
	res   *resource.Resource
	scope instrumentation.Scope
	ro    []sdktrace.ReadOnlySpan
}

func (e *sdkExporter) exportSpans(ctx context.Context, batch []*spanData) error {
	e.ro = e.ro[:0]
	for _, s := range batch {
		e.ro = append(e.ro, e.snapshot(s))
	}
	err := e.exp.ExportSpans(ctx, e.ro)
	clear(e.ro)
	return err
}

func (e *sdkExporter) shutdown(ctx context.Context) error { return e.exp.Shutdown(ctx) }

func (e *sdkExporter) snapshot(s *spanData) sdktrace.ReadOnlySpan {
	stub := tracetest.SpanStub{
		Name: s.name, SpanContext: s.sc, Parent: s.parent, SpanKind: s.kind,
		StartTime: s.start, EndTime: s.end, Attributes: slices.Clone(s.attrs), // s is pooled once exported
		Status:            sdktrace.Status{Code: s.status, Description: s.statusMsg},
		DroppedAttributes: s.droppedAttrs, DroppedEvents: s.droppedEvents, DroppedLinks: s.droppedLinks,
		Resource: e.res, InstrumentationScope: e.scope,
	}
	for _, ev := range s.events {
		stub.Events = append(stub.Events, sdktrace.Event{Name: ev.name, Time: ev.time, Attributes: ev.attrs, DroppedAttributeCount: ev.dropped})
	}
	for _, l := range s.links {
		stub.Links = append(stub.Links, sdktrace.Link{SpanContext: l.SpanContext, Attributes: l.Attributes})
	}
	return stub.Snapshot()
}
