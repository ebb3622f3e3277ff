package tracing

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// captureExporter keeps the OTLP requests its encoder produces, decoded
// with the generated types: the wire format is checked against them, not
// against our own reading of it.
type captureExporter struct {
	enc  encoder
	reqs []*coltracepb.ExportTraceServiceRequest
	err  error
}

func (c *captureExporter) exportSpans(_ context.Context, batch []*spanData) error {
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(c.enc.encode(batch), req); err != nil {
		c.err = err
		return err
	}
	c.reqs = append(c.reqs, req)
	return nil
}

func (c *captureExporter) shutdown(context.Context) error { return nil }

// newCaptured is a Tracing whose spans are encoded synchronously into cap.
func newCaptured(t *testing.T, sampler string) (*Tracing, *captureExporter) {
	t.Helper()
	tr, err := New(context.Background(), Config{Enabled: true, Sampler: sampler, SamplerArg: 1}, "web",
		WithVersion("1.2.3"), WithSyncExport(), WithExporter(discardExporter{}))
	if err != nil {
		t.Fatal(err)
	}
	c := &captureExporter{enc: newEncoder(tr.res, "1.2.3")}
	tr.proc.exp = c
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	return tr, c
}

func str(v string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}
}

func kv(k string, v *commonpb.AnyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: v}
}

func TestEncodingMatchesTheGeneratedTypes(t *testing.T) {
	tr, c := newCaptured(t, SamplerAlwaysOn)
	tid := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	ts, _ := trace.ParseTraceState("vendor=x,other=y")
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9}, TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true,
	})
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{7}, SpanID: trace.SpanID{7}, Remote: true})
	start := time.Unix(1700000000, 123456789)
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	_, sp := tr.Tracer().Start(ctx, "GET", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
		trace.WithAttributes(attribute.String("http.request.method", "GET"), attribute.Int("n", -5)),
		trace.WithLinks(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.Bool("l", true)}}))
	sp.SetAttributes(
		attribute.Bool("b", false), attribute.Float64("f", 1.5), attribute.String("empty", ""),
		attribute.StringSlice("ss", []string{"a", ""}), attribute.Int64Slice("is", []int64{1, -1}),
		attribute.BoolSlice("bs", []bool{true}), attribute.Float64Slice("fs", []float64{0.25}),
		attribute.Int("n", 7), // replaces the start attribute, keeps its place
	)
	sp.AddEvent("retry", trace.WithTimestamp(start.Add(time.Millisecond)), trace.WithAttributes(attribute.Int("attempt", 2)))
	sp.RecordError(errors.New("boom"), trace.WithTimestamp(start.Add(2*time.Millisecond)))
	sp.SetStatus(codes.Error, "upstream reset")
	sp.End(trace.WithTimestamp(start.Add(5 * time.Millisecond)))
	sp.SetAttributes(attribute.String("after", "end")) // ignored

	if c.err != nil || len(c.reqs) != 1 {
		t.Fatalf("requests %d, decode error %v", len(c.reqs), c.err)
	}
	sid := sp.SpanContext().SpanID()
	want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		SchemaUrl: tr.res.SchemaURL(),
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: TracerName, Version: "1.2.3"},
			Spans: []*tracepb.Span{{
				TraceId: tid[:], SpanId: sid[:], TraceState: "vendor=x,other=y", ParentSpanId: []byte{9, 9, 9, 9, 9, 9, 9, 9},
				Name: "GET", Kind: tracepb.Span_SPAN_KIND_SERVER,
				StartTimeUnixNano: uint64(start.UnixNano()), EndTimeUnixNano: uint64(start.Add(5 * time.Millisecond).UnixNano()),
				Attributes: []*commonpb.KeyValue{
					kv("http.request.method", str("GET")),
					kv("n", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 7}}),
					kv("b", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: false}}),
					kv("f", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 1.5}}),
					kv("empty", str("")),
					kv("ss", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{str("a"), str("")}}}}),
					kv("is", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
						{Value: &commonpb.AnyValue_IntValue{IntValue: 1}}, {Value: &commonpb.AnyValue_IntValue{IntValue: -1}}}}}}),
					kv("bs", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
						{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}}}}}),
					kv("fs", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
						{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.25}}}}}}),
				},
				Events: []*tracepb.Span_Event{
					{TimeUnixNano: uint64(start.Add(time.Millisecond).UnixNano()), Name: "retry",
						Attributes: []*commonpb.KeyValue{kv("attempt", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 2}})}},
					{TimeUnixNano: uint64(start.Add(2 * time.Millisecond).UnixNano()), Name: "exception",
						Attributes: []*commonpb.KeyValue{kv("exception.type", str("*errors.errorString")), kv("exception.message", str("boom"))}},
				},
				Links: []*tracepb.Span_Link{{TraceId: []byte{7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, SpanId: []byte{7, 0, 0, 0, 0, 0, 0, 0},
					Attributes: []*commonpb.KeyValue{kv("l", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}})},
					Flags:      flagHasIsRemote | flagIsRemote}},
				Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "upstream reset"},
				Flags:  uint32(trace.FlagsSampled) | flagHasIsRemote | flagIsRemote,
			}},
		}},
	}}}
	got := c.reqs[0]
	want.ResourceSpans[0].Resource = got.ResourceSpans[0].Resource // checked by TestResourceAndScopeEncoding
	if !proto.Equal(want, got) {
		t.Errorf("decoded request differs:\n got: %s\nwant: %s", prototext.Format(got), prototext.Format(want))
	}
}

