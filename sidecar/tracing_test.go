package sidecar_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/internal/testutil/jaegertest"
	"github.com/outrider-mesh/outrider/sidecar"
	"github.com/outrider-mesh/outrider/telemetry/tracing"
)

// startTracedPair starts web (http) and client sidecars exporting to
// endpoint over OTLP/HTTP, and returns client's local listener for web
// and the web application. With viaConsul the endpoint is set the way a
// Consul user sets it for the whole mesh, in proxy-defaults, instead of in
// the sidecars' own configuration.
func startTracedPair(t *testing.T, endpoint string, viaConsul bool) (string, *httpApp, *runningSidecar) {
	t.Helper()
	a := consultest.Start(t)
	setProtocol(t, a, "web", "http")
	var cfg *tracing.Config
	if viaConsul {
		_, _, err := a.Client.ConfigEntries().Set(&api.ProxyConfigEntry{Kind: api.ProxyDefaults, Name: api.ProxyConfigGlobal,
			Config: map[string]any{"otlp_endpoint": endpoint, "otlp_protocol": "http/protobuf", "trace_sampling": 1}}, nil)
		if err != nil {
			t.Fatal(err)
		}
	} else {
		cfg = &tracing.Config{
			Enabled: true, Endpoint: endpoint, Protocol: "http/protobuf", Insecure: true,
			Sampler: "parentbased_always_on", SamplerArg: 1,
			Propagators: []string{"tracecontext", "baggage", "b3multi"},
		}
	}
	app := startHTTPApp(t, "web-1")
	upstream := registerPair(t, a, app.port()).upstream
	web := startSidecar(t, a, sidecar.Options{SidecarFor: "web-1", TraceConfig: cfg})
	client := startSidecar(t, a, sidecar.Options{SidecarFor: "client-1", TraceConfig: cfg})
	web.waitReady(t)
	client.waitReady(t)
	waitRoutable(t, a, "web", 1)
	eventually(t, 15*time.Second, func() error {
		resp, err := http.Get("http://" + upstream + "/echo")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return upstream, app, client
}

// A request through two sidecars is one trace in Jaeger: the client
// sidecar's client span, the web sidecar's server span as its child, and
// the application receives a traceparent naming the server span.
func TestMeshTracingInJaeger(t *testing.T) {
	t.Parallel()
	j := jaegertest.Start(t)
	upstream, _, _ := startTracedPair(t, "http://"+j.OTLPHTTP, false)
	c := oneConnClient()

	tests := []struct {
		name    string
		headers map[string]string
		traceID string // the caller's trace, if it sent one
		parent  string // the caller's span the client span must be a child of
	}{
		{name: "no incoming context"},
		{name: "W3C traceparent", headers: map[string]string{"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			traceID: "4bf92f3577b34da6a3ce929d0e0e4736", parent: "00f067aa0ba902b7"},
		{name: "B3 multi-header", headers: map[string]string{"X-B3-Traceid": "80f198ee56343ba864fe8b2a57d3eff7",
			"X-B3-Spanid": "e457b5a2e4d86bd1", "X-B3-Sampled": "1"},
			traceID: "80f198ee56343ba864fe8b2a57d3eff7", parent: "e457b5a2e4d86bd1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+upstream+"/echo", nil)
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			s, _ := getSeen(t, c, req)
			tp := strings.Split(s.Header.Get("Traceparent"), "-")
			if len(tp) != 4 {
				t.Fatalf("the application got traceparent %q", s.Header.Get("Traceparent"))
			}
			traceID, appParent := tp[1], tp[2]
			if tt.traceID != "" && traceID != tt.traceID {
				t.Fatalf("trace %s, want the caller's %s", traceID, tt.traceID)
			}
			var tr jaegertest.Trace
			eventually(t, 20*time.Second, func() error {
				var err error
				tr, err = j.Get(traceID)
				if err != nil {
					return err
				}
				if len(tr.Spans) < 2 {
					return fmt.Errorf("%d spans so far", len(tr.Spans))
				}
				return nil
			})
			var clientSpan, serverSpan *jaegertest.Span
			for i, sp := range tr.Spans {
				kind, _ := sp.Tag("span.kind")
				switch {
				case tr.Service(sp) == "client" && kind == "client":
					clientSpan = &tr.Spans[i]
				case tr.Service(sp) == "web" && kind == "server":
					serverSpan = &tr.Spans[i]
				}
			}
			if clientSpan == nil || serverSpan == nil {
				t.Fatalf("trace %s lacks the client sidecar's client span or the web sidecar's server span: %+v", traceID, tr)
			}
			if serverSpan.Parent() != clientSpan.SpanID {
				t.Fatalf("server span's parent %q, want the client span %q", serverSpan.Parent(), clientSpan.SpanID)
			}
			if appParent != serverSpan.SpanID {
				t.Fatalf("the application's parent span %s, want the server span %s", appParent, serverSpan.SpanID)
			}
			if tt.parent != "" && clientSpan.Parent() != tt.parent {
				t.Fatalf("client span's parent %q, want the caller's %q", clientSpan.Parent(), tt.parent)
			}
			if m, _ := clientSpan.Tag("http.request.method"); m != "GET" {
				t.Errorf("client span method tag %v", m)
			}
			if peer, _ := serverSpan.Tag("outrider.peer.spiffe_id"); !strings.HasSuffix(fmt.Sprint(peer), "/svc/client") {
				t.Errorf("server span peer %v, want the client's SPIFFE ID", peer)
			}
		})
	}
}

// A collector that cannot be reached costs requests nothing: they all
// succeed while the exporter drops spans. The collector is named in
// proxy-defaults, so this also shows that a Consul user turns tracing on
// for every sidecar there.
func TestMeshTracingCollectorDown(t *testing.T) {
	t.Parallel()
	dead := testutil.DeadPort(t)
	upstream, _, client := startTracedPair(t, fmt.Sprintf("http://127.0.0.1:%d", dead), true)
	c := oneConnClient()
	for i := range 50 {
		req, _ := http.NewRequest("GET", "http://"+upstream+"/echo", nil)
		if s, _ := getSeen(t, c, req); s.Instance != "web-1" {
			t.Fatalf("request %d: %+v", i, s)
		}
	}
	eventually(t, 20*time.Second, func() error {
		if v := metricValue(t, client.admin, "outrider_tracing_spans_dropped_total"); v == 0 {
			return fmt.Errorf("no dropped spans counted yet")
		}
		return nil
	})
}
