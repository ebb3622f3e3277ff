package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// BenchmarkSpan measures what the sidecar pays per request for one span
// (start + end), through the real batch processor and a discarding
// exporter:
//
//	go test -run '^$' -bench Span -benchmem ./telemetry/tracing/
func BenchmarkSpan(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"disabled", Config{}},
		{"ratio_0.01", Config{Enabled: true, Sampler: SamplerParentBasedTraceIDRatio, SamplerArg: 0.01}},
		{"always_on", Config{Enabled: true, Sampler: SamplerAlwaysOn}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr, err := New(context.Background(), bc.cfg, "svc", WithExporter(discardExporter{}))
			if err != nil {
				b.Fatal(err)
			}
			tracer := tr.Tracer()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				_, span := tracer.Start(ctx, "inbound", trace.WithSpanKind(trace.SpanKindServer))
				span.End()
			}
			b.StopTimer()
			if err := tr.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			s := tr.Stats()
			if s.Started > 0 {
				b.ReportMetric(float64(s.Dropped)/float64(s.Started), "dropped/span")
			}
		})
	}
}
