package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil"
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
// The interleaved case is the one to quote on a shared machine: it sends
// b.N requests through each of direct, off, ratio0.01 and always in turns
// of 500, so that load from elsewhere falls on every case alike, and
// reports each case's CPU per request and the sidecars' overhead over off
// (1%-overhead-%, always-overhead-%), also without what the application
// pays for parsing the traceparent it is handed (measured by a fifth
// client, direct with that header: *-sidecars-overhead-%). Each turn of a tracing case ends
// with a flush of its sidecars' span queues, so the export's CPU is
// counted in that case's turn (batches of at most 500 spans, where a busy
// sidecar sends 512: if anything, this costs the tracing cases more).
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
	tracers := make([][]*tracing.Tracing, len(cases))
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
				tracers[i] = append(tracers[i], tr)
				o.Tracing = tr
			})
		}
	}
	req := "GET /api/items?id=42 HTTP/1.1\r\nHost: web\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	direct := "127.0.0.1:" + strconv.Itoa(app)
	addrs := []string{direct}
	b.Run("direct", func(b *testing.B) { benchKeepAlive(b, direct, req) })
	for i, c := range cases {
		addr := "127.0.0.1:" + strconv.Itoa(ports[4*i+3])
		waitServes(b, addr, req)
		addrs = append(addrs, addr)
		b.Run(c.name, func(b *testing.B) { benchKeepAlive(b, addr, req) })
	}
	b.Run("interleaved", func(b *testing.B) {
		clients := make([]*keepAliveClient, len(addrs))
		for i, addr := range addrs {
			clients[i] = dialKeepAlive(b, addr, req)
		}
		// The application's own cost of the traceparent the tracing
		// cases hand it: direct, with one.
		tp := "GET /api/items?id=42 HTTP/1.1\r\nHost: web\r\nUser-Agent: bench\r\nAccept: */*\r\n" +
			"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\r\n\r\n"
		clients = append(clients, dialKeepAlive(b, direct, tp))
		for _, c := range clients {
			c.send(b, 100) // warm
		}
		cpu := make([]int64, len(clients))
		b.ResetTimer()
		for done := 0; done < b.N; {
			n := min(500, b.N-done)
			for i, c := range clients {
				t0 := testutil.CPUTime()
				c.send(b, n)
				if i > 0 && i <= len(tracers) {
					for _, tr := range tracers[i-1] {
						if err := tr.ForceFlush(context.Background()); err != nil {
							b.Fatal(err)
						}
					}
				}
				cpu[i] += testutil.CPUTime() - t0
			}
			done += n
		}
		for i, trs := range tracers {
			for _, tr := range trs {
				if st := tr.Stats(); st.Dropped > 0 {
					b.Fatalf("%s: %d of %d spans dropped: the figure would be too low", cases[i].name, st.Dropped, st.Started)
				}
			}
		}
		per := func(i int) float64 { return float64(cpu[i]) / float64(b.N) }
		b.ReportMetric(per(0), "direct-cpu-ns/op")
		b.ReportMetric(per(1), "off-cpu-ns/op")
		b.ReportMetric(per(2), "1%-cpu-ns/op")
		b.ReportMetric(per(3), "always-cpu-ns/op")
		off := per(1) - per(0)
		b.ReportMetric(100*((per(2)-per(0))/off-1), "1%-overhead-%")
		b.ReportMetric(100*((per(3)-per(0))/off-1), "always-overhead-%")
		// The same, less what the application pays to parse the header.
		b.ReportMetric(100*((per(2)-per(4))/off-1), "1%-sidecars-overhead-%")
		b.ReportMetric(100*((per(3)-per(4))/off-1), "always-sidecars-overhead-%")
	})
}