func TestResourceAndScopeEncoding(t *testing.T) {
	tr, c := newCaptured(t, SamplerAlwaysOn)
	for range 3 {
		_, sp := tr.Tracer().Start(context.Background(), "op") // a root span: no parent, kind internal
		sp.SetStatus(codes.Ok, "ignored for ok")
		sp.SetStatus(codes.Error, "ok is final")
		sp.End()
	}
	var spans []*tracepb.Span
	for _, req := range c.reqs {
		rs := req.ResourceSpans[0]
		attrs := map[string]string{}
		for _, a := range rs.Resource.Attributes {
			attrs[a.Key] = a.Value.GetStringValue()
		}
		if attrs["service.name"] != "web" || attrs["service.version"] != "1.2.3" {
			t.Errorf("resource attributes %v", attrs)
		}
		spans = append(spans, rs.ScopeSpans[0].Spans...)
	}
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	for _, s := range spans {
		if len(s.ParentSpanId) != 0 || s.Kind != tracepb.Span_SPAN_KIND_INTERNAL || s.Flags != uint32(trace.FlagsSampled)|flagHasIsRemote {
			t.Errorf("root span: parent %x kind %v flags %#x", s.ParentSpanId, s.Kind, s.Flags)
		}
		if s.Status.GetCode() != tracepb.Status_STATUS_CODE_OK || s.Status.GetMessage() != "" {
			t.Errorf("status %v, want OK without a message", s.Status)
		}
		if s.EndTimeUnixNano < s.StartTimeUnixNano || s.StartTimeUnixNano == 0 {
			t.Errorf("times %d..%d", s.StartTimeUnixNano, s.EndTimeUnixNano)
		}
	}
}

func TestSpanLimits(t *testing.T) {
	tr, c := newCaptured(t, SamplerAlwaysOn)
	_, sp := tr.Tracer().Start(context.Background(), "op")
	for i := range maxAttributes + 5 {
		sp.SetAttributes(attribute.Int(string(rune('a'+i%26))+string(rune('a'+i/26)), i))
	}
	sp.SetAttributes(attribute.KeyValue{}) // invalid: dropped
	for range maxEvents + 2 {
		sp.AddEvent("e")
	}
	sp.End()
	s := c.reqs[0].ResourceSpans[0].ScopeSpans[0].Spans[0]
	if len(s.Attributes) != maxAttributes || s.DroppedAttributesCount != 6 {
		t.Errorf("attributes %d dropped %d, want %d and 6", len(s.Attributes), s.DroppedAttributesCount, maxAttributes)
	}
	if len(s.Events) != maxEvents || s.DroppedEventsCount != 2 {
		t.Errorf("events %d dropped %d", len(s.Events), s.DroppedEventsCount)
	}
}

