package metrics

import (
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Label values that stand for many values.
const (
	// Other is the value of a class label (method, status_class,
	// response_flag, reason, rule) for a value outside its fixed set, and
	// the rule label of decisions past the MaxRules distinct rules.
	Other = "other"
	// OverflowUpstream is the upstream label of routes and ejections past
	// the MaxUpstreams distinct upstreams.
	OverflowUpstream = "_overflow"
)

// Cardinality caps. They guard against a misconfiguration or a bug; a
// healthy sidecar stays far below them.
const (
	// MaxRules is the number of distinct authorization rule labels kept.
	MaxRules = 256
	// MaxUpstreams is the number of distinct upstream labels kept per
	// direction (Route) and for outlier ejections.
	MaxUpstreams = 1024
)

// durationBuckets are the request and upstream duration histogram buckets,
// in seconds: 0.5 ms to 30 s. Read only.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// connectionBuckets are the L4 connection duration buckets, in seconds:
// 10 ms to 4 hours (connections live much longer than requests). Read only.
var connectionBuckets = []float64{.01, .1, 1, 10, 60, 300, 1800, 3600, 14400}

// Metrics is one sidecar's registry and the metrics it records. Every
// method is safe for concurrent use; none blocks except on the registry's
// own short locks when a label child is first created.
type Metrics struct {
	service string
	reg     *prometheus.Registry
	handler http.Handler

	// Per (direction, upstream): see Route.
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	upstreamDuration *prometheus.HistogramVec
	inFlight         *prometheus.GaugeVec
	requestBytes     *prometheus.CounterVec
	responseBytes    *prometheus.CounterVec
	retries          *prometheus.CounterVec
	connActive       *prometheus.GaugeVec
	connTotal        *prometheus.CounterVec
	tcpReceived      *prometheus.CounterVec
	tcpSent          *prometheus.CounterVec
	tcpDuration      *prometheus.HistogramVec

	routes    sync.Map // routeKey -> *Route
	routesMu  sync.Mutex
	routesPer map[Direction]int // routes created per direction, under routesMu

	handshake [numReasons]prometheus.Counter

	authz      *prometheus.CounterVec
	rules      sync.Map // rule -> *ruleCounters
	rulesMu    sync.Mutex
	rulesN     int // distinct rules stored in rules, under rulesMu
	otherRules *ruleCounters

	ejections *prometheus.CounterVec
	ejectSet  boundedSet

	healthChecks *prometheus.CounterVec
	healthSet    boundedSet

	h2Abuse       *prometheus.CounterVec
	h2AbuseGoAway *prometheus.CounterVec

	scrape *scrapeCollector
	info   *prometheus.GaugeVec // outrider_sidecar_info
}

// New returns the metrics of a sidecar proxying service, in a registry of
// their own that also holds the Go runtime and process collectors. service
// appears only on outrider_sidecar_info (see the package documentation).
func New(service string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{service: service, reg: reg, routesPer: map[Direction]int{}}
	route := []string{"direction", "upstream"}
	f := factory{reg}

	m.requests = f.counterVec("outrider_http_requests_total",
		"HTTP requests completed, by method class, status class and response flag.",
		"direction", "upstream", "method", "status_class", "response_flag")
	m.duration = f.histogramVec("outrider_http_request_duration_seconds",
		"Time from the request's arrival to the end of its response, in seconds.",
		durationBuckets, route...)
	m.upstreamDuration = f.histogramVec("outrider_http_upstream_duration_seconds",
		"Time from the first upstream attempt to the response head, in seconds; requests without an upstream response are not observed.",
		durationBuckets, route...)
	m.inFlight = f.gaugeVec("outrider_http_requests_in_flight",
		"HTTP requests being proxied.", route...)
	m.requestBytes = f.counterVec("outrider_http_request_body_bytes_total",
		"Request body bytes received from the downstream.", route...)
	m.responseBytes = f.counterVec("outrider_http_response_body_bytes_total",
		"Response body bytes sent to the downstream.", route...)
	m.retries = f.counterVec("outrider_upstream_retries_total",
		"Upstream attempts after the first (retries and attempts on another endpoint).", route...)
	m.connActive = f.gaugeVec("outrider_connections_active",
		"Open downstream connections (L4 and L7).", route...)
	m.connTotal = f.counterVec("outrider_connections_total",
		"Downstream connections accepted (L4 and L7).", route...)
	m.tcpReceived = f.counterVec("outrider_tcp_received_bytes_total",
		"L4 bytes received from the downstream, counted when the connection closes.", route...)
	m.tcpSent = f.counterVec("outrider_tcp_sent_bytes_total",
		"L4 bytes sent to the downstream, counted when the connection closes.", route...)
	m.tcpDuration = f.histogramVec("outrider_tcp_connection_duration_seconds",
		"Lifetime of closed L4 connections, in seconds.",
		connectionBuckets, route...)

	failures := f.counterVec("outrider_tls_handshake_failures_total",
		"TLS handshakes that failed, by reason class.", "reason")
	for i := range m.handshake {
		m.handshake[i] = failures.WithLabelValues(reasons[i])
	}
	m.authz = f.counterVec("outrider_authz_decisions_total",
		"Authorization decisions, by decision (allow, deny, or would_deny for rules in dry-run mode) and the rule that decided.",
		"decision", "rule")
	m.otherRules = m.newRuleCounters(Other)
	m.ejections = f.counterVec("outrider_outlier_ejections_total",
		"Endpoints ejected by outlier detection.", "upstream")
	m.ejectSet = boundedSet{max: MaxUpstreams, overflow: OverflowUpstream}
	m.healthChecks = f.counterVec("outrider_upstream_health_checks_total",
		"Active health check probes of upstream endpoints, by result (success, failure, error, timeout).", "upstream", "result")
	m.healthSet = boundedSet{max: MaxUpstreams, overflow: OverflowUpstream}

	m.h2Abuse = f.counterVec("outrider_http2_abuse_closed_connections_total",
		"HTTP/2 client connections closed for protocol abuse, by reason (rapid_reset, ping_flood, settings_flood, empty_data_flood, priority_flood, window_update_flood, continuation_flood).", "reason")
	m.h2AbuseGoAway = f.counterVec("outrider_http2_abuse_goaways_total",
		"Of the HTTP/2 connections closed for protocol abuse, those told GOAWAY (ENHANCE_YOUR_CALM) first, by reason; the others were closed without (the server's write did not finish: a peer that does not read).", "reason")

	m.info = f.gaugeVec("outrider_sidecar_info", "Always 1; labelled with the proxied service.", "service")
	m.info.WithLabelValues(labelValue(service)).Set(1)

	m.scrape = newScrapeCollector()
	reg.MustRegister(m.scrape,
		// The runtime/metrics based Go metrics rather than the go_memstats_*
		// set, whose go_memstats_alloc_bytes gauge and
		// go_memstats_alloc_bytes_total counter are one family name twice
		// in OpenMetrics, which strict parsers reject.
		collectors.NewGoCollector(
			collectors.WithGoCollectorMemStatsMetricsDisabled(),
			collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsGC, collectors.MetricsMemory)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          reg,
		EnableOpenMetrics: true,
	})
	return m
}

