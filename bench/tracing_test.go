package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/sidecar"
	"github.com/outrider-mesh/outrider/telemetry/tracing"
)

// BenchmarkTracingPair compares, in one run, requests through L7 pairs
// (client -> outbound sidecar -> mTLS -> inbound sidecar -> app) whose
// two sidecars trace nothing (off), sample 1% (ratio0.01) or everything
// (always), exporting over OTLP/HTTP to an in-process collector that
// discards what it gets, and the client calling the app directly. The
// sidecars' own CPU per request is a case's cpu-ns/op less direct's.
//
//	go test -run x -bench BenchmarkTracingPair ./bench/
func BenchmarkTracingPair(b *testing.B) {
	a := consultest.Start(b)
	app := startRawApp(b)
	collector := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(collector.Close)
	cases := []struct {
		name, sampler string
		arg           float64
	}{{"off", "", 0}, {"ratio0.01", "parentbased_traceidratio", 0.01}, {"always", "always_on", 1}}
	ports := consultest.FreePorts(b, 4*len(cases))
	for i, c := range cases {
		web, client := "web-"+c.name, "client-"+c.name
		if _, _, err := a.Client.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: web, Protocol: "http"}, nil); err != nil {
			b.Fatal(err)
		}
		registerWith(b, a, web, app, ports[4*i], nil, nil)
		registerWith(b, a, client, ports[4*i+1], ports[4*i+2], []api.Upstream{{DestinationName: web, LocalBindPort: ports[4*i+3]}}, nil)
		for _, id := range []string{web, client} {
			runSidecar(b, a, id, func(o *sidecar.Options) {
				if c.sampler == "" {
					return
				}
				tr, err := tracing.New(context.Background(), tracing.Config{Enabled: true, Sampler: c.sampler, SamplerArg: c.arg,
					Protocol: tracing.ProtocolHTTP, Endpoint: collector.URL}, id)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { tr.Shutdown(context.Background()) })
				o.Tracing = tr
			})
		}
	}
	req := "GET /api/items?id=42 HTTP/1.1\r\nHost: web\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	direct := "127.0.0.1:" + strconv.Itoa(app)
	b.Run("direct", func(b *testing.B) { benchKeepAlive(b, direct, req) })
	for i, c := range cases {
		addr := "127.0.0.1:" + strconv.Itoa(ports[4*i+3])
		waitServes(b, addr, req)
		b.Run(c.name, func(b *testing.B) { benchKeepAlive(b, addr, req) })
	}
}
