package certs

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the package's collectors. Build them once per process with
// NewMetrics and pass them to every Store with WithMetrics.
//
//	outrider_gateway_certs_reloads_total{listener,outcome}   outcome: changed, unchanged, error
//	outrider_gateway_certs_selections_total{listener,match}  match: exact, wildcard, default, rejected
//	outrider_gateway_certs_expiry_seconds{listener,file}     seconds until the served leaf of file expires (negative: expired)
//
// The file label is a configured cert_file path, so it is bounded by the
// configuration.
type Metrics struct {
	reloads    *prometheus.CounterVec
	selections *prometheus.CounterVec
	expiry     *expiryCollector
}

// NewMetrics registers the collectors with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_certs_reloads_total",
			Help: "Reloads of the ingress TLS certificate files, by outcome (changed, unchanged, error: a pair failed and kept its previous certificate).",
		}, []string{"listener", "outcome"}),
		selections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_certs_selections_total",
			Help: "Certificates chosen for TLS handshakes, by how the SNI name matched (exact, wildcard, default, rejected).",
		}, []string{"listener", "match"}),
		expiry: &expiryCollector{
			desc: prometheus.NewDesc("outrider_gateway_certs_expiry_seconds",
				"Seconds until the served certificate of a configured cert_file expires (negative once expired).",
				[]string{"listener", "file"}, nil),
		},
	}
	if reg != nil {
		reg.MustRegister(m.reloads, m.selections, m.expiry)
	}
	return m
}

// storeMetrics is one Store's view: counters resolved once, so the
// handshake path does not look up label values.
type storeMetrics struct {
	m          *Metrics
	listener   string
	selections [numMatch]prometheus.Counter
}

func (m *Metrics) forStore(listener string) *storeMetrics {
	sm := &storeMetrics{m: m, listener: listener}
	for i, n := range matchNames {
		sm.selections[i] = m.selections.WithLabelValues(listener, n)
	}
	return sm
}

func (sm *storeMetrics) register(s *Store) {
	e := sm.m.expiry
	e.mu.Lock()
	e.stores = append(e.stores, registered{s, sm.listener})
	e.mu.Unlock()
}

func (sm *storeMetrics) unregister(s *Store) {
	e := sm.m.expiry
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stores = slices.DeleteFunc(e.stores, func(r registered) bool { return r.s == s })
}

func (sm *storeMetrics) selected(how int) {
	if sm != nil {
		sm.selections[how].Inc()
	}
}

func (sm *storeMetrics) reloaded(outcome string) {
	if sm != nil {
		sm.m.reloads.WithLabelValues(sm.listener, outcome).Inc()
	}
}

// expiryCollector computes seconds to expiry at scrape time from the
// stores' current snapshots. When two stores report the same listener
// and file (a configuration reload builds the new store before the old
// one stops), the newer one is reported.
type expiryCollector struct {
	desc   *prometheus.Desc
	mu     sync.Mutex
	stores []registered // registration order
}

type registered struct {
	s        *Store
	listener string
}

func (e *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- e.desc }

func (e *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	type key struct{ listener, file string }
	seen := map[key]bool{}
	for i := len(e.stores) - 1; i >= 0; i-- {
		s, listener := e.stores[i].s, e.stores[i].listener
		now := s.now()
		for _, en := range s.cur.Load().entries {
			k := key{listener, en.info.File}
			if seen[k] {
				continue
			}
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(e.desc, prometheus.GaugeValue,
				en.info.NotAfter.Sub(now).Seconds(), listener, en.info.File)
		}
	}
}
