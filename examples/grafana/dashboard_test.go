// Package grafana holds the Grafana dashboard for Outrider's metrics; its
// test keeps the dashboard in step with the metric names.
package grafana

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/telemetry/metrics"
)

// Every metric the dashboard queries exists in a sidecar's registry once
// each kind of event has been recorded.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	dash, err := os.ReadFile("outrider-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New("web")
	r := m.Route(metrics.Outbound, "api")
	r.Request("GET", 200, "", 1, 2, time.Millisecond, time.Millisecond)
	r.Retry()
	r.InFlight(1)
	r.Connection(1)
	r.ConnectionClosed(1, 2, time.Second)
	m.HandshakeFailure("unknown_ca")
	m.AuthzDecision(false, "default")
	m.OutlierEjection("api")
	m.SetDiscoveryStatus(func() []metrics.WatchStatus { return []metrics.WatchStatus{{Name: "health/connect/api"}} })
	m.SetCertExpiry(func() (time.Time, bool) { return time.Now().Add(time.Hour), true })
	m.SetTracingStats(func() (int64, int64, int64, int64) { return 1, 1, 0, 0 })
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range families {
		have[f.GetName()] = true
	}
	used := regexp.MustCompile(`outrider_[a-z_]+`).FindAllString(string(dash), -1)
	if len(used) == 0 {
		t.Fatal("the dashboard queries no outrider metric")
	}
	for _, name := range used {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !have[base] {
			t.Errorf("the dashboard queries %s, which the sidecar does not export", name)
		}
	}
}
