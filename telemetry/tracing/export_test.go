package tracing

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// discardExporter accepts every batch.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// funcExporter exports with a function.
type funcExporter func(context.Context, []sdktrace.ReadOnlySpan) error

func (f funcExporter) ExportSpans(ctx context.Context, s []sdktrace.ReadOnlySpan) error {
	return f(ctx, s)
}
func (funcExporter) Shutdown(context.Context) error { return nil }

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

func endSpans(tr *Tracing, n int) {
	for range n {
		_, span := tr.Tracer().Start(context.Background(), "op")
		span.End()
	}
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestDisabled(t *testing.T) {
	t.Parallel()
	tr, err := New(context.Background(), Config{}, "svc", WithExporter(discardExporter{}))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() {
		t.Fatal("Enabled() with Config.Enabled false")
	}
	_, span := tr.Tracer().Start(context.Background(), "op")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("disabled tracer made a recording or valid span: %v", span.SpanContext())
	}
	span.End()
	if s := tr.Stats(); s != (Stats{}) {
		t.Errorf("Stats %+v, want zero", s)
	}
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Error(err)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	d := tr.Describe()
	if d["enabled"] != false || d["service_name"] != "svc" {
		t.Errorf("Describe %v", d)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	_, err := New(context.Background(), Config{Enabled: true, Protocol: "udp"}, "svc")
	if err == nil || !strings.Contains(err.Error(), "Protocol") {
		t.Fatalf("New: %v, want an error naming Protocol", err)
	}
}

func TestResource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		opts []Option
		want map[string]string // "" means absent
	}{
		{"default service", Config{}, nil, map[string]string{"service.name": "svc", "service.version": ""}},
		{"config service", Config{ServiceName: "web"}, nil, map[string]string{"service.name": "web"}},
		{"service.name attribute", Config{Attributes: map[string]string{"service.name": "api"}}, nil,
			map[string]string{"service.name": "api"}},
		{"ServiceName wins", Config{ServiceName: "web", Attributes: map[string]string{"service.name": "api"}}, nil,
			map[string]string{"service.name": "web"}},
		{"attributes and options", Config{Attributes: map[string]string{"env": "prod", "proxy.id": "from-env"}},
			[]Option{WithVersion("1.2.3"), WithAttributes(attribute.String("proxy.id", "web-sidecar-proxy"), attribute.String("node", "n1"))},
			map[string]string{"env": "prod", "proxy.id": "from-env", "node": "n1", "service.version": "1.2.3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr, exp := newTestTracing(t, tt.cfg, tt.opts...)
			endSpans(tr, 1)
			spans := exp.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans", len(spans))
			}
			got := map[string]string{}
			for _, kv := range spans[0].Resource.Attributes() {
				got[string(kv.Key)] = kv.Value.String()
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("resource %s = %q, want %q (resource %v)", k, got[k], v, got)
				}
			}
			if spans[0].InstrumentationScope.Name != TracerName {
				t.Errorf("scope %q", spans[0].InstrumentationScope.Name)
			}
		})
	}
}

