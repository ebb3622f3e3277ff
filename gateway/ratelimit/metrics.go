package ratelimit

import "github.com/prometheus/client_golang/prometheus"

// Outcomes, the decisions metric's outcome label.
const (
	outAdmitted = iota
	outLimited
	outFallbackOpen
	outFallbackClosed
	outFallbackLocalAdmitted
	outFallbackLocalLimited
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	"admitted", "limited", "fallback_open", "fallback_closed",
	"fallback_local_admitted", "fallback_local_limited",
}

// Metrics are the package's collectors, registered once per process:
//
//	outrider_gateway_ratelimit_decisions_total{route,outcome}
//	outrider_gateway_ratelimit_redis_errors_total{route,kind}  kind: timeout, reply, connection
//	outrider_gateway_ratelimit_key_overflow_total{route}
//
// outcome is admitted, limited, fallback_open, fallback_closed,
// fallback_local_admitted or fallback_local_limited (the last four: Redis
// failed and the failure mode decided).
type Metrics struct {
	decisions   *prometheus.CounterVec
	redisErrors *prometheus.CounterVec
	overflows   *prometheus.CounterVec
}

// NewMetrics registers the collectors with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_ratelimit_decisions_total",
			Help: "Rate limit decisions by route and outcome.",
		}, []string{"route", "outcome"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_ratelimit_redis_errors_total",
			Help: "Global rate limit decisions Redis could not make, by route and kind (timeout, reply, connection).",
		}, []string{"route", "kind"}),
		overflows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_ratelimit_key_overflow_total",
			Help: "Requests whose key found the local key table full and shared the overflow bucket.",
		}, []string{"route"}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.redisErrors, m.overflows)
	}
	return m
}

// routeMetrics are one route's counters, resolved once so that counting
// costs no allocation. A nil *routeMetrics counts nothing.
type routeMetrics struct {
	decisions                  [numOutcomes]prometheus.Counter
	timeout, reply, connection prometheus.Counter
	overflows                  prometheus.Counter
}

func (m *Metrics) route(name string) *routeMetrics {
	if m == nil {
		return nil
	}
	r := &routeMetrics{
		timeout:    m.redisErrors.WithLabelValues(name, errTimeout),
		reply:      m.redisErrors.WithLabelValues(name, errReply),
		connection: m.redisErrors.WithLabelValues(name, errConnection),
		overflows:  m.overflows.WithLabelValues(name),
	}
	for i, o := range outcomeNames {
		r.decisions[i] = m.decisions.WithLabelValues(name, o)
	}
	return r
}

func (r *routeMetrics) inc(outcome int) {
	if r != nil {
		r.decisions[outcome].Inc()
	}
}

func (r *routeMetrics) overflow() {
	if r != nil {
		r.overflows.Inc()
	}
}

func (r *routeMetrics) redisError(kind string) {
	if r == nil {
		return
	}
	switch kind {
	case errTimeout:
		r.timeout.Inc()
	case errReply:
		r.reply.Inc()
	default:
		r.connection.Inc()
	}
}
