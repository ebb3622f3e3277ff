package aggregate

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the aggregator's Prometheus collectors, registered once per
// process by NewMetrics and shared by every route (WithMetrics).
type Metrics struct {
	requests *prometheus.CounterVec
	parts    *prometheus.CounterVec
}

// NewMetrics registers the collectors with reg:
//
//	outrider_gateway_aggregate_requests_total{route,outcome}
//	    composite requests: complete, partial, failed, canceled, rejected (405)
//	outrider_gateway_aggregate_parts_total{route,outcome}
//	    part calls: ok, timeout, status (upstream non-2xx), invalid (not
//	    JSON), too_large, aborted, no_upstream, bad_request, missing_field,
//	    dependency, canceled, panic
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_aggregate_requests_total",
			Help: "Composite endpoint requests by route and outcome (complete, partial, failed, canceled, rejected).",
		}, []string{"route", "outcome"}),
		parts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_aggregate_parts_total",
			Help: "Composite endpoint part calls by route and outcome (ok, timeout, status, invalid, too_large, ...).",
		}, []string{"route", "outcome"}),
	}
	reg.MustRegister(m.requests, m.parts)
	return m
}

// reqOutcome classifies a composite request.
type reqOutcome uint8

const (
	reqComplete reqOutcome = iota
	reqPartial
	reqFailed
	reqCanceled
	reqRejected
	numReqOutcomes
)

var reqOutcomeNames = [numReqOutcomes]string{"complete", "partial", "failed", "canceled", "rejected"}

// class classifies a part's outcome.
type class uint8

const (
	classOK class = iota
	classTimeout
	classStatus
	classInvalid
	classTooLarge
	classAborted
	classNoUpstream
	classBadRequest
	classMissingField
	classDependency
	classCanceled
	classPanic
	numClasses
)

var classNames = [numClasses]string{"ok", "timeout", "status", "invalid", "too_large", "aborted",
	"no_upstream", "bad_request", "missing_field", "dependency", "canceled", "panic"}

func (c class) String() string { return classNames[c] }

// routeMetrics are one route's counters, resolved once by New so that a
// request costs no label lookup.
type routeMetrics struct {
	requests [numReqOutcomes]prometheus.Counter
	parts    [numClasses]prometheus.Counter
}

func (m *Metrics) forRoute(route string) *routeMetrics {
	if m == nil {
		return nil
	}
	rm := &routeMetrics{}
	for i, n := range reqOutcomeNames {
		rm.requests[i] = m.requests.WithLabelValues(route, n)
	}
	for i, n := range classNames {
		rm.parts[i] = m.parts.WithLabelValues(route, n)
	}
	return rm
}

func (rm *routeMetrics) request(o reqOutcome) {
	if rm != nil {
		rm.requests[o].Inc()
	}
}

func (rm *routeMetrics) part(c class) {
	if rm != nil {
		rm.parts[c].Inc()
	}
}