// Handler serves the registry in the Prometheus text format, or
// OpenMetrics when the scraper asks for it. Collection errors are reported
// in promhttp_metric_handler_errors_total and the rest is still served.
func (m *Metrics) Handler() http.Handler { return m.handler }

// SetService relabels outrider_sidecar_info once the proxied service is
// known (a sidecar started with -sidecar-for learns it from Consul).
func (m *Metrics) SetService(service string) {
	m.info.Reset()
	m.info.WithLabelValues(labelValue(service)).Set(1)
}

// Registry returns the sidecar's registry, for tests and for registering
// further collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// HTTP2Abuse counts a client connection closed for HTTP/2 abuse, and
// whether it was told GOAWAY first; reason is one of the sidecar's fixed
// reasons.
func (m *Metrics) HTTP2Abuse(reason string, goAway bool) {
	m.h2Abuse.WithLabelValues(reason).Inc()
	if goAway {
		m.h2AbuseGoAway.WithLabelValues(reason).Inc()
	}
}

// HandshakeFailure counts a failed TLS handshake. reason should be one of
// the Reason* constants (ClassifyHandshakeError returns one); anything else
// is counted as ReasonOther.
func (m *Metrics) HandshakeFailure(reason string) {
	m.handshake[reasonIndex(reason)].Inc()
}