// TestQueueFull: a collector that never answers must not slow OnEnd; spans
// beyond the queue are dropped and counted, and Shutdown gives up at its
// deadline.
func TestQueueFull(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	blocked := funcExporter(func(ctx context.Context, _ []sdktrace.ReadOnlySpan) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	logs := &logBuffer{}
	tr, err := New(context.Background(), Config{Enabled: true, MaxQueueSize: 8, ExportTimeout: time.Minute}, "svc",
		WithExporter(blocked), WithLogger(logs.logger()),
		func(o *options) { o.batchSize = 4; o.batchInterval = 10 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	defer once.Do(func() { close(release) })

	start := time.Now()
	endSpans(tr, 1000)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ending 1000 spans took %v with a stuck exporter", d)
	}
	s := tr.Stats()
	if s.Started != 1000 || s.Dropped < 1000-8-4 || s.Exported != 0 {
		t.Errorf("Stats %+v: want 1000 started, at most one batch and a queue not dropped", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := tr.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v with a 100ms deadline", d)
	}
	<-tr.proc.done // the cancelled export returns and the goroutine exits
	if !strings.Contains(logs.String(), "span queue full") {
		t.Errorf("queue overflow not logged:\n%s", logs)
	}
	if s := tr.Stats(); s.Dropped+s.Exported != s.Started {
		t.Errorf("after Shutdown: Stats %+v do not add up", s)
	}
}

func TestExporterFailureAndPanic(t *testing.T) {
	t.Parallel()
	for name, exp := range map[string]funcExporter{
		"error": func(context.Context, []sdktrace.ReadOnlySpan) error { return errors.New("collector says no") },
		"panic": func(context.Context, []sdktrace.ReadOnlySpan) error { panic("exporter bug") },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			logs := &logBuffer{}
			tr, err := New(context.Background(), Config{Enabled: true}, "svc", WithExporter(exp), WithLogger(logs.logger()))
			if err != nil {
				t.Fatal(err)
			}
			endSpans(tr, 10)
			if err := tr.ForceFlush(context.Background()); err != nil {
				t.Fatal(err)
			}
			endSpans(tr, 10)
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			s := tr.Stats()
			if s.Started != 20 || s.Dropped != 20 || s.ExportErrors != 2 || s.Exported != 0 {
				t.Errorf("Stats %+v, want 20 started and dropped in 2 failed exports", s)
			}
			// Rate limited: the second failure, within 30s, is not logged.
			if n := strings.Count(logs.String(), "span export failed"); n != 1 {
				t.Errorf("%d export failure lines, want 1:\n%s", n, logs)
			}
		})
	}
}

func TestLimitedLogger(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	l := &limitedLogger{log: logs.logger(), every: 50 * time.Millisecond}
	for range 5 {
		l.warn("boom")
	}
	time.Sleep(60 * time.Millisecond)
	l.warn("boom")
	out := logs.String()
	if n := strings.Count(out, "boom"); n != 2 {
		t.Fatalf("%d lines, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, "suppressed=4") {
		t.Errorf("second line does not count the 4 suppressed:\n%s", out)
	}
}

// TestDeadCollector: a closed localhost port, both protocols. Ending spans,
// flushing and Shutdown stay within their bounds; every span ends up
// dropped and the failure is logged.
func TestDeadCollector(t *testing.T) {
	t.Parallel()
	for _, protocol := range []string{ProtocolGRPC, ProtocolHTTP} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			logs := &logBuffer{}
			cfg := Config{
				Enabled:       true,
				Endpoint:      "http://" + closedPort(t),
				Protocol:      protocol,
				ExportTimeout: 300 * time.Millisecond,
			}
			tr, err := New(context.Background(), cfg, "svc", WithLogger(logs.logger()))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			endSpans(tr, 100)
			if d := time.Since(start); d > time.Second {
				t.Errorf("ending 100 spans took %v", d)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tr.ForceFlush(ctx); err != nil {
				t.Fatalf("ForceFlush: %v", err)
			}
			if s := tr.Stats(); s.Started != 100 || s.Dropped != 100 || s.ExportErrors < 1 || s.Exported != 0 {
				t.Errorf("Stats %+v, want 100 started and dropped", s)
			}
			if !strings.Contains(logs.String(), "span export failed") {
				t.Errorf("no export failure logged:\n%s", logs)
			}

			endSpans(tr, 10)
			ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start = time.Now()
			_ = tr.Shutdown(ctx) // nil or deadline exceeded, depending on timing
			if d := time.Since(start); d > time.Second {
				t.Errorf("Shutdown took %v with a 200ms deadline", d)
			}
			<-tr.proc.done
			if s := tr.Stats(); s.Started != 110 || s.Dropped != 110 {
				t.Errorf("after Shutdown: Stats %+v, want 110 started and dropped", s)
			}
		})
	}
}

// TestHungCollector: a collector that accepts the request and never
// answers. Shutdown with a short deadline returns at the deadline and
// cancels the export in flight.
func TestHungCollector(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		requests int
	)
	testDone := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client going away
		mu.Lock()
		requests++
		mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-testDone:
		}
	}))
	defer srv.Close()
	defer close(testDone)

	tr, err := New(context.Background(), Config{Enabled: true, Endpoint: srv.URL, Protocol: ProtocolHTTP}, "svc",
		func(o *options) { o.batchInterval = 10 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	endSpans(tr, 5)
	waitFor(t, "the export to reach the collector", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return requests > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := tr.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v with a 200ms deadline (export timeout 10s)", d)
	}
	select {
	case <-tr.proc.done:
	case <-time.After(5 * time.Second):
		t.Fatal("export goroutine still running 5s after Shutdown gave up")
	}
	if s := tr.Stats(); s.Started != 5 || s.Dropped != 5 {
		t.Errorf("Stats %+v, want 5 started and dropped", s)
	}
	if err := tr.Shutdown(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Shutdown = %v, want the first call's result", err)
	}
}

// otlpHTTPReceiver is an OTLP/HTTP collector: it decodes each request and
// keeps it.
type otlpHTTPReceiver struct {
	mu       sync.Mutex
	requests []*coltracepb.ExportTraceServiceRequest
	headers  []http.Header
}

func (rcv *otlpHTTPReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/traces application/x-protobuf", http.StatusBadRequest)
		return
	}
	var rd io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rd = zr
	}
	body, err := io.ReadAll(rd)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rcv.mu.Lock()
	rcv.requests = append(rcv.requests, req)
	rcv.headers = append(rcv.headers, r.Header.Clone())
	rcv.mu.Unlock()
	resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

func (rcv *otlpHTTPReceiver) resourceSpans() []*tracepb.ResourceSpans {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var out []*tracepb.ResourceSpans
	for _, r := range rcv.requests {
		out = append(out, r.ResourceSpans...)
	}
	return out
}

