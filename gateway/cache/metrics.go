package cache

import "github.com/prometheus/client_golang/prometheus"

// Lookup results, the values of the result label and of the X-Cache
// header (upper-cased there).
const (
	resultHit         = "hit"         // served from the store, fresh
	resultMiss        = "miss"        // fetched from the origin and stored
	resultStale       = "stale"       // served stale (stale-while-revalidate, stale-if-error)
	resultRevalidated = "revalidated" // served from the store after a 304 from the origin
	resultBypass      = "bypass"      // not looked up (method, no-store, Range)
	resultUncacheable = "uncacheable" // fetched from the origin, not storable
)

// Metrics are the cache's collectors, registered once per process.
type Metrics struct {
	lookups       *prometheus.CounterVec
	storedBytes   *prometheus.GaugeVec
	storedObjects *prometheus.GaugeVec
	evictions     *prometheus.CounterVec
}

// NewMetrics registers the cache's collectors with reg:
//
//	outrider_gateway_cache_lookups_total{route,result}   result: hit, miss, stale, revalidated, bypass, uncacheable
//	outrider_gateway_cache_stored_bytes{store}           bytes counted against the store's bound
//	outrider_gateway_cache_stored_objects{store}         responses stored
//	outrider_gateway_cache_evictions_total{store}        responses evicted to make room
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_cache_lookups_total",
			Help: "Requests seen by the response cache, by route and result (hit, miss, stale, revalidated, bypass, uncacheable).",
		}, []string{"route", "result"}),
		storedBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outrider_gateway_cache_stored_bytes",
			Help: "Bytes of responses held by the cache store, counted against its bound.",
		}, []string{"store"}),
		storedObjects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outrider_gateway_cache_stored_objects",
			Help: "Responses held by the cache store.",
		}, []string{"store"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_cache_evictions_total",
			Help: "Responses evicted from the cache store to make room.",
		}, []string{"store"}),
	}
	reg.MustRegister(m.lookups, m.storedBytes, m.storedObjects, m.evictions)
	return m
}