// ruleCounters are the children of one rule.
type ruleCounters struct{ allow, deny, wouldDeny prometheus.Counter }

func (m *Metrics) newRuleCounters(rule string) *ruleCounters {
	return &ruleCounters{
		allow:     m.authz.WithLabelValues("allow", rule),
		deny:      m.authz.WithLabelValues("deny", rule),
		wouldDeny: m.authz.WithLabelValues("would_deny", rule),
	}
}

// AuthzDecision counts one authorization decision made by rule (a
// policy.Decision's Rule). The first MaxRules distinct rules get a label
// of their own; later ones are counted under Other. A known rule costs one
// sync.Map lookup and an atomic add.
func (m *Metrics) AuthzDecision(allow bool, rule string) {
	rc := m.ruleCounters(rule)
	if allow {
		rc.allow.Inc()
	} else {
		rc.deny.Inc()
	}
}

// AuthzWouldDeny counts a decision of rules in dry-run mode that would
// have denied (decision="would_deny"); the request was let through.
func (m *Metrics) AuthzWouldDeny(rule string) {
	m.ruleCounters(rule).wouldDeny.Inc()
}

func (m *Metrics) ruleCounters(rule string) *ruleCounters {
	if v, ok := m.rules.Load(rule); ok {
		return v.(*ruleCounters)
	}
	m.rulesMu.Lock()
	defer m.rulesMu.Unlock()
	if v, ok := m.rules.Load(rule); ok {
		return v.(*ruleCounters)
	}
	if m.rulesN >= MaxRules || rule == Other {
		return m.otherRules
	}
	rc := m.newRuleCounters(labelValue(rule))
	m.rules.Store(rule, rc)
	m.rulesN++
	return rc
}

// OutlierEjection counts one endpoint of upstream ejected by outlier
// detection. Not for the hot path: it looks the label child up each call.
func (m *Metrics) OutlierEjection(upstream string) {
	m.ejections.WithLabelValues(m.ejectSet.admit(labelValue(upstream))).Inc()
}

// HealthCheckResults are the result label values of
// outrider_upstream_health_checks_total: the probe passed; the endpoint
// answered that it is not healthy; no usable answer; no answer in time.
var HealthCheckResults = []string{"success", "failure", "error", "timeout"}

// HealthCheck counts one active health check probe of an endpoint of
// upstream; result is one of HealthCheckResults (anything else is counted
// as Other). Not for the hot path: it looks the label child up each call.
func (m *Metrics) HealthCheck(upstream, result string) {
	if !slices.Contains(HealthCheckResults, result) {
		result = Other
	}
	m.healthChecks.WithLabelValues(m.healthSet.admit(labelValue(upstream)), result).Inc()
}

// labelValue makes s a valid label value: client_golang panics on invalid
// UTF-8.
func labelValue(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// boundedSet admits up to max distinct values; later values map to
// overflow. Safe for concurrent use.
type boundedSet struct {
	mu       sync.Mutex
	seen     map[string]struct{}
	max      int
	overflow string
}

func (b *boundedSet) admit(v string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[v]; ok {
		return v
	}
	if len(b.seen) >= b.max {
		return b.overflow
	}
	if b.seen == nil {
		b.seen = map[string]struct{}{}
	}
	b.seen[v] = struct{}{}
	return v
}

// factory creates vectors registered in one registry.
type factory struct{ reg *prometheus.Registry }

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(v)
	return v
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(v)
	return v
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(v)
	return v
}
