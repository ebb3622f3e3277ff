package filter

import "github.com/prometheus/client_golang/prometheus"

// reason is why a request was refused: the metric's reason label and the
// debug log's.
type reason uint8

const (
	ipDenied reason = iota
	bodyTooLarge
	tooManyHeaders
	headersTooLarge
	preflightDenied
	numReasons
)

var reasonNames = [numReasons]string{
	ipDenied:        "ip_denied",
	bodyTooLarge:    "body_too_large",
	tooManyHeaders:  "too_many_headers",
	headersTooLarge: "headers_too_large",
	preflightDenied: "cors_preflight_denied",
}

func (r reason) String() string { return reasonNames[r] }

// Metrics are the package's collectors, registered once per process and
// shared by every route's Filter:
//
//	outrider_gateway_filter_refused_total{route,reason}
//
// reason is ip_denied (403), body_too_large (413), too_many_headers (431),
// headers_too_large (431) or cors_preflight_denied (403).
type Metrics struct {
	refused *prometheus.CounterVec
}

// NewMetrics registers the collectors with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outrider_gateway_filter_refused_total",
		Help: "Requests the gateway filter refused, by route and reason.",
	}, []string{"route", "reason"})}
	if reg != nil {
		reg.MustRegister(m.refused)
	}
	return m
}

// routeMetrics are one route's counters, resolved once in New so that a
// refusal costs no label lookup. A nil *routeMetrics counts nothing.
type routeMetrics struct {
	refused [numReasons]prometheus.Counter
}

func (m *Metrics) route(name string) *routeMetrics {
	if m == nil {
		return nil
	}
	r := &routeMetrics{}
	for i, n := range reasonNames {
		r.refused[i] = m.refused.WithLabelValues(name, n)
	}
	return r
}

func (r *routeMetrics) inc(why reason) {
	if r != nil {
		r.refused[why].Inc()
	}
}
