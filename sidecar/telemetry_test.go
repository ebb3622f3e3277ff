package sidecar

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrider-mesh/outrider/sidecar/http1"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
	"github.com/outrider-mesh/outrider/telemetry/tracing"
)

// The fast path for unsampled parents propagates what the SDK would: the
// parent's trace ID and trace state, a new span ID, not sampled; sampled
// parents still get a recorded SDK span.
func TestSpansUnderSampledAndUnsampledParents(t *testing.T) {
	tel, exp := tracedTelemetry(t, 0.01)
	if !tel.parentBased {
		t.Fatal("parentbased_traceidratio not reported as parent-based")
	}
	const traceID, parentSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	attrs := func(trace.Span) {}
	for _, tc := range []struct {
		flags    string
		recorded int
	}{{"00", 0}, {"01", 1}} {
		for _, kind := range []string{"server", "client"} {
			exp.Reset()
			carrier := propagation.HeaderCarrier{}
			carrier.Set("traceparent", "00-"+traceID+"-"+parentSpan+"-"+tc.flags)
			carrier.Set("tracestate", "vendor=abc")
			if kind == "server" {
				_, span := tel.startServerSpan(context.Background(), carrier, "GET", attrs)
				endSpan(span, 200, "", nil)
			} else {
				parent := tel.prop.Extract(context.Background(), carrier)
				endSpan(tel.startClientSpan(parent, carrier, "GET", attrs), 200, "", nil)
			}
			tp := strings.Split(carrier.Get("traceparent"), "-")
			if len(tp) != 4 || tp[1] != traceID || tp[2] == parentSpan || tp[2] == "0000000000000000" || tp[3] != tc.flags {
				t.Errorf("%s, parent flags %s: injected traceparent %q", kind, tc.flags, carrier.Get("traceparent"))
			}
			if ts := carrier.Get("tracestate"); ts != "vendor=abc" {
				t.Errorf("%s, parent flags %s: tracestate %q not carried on", kind, tc.flags, ts)
			}
			if got := len(exp.GetSpans()); got != tc.recorded {
				t.Errorf("%s, parent flags %s: %d spans recorded, want %d", kind, tc.flags, got, tc.recorded)
			}
		}
	}
}

// A request with no trace context is sampled at the configured ratio, and
// exactly the requests whose injected traceparent says sampled have a
// recorded span in that trace.
func TestRootSamplingDecidedOnce(t *testing.T) {
	tel, exp := tracedTelemetry(t, 0.1)
	attrs := func(trace.Span) {}
	sampled := map[string]bool{}
	const n = 2000
	for i := range n {
		carrier := propagation.HeaderCarrier{}
		if i%2 == 0 {
			_, span := tel.startServerSpan(context.Background(), carrier, "GET", attrs)
			endSpan(span, 200, "", nil)
		} else {
			endSpan(tel.startClientSpan(context.Background(), carrier, "GET", attrs), 200, "", nil)
		}
		tp := strings.Split(carrier.Get("traceparent"), "-")
		if len(tp) != 4 {
			t.Fatalf("no traceparent injected: %q", carrier.Get("traceparent"))
		}
		if tp[3] == "01" {
			sampled[tp[1]] = true
		}
	}
	recorded := map[string]bool{}
	for _, s := range exp.GetSpans() {
		recorded[s.SpanContext.TraceID().String()] = true
	}
	if len(recorded) != len(sampled) {
		t.Fatalf("%d traces recorded, %d propagated as sampled", len(recorded), len(sampled))
	}
	for id := range sampled {
		if !recorded[id] {
			t.Fatalf("trace %s propagated as sampled but not recorded", id)
		}
	}
	if len(sampled) < n/20 || len(sampled) > n/5 {
		t.Fatalf("%d of %d root requests sampled at ratio 0.1", len(sampled), n)
	}
}

