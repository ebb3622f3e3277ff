package tracing

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

const (
	testTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpanID  = "00f067aa0ba902b7"
)

func remoteContext(t *testing.T, sampled bool) trace.SpanContext {
	t.Helper()
	tid, err := trace.TraceIDFromHex(testTraceID)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := trace.SpanIDFromHex(testSpanID)
	if err != nil {
		t.Fatal(err)
	}
	var flags trace.TraceFlags
	if sampled {
		flags = trace.FlagsSampled
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true})
}

// propagatorFor builds a disabled Tracing (propagation must work without
// tracing) with the given propagators.
func propagatorFor(t *testing.T, names ...string) propagation.TextMapPropagator {
	t.Helper()
	tr, err := New(context.Background(), Config{Propagators: names}, "svc")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if tr.Enabled() {
		t.Fatal("Enabled with Config.Enabled false")
	}
	return tr.Propagator()
}

func TestPropagatorExtract(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		props   []string
		headers map[string]string
		sampled bool
		ok      bool
	}{
		{"tracecontext", []string{"tracecontext"}, map[string]string{
			"traceparent": "00-" + testTraceID + "-" + testSpanID + "-01",
		}, true, true},
		{"tracecontext unsampled", []string{"tracecontext"}, map[string]string{
			"traceparent": "00-" + testTraceID + "-" + testSpanID + "-00",
		}, false, true},
		{"b3 single", []string{"b3"}, map[string]string{
			"b3": testTraceID + "-" + testSpanID + "-1",
		}, true, true},
		{"b3 extracts multi too", []string{"b3"}, map[string]string{
			"X-B3-TraceId": testTraceID, "X-B3-SpanId": testSpanID, "X-B3-Sampled": "1",
		}, true, true},
		{"b3multi", []string{"b3multi"}, map[string]string{
			"X-B3-TraceId": testTraceID, "X-B3-SpanId": testSpanID, "X-B3-Sampled": "0",
		}, false, true},
		{"default is tracecontext", nil, map[string]string{
			"traceparent": "00-" + testTraceID + "-" + testSpanID + "-01",
		}, true, true},
		{"tracecontext ignores b3", []string{"tracecontext"}, map[string]string{
			"b3": testTraceID + "-" + testSpanID + "-1",
		}, false, false},
		{"none", []string{"none"}, map[string]string{
			"traceparent": "00-" + testTraceID + "-" + testSpanID + "-01",
		}, false, false},
		{"none wins", []string{"tracecontext", "none"}, map[string]string{
			"traceparent": "00-" + testTraceID + "-" + testSpanID + "-01",
		}, false, false},
		{"empty list", []string{}, map[string]string{
			"traceparent": "00-" + testTraceID + "-" + testSpanID + "-01",
		}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for k, v := range tt.headers {
				h.Set(k, v)
			}
			ctx := propagatorFor(t, tt.props...).Extract(context.Background(), propagation.HeaderCarrier(h))
			sc := trace.SpanContextFromContext(ctx)
			if sc.IsValid() != tt.ok {
				t.Fatalf("extracted %v, valid=%v, want valid=%v", sc, sc.IsValid(), tt.ok)
			}
			if !tt.ok {
				return
			}
			if sc.TraceID().String() != testTraceID || sc.SpanID().String() != testSpanID || !sc.IsRemote() {
				t.Errorf("extracted %s/%s remote=%v", sc.TraceID(), sc.SpanID(), sc.IsRemote())
			}
			if sc.IsSampled() != tt.sampled {
				t.Errorf("sampled = %v, want %v", sc.IsSampled(), tt.sampled)
			}
		})
	}
}