// A span's data is pooled once exported: a span kept (or written to) after
// End must neither change the span exported in its place nor lose its own
// span context, whatever it recorded (here more attributes than the
// inline buffer holds, and events).
func TestEndedSpanIsDetachedFromItsPooledData(t *testing.T) {
	tr, c := newCaptured(t, SamplerAlwaysOn)
	tracer := tr.Tracer()
	var old []trace.Span
	var oldIDs []trace.SpanContext
	for i := range 20 {
		_, sp := tracer.Start(context.Background(), "old")
		for j := range i {
			sp.SetAttributes(attribute.Int("old"+strconv.Itoa(j), j))
		}
		sp.AddEvent("old-event")
		sp.SetStatus(codes.Error, "old failure")
		sp.End()
		old, oldIDs = append(old, sp), append(oldIDs, sp.SpanContext())
	}
	c.reqs = nil
	for i := range 20 {
		_, sp := tracer.Start(context.Background(), "new")
		SetAttributes(sp, attribute.Int("n", i))
		for _, o := range old { // every ended span, written to while the new one records
			o.SetAttributes(attribute.String("late", "x"))
			SetAttributes(o, attribute.String("late", "y"))
			o.SetName("late")
			o.AddEvent("late")
			o.RecordError(errors.New("late"))
			o.SetStatus(codes.Error, "late")
			o.End()
		}
		sp.End()
	}
	if len(c.reqs) != 20 {
		t.Fatalf("%d exports after 20 new spans, want 20 (an ended span was exported again)", len(c.reqs))
	}
	for i, req := range c.reqs {
		s := req.ResourceSpans[0].ScopeSpans[0].Spans[0]
		if s.Name != "new" || len(s.Attributes) != 1 || s.Attributes[0].Key != "n" || s.Attributes[0].Value.GetIntValue() != int64(i) ||
			len(s.Events) != 0 || s.Status != nil {
			t.Errorf("span %d exported as %v", i, prototext.Format(s))
		}
	}
	for i, o := range old {
		if o.IsRecording() || !o.SpanContext().Equal(oldIDs[i]) || !o.SpanContext().IsValid() {
			t.Errorf("ended span %d: recording %v, span context %v (was %v)", i, o.IsRecording(), o.SpanContext(), oldIDs[i])
		}
	}
}

// reset leaves no field set, so a pooled spanData carries nothing into the
// next span (a field added to spanData must be reset too).
func TestSpanDataReset(t *testing.T) {
	d := newSpanData()
	id := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}})
	d.sc, d.parent, d.kind, d.start, d.end, d.name = id, id, trace.SpanKindServer, time.Now(), time.Now(), "op"
	for i := range 20 {
		d.addAttrs([]attribute.KeyValue{attribute.Int("k"+strconv.Itoa(i), i)})
	}
	d.addEvent("e", time.Now(), []attribute.KeyValue{attribute.Bool("b", true)})
	d.addLink(trace.Link{SpanContext: id})
	d.droppedAttrs, d.droppedEvents, d.droppedLinks, d.status, d.statusMsg = 1, 2, 3, codes.Error, "x"
	d.attrs = d.attrBuf[:5]
	d.reset()
	if v := reflect.ValueOf(*d); !v.IsZero() {
		for i := range v.NumField() {
			if !v.Field(i).IsZero() {
				t.Errorf("spanData.%s not reset", v.Type().Field(i).Name)
			}
		}
	}
}

// Ending a span while other goroutines write to it is safe (run with
// -race), and what they wrote before End is exported.
func TestEndRacesWithWriters(t *testing.T) {
	tr, err := New(context.Background(), Config{Enabled: true, Sampler: SamplerAlwaysOn}, "web", WithExporter(discardExporter{}))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	for range 200 {
		_, sp := tr.Tracer().Start(context.Background(), "op")
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for j := range 20 {
					SetAttributes(sp, attribute.Int("w"+strconv.Itoa(w), j))
					sp.AddEvent("e")
					sp.SetStatus(codes.Error, "x")
				}
			})
		}
		sp.End()
		wg.Wait()
	}
}