// The HTTP/1.1 fast path on traceparent's bytes agrees with the SDK path:
// unsampled children keep their trace and get a new span ID in place
// (without allocating), sampled ones and unparsable headers go to the SDK,
// and root requests are sampled once, at the configured ratio.
func TestFastUnsampledTraceparent(t *testing.T) {
	tel, exp := tracedTelemetry(t, 0.1)
	const tid, psid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tc := range []struct {
		value   string
		handled bool
	}{
		{"00-" + tid + "-" + psid + "-00", true},
		{"00-" + tid + "-" + psid + "-01", false},                  // sampled: the SDK makes the span
		{"00-" + strings.ToUpper(tid) + "-" + psid + "-00", false}, // not lower-case hex: the SDK judges
		{"00-" + tid + "-0000000000000000-00", false},
	} {
		var h http1.Header
		h.Add("Traceparent", tc.value)
		handled, _ := tel.fastUnsampled(&h, "GET", trace.SpanKindServer)
		got, _ := h.Get("traceparent")
		if handled != tc.handled {
			t.Errorf("%s: handled %v, want %v", tc.value, handled, tc.handled)
		}
		if handled && (string(got[:36]) != tc.value[:36] || string(got[36:52]) == psid || string(got[52:]) != "-00") {
			t.Errorf("%s: rewritten to %s", tc.value, got)
		}
		if !handled && string(got) != tc.value {
			t.Errorf("%s: changed to %s though not handled", tc.value, got)
		}
	}
	var h http1.Header
	h.Add("traceparent", "00-"+tid+"-"+psid+"-00")
	if allocs := testing.AllocsPerRun(100, func() { tel.fastUnsampled(&h, "GET", trace.SpanKindServer) }); allocs != 0 {
		t.Errorf("unsampled child: %v allocations, want 0", allocs)
	}

	exp.Reset()
	sampled := map[string]bool{}
	const n = 2000
	for range n {
		var h http1.Header
		handled, base := tel.fastUnsampled(&h, "GET", trace.SpanKindServer)
		if !handled {
			_, span := tel.startServerSpan(base, headerCarrier{&h}, "GET", func(trace.Span) {})
			endSpan(span, 200, "", nil)
		}
		v, _ := h.Get("traceparent")
		tp := strings.Split(string(v), "-")
		if len(tp) != 4 || tp[3] != map[bool]string{true: "00", false: "01"}[handled] {
			t.Fatalf("handled=%v: traceparent %q", handled, v)
		}
		if !handled {
			sampled[tp[1]] = true
		}
	}
	recorded := map[string]bool{}
	for _, s := range exp.GetSpans() {
		recorded[s.SpanContext.TraceID().String()] = true
	}
	if len(recorded) != len(sampled) || len(sampled) < n/20 || len(sampled) > n/5 {
		t.Fatalf("%d root requests propagated as sampled, %d traces recorded (ratio 0.1 of %d)", len(sampled), len(recorded), n)
	}
	for id := range sampled {
		if !recorded[id] {
			t.Fatalf("trace %s propagated as sampled but not recorded", id)
		}
	}
}

// tracedTelemetry is a telemetry tracing with parentbased_traceidratio at
// ratio, recording into the returned in-memory exporter synchronously.
func tracedTelemetry(t *testing.T, ratio float64) (*telemetry, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr, err := tracing.New(context.Background(), tracing.Config{Enabled: true, Sampler: "parentbased_traceidratio", SamplerArg: ratio},
		"test", tracing.WithExporter(exp), tracing.WithSyncExport())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	tel := newTelemetry(metrics.New("test"), nil)
	tel.useTracing(tr)
	return tel, exp
}

// A span's name must not view the request buffer (it is exported later,
// after the buffer holds the next request).
func TestSpanNameIsAConstant(t *testing.T) {
	buf := []byte("GET")
	name := spanName(unsafeString(buf))
	copy(buf, "PUT")
	if name != "GET" {
		t.Fatalf("span name changed with the buffer: %q", name)
	}
	if spanName("BREW") != "HTTP" {
		t.Fatal("unknown methods are not named HTTP")
	}
}

// The HTTP/1.1 fast extract and inject agree with the W3C propagator: the
// same span context out of every traceparent it takes (and the
// propagator's judgement of every other), the same traceparent and
// tracestate written back.
func TestW3CFastPathAgreesWithThePropagator(t *testing.T) {
	tel, _ := tracedTelemetry(t, 1)
	prop := propagation.TraceContext{}
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tc := range []struct{ traceparent, tracestate string }{
		{"00-" + tid + "-" + sid + "-01", ""},
		{"00-" + tid + "-" + sid + "-00", "vendor=a,other=b"},
		{"00-" + tid + "-" + sid + "-03", ""}, // flags beyond sampled are kept
		{"00-" + tid + "-" + sid + "-01", "not a valid=state=list"},
		{"00-" + strings.ToUpper(tid) + "-" + sid + "-01", ""},
		{"01-" + tid + "-" + sid + "-01-future", ""},
		{"ff-" + tid + "-" + sid + "-01", ""},
		{"00-00000000000000000000000000000000-" + sid + "-01", ""},
		{"00-" + tid + "-" + sid + "-1", ""},
		{"garbage", ""},
		{"", ""},
	} {
		var h http1.Header
		std := propagation.MapCarrier{}
		if tc.traceparent != "" {
			h.Add("traceparent", tc.traceparent)
			std["traceparent"] = tc.traceparent
		}
		if tc.tracestate != "" {
			h.Add("tracestate", tc.tracestate)
			std["tracestate"] = tc.tracestate
		}
		got := trace.SpanContextFromContext(tel.extract(context.Background(), headerCarrier{&h}))
		want := trace.SpanContextFromContext(prop.Extract(context.Background(), std))
		if !got.Equal(want) {
			t.Errorf("%q %q: extracted %+v, the propagator %+v", tc.traceparent, tc.tracestate, got, want)
		}
		if !want.IsValid() {
			continue
		}
		child := trace.NewSpanContext(trace.SpanContextConfig{TraceID: want.TraceID(), SpanID: trace.SpanID{1, 2, 3},
			TraceFlags: want.TraceFlags(), TraceState: want.TraceState()})
		ctx := trace.ContextWithSpanContext(context.Background(), child)
		tel.inject(ctx, headerCarrier{&h})
		out := propagation.MapCarrier{} // the request's headers, as the propagator sees them
		for k, v := range std {
			out[k] = v
		}
		prop.Inject(ctx, out)
		for _, k := range []string{"traceparent", "tracestate"} {
			if v, _ := h.Get(k); string(v) != out[k] {
				t.Errorf("%q: injected %s %q, the propagator %q", tc.traceparent, k, v, out[k])
			}
		}
	}
}