func TestPropagatorInject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		props []string
		want  map[string]string // "" means absent
	}{
		{"tracecontext", []string{"tracecontext"}, map[string]string{
			"traceparent": "00-" + testTraceID + "-" + testSpanID + "-01", "b3": "",
		}},
		{"b3 single", []string{"b3"}, map[string]string{
			"b3": testTraceID + "-" + testSpanID + "-1", "X-B3-TraceId": "", "traceparent": "",
		}},
		{"b3multi", []string{"b3multi"}, map[string]string{
			"X-B3-TraceId": testTraceID, "X-B3-SpanId": testSpanID, "X-B3-Sampled": "1", "b3": "",
		}},
		{"tracecontext and b3", []string{"tracecontext", "b3"}, map[string]string{
			"traceparent": "00-" + testTraceID + "-" + testSpanID + "-01",
			"b3":          testTraceID + "-" + testSpanID + "-1",
		}},
		{"none", []string{"none"}, map[string]string{"traceparent": "", "b3": "", "baggage": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := trace.ContextWithRemoteSpanContext(context.Background(), remoteContext(t, true))
			h := http.Header{}
			propagatorFor(t, tt.props...).Inject(ctx, propagation.HeaderCarrier(h))
			for k, want := range tt.want {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q (headers %v)", k, got, want, h)
				}
			}
		})
	}
}

// TestPropagatorRoundTrip is the sidecar's use: extract on the inbound
// request, start a span with the (disabled or enabled) tracer, inject on the
// upstream request. The trace ID must survive; with tracing disabled the
// parent span ID passes through unchanged.
func TestPropagatorRoundTrip(t *testing.T) {
	t.Parallel()
	for _, enabled := range []bool{false, true} {
		for _, props := range [][]string{{"tracecontext", "baggage"}, {"b3"}, {"b3multi"}} {
			in := http.Header{}
			in.Set("traceparent", "00-"+testTraceID+"-"+testSpanID+"-01")
			in.Set("b3", testTraceID+"-"+testSpanID+"-1")
			in.Set("baggage", "tenant=acme")

			opts := []Option{WithExporter(discardExporter{}), WithSyncExport()}
			tr, err := New(context.Background(), Config{Enabled: enabled, Propagators: props}, "svc", opts...)
			if err != nil {
				t.Fatal(err)
			}
			ctx := tr.Propagator().Extract(context.Background(), propagation.HeaderCarrier(in))
			ctx, span := tr.Tracer().Start(ctx, "inbound", trace.WithSpanKind(trace.SpanKindServer))
			out := http.Header{}
			tr.Propagator().Inject(ctx, propagation.HeaderCarrier(out))
			span.End()

			got := tr.Propagator().Extract(context.Background(), propagation.HeaderCarrier(out))
			sc := trace.SpanContextFromContext(got)
			if sc.TraceID().String() != testTraceID || !sc.IsSampled() {
				t.Errorf("enabled=%v %v: upstream trace %s sampled=%v, want %s sampled", enabled, props, sc.TraceID(), sc.IsSampled(), testTraceID)
			}
			if wantParent := !enabled; (sc.SpanID().String() == testSpanID) != wantParent {
				t.Errorf("enabled=%v %v: upstream parent span %s (inbound %s)", enabled, props, sc.SpanID(), testSpanID)
			}
			if props[0] == "tracecontext" {
				if b := baggage.FromContext(got).Member("tenant").Value(); b != "acme" {
					t.Errorf("%v: baggage tenant=%q, want acme", props, b)
				}
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestBaggage(t *testing.T) {
	t.Parallel()
	p := propagatorFor(t, "baggage")
	in := http.Header{}
	in.Set("baggage", "tenant=acme,region=eu%20west")
	ctx := p.Extract(context.Background(), propagation.HeaderCarrier(in))
	b := baggage.FromContext(ctx)
	if b.Member("tenant").Value() != "acme" || b.Member("region").Value() != "eu west" {
		t.Fatalf("baggage %v", b)
	}
	out := http.Header{}
	p.Inject(ctx, propagation.HeaderCarrier(out))
	back := baggage.FromContext(p.Extract(context.Background(), propagation.HeaderCarrier(out)))
	if back.Member("tenant").Value() != "acme" || back.Member("region").Value() != "eu west" {
		t.Fatalf("baggage after round trip %v (header %q)", back, out.Get("baggage"))
	}
	if out.Get("traceparent") != "" {
		t.Errorf("baggage-only propagator injected traceparent")
	}
}