// checkReceived asserts that rs holds the spans named in want, from a
// resource with service.name svc.
func checkReceived(t *testing.T, rs []*tracepb.ResourceSpans, svc string, want ...string) {
	t.Helper()
	var names []string
	for _, r := range rs {
		var got string
		for _, kv := range r.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				got = kv.GetValue().GetStringValue()
			}
		}
		if got != svc {
			t.Errorf("resource service.name = %q, want %q", got, svc)
		}
		for _, ss := range r.GetScopeSpans() {
			if ss.GetScope().GetName() != TracerName {
				t.Errorf("scope %q, want %q", ss.GetScope().GetName(), TracerName)
			}
			for _, s := range ss.GetSpans() {
				names = append(names, s.GetName())
			}
		}
	}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("received spans %v, want %v", names, want)
	}
}

func TestOTLPHTTPRoundTrip(t *testing.T) {
	t.Parallel()
	rcv := &otlpHTTPReceiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()

	cfg, err := FromEnv(envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_EXPORTER_OTLP_HEADERS":  "api-key=s3cret",
	}))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(context.Background(), cfg, "web", WithVersion("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, parent := tr.Tracer().Start(context.Background(), "inbound", trace.WithSpanKind(trace.SpanKindServer))
	_, child := tr.Tracer().Start(ctx, "upstream", trace.WithSpanKind(trace.SpanKindClient))
	child.End()
	parent.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	checkReceived(t, rcv.resourceSpans(), "web", "upstream", "inbound")
	rcv.mu.Lock()
	if len(rcv.headers) == 0 || rcv.headers[0].Get("Api-Key") != "s3cret" {
		t.Errorf("collector did not get the api-key header: %v", rcv.headers)
	}
	rcv.mu.Unlock()
	if s := tr.Stats(); s != (Stats{Started: 2, Exported: 2}) {
		t.Errorf("Stats %+v, want 2 started and exported", s)
	}
}

// grpcReceiver is an OTLP/gRPC collector.
type grpcReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu   sync.Mutex
	rs   []*tracepb.ResourceSpans
	auth []string
}

func (g *grpcReceiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	g.mu.Lock()
	g.rs = append(g.rs, req.ResourceSpans...)
	g.auth = append(g.auth, md.Get("authorization")...)
	g.mu.Unlock()
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func startGRPCReceiver(t *testing.T) (*grpcReceiver, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rcv := &grpcReceiver{}
	coltracepb.RegisterTraceServiceServer(srv, rcv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return rcv, l.Addr().String()
}

func TestOTLPGRPCRoundTrip(t *testing.T) {
	t.Parallel()
	rcv, addr := startGRPCReceiver(t)
	cfg := Config{
		Enabled:  true,
		Endpoint: addr,
		Insecure: true,
		Headers:  map[string]string{"authorization": "Bearer t0ken"},
	}
	tr, err := New(context.Background(), cfg, "web")
	if err != nil {
		t.Fatal(err)
	}
	endSpans(tr, 3)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	checkReceived(t, rcv.rs, "web", "op", "op", "op")
	if len(rcv.auth) == 0 || rcv.auth[0] != "Bearer t0ken" {
		t.Errorf("authorization metadata %v", rcv.auth)
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	cfg := Config{
		Enabled:  true,
		Endpoint: "https://user:pa55@collector:4318",
		Protocol: ProtocolHTTP,
		Headers:  map[string]string{"api-key": "s3cret"},
		Sampler:  SamplerParentBasedTraceIDRatio, SamplerArg: 0.1,
		Propagators: []string{"b3"},
	}
	tr, err := New(context.Background(), cfg, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Shutdown(context.Background()) }()
	d := tr.Describe()
	want := map[string]any{
		"enabled":        true,
		"endpoint":       "https://user:xxxxx@collector:4318/v1/traces",
		"protocol":       "http/protobuf",
		"sampler":        "parentbased_traceidratio",
		"sampler_arg":    0.1,
		"service_name":   "web",
		"max_queue_size": 2048,
		"export_timeout": "10s",
	}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("Describe[%s] = %#v, want %#v", k, d[k], v)
		}
	}
	if h := d["headers"].(map[string]string); h["api-key"] != "[redacted]" {
		t.Errorf("headers %v", h)
	}
	if p := d["propagators"].([]string); len(p) != 1 || p[0] != "b3" {
		t.Errorf("propagators %v", p)
	}
	if r := d["resource"].(map[string]string); r["service.name"] != "web" {
		t.Errorf("resource %v", r)
	}
	js, err := json.Marshal(d)
	if err != nil {
		t.Fatalf("Describe is not JSON: %v", err)
	}
	if bytes.Contains(js, []byte("s3cret")) || bytes.Contains(js, []byte("pa55")) {
		t.Errorf("Describe leaks a secret: %s", js)
	}
}
