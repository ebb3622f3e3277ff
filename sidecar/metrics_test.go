package sidecar_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/outrider-mesh/outrider/sidecar"
)

// metricValue scrapes admin's /metrics (which must parse as the Prometheus
// text format) and sums the samples of family name whose labels include
// every pair in match (counters, gauges, and histogram sample counts).
func metricValue(t *testing.T, admin, name string, match ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	var sum float64
	f := families[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(match); i += 2 {
			if labels[match[i]] != match[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// The admin API: liveness, clusters, certificates, the log level at run
// time, and no profiler unless asked for.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	m := startL7Mesh(t, 2)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + m.client.admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/live"); code != 200 || body != "live\n" {
		t.Fatalf("/live: %d %q", code, body)
	}
	code, body := get("/clusters")
	var clusters []sidecar.ClusterDump
	if err := json.Unmarshal([]byte(body), &clusters); code != 200 || err != nil {
		t.Fatalf("/clusters: %d %v %s", code, err, body)
	}
	var web *sidecar.ClusterDump
	for i := range clusters {
		if clusters[i].Upstream == "web" {
			web = &clusters[i]
		}
	}
	if web == nil || len(web.Endpoints) != 2 || web.Policy != "least_request" || web.Protocol != sidecar.HTTP ||
		!strings.HasSuffix(web.Endpoints[0].Identity, "/svc/web") {
		t.Fatalf("/clusters web = %+v", web)
	}
	if code, body := get("/certs"); code != 200 || !strings.Contains(body, "/svc/client") {
		t.Fatalf("/certs: %d %s", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ without Options.Pprof: %d, want 404", code)
	}
	if code, body := get("/logging"); code != 200 || body != "INFO\n" {
		t.Fatalf("/logging: %d %q", code, body)
	}
	resp, err := http.Post("http://"+m.client.admin+"/logging?level=debug", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, body := get("/logging"); code != 200 || body != "DEBUG\n" {
		t.Fatalf("/logging after POST: %d %q", code, body)
	}
	resp, err = http.Post("http://"+m.client.admin+"/logging?level=loud", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad level: %d, want 400", resp.StatusCode)
	}
}
