package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WatchStatus is the health of one discovery watch at scrape time.
type WatchStatus struct {
	// Name identifies the watch, for example "health:web" or "intentions";
	// the set of names must be bounded by configuration.
	Name string
	// LastSuccess is when the watch last delivered a good result; zero if
	// it never has (exposed as 0).
	LastSuccess time.Time
	// Stale reports that the watch serves its last good result past its
	// freshness limit.
	Stale bool
	// Failures counts the failures since the last success.
	Failures int
}

// UpstreamEndpoints counts endpoints of one upstream at scrape time.
type UpstreamEndpoints struct {
	Upstream string
	Count    int
}

type (
	healthyFunc   func() []UpstreamEndpoints
	discoveryFunc func() []WatchStatus
	certFunc      func() (notAfter time.Time, ok bool)
	tracingFunc   func() (started, exported, dropped, exportErrors int64)
)

// SetDiscoveryStatus sets the callback that reports discovery watches at
// scrape time; nil removes it. f runs on the scraping goroutine, must be
// safe for concurrent use and should return quickly. A watch name returned
// twice is exposed once (the first).
func (m *Metrics) SetDiscoveryStatus(f func() []WatchStatus) {
	m.scrape.discovery.Store(ptr(discoveryFunc(f), f == nil))
}

// SetCertExpiry sets the callback that reports the leaf certificate's
// expiry at scrape time (ok false: no certificate yet, nothing exposed);
// nil removes it. Same contract as SetDiscoveryStatus.
func (m *Metrics) SetCertExpiry(f func() (notAfter time.Time, ok bool)) {
	m.scrape.cert.Store(ptr(certFunc(f), f == nil))
}

// SetTracingStats sets the callback that reports the tracer's cumulative
// span counters at scrape time; nil removes it. Same contract as
// SetDiscoveryStatus. The values must only grow (they are counters).
func (m *Metrics) SetTracingStats(f func() (started, exported, dropped, exportErrors int64)) {
	m.scrape.tracing.Store(ptr(tracingFunc(f), f == nil))
}

// SetHealthyEndpoints sets the callback that reports, at scrape time, how
// many endpoints of each upstream with active health checks pass them;
// nil removes it. Same contract as SetDiscoveryStatus; an upstream
// returned twice is exposed once (the first).
func (m *Metrics) SetHealthyEndpoints(f func() []UpstreamEndpoints) {
	m.scrape.healthy.Store(ptr(healthyFunc(f), f == nil))
}

func ptr[T any](v T, isNil bool) *T {
	if isNil {
		return nil
	}
	return &v
}

// scrapeCollector exposes the values read from callbacks at scrape time.
type scrapeCollector struct {
	discovery atomic.Pointer[discoveryFunc]
	cert      atomic.Pointer[certFunc]
	tracing   atomic.Pointer[tracingFunc]
	healthy   atomic.Pointer[healthyFunc]
	now       func() time.Time

	healthyEndpoints                      *prometheus.Desc
	lastSuccess, stale, failures          *prometheus.Desc
	certExpiry, certNotAfter              *prometheus.Desc
	started, exported, dropped, exportErr *prometheus.Desc
}

func newScrapeCollector() *scrapeCollector {
	watch := []string{"watch"}
	return &scrapeCollector{
		now: time.Now,
		lastSuccess: prometheus.NewDesc("outrider_discovery_last_success_timestamp_seconds",
			"Unix time of the watch's last successful update; 0 if it never succeeded.", watch, nil),
		stale: prometheus.NewDesc("outrider_discovery_stale",
			"1 if the watch serves its last good result past its freshness limit, else 0.", watch, nil),
		failures: prometheus.NewDesc("outrider_discovery_consecutive_failures",
			"Failures of the watch since its last success.", watch, nil),
		certExpiry: prometheus.NewDesc("outrider_certificate_expiry_seconds",
			"Seconds until the sidecar's leaf certificate expires; negative once it has.", nil, nil),
		certNotAfter: prometheus.NewDesc("outrider_certificate_not_after_timestamp_seconds",
			"Unix time at which the sidecar's leaf certificate expires.", nil, nil),
		started: prometheus.NewDesc("outrider_tracing_spans_started_total",
			"Spans started by the sidecar's tracer.", nil, nil),
		exported: prometheus.NewDesc("outrider_tracing_spans_exported_total",
			"Spans the exporter delivered.", nil, nil),
		dropped: prometheus.NewDesc("outrider_tracing_spans_dropped_total",
			"Spans dropped before export (queue full or export failed).", nil, nil),
		exportErr: prometheus.NewDesc("outrider_tracing_export_errors_total",
			"Failed export calls.", nil, nil),
		healthyEndpoints: prometheus.NewDesc("outrider_upstream_healthy_endpoints",
			"Endpoints of an upstream that pass its active health check (upstreams with active health checks only).", []string{"upstream"}, nil),
	}
}

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lastSuccess, c.stale, c.failures, c.certExpiry,
		c.certNotAfter, c.started, c.exported, c.dropped, c.exportErr, c.healthyEndpoints} {
		ch <- d
	}
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	if f := c.discovery.Load(); f != nil {
		seen := map[string]bool{}
		for _, w := range (*f)() {
			if seen[w.Name] {
				continue
			}
			seen[w.Name] = true
			last := 0.0
			if !w.LastSuccess.IsZero() {
				last = float64(w.LastSuccess.UnixNano()) / 1e9
			}
			stale := 0.0
			if w.Stale {
				stale = 1
			}
			send(ch, c.lastSuccess, prometheus.GaugeValue, last, w.Name)
			send(ch, c.stale, prometheus.GaugeValue, stale, w.Name)
			send(ch, c.failures, prometheus.GaugeValue, float64(w.Failures), w.Name)
		}
	}
	if f := c.cert.Load(); f != nil {
		if notAfter, ok := (*f)(); ok {
			send(ch, c.certExpiry, prometheus.GaugeValue, notAfter.Sub(c.now()).Seconds())
			send(ch, c.certNotAfter, prometheus.GaugeValue, float64(notAfter.UnixNano())/1e9)
		}
	}
	if f := c.healthy.Load(); f != nil {
		seen := map[string]bool{}
		for _, u := range (*f)() {
			if !seen[u.Upstream] {
				seen[u.Upstream] = true
				send(ch, c.healthyEndpoints, prometheus.GaugeValue, float64(u.Count), labelValue(u.Upstream))
			}
		}
	}
	if f := c.tracing.Load(); f != nil {
		started, exported, dropped, errs := (*f)()
		send(ch, c.started, prometheus.CounterValue, float64(started))
		send(ch, c.exported, prometheus.CounterValue, float64(exported))
		send(ch, c.dropped, prometheus.CounterValue, float64(dropped))
		send(ch, c.exportErr, prometheus.CounterValue, float64(errs))
	}
}

// send sends one constant metric, or an invalid metric carrying the error
// (a label value that is not UTF-8) so the scrape reports it instead of
// panicking.
func send(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	ch <- m
}
