package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrider-mesh/outrider/internal/testutil"
)

// BenchmarkSpan measures what the sidecar pays per request for one span
// (start, the attributes the sidecar sets, end) through the real batch
// processor, with a discarding exporter and with the OTLP/HTTP exporter
// posting to an in-process collector that discards the body. cpu-ns/span
// is the process's CPU time (every goroutine: export included) per span;
// no span may be dropped:
//
//	go test -run '^$' -bench Span -benchmem -cpu 1 ./telemetry/tracing/
func BenchmarkSpan(b *testing.B) {
	collector := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer collector.Close()
	otlpHTTP := Config{Enabled: true, Sampler: SamplerAlwaysOn, Protocol: ProtocolHTTP, Endpoint: collector.URL, MaxQueueSize: 1 << 16}
	for _, bc := range []struct {
		name string
		cfg  Config
		opts []Option
	}{
		{"disabled", Config{}, nil},
		{"ratio_0.01", Config{Enabled: true, Sampler: SamplerParentBasedTraceIDRatio, SamplerArg: 0.01}, []Option{WithExporter(discardExporter{})}},
		{"always_on", Config{Enabled: true, Sampler: SamplerAlwaysOn}, []Option{WithExporter(discardExporter{})}},
		{"always_on_otlp_http", otlpHTTP, nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr, err := New(context.Background(), bc.cfg, "svc", bc.opts...)
			if err != nil {
				b.Fatal(err)
			}
			tracer := tr.Tracer()
			ctx := context.Background()
			b.ReportAllocs()
			cpu0 := testutil.CPUTime()
			n := 0
			for b.Loop() {
				// A proxy yields on every read; a benchmark loop would not,
				// and the export goroutine would only run once the queue
				// had overflowed: let it run every 1024 spans.
				if n++; n%1024 == 0 {
					_ = tr.ForceFlush(ctx)
				}
				_, span := tracer.Start(ctx, "GET", trace.WithSpanKind(trace.SpanKindServer))
				if span.IsRecording() {
					span.SetAttributes(attribute.String("http.request.method", "GET"), attribute.String("url.path", "/hello"),
						attribute.String("server.address", "web"), attribute.String("client.address", "127.0.0.1"),
						attribute.String("network.protocol.version", "1.1"),
						attribute.String("outrider.peer.spiffe_id", "spiffe://7f2a.consul/ns/default/dc/dc1/svc/client"),
						attribute.Int("outrider.attempt", 1))
					span.SetAttributes(attribute.Int("http.response.status_code", 200))
				}
				span.End()
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(testutil.CPUTime()-cpu0)/float64(b.N), "cpu-ns/span")
			if s := tr.Stats(); s.Dropped > 0 {
				b.Fatalf("%d of %d spans dropped: the figure would be too low", s.Dropped, s.Started)
			}
		})
	}
}
