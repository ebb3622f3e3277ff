package tracing

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// newTestTracing builds an enabled Tracing exporting synchronously to an
// in-memory exporter, shut down at the end of the test.
func newTestTracing(t testing.TB, cfg Config, opts ...Option) (*Tracing, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	cfg.Enabled = true
	tr, err := New(context.Background(), cfg, "svc", append([]Option{WithExporter(exp), WithSyncExport()}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tr, exp
}

func TestSamplers(t *testing.T) {
	t.Parallel()
	const n = 200
	tests := []struct {
		sampler string
		arg     float64
		parent  string // "", "sampled", "unsampled"
		want    int    // spans exported out of n
	}{
		{"parentbased_traceidratio", 0, "", 0},
		{"parentbased_traceidratio", 1, "", n},
		{"parentbased_traceidratio", 0, "sampled", n}, // the parent's decision is honoured
		{"parentbased_traceidratio", 1, "unsampled", 0},
		{"traceidratio", 0, "sampled", 0}, // not parent based
		{"always_off", 1, "", 0},
		{"always_off", 1, "sampled", 0},
		{"always_on", 1, "unsampled", n},
		{"parentbased_always_on", 1, "", n},
		{"parentbased_always_on", 1, "sampled", n},
		{"parentbased_always_on", 1, "unsampled", 0},
		{"parentbased_always_off", 1, "", 0},
		{"parentbased_always_off", 1, "sampled", n},
		{"", 1, "", n}, // default: parentbased_always_on
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v/%s", tt.sampler, tt.arg, tt.parent), func(t *testing.T) {
			t.Parallel()
			tr, exp := newTestTracing(t, Config{Sampler: tt.sampler, SamplerArg: tt.arg})
			for range n {
				ctx := context.Background()
				if tt.parent != "" {
					ctx = trace.ContextWithRemoteSpanContext(ctx, remoteContext(t, tt.parent == "sampled"))
				}
				_, span := tr.Tracer().Start(ctx, "op")
				span.End()
			}
			if got := len(exp.GetSpans()); got != tt.want {
				t.Errorf("exported %d spans, want %d", got, tt.want)
			}
			if s := tr.Stats(); s.Started != int64(tt.want) || s.Exported != int64(tt.want) || s.Dropped != 0 {
				t.Errorf("Stats %+v, want %d started and exported", s, tt.want)
			}
		})
	}
}

func TestSamplerRatio(t *testing.T) {
	t.Parallel()
	tr, exp := newTestTracing(t, Config{Sampler: "parentbased_traceidratio", SamplerArg: 0.25})
	const n = 4000
	for range n {
		_, span := tr.Tracer().Start(context.Background(), "op")
		span.End()
	}
	// Trace IDs are random: 1000 expected, a 5-sigma band is about +-137.
	if got := len(exp.GetSpans()); got < 800 || got > 1200 {
		t.Errorf("ratio 0.25 exported %d of %d spans", got, n)
	}
}

func TestNewSamplerRejects(t *testing.T) {
	t.Parallel()
	if _, err := newSampler("sometimes", 1); err == nil {
		t.Error("unknown sampler accepted")
	}
	if _, err := newSampler(SamplerTraceIDRatio, 2); err == nil {
		t.Error("ratio 2 accepted")
	}
}
