// Package metrics is Outrider's Prometheus instrumentation: one registry per
// sidecar (never the global one, so sidecars can run side by side in one
// process), the metrics a sidecar records, and the /metrics handler.
//
// # Hot path
//
// The data path records through a *Route, one per (direction, upstream),
// which Metrics.Route creates once and caches. A Route resolves its label
// children the first time they are used and keeps them in fixed arrays
// indexed by method class, status class and response flag, so recording a
// request is a few atomic operations: no label map lookup, no allocation
// and no lock. Callers keep the *Route of a listener; Metrics.Route is
// cheap but not free (a sync.Map lookup).
//
// Label values never come from requests: methods, statuses and flags are
// folded into small fixed classes, authorization rules and upstreams are
// capped (overflowing into "other" and "_overflow"), so no client can grow
// the number of series. METRICS.md lists every metric.
//
// # Service label
//
// Metrics carry no service label. The proxied service identifies the
// scrape target, and it belongs in a target label set by service discovery
// (Consul SD's __meta_consul_service, relabelled to "service"): a constant
// "service" label in the exposition would collide with that target label
// and be renamed "exported_service". The one exception is the info metric
// outrider_sidecar_info{service="..."} 1, which lets a query join the
// service name on when it is not a target label.
//
// # Scrape-time values
//
// Values owned by other packages (discovery watch health, the leaf
// certificate's expiry, tracing exporter counters) are read from callbacks
// at scrape time (SetDiscoveryStatus, SetCertExpiry, SetTracingStats). The
// callbacks run on the scraping goroutine, must be safe for concurrent use
// and should not block.
package metrics