func TestDroppedSpansAreNotRecorded(t *testing.T) {
	tr, c := newCaptured(t, SamplerAlwaysOff)
	ctx, sp := tr.Tracer().Start(context.Background(), "op")
	if sp.IsRecording() || sp.SpanContext().IsSampled() || !sp.SpanContext().IsValid() {
		t.Errorf("dropped span: recording %v sampled %v valid %v", sp.IsRecording(), sp.SpanContext().IsSampled(), sp.SpanContext().IsValid())
	}
	if !trace.SpanContextFromContext(ctx).Equal(sp.SpanContext()) {
		t.Error("ctx does not carry the dropped span's context")
	}
	sp.End()
	if len(c.reqs) != 0 {
		t.Errorf("%d requests for a dropped span", len(c.reqs))
	}
}

// writePEM writes the TLS server's certificate to a file for Config.Certificate.
func writePEM(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ca.pem")
	der := srv.Certificate().Raw
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestOTLPHTTPSWithGzip(t *testing.T) {
	t.Parallel()
	rcv := &otlpHTTPReceiver{}
	srv := httptest.NewTLSServer(rcv)
	defer srv.Close()
	cfg, err := FromEnv(envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":    srv.URL + "/v1/traces",
		"OTEL_EXPORTER_OTLP_PROTOCOL":           "http/protobuf",
		"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": writePEM(t, srv),
		"OTEL_EXPORTER_OTLP_COMPRESSION":        "gzip",
	}))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(context.Background(), cfg, "web")
	if err != nil {
		t.Fatal(err)
	}
	endSpans(tr, 2)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, rcv.resourceSpans(), "web", "op", "op")
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.headers) == 0 || rcv.headers[0].Get("Content-Encoding") != "gzip" {
		t.Errorf("headers %v, want Content-Encoding gzip", rcv.headers)
	}
}

func TestOTLPHTTPUntrustedCollector(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(&otlpHTTPReceiver{}) // its certificate is not in the system roots
	defer srv.Close()
	tr, err := New(context.Background(), Config{Enabled: true, Protocol: ProtocolHTTP, Endpoint: srv.URL}, "web")
	if err != nil {
		t.Fatal(err)
	}
	endSpans(tr, 1)
	tr.Shutdown(context.Background())
	if s := tr.Stats(); s.Exported != 0 || s.ExportErrors == 0 {
		t.Errorf("Stats %+v: an unverified collector must not get spans", s)
	}
}

func TestOTLPHTTPRetriesAnOverloadedCollector(t *testing.T) {
	t.Parallel()
	rcv := &otlpHTTPReceiver{}
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		rcv.ServeHTTP(w, r)
	}))
	defer srv.Close()
	tr, err := New(context.Background(), Config{Enabled: true, Protocol: ProtocolHTTP, Endpoint: srv.URL, ExportTimeout: 5 * time.Second}, "web")
	if err != nil {
		t.Fatal(err)
	}
	endSpans(tr, 1)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, rcv.resourceSpans(), "web", "op")
	if calls != 2 {
		t.Errorf("%d calls, want a retry after the 503", calls)
	}
}

func TestOTLPGRPCWithGzip(t *testing.T) {
	t.Parallel()
	rcv, addr := startGRPCReceiver(t)
	tr, err := New(context.Background(), Config{Enabled: true, Endpoint: "http://" + addr, Compression: CompressionGzip}, "web")
	if err != nil {
		t.Fatal(err)
	}
	endSpans(tr, 2)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	checkReceived(t, rcv.rs, "web", "op", "op")
}

func TestBadTLSFilesNameTheField(t *testing.T) {
	for _, cfg := range []Config{
		{Enabled: true, Certificate: "/nonexistent/ca.pem"},
		{Enabled: true, ClientCertificate: "/nonexistent/c.pem", ClientKey: "/nonexistent/k.pem"},
	} {
		_, err := New(context.Background(), cfg, "web")
		if err == nil {
			t.Errorf("%+v: no error", cfg)
			continue
		}
		if want := "Certificate"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if err := (Config{Enabled: true, ClientKey: "k.pem"}).Validate(); err == nil || !strings.Contains(err.Error(), "ClientCertificate") {
		t.Errorf("Validate with a key and no certificate: %v", err)
	}
}
