package sidecar_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/sidecar"
)

// TestMeshOutlierDetection: service-defaults UpstreamConfig
// PassiveHealthCheck (a real Consul entry, merged into the client's
// upstream) ejects an instance that answers 503 after MaxFailures
// consecutive failures; traffic then goes to the healthy instance only,
// /clusters shows the ejection and the metric counts it.
func TestMeshOutlierDetection(t *testing.T) {
	t.Parallel()
	m := startL7Mesh(t, 2)
	setUpstreamConfig(t, m.agent, m.client, &api.UpstreamConfig{PassiveHealthCheck: &api.PassiveHealthCheck{
		MaxFailures: 3, BaseEjectionTime: durPtr(time.Minute), MaxEjectionPercent: uint32Ptr(50)}},
		func(u sidecar.Upstream) bool { return u.Outlier.MaxFailures == 3 })
	bad, good := m.apps[0], m.apps[1]
	bad.failing.Store(true)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	get := func() int {
		resp, err := c.Get("http://" + m.upstream + "/echo")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// Failures on web-1 are counted until it is ejected (at most 3 of them
	// reach the client: the balancer spreads requests over both).
	failures := 0
	for range 40 {
		if get() != 200 {
			failures++
		}
	}
	if failures == 0 || failures > 3 {
		t.Errorf("%d failed requests before the ejection, want 1 to 3", failures)
	}
	before := bad.count()
	goodBefore := good.count()
	for range 20 {
		if code := get(); code != 200 {
			t.Fatalf("a request after the ejection got %d", code)
		}
	}
	if bad.count() != before || good.count() != goodBefore+20 {
		t.Errorf("after the ejection web-1 got %d and web-2 %d of 20 requests", bad.count()-before, good.count()-goodBefore)
	}
	clusters := getClusters(t, m.client.admin)
	ejected := 0
	for _, cd := range clusters {
		for _, e := range cd.Endpoints {
			if e.EjectedUntil != nil {
				ejected++
				if e.Ejections != 1 {
					t.Errorf("ejections %d, want 1", e.Ejections)
				}
			}
		}
	}
	if ejected != 1 {
		t.Errorf("/clusters shows %d ejected endpoints, want 1: %+v", ejected, clusters)
	}
	resp, err := http.Get("http://" + m.client.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `outrider_outlier_ejections_total{upstream="web"} 1`) {
		t.Errorf("metrics lack the ejection")
	}
}

// getClusters reads the admin API's /clusters at admin.
func getClusters(t *testing.T, admin string) []sidecar.ClusterDump {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/clusters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var clusters []sidecar.ClusterDump
	if err := json.NewDecoder(resp.Body).Decode(&clusters); err != nil {
		t.Fatal(err)
	}
	return clusters
}

func durPtr(d time.Duration) *time.Duration { return &d }
func uint32Ptr(n uint32) *uint32            { return &n }
